"""``scripts/generate_daily_summary.py`` on the databases of a short replay.

The module fixture runs a real ``LiveTrader`` (bar + calendar features, one warm-up
session, a deterministic feature policy) over 4 synthetic sessions while a real in-process
``Supervisor`` (rules only) polls a JSON-lines headline file; on the last session a "trading
halt" headline and an operator's manual Halt stop the trader mid-session.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from backend.config.env_config import EnvConfig
from backend.config.live_config import GuardConfig, LiveConfig
from backend.config.supervisor_config import SupervisorConfig
from backend.config.training_config import FeatureConfig
from backend.data_download.dataset import SymbolDataset
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)
from backend.execution.broker import Fill, PaperBroker
from backend.execution.feeds import bars_from_frame
from backend.execution.guards import Level
from backend.execution.live_trader import LiveTrader
from backend.execution.state_store import StateStore
from backend.execution.supervisor_client import Verdict
from backend.monitoring.audit_log import AuditLog
from backend.monitoring.llm_supervisor import Supervisor

FEATURES = FeatureConfig(
    use_returns=False, use_technical=False, use_volume=False, use_vix=False, use_range_gap=False
)
INITIAL_CASH = 100_000.0
DAYS = ("2024-10-01", "2024-10-02", "2024-10-03", "2024-10-04")
"""Warm-up, two trading days, the Halt day."""
HALT_TITLE = "Exchange declares trading halt after circuit breaker trips"


class SimClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class InProcessSupervisor:
    """The trader's supervisor client, answered by the real ``Supervisor`` in-process."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def query(self) -> Verdict:
        st = self.sup.status()
        return Verdict(Level.parse(st.level.wire), st.level.wire, "supervisor", st.reason, 0.0)

    def close(self) -> None:
        pass


@dataclass
class Dbs:
    state: Path
    audit: Path
    fills: list[Fill]


def _policy(obs: dict[str, np.ndarray]) -> float:
    return float(np.tanh(3.0 * obs["features"][:4].mean()))


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> Dbs:
    root = tmp_path_factory.mktemp("daily")
    market = generate_synthetic_market(
        SyntheticMarketConfig(start=DAYS[0], end=None, n_sessions=len(DAYS), seed=3)
    )["SPY"]
    dataset = SymbolDataset.from_market("SPY", market, FEATURES)
    normalizer = dataset.fit_normalizer(dataset.sessions[0], dataset.sessions[-1])
    news = root / "news.jsonl"
    news.write_text("", encoding="utf-8")
    cfg = SupervisorConfig(
        news_paths=(str(news),),
        audit_db_path=str(root / "audit.sqlite3"),
        audit_jsonl_path=str(root / "audit.jsonl"),
    )
    bars = bars_from_frame(market)
    clock = SimClock(pd.Timestamp(bars[0].timestamp).tz_convert("UTC").to_pydatetime())
    sup = Supervisor(cfg, AuditLog(cfg.audit_db_path, cfg.audit_jsonl_path), clock=clock)
    config = LiveConfig(
        state_db=str(root / "live.sqlite"),
        initial_cash=INITIAL_CASH,
        guards=GuardConfig(daily_loss_limit=0.5, max_drawdown=0.5, max_orders_per_hour=100),
    )
    store = StateStore(config.state_db)
    trader = LiveTrader(
        config,
        feature_config=FEATURES,
        normalizer=normalizer,
        env_config=EnvConfig(),
        policy=_policy,
        store=store,
        supervisor=InProcessSupervisor(sup),  # type: ignore[arg-type]
    )
    first_of_day: dict[pd.Timestamp, int] = {}
    for i, bar in enumerate(bars):
        clock.now = pd.Timestamp(bar.close_time).tz_convert("UTC").to_pydatetime()
        slot = i - first_of_day.setdefault(pd.Timestamp(bar.timestamp).normalize(), i)
        if bar.timestamp.date().isoformat() == DAYS[3] and slot == 10:
            published = (clock.now - timedelta(minutes=1)).isoformat()
            news.write_text(json.dumps({"published": published, "title": HALT_TITLE}) + "\n")
            asyncio.run(sup.poll_once())
            sup.manual_halt("alice", "circuit breaker drill")
        elif slot % 4 == 0:
            asyncio.run(sup.poll_once())
        trader.on_bar(bar)
    # A guard trip on the second trading day (test data: the replay itself trips none).
    store.log_event("2024-10-03T15:00:00+00:00", "guard_daily_loss", "daily loss 2.10% > 2.00%")
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    fills = broker.fills()
    store.close()  # checkpoints the WAL: the files below are then stable
    sup.audit.close()
    return Dbs(Path(config.state_db), Path(cfg.audit_db_path), fills)


