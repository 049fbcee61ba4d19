"""The whole live stack end to end: trader + REAL supervisor service over HTTP.

A tiny trained bundle trades a synthetic replay (6 sessions: 3 warm up, 3 trade) while the
real supervisor (``Supervisor`` + ``routes.create_app``, rules only, no LLM) is served by
uvicorn on 127.0.0.1 with an ephemeral port, reading headlines from a temporary JSON-lines
file. The test owns the simulated clock: before each bar it sets the supervisor's clock to
the bar's close and polls the supervisor "hourly" (every 4 bars) by calling
``Supervisor.poll_once`` directly, as ``run_poll_loop`` would.

Scenario (one module-scoped run, checked by several tests):

1. Both sides boot at Caution; two OK polls / verdicts bring them to OK and ACTIVE.
2. While the trader holds shares mid-session, a "trading halt ... circuit breaker"
   headline is appended and a poll decides Halt; an operator also posts a manual Halt
   (who/why) to ``POST /supervisor/halt``. The trader flattens and stays HALTED.
3. Once the headline has left the lookback window, ``POST /supervisor/resume``: the
   supervisor goes back to OK, but the trader's Halt is latched and it stays HALTED.
4. ``POST /live/resume`` (the trader's API, its own token): the trader restarts from
   Caution and needs two lower (OK) verdicts before it is ACTIVE again.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import torch as th
from loopback import serve

from backend.api.live_routes import create_app as create_live_app
from backend.config.live_config import GuardConfig, LiveConfig, load_live_config
from backend.config.live_config import SupervisorConfig as ClientConfig
from backend.config.supervisor_config import SupervisorConfig, load_supervisor_config
from backend.execution.broker import Order, PaperBroker
from backend.execution.feeds import ReplayFeed
from backend.execution.guards import Mode
from backend.execution.live_trader import STATUS_KEY, Decision, LiveTrader
from backend.execution.state_store import StateStore
from backend.models.model_manager import load_bundle
from backend.monitoring.audit_log import AuditLog
from backend.monitoring.llm_supervisor import Supervisor
from backend.monitoring.routes import create_app as create_supervisor_app

th.set_num_threads(1)

EXAMPLES = Path(__file__).resolve().parents[1] / "backend" / "config" / "examples"

SUP_TOKEN_ENV = "YOOPRL_E2E_SUPERVISOR_TOKEN"
LIVE_TOKEN_ENV = "YOOPRL_E2E_LIVE_TOKEN"
SUP_TOKEN = "e2e-supervisor-token-7f3a"
LIVE_TOKEN = "e2e-live-token-91c2"
HALT_TITLE = "NYSE declares market-wide trading halt after circuit breaker trips"
OPERATOR = {"who": "alice", "why": "circuit breaker drill"}
FIRST_TRADED_BAR = 78
"""3 warm-up sessions of 26 bars (the features' lookback)."""
HALT_NOT_BEFORE = FIRST_TRADED_BAR + 26 + 6
"""Halt mid-session, not before bar 6 of the second traded session."""
HALTED_BARS = 8
"""Bars between the Halt and the supervisor resume (2 h: the headline leaves the 1 h window)."""
SUP_RESUMED_BARS = 4
"""Bars between the supervisor resume and the trader's resume."""


class SimClock:
    """The supervisor's clock, moved by the test to each bar's close."""

    def __init__(self) -> None:
        self.now = datetime(2024, 10, 1, 13, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class StackRun:
    """Everything the checks need from the scenario."""

    decisions: list[Decision]
    statuses: list[dict[str, Any]]
    """The trader's persisted status after each decided bar."""
    orders: list[Order]
    broker: PaperBroker
    initial_cash: float
    cost_rate: float
    halt_i: int
    sup_resume_i: int
    live_resume_i: int
    qty_at_halt: float
    polls: int
    history: list[dict[str, Any]]
    """``GET /supervisor/history`` at the end, oldest first."""
    sup_status_after_resume: dict[str, Any]
    halt_status: dict[str, Any]
    live_resume_answer: dict[str, Any]
    jsonl_rows: int
    events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_live_bundle: Path) -> Iterator[StackRun]:
    root = tmp_path_factory.mktemp("stack")
    bundle = load_bundle(tiny_live_bundle)
    news = root / "news.jsonl"
    news.write_text("", encoding="utf-8")
    sup_cfg = SupervisorConfig(
        news_paths=(str(news),),
        poll_interval_s=3600,
        lookback_s=3600,
        staleness_s=7200,
        audit_db_path=str(root / "audit.sqlite3"),
        audit_jsonl_path=str(root / "audit.jsonl"),
        api_token_env=SUP_TOKEN_ENV,
    )
    clock = SimClock()
    supervisor = Supervisor(
        sup_cfg, AuditLog(sup_cfg.audit_db_path, sup_cfg.audit_jsonl_path), clock=clock
    )
    saved = {k: os.environ.get(k) for k in (SUP_TOKEN_ENV, LIVE_TOKEN_ENV)}
    os.environ[SUP_TOKEN_ENV] = SUP_TOKEN
    os.environ[LIVE_TOKEN_ENV] = LIVE_TOKEN
    try:
        sup_app = create_supervisor_app(supervisor, sup_cfg)  # reads the token now
        live_db = str(root / "live.sqlite")
        live_app = create_live_app(StateStore(live_db), token=os.environ[LIVE_TOKEN_ENV])
        with (
            serve(sup_app) as sup_url,
            serve(live_app) as live_url,
            httpx.Client(timeout=5.0, trust_env=False) as http,
        ):
            yield _scenario(bundle, supervisor, clock, news, sup_url, live_url, live_db, http)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        supervisor.audit.close()


def _scenario(
    bundle: Any,
    supervisor: Supervisor,
    clock: SimClock,
    news: Path,
    sup_url: str,
    live_url: str,
    live_db: str,
    http: httpx.Client,
) -> StackRun:
    config = LiveConfig(
        state_db=live_db,
        initial_cash=50_000.0,
        api_port=0,
        api_token_env=LIVE_TOKEN_ENV,
        guards=GuardConfig(daily_loss_limit=0.5, max_drawdown=0.5, max_orders_per_hour=100),
        supervisor=ClientConfig(url=sup_url, deadline_s=2.0, query_each_bar=True),
    )
    store = StateStore(config.state_db)
    trader = LiveTrader.from_bundle(bundle, config, store)
    bars = list(ReplayFeed.from_synthetic("SPY", start="2024-10-01", n_sessions=6, seed=4))
    sup_auth = {"Authorization": f"Bearer {SUP_TOKEN}"}
    decisions: list[Decision] = []
    statuses: list[dict[str, Any]] = []
    polls = 0
    halt_i = sup_resume_i = live_resume_i = -1
    qty_at_halt = 0.0
    sup_status_after_resume: dict[str, Any] = {}
    halt_status: dict[str, Any] = {}
    live_resume_answer: dict[str, Any] = {}
    day_index: dict[pd.Timestamp, int] = {}
    try:
        for i, bar in enumerate(bars):  # bounded: 156 bars
            close = pd.Timestamp(bar.close_time).tz_convert("UTC").to_pydatetime()
            clock.now = close
            day = pd.Timestamp(bar.timestamp).normalize()
            bar_in = day_index.setdefault(day, i)
            position = trader.broker.position("SPY")
            if halt_i < 0 and i >= HALT_NOT_BEFORE and position > 0 and (i - bar_in) < 22:
                halt_i, qty_at_halt = i, position
                published = (close - timedelta(minutes=1)).isoformat()
                with news.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"published": published, "title": HALT_TITLE}) + "\n")
                asyncio.run(supervisor.poll_once())  # rules: Halt
                polls += 1
                r = http.post(f"{sup_url}/supervisor/halt", json=OPERATOR, headers=sup_auth)
                assert r.status_code == 200, r.text
                halt_status = r.json()
            elif (i - bar_in) % 4 == 0 or (halt_i >= 0 and i == halt_i + HALTED_BARS):
                asyncio.run(supervisor.poll_once())  # "hourly", and just before the resume
                polls += 1
            if halt_i >= 0 and i == halt_i + HALTED_BARS:
                sup_resume_i = i
                resume = {"who": "alice", "why": "halt headline checked, exchange reopened"}
                r = http.post(f"{sup_url}/supervisor/resume", json=resume, headers=sup_auth)
                assert r.status_code == 200, r.text
                sup_status_after_resume = http.get(f"{sup_url}/supervisor/status").json()
            if sup_resume_i >= 0 and i == sup_resume_i + SUP_RESUMED_BARS:
                live_resume_i = i
                r = http.post(
                    f"{live_url}/live/resume", headers={"Authorization": f"Bearer {LIVE_TOKEN}"}
                )
                assert r.status_code == 200, r.text
                live_resume_answer = r.json()
            decision = trader.on_bar(bar)
            assert decision is not None
            decisions.append(decision)
            statuses.append(dict(store.get(STATUS_KEY)))
    finally:
        trader.supervisor.close()
    assert halt_i >= 0 and live_resume_i >= 0 and live_resume_i + 3 < len(bars), (
        "the scenario did not fit in the replay"
    )
    history = http.get(f"{sup_url}/supervisor/history", params={"limit": 1000}).json()
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    env = bundle.env_config
    return StackRun(
        decisions=decisions,
        statuses=statuses,
        orders=broker.orders(),
        broker=broker,
        initial_cash=config.initial_cash,
        cost_rate=(env.cost_bps + env.slippage_bps) * 1e-4,
        halt_i=halt_i,
        sup_resume_i=sup_resume_i,
        live_resume_i=live_resume_i,
        qty_at_halt=qty_at_halt,
        polls=polls,
        history=list(reversed(history["entries"])),
        sup_status_after_resume=sup_status_after_resume,
        halt_status=halt_status,
        live_resume_answer=live_resume_answer,
        jsonl_rows=len(Path(supervisor.audit.jsonl_path).read_text().splitlines()),
        events=store.events(),
    )


