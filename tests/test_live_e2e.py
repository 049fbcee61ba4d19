"""End to end: a tiny trained bundle trades a synthetic replay under a scripted supervisor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch as th
from fastapi import FastAPI
from loopback import serve

from backend.config.live_config import GuardConfig, LiveConfig, SupervisorConfig
from backend.execution.broker import PaperBroker
from backend.execution.feeds import ReplayFeed
from backend.execution.guards import Mode
from backend.execution.live_trader import STATUS_KEY, LiveTrader
from backend.execution.state_store import StateStore
from backend.models.model_manager import load_bundle

th.set_num_threads(1)

HALT_FROM_CALL = 138
"""The stub supervisor answers OK until this call, then Halt: the features warm up for 78
bars (3 sessions; the supervisor is queried on those bars too), so this is 8 bars into the
third traded session (mid-run, mid-session)."""


@pytest.fixture(scope="module")
def bundle_dir(tiny_live_bundle: Path) -> Path:
    return tiny_live_bundle


@pytest.fixture
def supervisor_url() -> Iterator[tuple[str, dict[str, int]]]:
    calls = {"n": 0}
    app = FastAPI()

    @app.get("/supervisor/status")
    def status() -> dict[str, object]:
        calls["n"] += 1
        level = "OK" if calls["n"] < HALT_FROM_CALL else "Halt"
        return {
            "level": level,
            "reason": "scripted",
            "decided_at": "2024-10-01T14:00:00Z",
            "stale": False,
            "model": "stub",
        }

    with serve(app) as url:
        yield url, calls


def test_replay_with_bundle_and_stub_supervisor(
    tmp_path: Path, bundle_dir: Path, supervisor_url: tuple[str, dict[str, int]]
) -> None:
    url, calls = supervisor_url
    bundle = load_bundle(bundle_dir)
    config = LiveConfig(
        state_db=str(tmp_path / "live.sqlite"),
        initial_cash=50_000.0,
        guards=GuardConfig(daily_loss_limit=0.5, max_drawdown=0.5),
        supervisor=SupervisorConfig(url=url, deadline_s=2.0, query_each_bar=True),
    )
    store = StateStore(config.state_db)
    trader = LiveTrader.from_bundle(bundle, config, store)
    feed = ReplayFeed.from_synthetic("SPY", start="2024-10-01", n_sessions=7, seed=4)
    decisions = trader.run_replay(feed)
    trader.supervisor.close()

    assert calls["n"] == len(decisions)  # queried on every decided bar
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    orders, fills = broker.orders(), broker.fills()
    halt_index = next(i for i, d in enumerate(decisions) if d.mode == Mode.HALTED)
    assert halt_index == HALT_FROM_CALL - 1
    halt_bar = decisions[halt_index].bar
    assert any(d.mode == Mode.ACTIVE for d in decisions[:halt_index])
    before = [o for o in orders if o.bar_ts < halt_bar]
    after = [o for o in orders if o.bar_ts >= halt_bar]
    assert len(before) >= 2, "the policy should have traded before the Halt"
    assert all(o.target == 0.0 for o in after) and len(after) <= 1  # only the flatten
    assert all(d.mode == Mode.HALTED for d in decisions[halt_index:])  # Halt never self-clears
    assert broker.position("SPY") == 0.0

    # Bookkeeping: cash from fills, costs booked at the env's rate, equity = cash + value.
    costs = sum(f.cost for f in fills)
    rate = (bundle.env_config.cost_bps + bundle.env_config.slippage_bps) * 1e-4
    assert costs == pytest.approx(sum(rate * abs(f.qty * f.price) for f in fills))
    assert costs > 0
    cash = config.initial_cash - sum(f.qty * f.price + f.cost for f in fills)
    assert broker.cash() == pytest.approx(cash, rel=1e-12)
    status = store.get(STATUS_KEY)
    assert status["equity"] == pytest.approx(
        status["cash"] + status["shares"] * status["last_price"]
    )
    assert status["pnl"] == pytest.approx(status["equity"] - config.initial_cash)
    for d in decisions:  # equity marked at each close
        assert d.equity > 0
    assert status["mode"] == "HALTED" and status["halt_reason"] == "supervisor Halt"


def test_cli_runs_a_synthetic_replay(tmp_path: Path, bundle_dir: Path) -> None:
    from backend.execution.live_trader import main

    config = tmp_path / "live.yaml"
    db = tmp_path / "cli.sqlite"
    config.write_text(
        f"symbol: SPY\nstate_db: {db}\napi_port: 0\n"
        "feed: {kind: synthetic, start: '2024-10-01', n_sessions: 4, seed: 2}\n"
        "supervisor: {url: null, deadline_s: 0.5}\n",
        encoding="utf-8",
    )
    assert main(["--bundle", str(bundle_dir), "--config", str(config)]) == 0
    status = StateStore(db).get(STATUS_KEY)
    # No supervisor: the fallback is Caution, so the trader stays REDUCING and never enters.
    assert status["mode"] == "REDUCING" and status["shares"] == 0.0
    assert status["last_bar"].startswith("2024-10-04T15:45")