@pytest.fixture(scope="module")
def script(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("generate_daily_summary")


def _day(f: Fill) -> str:
    return pd.Timestamp(f.bar_ts).tz_convert("America/New_York").date().isoformat()


def _run(script: ModuleType, dbs: Dbs, out: Path, *extra: str) -> int:
    argv = ["--state", str(dbs.state), "--audit", str(dbs.audit), "--out-dir", str(out)]
    return int(script.main([*argv, *extra]))


def _cell(md: str, name: str) -> str:
    m = re.search(rf"^\| {re.escape(name)} \| (.+?) \|$", md, flags=re.MULTILINE)
    assert m, f"no row {name!r} in\n{md}"
    return m.group(1)


@pytest.mark.parametrize("day", [DAYS[1], DAYS[2]])
def test_numbers_match_the_state_db(script: ModuleType, dbs: Dbs, tmp_path: Path, day: str) -> None:
    assert _run(script, dbs, tmp_path, "--date", day) == 0
    md = (tmp_path / f"{day}.md").read_text()
    today = [f for f in dbs.fills if _day(f) == day]
    earlier = [f for f in dbs.fills if _day(f) < day]
    assert today, "the policy should trade every session"
    assert sum(f.qty for f in earlier) == pytest.approx(0.0, abs=1e-9)  # flat overnight
    assert sum(f.qty for f in dbs.fills if _day(f) <= day) == pytest.approx(0.0, abs=1e-9)
    start = INITIAL_CASH - sum(f.qty * f.price + f.cost for f in earlier)
    end = start - sum(f.qty * f.price + f.cost for f in today)
    assert _cell(md, "Start equity") == f"{start:,.2f}"
    assert _cell(md, "End equity") == f"{end:,.2f}"
    assert _cell(md, "Return") == f"{end / start - 1:+.4%}"
    assert _cell(md, "Fills") == str(len(today))
    assert _cell(md, "Costs (commission + slippage)") == f"{sum(f.cost for f in today):,.2f}"
    # Drawdown between fills, marked at each fill's price.
    cash, qty, peak, worst = start, 0.0, start, 0.0
    for f in today:
        cash -= f.qty * f.price + f.cost
        qty += f.qty
        equity = cash + qty * f.price
        peak = max(peak, equity)
        worst = max(worst, 1 - equity / peak)
    assert _cell(md, "Max drawdown (between fills)") == f"{worst:.4%}"
    trade_rows = [
        line for line in md.splitlines() if re.match(r"^\| \d\d:\d\d \| (BUY|SELL)", line)
    ]
    assert len(trade_rows) == len(today)
    png = tmp_path / f"{day}_equity.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"![equity]({png.name})" in md


def test_halt_day_narrative_levels_and_guards(script: ModuleType, dbs: Dbs, tmp_path: Path) -> None:
    assert _run(script, dbs, tmp_path) == 0  # default date: the newest session
    md = (tmp_path / f"{DAYS[3]}.md").read_text()
    assert "At 12:15 the level moved to Halt: escalated: 1 headline(s) match Halt rules" in md
    assert "alice halted trading (level Halt): circuit breaker drill." in md
    assert "| halt | Halt |" in md and "alice: circuit breaker drill" in md
    assert "mode HALTED, level Halt, halt reason: supervisor Halt." in md
    assert "`level_change`: " in md and "-> Halt (HALTED)" in md
    assert "## Guard trips\n\nNone." in md
    other = tmp_path / "other"
    assert _run(script, dbs, other, "--date", DAYS[2]) == 0
    md2 = (other / f"{DAYS[2]}.md").read_text()
    assert "- 11:00 `guard_daily_loss`: daily loss 2.10% > 2.00%" in md2
    assert "the trader's status is from another day" in md2


@pytest.mark.parametrize("day", [DAYS[0], "2024-10-05"])  # warm-up only; a Saturday
def test_day_without_trading(script: ModuleType, dbs: Dbs, tmp_path: Path, day: str) -> None:
    assert _run(script, dbs, tmp_path, "--date", day) == 0
    md = (tmp_path / f"{day}.md").read_text()
    assert f"**No trading on {day}**" in md
    assert "## PnL" not in md and not list(tmp_path.glob("*.png"))
    if day == DAYS[0]:
        assert "The supervisor made 7 poll decision(s)" in md
    else:
        assert f"The supervisor recorded no decision on {day}" in md


@pytest.mark.parametrize("which", ["state", "audit"])
def test_missing_db_is_a_one_line_error(
    script: ModuleType,
    dbs: Dbs,
    tmp_path: Path,
    which: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "nope.sqlite"
    paths = {"state": dbs.state, "audit": dbs.audit, which: missing}
    argv = ["--state", str(paths["state"]), "--audit", str(paths["audit"])]
    assert script.main([*argv, "--out-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {which} DB not found: {missing}\n"
    assert not (tmp_path / "out").exists()


def test_wrong_schema_and_bad_date(
    script: ModuleType, dbs: Dbs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--state", str(dbs.audit), "--audit", str(dbs.audit), "--out-dir", str(tmp_path)]
    assert script.main(argv) == 1  # the audit DB has no kv/fills tables
    assert "not the expected schema" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        script.main([*argv, "--date", "2024-13-40"])
    assert exc.value.code == 2


def test_databases_are_only_read(script: ModuleType, dbs: Dbs, tmp_path: Path) -> None:
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (dbs.state, dbs.audit)}
    assert _run(script, dbs, tmp_path, "--date", DAYS[1]) == 0
    assert _run(script, dbs, tmp_path) == 0
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (dbs.state, dbs.audit)}
    assert before == after


# --------------------------------------------------------------------------- LLM narrative


@dataclass
class FakeNarrator:
    """Behaviour of the fake OpenAI-compatible server: ok, slow or 500."""

    mode: str = "ok"
    content: str = ""
    requests: list[dict[str, object]] = field(default_factory=list)


def _narrator_app(fake: FakeNarrator) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        fake.requests.append(await request.json())
        if fake.mode == "slow":
            for _ in range(100):  # at most 5 s, less when the client hangs up
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.05)
        if fake.mode == "500":
            return JSONResponse({"error": "boom"}, status_code=500)
        message = {"role": "assistant", "content": fake.content}
        return JSONResponse({"choices": [{"index": 0, "message": message}]})

    return app


@pytest.fixture(scope="module")
def narrator() -> Iterator[tuple[FakeNarrator, str]]:
    from loopback import serve

    fake = FakeNarrator()
    with serve(_narrator_app(fake)) as url:
        yield fake, url


def _llm_config(tmp_path: Path, url: str, deadline_s: float = 3.0) -> Path:
    path = tmp_path / "supervisor.yaml"
    path.write_text(
        f"llm:\n  enabled: true\n  base_url: {url}/v1\n  model: fake-narrator\n"
        f"  deadline_s: {deadline_s}\n  api_key_env: YOOPRL_TEST_NARRATOR_KEY\n",
        encoding="utf-8",
    )
    return path


def test_llm_writes_the_narrative_as_one_inert_paragraph(
    script: ModuleType, dbs: Dbs, tmp_path: Path, narrator, monkeypatch
) -> None:
    fake, url = narrator
    fake.mode, fake.requests[:] = "ok", []
    fake.content = (
        "Trading was halted at 12:15 after an exchange headline.\n\n# Heading\n"
        "<script>alert(1)</script> [click](http://evil.example) ![x](http://evil.example/x.png)"
        " | table | sk-narrator-secret"
    )
    monkeypatch.setenv("YOOPRL_TEST_NARRATOR_KEY", "sk-narrator-secret")
    cfg = _llm_config(tmp_path, url)
    assert _run(script, dbs, tmp_path, "--supervisor-config", str(cfg)) == 0
    md = (tmp_path / f"{DAYS[3]}.md").read_text()
    section = md.split("## Supervisor\n\n", 1)[1].split("\n\n", 1)[0]
    assert section.startswith("Trading was halted at 12:15 after an exchange headline.")
    assert "\n" not in section  # one paragraph: no heading, list or table can start
    assert "<script>" not in md and "&lt;script&gt;" in section
    assert "](" not in section and "\\[click\\]\\(http://evil.example\\)" in section
    assert "_Narrative written by llm:fake-narrator in " in md
    # the facts went as data: the headline JSON-encoded inside <data>, '<' escaped
    user = fake.requests[0]["messages"][1]["content"]  # type: ignore[index]
    assert "<data>" in user and HALT_TITLE in user
    assert "circuit breaker drill" in user
    assert "<" not in user.split("<data>\n", 1)[1].split("\n</data>", 1)[0]


@pytest.mark.parametrize(
    ("mode", "why"), [("slow", "deadline of 1.00 s exceeded"), ("500", "HTTP 500")]
)
def test_a_failing_llm_falls_back_to_the_template_within_the_deadline(
    script: ModuleType, dbs: Dbs, tmp_path: Path, narrator, mode: str, why: str
) -> None:
    import time

    fake, url = narrator
    fake.mode, fake.content = mode, "never used"
    cfg = _llm_config(tmp_path, url, deadline_s=1.0)
    started = time.monotonic()
    assert _run(script, dbs, tmp_path, "--supervisor-config", str(cfg)) == 0
    assert time.monotonic() - started < 30  # the report itself; the LLM part is <= 1 s
    md = (tmp_path / f"{DAYS[3]}.md").read_text()
    assert "At 12:15 the level moved to Halt: escalated: 1 headline(s) match Halt rules" in md
    assert (
        f"_Narrative written by the rule-based template (llm:fake-narrator failed: {why})._" in md
    )


def test_narrative_deadline_holds_against_a_slow_server(narrator) -> None:
    import time

    from backend.config.supervisor_config import LLMConfig
    from backend.monitoring.narrative import llm_narrative

    fake, url = narrator
    fake.mode = "slow"
    started = time.monotonic()
    result = llm_narrative(
        {"date": "2024-10-04"}, LLMConfig(enabled=True, base_url=f"{url}/v1", deadline_s=0.5)
    )
    elapsed = time.monotonic() - started
    assert result.text is None and result.error == "deadline of 0.50 s exceeded"
    assert elapsed < 1.5


@pytest.mark.parametrize(
    ("body", "status", "why", "attempts"),
    [
        (b"x" * 2048, 200, "answer larger than max_response_bytes", 1),
        (b'{"choices": []}', 200, "malformed chat-completions envelope: IndexError", 1),
        (b'{"choices": [{"message": {"content": " "}}]}', 200, "empty or non-text answer", 1),
        (b"{}", 404, "HTTP 404", 1),
        (b"{}", 429, "HTTP 429", 2),
    ],
)
def test_narrative_names_why_an_answer_was_refused(
    body: bytes, status: int, why: str, attempts: int
) -> None:
    import httpx

    from backend.config.supervisor_config import LLMConfig
    from backend.monitoring.narrative import llm_narrative

    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    config = LLMConfig(
        enabled=True,
        base_url="http://narrator.invalid/v1",
        max_response_bytes=1024,
        max_attempts=2,
        backoff_base_s=0.01,
        backoff_max_s=0.01,
    )
    result = llm_narrative({"date": "2024-10-04"}, config, transport=transport)
    assert result.text is None and result.error == why
    assert result.attempts == attempts  # only 429 and 5xx are tried again