def test_trades_before_the_halt_then_flattens_and_enters_nothing(run: StackRun) -> None:
    d = run.decisions
    assert run.halt_status["level"] == "Halt"
    assert run.halt_status["manual_override"]["who"] == "alice"
    assert d[run.halt_i - 1].mode == Mode.ACTIVE  # traded normally up to the Halt
    halt_bar = d[run.halt_i].bar
    assert d[run.halt_i].mode == Mode.HALTED
    assert run.statuses[run.halt_i]["halt_reason"] == "supervisor Halt"
    before = [o for o in run.orders if o.bar_ts < halt_bar]
    assert len(before) >= 2, "the policy should have traded before the Halt"
    # The flatten: one order for the whole position, filled at the next bar's open.
    halted = [o for o in run.orders if halt_bar <= o.bar_ts < d[run.live_resume_i].bar]
    assert len(halted) == 1 and halted[0].target == 0.0
    held = sum(f.qty for f in run.broker.fills() if f.bar_ts <= halt_bar)  # incl. open fills
    assert run.qty_at_halt > 0 and held > 0
    assert halted[0].qty == pytest.approx(-held)
    assert halted[0].bar_ts == halt_bar and halted[0].status == "filled"
    assert run.statuses[run.halt_i + 1]["shares"] == 0.0
    for i in range(run.halt_i, run.live_resume_i):
        assert d[i].mode == Mode.HALTED, i
        assert d[i].target == 0.0
        assert run.statuses[i]["mode"] == "HALTED"
    assert not [e for e in run.events if e["kind"].startswith("guard_")]


