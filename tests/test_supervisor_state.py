"""Supervisor state machine, manual overrides, staleness and the audit log."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from backend.config.supervisor_config import LLMConfig, SupervisorConfig
from backend.monitoring.audit_log import AuditLog, inputs_digest
from backend.monitoring.llm_supervisor import Supervisor, merge_verdicts, run_poll_loop
from backend.monitoring.risk_levels import ProviderResult, RiskLevel, Verdict
from backend.monitoring.sentiment_service import ScoredItem

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc)
L = RiskLevel


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class BrokenLLM:
    name = "llm:broken"

    def __init__(self, hang: bool) -> None:
        self.hang = hang

    async def assess(self, items: Sequence[ScoredItem]) -> ProviderResult:
        if self.hang:
            await asyncio.sleep(5)
        raise RuntimeError("secret-ish detail")


class ScriptedLLM:
    """An LLM provider returning scripted levels (None = a failed call)."""

    name = "llm:scripted"

    def __init__(self, levels: Sequence[RiskLevel | None]) -> None:
        self.levels = list(levels)

    async def assess(self, items: Sequence[ScoredItem]) -> ProviderResult:
        level = self.levels.pop(0)
        if level is None:
            return ProviderResult(None, "boom", "", 0.01, 1)
        return ProviderResult(Verdict(level, "scripted", (), self.name), None, "{}", 0.01, 1)


def make(tmp_path: Path, clock: Clock | None = None, **cfg) -> Supervisor:
    config = SupervisorConfig(
        audit_db_path=str(tmp_path / "audit.sqlite3"),
        audit_jsonl_path=str(tmp_path / "audit.jsonl"),
        **cfg,
    )
    return Supervisor(
        config, AuditLog(config.audit_db_path, config.audit_jsonl_path), clock=clock or Clock()
    )


def feed(sup: Supervisor, level: RiskLevel, clock: Clock | None = None) -> RiskLevel:
    """Push one verdict through the state machine (as a poll would)."""
    if clock:
        clock.advance(minutes=60)
    return sup.apply_verdict(Verdict(level, f"test {level.wire}"), sup._clock(), "rules")


def test_boot_at_caution_when_nothing_persisted(tmp_path: Path) -> None:
    st = make(tmp_path).status()
    assert st.level is L.CAUTION and "no persisted level" in st.reason
    assert not st.stale


@pytest.mark.parametrize(
    ("persisted", "boot"), [(L.OK, L.CAUTION), (L.CAUTION, L.CAUTION), (L.HALT, L.HALT)]
)
def test_boot_from_persisted_level_never_ok(
    tmp_path: Path, persisted: RiskLevel, boot: RiskLevel
) -> None:
    sup = make(tmp_path, deescalate_after=1)
    asyncio.run(sup.decide([]))  # rules on no news: OK
    if persisted is not L.OK:
        sup.override(persisted, "ops", "test", T0 + timedelta(hours=1))
    assert sup.audit.last()["level"] == persisted.wire
    sup.audit.close()
    assert make(tmp_path).status().level is boot


def test_escalation_is_immediate_deescalation_needs_two(tmp_path: Path) -> None:
    sup = make(tmp_path)
    assert feed(sup, L.OK) is L.CAUTION  # 1st lower verdict from the Caution boot level
    assert feed(sup, L.OK) is L.OK  # 2nd: down
    assert feed(sup, L.CAUTION) is L.CAUTION  # up at once
    assert feed(sup, L.OK) is L.CAUTION
    assert feed(sup, L.CAUTION) is L.CAUTION  # resets the count
    assert feed(sup, L.OK) is L.CAUTION
    assert feed(sup, L.OK) is L.OK


def test_halt_sticks_until_resume(tmp_path: Path) -> None:
    sup = make(tmp_path)
    assert feed(sup, L.HALT) is L.HALT
    for _ in range(5):
        assert feed(sup, L.OK) is L.HALT
    assert "until a human resumes" in sup.status().reason
    st = sup.resume("alice", "news was a hoax")
    assert st.level is L.OK  # back to the computed level
    row = sup.audit.last()
    assert row["kind"] == "resume" and row["override"]["who"] == "alice"


def test_resume_with_halt_still_computed_goes_to_caution(tmp_path: Path) -> None:
    sup = make(tmp_path)
    feed(sup, L.HALT)
    assert sup.resume("bob", "checked").level is L.CAUTION
    assert feed(sup, L.HALT) is L.HALT  # the next Halt verdict escalates again


def test_manual_halt_override_expiry_and_resume(tmp_path: Path) -> None:
    clock = Clock()
    sup = make(tmp_path, clock)
    feed(sup, L.OK)
    feed(sup, L.OK)
    st = sup.manual_halt("carol", "FOMC in 5 min")
    assert st.level is L.HALT and st.manual_override.who == "carol"
    assert feed(sup, L.OK) is L.OK and sup.status().level is L.HALT  # override wins
    assert sup.resume("carol", "done").level is L.OK
    st = sup.override(L.OK, "dave", "false positive", clock.now + timedelta(minutes=30))
    assert st.level is L.OK
    with pytest.raises(ValueError, match="future"):
        sup.override(L.OK, "dave", "x", clock.now - timedelta(seconds=1))
    clock.advance(minutes=31)
    st = sup.status()
    assert st.manual_override is None
    kinds = [r["kind"] for r in sup.audit.recent(10)]
    assert kinds[0] == "expire" and kinds.count("halt") == 1 and kinds.count("override") == 1


def test_staleness_raises_to_caution(tmp_path: Path) -> None:
    clock = Clock()
    sup = make(tmp_path, clock, staleness_s=600, poll_interval_s=60)
    feed(sup, L.OK)
    feed(sup, L.OK)
    assert sup.status().level is L.OK and not sup.status().stale
    clock.advance(seconds=601)
    st = sup.status()
    assert st.stale and st.level is L.CAUTION and "stale" in st.reason
    feed(sup, L.HALT)
    clock.advance(seconds=601)
    assert sup.status().level is L.HALT  # staleness never lowers


def test_merge_is_max_with_rules_as_floor() -> None:
    rule = Verdict(L.CAUTION, "r", ("a",))
    assert merge_verdicts(rule, None) is rule
    assert merge_verdicts(rule, Verdict(L.OK, "x", (), "llm:m")).level is L.CAUTION
    up = merge_verdicts(rule, Verdict(L.HALT, "x", ("b",), "llm:m"))
    assert up.level is L.HALT and up.drivers == ("b",) and up.provider == "rules+llm:m"


def test_failed_llm_never_blocks_and_is_audited(tmp_path: Path) -> None:
    sup = make(tmp_path)
    sup.llm = ScriptedLLM([None, L.HALT])
    st = asyncio.run(sup.decide([]))
    assert st.level is L.CAUTION and st.provider == "rules (llm:scripted failed)"
    assert asyncio.run(sup.decide([])).level is L.HALT


def test_audit_one_row_per_decision_and_survives_restart(tmp_path: Path) -> None:
    clock = Clock()
    sup = make(tmp_path, clock)
    sup.llm = ScriptedLLM([L.OK, L.CAUTION, None])
    for _ in range(3):
        clock.advance(minutes=60)
        asyncio.run(sup.decide([]))
    sup.manual_halt("erin", "drill")
    assert sup.audit.count() == 4
    sup.audit.close()
    reopened = AuditLog(tmp_path / "audit.sqlite3", tmp_path / "audit.jsonl")
    rows = reopened.recent(10)
    assert [r["kind"] for r in rows] == ["halt", "decision", "decision", "decision"]
    assert rows[0]["override"]["why"] == "drill" and rows[0]["level"] == "Halt"
    assert rows[1]["error"] == "boom" and rows[1]["llm_level"] is None
    assert rows[3]["inputs_digest"] == inputs_digest([])
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [4, 3, 2, 1][::-1]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        reopened._conn.execute("DELETE FROM decisions")
    assert reopened._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert Supervisor(make_config(tmp_path), reopened).status().level is L.HALT


def make_config(tmp_path: Path) -> SupervisorConfig:
    return SupervisorConfig(
        audit_db_path=str(tmp_path / "audit.sqlite3"),
        audit_jsonl_path=str(tmp_path / "audit.jsonl"),
    )


def test_inputs_digest_is_order_independent() -> None:
    a, b = {"title": "x", "n": 1}, {"title": "y"}
    assert inputs_digest([a, b]) == inputs_digest([b, a]) != inputs_digest([a])


def test_poll_loop_is_bounded_and_reads_files(tmp_path: Path) -> None:
    news = Path(__file__).parent / "fixtures" / "news" / "halt.jsonl"
    clock = Clock()
    clock.now = datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc)
    sup = make(tmp_path, clock, news_paths=(str(news),))

    async def go() -> int:
        return await run_poll_loop(sup, 0.01, asyncio.Event(), max_polls=3)

    assert asyncio.run(asyncio.wait_for(go(), timeout=10)) == 3
    assert sup.status().level is L.HALT and sup.audit.count() == 3
    assert sup.status().sources[0].startswith("NYSE declares")


@pytest.mark.parametrize("hang", [False, True])
def test_buggy_or_hung_provider_degrades_to_rules(tmp_path: Path, hang: bool) -> None:
    sup = make(tmp_path, llm=LLMConfig(deadline_s=0.1))
    sup.llm = BrokenLLM(hang)
    halt = Verdict(L.HALT, "r", ("x",))
    sup.rules.classify = lambda items: halt  # type: ignore[method-assign]
    st = asyncio.run(asyncio.wait_for(sup.decide([]), timeout=5))
    assert st.level is L.HALT and st.provider == "rules (llm:broken failed)"
    error = sup.audit.last()["error"]
    assert ("overran" if hang else "crashed: RuntimeError") in error
    assert "secret-ish" not in error
