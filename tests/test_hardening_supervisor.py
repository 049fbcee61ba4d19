"""Supervisor hardening: untrusted text, decision+audit as one unit, bounded polls, limits."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from backend.config.supervisor_config import SupervisorConfig
from backend.monitoring import news_sources
from backend.monitoring.audit_log import AuditLog, AuditWriteError
from backend.monitoring.llm_supervisor import AuditUnavailableError, Supervisor
from backend.monitoring.news_sources import NewsItem, ReadBudget, read_paths
from backend.monitoring.risk_levels import RiskLevel, Verdict
from backend.monitoring.routes import create_app
from backend.monitoring.sentiment_service import score_items
from backend.utils.sqlite_files import SQLiteFileError
from backend.utils.text_sanitize import clean_text

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ENV = "YOOPRL_SUPERVISOR_TOKEN_HARDENING"
TOKEN = "hardening-token-91"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
L = RiskLevel


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def make(tmp_path: Path, **cfg: object) -> Supervisor:
    config = SupervisorConfig(
        audit_db_path=str(tmp_path / "audit.sqlite3"),
        audit_jsonl_path=str(tmp_path / "audit.jsonl"),
        api_token_env=ENV,
        **cfg,  # type: ignore[arg-type]
    )
    return Supervisor(config, AuditLog(config.audit_db_path, config.audit_jsonl_path))


def headline(title: str, minutes_ago: float = 5.0) -> dict[str, object]:
    when = now_utc() - timedelta(minutes=minutes_ago)
    return {"published": when.isoformat(), "source": "wire", "title": title}


# ----------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Trading \ud800halted", "Trading \ufffdhalted"),  # lone surrogate
        ("Trading\u200b halted", "Trading halted"),  # zero-width space
        ("ｔｒａｄｉｎｇ ｈａｌｔｅｄ", "trading halted"),  # full-width (NFKC)
        ("tr\u0430ding halted", "trading halted"),  # Cyrillic a in a Latin word
        ("line\nbreak\tand\x00nul", "line break andnul"),
        ("\u202eevil bidi\u202c", "evil bidi"),
        ("Москва", "Москва"),  # a word wholly in another script is kept
    ],
)
def test_clean_text_normalizes_untrusted_text(raw: str, expected: str) -> None:
    out = clean_text(raw)
    assert out == expected
    out.encode("utf-8")  # always encodable


def test_clean_text_bounds_length() -> None:
    assert len(clean_text("x" * 10_000, 100)) == 100


@pytest.mark.parametrize(
    "title",
    [
        "Tr\u0430ding h\u0430lted on all exchanges",  # homoglyphs
        "Trading\u200b halted on all exchanges",  # hidden character inside the phrase
        "Ｔｒａｄｉｎｇ ｈａｌｔｅｄ on all exchanges",  # full-width
        "Trading \u00adhalted on all exchanges",  # soft hyphen
    ],
)
def test_disguised_halt_headlines_still_halt(tmp_path: Path, title: str) -> None:
    sup = make(tmp_path)
    item = NewsItem(now_utc() - timedelta(minutes=1), "wire", title)
    st = asyncio.run(sup.decide(score_items([item], now_utc(), timedelta(hours=6))))
    assert st.level == L.HALT, (title, st.reason)


def test_lone_surrogate_headline_is_audited_every_poll(tmp_path: Path) -> None:
    news = tmp_path / "news"
    news.mkdir()
    # JSON allows "\ud800": json.loads returns a str that cannot be encoded to UTF-8.
    line = json.dumps(headline("Markets calm \\ud800 today")).replace("\\\\ud800", "\\ud800")
    assert "\\ud800" in line
    (news / "a.jsonl").write_text(line + "\n", encoding="utf-8")
    sup = make(tmp_path, news_paths=(str(news),))
    for _ in range(3):
        st = asyncio.run(sup.poll_once())
        assert st.audit_error is None
    rows = sup.audit.recent(10)
    assert len(rows) == 3 and all(r["n_items"] == 1 for r in rows)
    restarted = Supervisor(sup.config, AuditLog(sup.config.audit_db_path, sup.audit.jsonl_path))
    assert restarted.status().level == L.CAUTION  # booted from the newest row


def test_surrogates_in_manual_text_are_stored(tmp_path: Path) -> None:
    sup = make(tmp_path)
    sup.manual_halt("op\ud800", "why \udfff")
    row = sup.audit.last()
    assert row is not None and row["kind"] == "halt" and "\ufffd" in row["reason"]


# ----------------------------------------------------------- decision + audit unit


class FailingAudit:
    """Wraps an AuditLog; ``broken`` makes append fail like a full disk."""

    def __init__(self, audit: AuditLog) -> None:
        self.inner = audit
        self.broken = False

    def append(self, record):  # noqa: ANN001, ANN201 - test double
        if self.broken:
            raise AuditWriteError("disk I/O error (simulated)")
        return self.inner.append(record)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.inner, name)


def test_audit_failure_lets_the_level_only_move_up(tmp_path: Path) -> None:
    sup = make(tmp_path, deescalate_after=1)
    audit = FailingAudit(sup.audit)
    sup.audit = audit  # type: ignore[assignment]
    now = now_utc()
    sup.apply_verdict(Verdict(L.OK, "calm"), now, "rules")
    assert sup.status().level == L.OK
    audit.broken = True
    # Escalation stands without its row...
    halt = NewsItem(now - timedelta(minutes=1), "wire", "Trading halted on all exchanges")
    st = asyncio.run(sup.decide(score_items([halt], now_utc(), timedelta(hours=6))))
    assert st.level == L.HALT
    assert st.audit_error is not None and "disk I/O" in st.audit_error
    assert st.audit_failures == 1
    # ... a manual resume (which lowers it) is refused while the row cannot be written.
    with pytest.raises(AuditUnavailableError, match="audit row"):
        sup.resume("alice", "all clear")
    assert sup.status().level == L.HALT and sup.status().audit_failures == 2
    # The trail recovers: the failure itself is written as a row before the next one.
    audit.broken = False
    sup.resume("alice", "all clear")
    kinds = [r["kind"] for r in sup.audit.recent(5)]
    assert kinds[:2] == ["resume", "audit_failure"]
    failure = sup.audit.recent(5)[1]
    assert "2 audit row(s)" in failure["reason"] and "disk I/O" in failure["error"]
    assert sup.status().audit_error is None


def test_audit_failure_drops_a_lowering_decision_and_floors_at_caution(tmp_path: Path) -> None:
    sup = make(tmp_path, deescalate_after=1)
    audit = FailingAudit(sup.audit)
    sup.audit = audit  # type: ignore[assignment]
    sup.apply_verdict(Verdict(L.CAUTION, "wobbly"), now_utc(), "rules")
    audit.broken = True
    st = asyncio.run(sup.decide([]))  # rules say OK: a lowering decision
    assert st.level == L.CAUTION and st.audit_failures == 1
    assert sup._state.level == L.CAUTION  # the computed level did not move down either


def test_status_endpoint_shows_audit_failure_and_resume_is_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    sup = make(tmp_path)
    audit = FailingAudit(sup.audit)
    sup.audit = audit  # type: ignore[assignment]
    client = TestClient(create_app(sup, sup.config), client=("127.0.0.1", 5000))
    audit.broken = True
    r = client.post("/supervisor/halt", json={"who": "op", "why": "test"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["level"] == "Halt"
    status = client.get("/supervisor/status").json()
    assert status["audit_ok"] is False and status["audit_failures"] == 1
    assert "disk I/O" in status["audit_error"]
    r = client.post("/supervisor/resume", json={"who": "op", "why": "test"}, headers=AUTH)
    assert r.status_code == 503 and "audit" in r.json()["detail"]
    assert client.get("/supervisor/status").json()["level"] == "Halt"


def test_sqlite_refusal_still_reaches_the_mirror_and_the_next_boot(tmp_path: Path) -> None:
    sup = make(tmp_path)
    sup.manual_halt("op", "storm")
    sup.resume("op", "calm")  # SQLite's newest row: Caution
    real = sup.audit._conn

    class Refusing:
        def execute(self, sql: str, *a: object):  # noqa: ANN201
            if sql.startswith("INSERT"):
                raise __import__("sqlite3").OperationalError("database is locked")
            return real.execute(sql, *a)

        @property
        def in_transaction(self) -> bool:
            return real.in_transaction

    sup.audit._conn = Refusing()  # type: ignore[assignment]
    st = sup.manual_halt("op", "second storm")
    assert st.level == L.HALT and st.audit_failures == 1
    sup.audit._conn = real
    mirrored = sup.audit.last_mirrored()
    assert mirrored is not None and mirrored["level"] == "Halt" and mirrored["id"] is None
    # A restart boots from the more restrictive of database and mirror: Halt.
    again = Supervisor(sup.config, AuditLog(sup.config.audit_db_path, sup.config.audit_jsonl_path))
    assert again.status().level == L.HALT


def test_damaged_audit_database_is_named_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "audit.sqlite3"
    db.write_bytes(b"this is not sqlite" * 100)
    before = db.read_bytes()
    with pytest.raises(SQLiteFileError, match=r"audit\.sqlite3: is not a SQLite database"):
        AuditLog(db, tmp_path / "audit.jsonl")
    assert db.read_bytes() == before


# ------------------------------------------------------------------ bounded polls


def write_news(folder: Path, n_lines: int, title: str = "Stocks drift sideways") -> None:
    folder.mkdir(exist_ok=True)
    line = json.dumps(headline(title))
    (folder / "big.jsonl").write_text((line + "\n") * n_lines, encoding="utf-8")


def test_poll_reads_within_its_byte_and_item_budget(tmp_path: Path) -> None:
    news = tmp_path / "news"
    write_news(news, 5000)
    budget = ReadBudget(max_bytes=50_000, max_items=10_000, max_seconds=30)
    items = read_paths([news], budget)
    assert 0 < len(items) < 5000
    assert budget.bytes_read <= 50_000
    assert any("read only its last 50000" in n for n in budget.notes)
    budget = ReadBudget(max_bytes=10**9, max_items=100, max_seconds=30)
    assert len(read_paths([news], budget)) == 100
    assert any("item limit 100" in n for n in budget.notes)


def test_truncation_is_written_into_the_audit_row(tmp_path: Path) -> None:
    news = tmp_path / "news"
    write_news(news, 3000)
    sup = make(tmp_path, news_paths=(str(news),), max_poll_bytes=20_000)
    asyncio.run(sup.poll_once())
    row = sup.audit.last()
    assert row is not None and "poll byte limit 20000" in (row["error"] or "")


def test_an_endless_line_is_skipped_without_reading_it_whole(tmp_path: Path) -> None:
    news = tmp_path / "news"
    news.mkdir()
    good = json.dumps(headline("Trading halted at the NYSE"))
    (news / "a.jsonl").write_bytes(b"x" * 3_000_000 + b"\n" + good.encode() + b"\n")
    items = read_paths([news], ReadBudget(max_bytes=10**8))
    assert [i.title for i in items] == ["Trading halted at the NYSE"]


def test_status_answers_during_a_slow_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A status request made while a poll reads its files completes before the poll does."""
    sup = make(tmp_path, news_paths=(str(tmp_path),))
    release = threading.Event()
    reading = threading.Event()
    real = news_sources.read_paths

    def slow_read(paths, budget=None):  # noqa: ANN001, ANN202
        reading.set()
        release.wait(10)  # blocks like a 45 MB folder would, in the worker thread
        return real(paths, budget)

    monkeypatch.setattr(news_sources, "read_paths", slow_read)
    app = create_app(sup, sup.config)

    async def scenario() -> tuple[bool, float]:
        poll = asyncio.create_task(sup.poll_once())
        while not reading.is_set():
            await asyncio.sleep(0.01)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            t0 = time.monotonic()
            r = await client.get("/supervisor/status")
            elapsed = time.monotonic() - t0
        poll_done_before = poll.done()
        release.set()
        await poll
        assert r.status_code == 200
        return poll_done_before, elapsed

    poll_done_before, _ = asyncio.run(scenario())
    assert poll_done_before is False