def test_supervisor_resume_alone_does_not_unlatch_the_trader(run: StackRun) -> None:
    assert run.sup_status_after_resume["level"] == "OK"  # headline out of the 1 h window
    assert run.sup_status_after_resume["manual_override"] is None
    for i in range(run.sup_resume_i, run.live_resume_i):
        assert run.decisions[i].mode == Mode.HALTED
        assert run.statuses[i]["supervisor"]["level"] == "OK"  # what the trader was told
        assert run.statuses[i]["halt_reason"] == "supervisor Halt"


def test_trader_resume_needs_two_ok_verdicts_before_active(run: StackRun) -> None:
    assert run.live_resume_answer == {"manual_halt": False, "resume_seq": 1}
    k = run.live_resume_i
    modes = [run.decisions[i].mode for i in range(k, k + 3)]
    assert modes == [Mode.REDUCING, Mode.REDUCING, Mode.ACTIVE]
    # REDUCING from flat enters nothing (caution_no_new_entries).
    reducing_bars = {run.decisions[k].bar, run.decisions[k + 1].bar}
    assert not [o for o in run.orders if o.bar_ts in reducing_bars]
    assert run.statuses[k]["halt_reason"] == ""


def test_pnl_bookkeeping(run: StackRun) -> None:
    fills = run.broker.fills()
    assert fills
    for f in fills:  # costs at the env's rate (commission + slippage)
        assert f.cost == pytest.approx(run.cost_rate * abs(f.qty * f.price), rel=1e-12)
    cash = run.initial_cash - sum(f.qty * f.price + f.cost for f in fills)
    assert run.broker.cash() == pytest.approx(cash, rel=1e-12)
    for st in run.statuses:  # every recorded point: cash + position value == equity
        assert st["equity"] == pytest.approx(st["cash"] + st["shares"] * st["last_price"])
        assert st["pnl"] == pytest.approx(st["equity"] - run.initial_cash)
    final = run.statuses[-1]
    assert final["shares"] == 0.0  # flattened at the last close
    assert final["equity"] == pytest.approx(cash)


