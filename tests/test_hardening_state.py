"""Trader state-file faults: damaged, truncated, read-only, foreign, deleted; live API limits."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.api.live_routes import create_app
from backend.execution.broker import BROKERS, PaperBroker, broker_spec, register_broker
from backend.execution.live_trader import STATUS_KEY, main
from backend.execution.state_store import StateFileError, StateStore


def healthy_store(path: Path) -> Path:
    store = StateStore(path)
    broker = PaperBroker(store, cost_bps=1.0, slippage_bps=1.0, initial_cash=5_000.0)
    store.set("status", {"mode": "ACTIVE"})
    for i in range(300):  # enough rows for several pages
        store.log_event(f"t{i}", "note", "x" * 200)
    assert broker.cash() == 5_000.0
    store.close()
    return path


def config_file(tmp_path: Path, db: Path, extra: str = "") -> Path:
    cfg = tmp_path / "live.yaml"
    cfg.write_text(
        f"symbol: SPY\nstate_db: {db}\napi_port: 0\n{extra}"
        "feed: {kind: synthetic, start: '2024-10-01', n_sessions: 2, seed: 2}\n"
        "supervisor: {url: null, deadline_s: 0.5}\n",
        encoding="utf-8",
    )
    return cfg


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "garbage_header":
        path.write_bytes(b"GARBAGE!" * 2 + data[16:])
    elif how == "cut_in_half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zero_bytes":
        path.write_bytes(b"")
    elif how == "random_garbage":
        path.write_bytes(os.urandom(8192))
    elif how == "read_only":
        path.chmod(stat.S_IRUSR | stat.S_IRGRP)
    else:  # pragma: no cover
        raise AssertionError(how)


FAULTS = {
    "garbage_header": "not a SQLite database",
    "cut_in_half": "truncated",
    "zero_bytes": "empty",
    "random_garbage": "not a SQLite database",
    "read_only": "read-only",
}


@pytest.mark.parametrize("how", sorted(FAULTS))
def test_damaged_state_file_is_named_and_untouched(tmp_path: Path, how: str) -> None:
    db = healthy_store(tmp_path / "state.sqlite")
    for side in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        side.unlink(missing_ok=True)
    damage(db, how)
    before = db.read_bytes()
    try:
        with pytest.raises(StateFileError, match=FAULTS[how]) as err:
            StateStore(db)
        message = str(err.value)
        assert str(db.resolve()) in message and "\n" not in message
        assert db.read_bytes() == before
        assert not Path(f"{db}-wal").exists()
    finally:
        db.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_foreign_sqlite_file_is_refused_unmodified(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE accounts (name TEXT)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StateFileError, match="not a trader state file"):
        StateStore(db)
    assert db.read_bytes() == before


def test_damaged_json_value_names_the_key(tmp_path: Path) -> None:
    db = healthy_store(tmp_path / "s.sqlite")
    conn = sqlite3.connect(db)
    conn.execute("UPDATE kv SET value = '{broken' WHERE key = 'status'")
    conn.commit()
    conn.close()
    with pytest.raises(StateFileError, match="key 'status'"):
        StateStore(db).get("status")


@pytest.mark.parametrize("how", ["garbage_header", "cut_in_half", "read_only"])
def test_trader_cli_exits_2_with_one_line(
    tmp_path: Path, tiny_live_bundle: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    db = healthy_store(tmp_path / "state.sqlite")
    damage(db, how)
    before = db.read_bytes()
    try:
        code = main(["--bundle", str(tiny_live_bundle), "--config", str(config_file(tmp_path, db))])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert len(err) == 1 and str(db.resolve()) in err[0] and FAULTS[how] in err[0]
        assert db.read_bytes() == before
    finally:
        db.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_deleted_state_file_warns_and_require_state_refuses(
    tmp_path: Path,
    tiny_live_bundle: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "gone" / "state.sqlite"
    cfg = config_file(tmp_path, db, "initial_cash: 12345.0\n")
    args = ["--bundle", str(tiny_live_bundle), "--config", str(cfg)]
    assert main([*args, "--require-state"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "--require-state" in err and str(db.resolve()) in err
    assert not db.exists()
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and str(db) in r.message]
    assert warned and "12345.00" in warned[0].message and "new paper account" in warned[0].message
    assert StateStore(db).get(STATUS_KEY) is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # an existing state: no new-account warning
        assert main([*args, "--require-state"]) == 0
    assert not [r for r in caplog.records if "new paper account" in r.message]


def test_require_state_from_config_and_real_broker_default(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="does not exist"):
        StateStore(tmp_path / "missing.sqlite", must_exist=True)

    @register_broker("test-real-broker")
    class RealLike(PaperBroker):
        pass

    try:
        assert broker_spec("test-real-broker").requires_state is True
        assert broker_spec("paper").requires_state is False
        with pytest.raises(ValueError, match=r"unknown 'nope'; registered brokers: \["):
            broker_spec("nope")
    finally:
        BROKERS.pop("test-real-broker")


def test_config_broker_unknown_is_a_clean_error(
    tmp_path: Path, tiny_live_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config_file(tmp_path, tmp_path / "s.sqlite", "broker: ibkr-typo\n")
    assert main(["--bundle", str(tiny_live_bundle), "--config", str(cfg)]) == 2
    assert "unknown 'ibkr-typo'" in capsys.readouterr().err
    assert not (tmp_path / "s.sqlite").exists()


# ------------------------------------------------------------------ live API limits


def test_live_api_bounds_every_field(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    client = TestClient(create_app(store, token="tok"), client=("127.0.0.1", 5000))
    auth = {"Authorization": "Bearer tok"}
    r = client.post("/live/halt", json={"reason": "x" * 5_000_000}, headers=auth)
    assert r.status_code == 413
    r = client.post("/live/halt", json={"reason": "x" * 501}, headers=auth)
    assert r.status_code == 422
    r = client.post("/live/halt", json={"reason": "ok", "who": "me"}, headers=auth)
    assert r.status_code == 422
    r = client.post(
        "/live/halt", content=b"x" * 20_000, headers={**auth, "content-type": "text/plain"}
    )
    assert r.status_code == 413
    assert store.get("manual_halt") is None  # nothing refused was stored
    raw = rb'{"reason": "storm \ud800\u200b coming"}'  # JSON escapes: a lone surrogate
    r = client.post("/live/halt", content=raw, headers={**auth, "content-type": "application/json"})
    assert r.status_code == 200
    assert store.get("manual_halt") == {"active": True, "reason": "storm \ufffd coming"}


def test_live_halt_with_a_blank_reason_still_halts(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    client = TestClient(create_app(store, token="tok"), client=("127.0.0.1", 5000))
    r = client.post(
        "/live/halt", json={"reason": " \u200b "}, headers={"Authorization": "Bearer tok"}
    )
    assert r.status_code == 200
    assert store.get("manual_halt") == {"active": True, "reason": "manual halt"}