# ------------------------------------------------------------------- field limits


def test_supervisor_refuses_oversized_bodies_and_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, TOKEN)
    sup = make(tmp_path)
    client = TestClient(create_app(sup, sup.config), client=("127.0.0.1", 5000))
    huge = {"who": "op", "why": "x" * 5_000_000}
    r = client.post("/supervisor/halt", json=huge, headers=AUTH)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]
    r = client.post("/supervisor/halt", json={"who": "op", "why": "x" * 2001}, headers=AUTH)
    assert r.status_code == 422
    r = client.post("/supervisor/halt", json={"who": "op", "why": "ok", "extra": 1}, headers=AUTH)
    assert r.status_code == 422
    r = client.post("/supervisor/halt", json={"who": "\u200b\u200b", "why": "ok"}, headers=AUTH)
    assert r.status_code == 422  # blank once hidden characters are removed
    far = {"who": "op", "why": "y", "level": "OK", "expires_at": "9999-12-31T23:59:00-05:00"}
    r = client.post("/supervisor/override", json=far, headers=AUTH)
    assert r.status_code == 422
    # A refused value holding a lone surrogate is echoed safely (not a 500).
    raw = rb'{"who": "op", "why": "x", "level": "\ud800", "expires_at": "2099-01-01T00:00Z"}'
    r = client.post(
        "/supervisor/override",
        content=raw,
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 422 and "\ufffd" in r.text
    assert sup.audit.count() == 0  # nothing refused reached the audit trail