def test_supervisor_audit_trail(run: StackRun) -> None:
    kinds = [r["kind"] for r in run.history]
    assert kinds.count("decision") == run.polls  # one row per poll
    assert kinds.count("halt") == 1 and kinds.count("resume") == 1
    assert len(run.history) == run.polls + 2 == run.jsonl_rows
    halt_poll = next(r for r in run.history if r["rule_level"] == "Halt")
    assert halt_poll["kind"] == "decision" and halt_poll["level"] == "Halt"
    assert halt_poll["sources"] == [HALT_TITLE] and halt_poll["provider"] == "rules"
    manual = next(r for r in run.history if r["kind"] == "halt")
    assert manual["override"]["who"] == "alice"
    assert manual["override"]["why"] == OPERATOR["why"]
    assert manual["provider"] == "manual" and manual["level"] == "Halt"
    assert kinds.index("decision") < kinds.index("halt") < kinds.index("resume")
    resume = next(r for r in run.history if r["kind"] == "resume")
    assert resume["override"]["who"] == "alice" and resume["level"] == "OK"
    held = run.history[kinds.index("halt") + 1 : kinds.index("resume")]
    assert held and all(r["level"] == "Halt" for r in held)  # sticky until a human resumes
    assert any("Halt holds until a human resumes" in r["reason"] for r in held)


def test_trader_level_changes_are_recorded(run: StackRun) -> None:
    """The trader persists its level per bar (status); level sequence across the scenario."""
    levels = [st["level"] for st in run.statuses]
    changes = [(i, b) for i, (a, b) in enumerate(zip(levels, levels[1:], strict=False), 1)]
    changes = [(i, b) for i, b in changes if levels[i - 1] != b]
    assert levels[0] == "Caution"  # boot: never OK
    seq = [b for _, b in changes]
    assert seq[-3:] == ["Halt", "Caution", "OK"]
    assert (run.halt_i, "Halt") in changes and (run.live_resume_i + 2, "OK") in changes


def test_trader_events_record_level_changes(run: StackRun) -> None:
    changes = [e["message"] for e in run.events if e["kind"] == "level_change"]
    assert changes, {e["kind"] for e in run.events}
    assert any(m.endswith("-> Halt (HALTED)") for m in changes), changes
    assert any("Halt -> " in m for m in changes), changes  # the human resume


def test_example_configs_load_and_agree() -> None:
    """``backend/config/examples/*.example.yaml`` stay valid and point at each other."""
    live = load_live_config(EXAMPLES / "live_trader.example.yaml")
    sup = load_supervisor_config(EXAMPLES / "supervisor.example.yaml")
    assert live.supervisor.url == f"http://{sup.host}:{sup.port}"
    assert not sup.llm.enabled and live.api_host == sup.host == "127.0.0.1"
    assert live.api_port != sup.port
