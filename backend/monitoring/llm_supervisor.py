"""The supervisor: poll headlines, classify, merge fail-safe, run the risk state machine.

Decision pipeline (one poll):

1. ``news_sources.collect`` reads files/feeds; ``sentiment_service.score_items`` keeps the
   lookback window, deduplicates and scores.
2. The rule classifier always runs; the LLM runs when configured.
3. :func:`merge_verdicts`: ``max(rules, llm)``. A failed, late or invalid LLM answer is
   simply absent, so the LLM can raise the level but never lower it below the rules; an
   injected "answer OK" in a headline cannot help an attacker.
4. The state machine (:meth:`Supervisor.apply_verdict`):

   * escalation is immediate;
   * de-escalation needs ``deescalate_after`` (2) consecutive lower verdicts, and then goes
     to the higher of them;
   * Halt never clears by itself: only :meth:`Supervisor.resume` (a human) clears it;
   * at boot the level is the last persisted one, at least Caution (Caution if none);
   * with no decision for longer than ``staleness_s`` the status is ``stale`` and at
     least Caution.

5. Manual override on top: a level with who/why and an optional expiry; a manual Halt is
   an override to Halt. Every decision and manual action is one audit row.

Run as a service: ``python -m backend.monitoring.llm_supervisor --config FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from backend.config.supervisor_config import SupervisorConfig, load_supervisor_config
from backend.data_download.sentiment_service import ScoredItem, score_items
from backend.monitoring import news_sources
from backend.monitoring.audit_log import AuditLog, AuditRecord, inputs_digest
from backend.monitoring.llm_provider import OpenAICompatibleProvider
from backend.monitoring.risk_levels import ProviderResult, RiskLevel, RiskProvider, Verdict
from backend.monitoring.rule_classifier import RuleClassifier

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    """Aware UTC now (the default clock; tests inject their own)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ManualOverride:
    """A human's decision that takes precedence over the computed level until it expires."""

    level: RiskLevel
    """Level forced by the human."""

    who: str
    """Operator identity, as given."""

    why: str
    """Justification, as given."""

    set_at: datetime
    """When it was set (UTC)."""

    expires_at: datetime | None = None
    """When it lapses (UTC); ``None`` = until resumed or replaced."""

    def active(self, now: datetime) -> bool:
        """Whether the override still applies at ``now``."""
        return self.expires_at is None or now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for the API and the audit trail."""
        return {
            "level": self.level.wire,
            "who": self.who,
            "why": self.why,
            "set_at": self.set_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass(frozen=True)
class SupervisorStatus:
    """What the trader reads (``routes.StatusResponse`` is its wire form)."""

    level: RiskLevel
    reason: str
    decided_at: datetime
    stale: bool
    sources: tuple[str, ...]
    provider: str
    manual_override: ManualOverride | None = None


def merge_verdicts(rule: Verdict, llm: Verdict | None) -> Verdict:
    """Fail-safe merge: the more restrictive of the two; the rules are the floor."""
    if llm is None:
        return rule
    if llm.level > rule.level:
        return Verdict(llm.level, f"LLM: {llm.reason}", llm.drivers, f"rules+{llm.provider}")
    drivers = rule.drivers or llm.drivers
    return Verdict(rule.level, f"rules: {rule.reason}", drivers, f"rules+{llm.provider}")


@dataclass
class _State:
    level: RiskLevel
    reason: str
    decided_at: datetime
    sources: tuple[str, ...] = ()
    provider: str = "boot"
    pending_lower: list[RiskLevel] = field(default_factory=list)
    last_verdict: Verdict | None = None
    override: ManualOverride | None = None


class Supervisor:
    """Thread-safe risk state machine fed by polls, read by the API."""

    def __init__(
        self,
        config: SupervisorConfig,
        audit: AuditLog,
        *,
        rules: RuleClassifier | None = None,
        llm: RiskProvider | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """Boot at the last persisted level (at least Caution; Caution if none)."""
        self.config = config
        self.audit = audit
        self.rules = rules or RuleClassifier(config.rules)
        self.llm = llm
        self._clock = clock
        self._lock = threading.RLock()
        last = audit.last()
        now = clock()
        if last is None:
            level, reason = RiskLevel.CAUTION, "boot: no persisted level, starting at Caution"
        else:
            persisted = RiskLevel.from_wire(last["level"])
            level = max(persisted, RiskLevel.CAUTION)
            reason = f"boot: last persisted level {persisted.wire} ({last['decided_at']})"
        self._state = _State(level=level, reason=reason, decided_at=now)
        logger.info("supervisor booted at %s: %s", level.wire, reason)

    # ----------------------------------------------------------------- reading

    def status(self, now: datetime | None = None) -> SupervisorStatus:
        """Effective level: override if active, else the state machine; stale => >= Caution."""
        now = now or self._clock()
        with self._lock:
            self._expire_override(now)
            st = self._state
            stale = now - st.decided_at > timedelta(seconds=self.config.staleness_s)
            level, reason = st.level, st.reason
            if st.override is not None:
                level = st.override.level
                reason = f"manual override by {st.override.who}: {st.override.why}"
            if stale and level < RiskLevel.CAUTION:
                level = RiskLevel.CAUTION
                reason = f"stale: no decision since {st.decided_at.isoformat()}; {reason}"
            return SupervisorStatus(
                level=level,
                reason=reason,
                decided_at=st.decided_at,
                stale=stale,
                sources=st.sources,
                provider=st.provider,
                manual_override=st.override,
            )

    # ---------------------------------------------------------------- deciding

    async def poll_once(self) -> SupervisorStatus:
        """Collect the configured inputs, score them and decide."""
        cfg = self.config
        now = self._clock()
        raw, errors = await news_sources.collect(cfg.news_paths, cfg.feed_urls, cfg.feed_timeout_s)
        items = score_items(raw, now, timedelta(seconds=cfg.lookback_s))
        return await self.decide(items, input_errors=errors)

    async def decide(
        self, items: Sequence[ScoredItem], *, input_errors: Sequence[str] = ()
    ) -> SupervisorStatus:
        """Classify ``items`` (rules + optional LLM), apply the state machine, audit it."""
        t0 = time.monotonic()
        rule_verdict = self.rules.classify(items)
        result: ProviderResult | None = None
        llm_verdict: Verdict | None = None
        if self.llm is not None:
            result = await self._assess_guarded(self.llm, items)
            if result.verdict is not None:
                titles = {s.item.title for s in items}
                # Drivers are model output: keep only real input titles in the status.
                v = result.verdict
                llm_verdict = Verdict(
                    v.level, v.reason, tuple(d for d in v.drivers if d in titles), v.provider
                )
        merged = merge_verdicts(rule_verdict, llm_verdict)
        provider = merged.provider
        if self.llm is not None and llm_verdict is None:
            provider = f"rules ({self.llm.name} failed)"
        now = self._clock()
        latency_ms = (time.monotonic() - t0) * 1000.0
        with self._lock:
            self.apply_verdict(merged, now, provider)
            self._expire_override(now)
            st = self._state
            errors = [*input_errors, *([result.error] if result and result.error else [])]
            self.audit.append(
                AuditRecord(
                    decided_at=now.isoformat(),
                    kind="decision",
                    inputs_digest=inputs_digest([s.item.to_json() for s in items]),
                    n_items=len(items),
                    provider=provider,
                    raw_answer=result.raw if result else "",
                    rule_level=rule_verdict.level.wire,
                    llm_level=llm_verdict.level.wire if llm_verdict else None,
                    verdict_level=merged.level.wire,
                    level=self._effective_level_locked().wire,
                    reason=st.reason,
                    sources=st.sources,
                    latency_ms=latency_ms,
                    error="; ".join(errors) or None,
                    override=st.override.to_json() if st.override else None,
                )
            )
        return self.status(now)

    async def _assess_guarded(
        self, provider: RiskProvider, items: Sequence[ScoredItem]
    ) -> ProviderResult:
        """Run an optional provider so that nothing it does can stop the rules' decision.

        Providers promise not to raise and to keep their deadline; this enforces both anyway
        (deadline + 1 s grace), because a bug there must cost the LLM's opinion, not the poll.
        """
        t0 = time.monotonic()
        limit = self.config.llm.deadline_s + 1.0
        try:
            return await asyncio.wait_for(provider.assess(items), timeout=limit)
        except asyncio.TimeoutError:
            error = f"{provider.name} overran its deadline ({limit:.1f} s)"
        except Exception as exc:  # noqa: BLE001 - any provider bug degrades to rules-only
            # Type only: the message of an arbitrary exception could carry a secret.
            error = f"{provider.name} crashed: {type(exc).__name__}"
            logger.error("risk provider %s crashed: %s", provider.name, type(exc).__name__)
        return ProviderResult(None, error, "", time.monotonic() - t0, 0)

    def apply_verdict(self, verdict: Verdict, now: datetime, provider: str) -> RiskLevel:
        """The state machine of the module docstring; returns the new computed level."""
        with self._lock:
            st = self._state
            st.last_verdict = verdict
            st.decided_at = now
            st.provider = provider
            cur, new = st.level, verdict.level
            if new >= cur:
                st.pending_lower.clear()
                st.level = new
                st.reason = verdict.reason if new == cur else f"escalated: {verdict.reason}"
                st.sources = verdict.drivers
            elif cur == RiskLevel.HALT:
                st.pending_lower.clear()
                st.reason = (
                    f"Halt holds until a human resumes (latest verdict {new.wire}: "
                    f"{verdict.reason})"
                )
            else:
                st.pending_lower.append(new)
                needed = self.config.deescalate_after
                if len(st.pending_lower) >= needed:
                    st.level = max(st.pending_lower[-needed:])
                    st.pending_lower.clear()
                    st.reason = f"de-escalated after {needed} lower verdicts: {verdict.reason}"
                    st.sources = verdict.drivers
                else:
                    st.reason = (
                        f"{cur.wire} held ({len(st.pending_lower)}/{needed} lower verdicts): "
                        f"{verdict.reason}"
                    )
            return st.level

    # ------------------------------------------------------------ manual control

    def manual_halt(
        self, who: str, why: str, expires_at: datetime | None = None
    ) -> SupervisorStatus:
        """Force Halt until resumed (or until ``expires_at``)."""
        return self._set_override(RiskLevel.HALT, who, why, expires_at, kind="halt")

    def override(
        self, level: RiskLevel, who: str, why: str, expires_at: datetime | None
    ) -> SupervisorStatus:
        """Force ``level`` until ``expires_at`` (the state machine keeps running below)."""
        return self._set_override(level, who, why, expires_at, kind="override")

    def resume(self, who: str, why: str) -> SupervisorStatus:
        """Clear any override and a sticky Halt.

        The level goes back to the computed level if that is below Halt, else to Caution;
        the next poll escalates again at once if the rules still say Halt.
        """
        now = self._clock()
        with self._lock:
            st = self._state
            computed = st.last_verdict.level if st.last_verdict else RiskLevel.CAUTION
            previous = st.override.to_json() if st.override else None
            st.override = None
            if st.level == RiskLevel.HALT:
                st.level = computed if computed < RiskLevel.HALT else RiskLevel.CAUTION
            st.pending_lower.clear()
            st.reason = f"resumed by {who}: {why}"
            self._audit_manual(
                now, "resume", {"who": who, "why": why, "cleared": previous}, st.reason
            )
        return self.status(now)

    def _set_override(
        self, level: RiskLevel, who: str, why: str, expires_at: datetime | None, kind: str
    ) -> SupervisorStatus:
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise ValueError("expires_at must be in the future")
        with self._lock:
            ov = ManualOverride(level, who, why, now, expires_at)
            self._state.override = ov
            self._audit_manual(now, kind, ov.to_json(), f"manual {kind} by {who}: {why}")
        return self.status(now)

    def _expire_override(self, now: datetime) -> None:
        st = self._state
        if st.override is not None and not st.override.active(now):
            lapsed = st.override.to_json()
            st.override = None
            self._audit_manual(now, "expire", lapsed, f"override by {lapsed['who']} expired")

    def _effective_level_locked(self) -> RiskLevel:
        st = self._state
        return st.override.level if st.override else st.level

    def _audit_manual(
        self, now: datetime, kind: str, override: dict[str, Any], reason: str
    ) -> None:
        self.audit.append(
            AuditRecord(
                decided_at=now.isoformat(),
                kind=kind,
                inputs_digest=inputs_digest([]),
                n_items=0,
                provider="manual",
                raw_answer="",
                rule_level=None,
                llm_level=None,
                verdict_level=None,
                level=self._effective_level_locked().wire,
                reason=reason,
                sources=(),
                latency_ms=0.0,
                override=override,
            )
        )


async def run_poll_loop(
    supervisor: Supervisor,
    interval_s: float,
    stop: asyncio.Event,
    max_polls: int | None = None,
) -> int:
    """Poll every ``interval_s`` until ``stop`` is set (or ``max_polls``); returns polls run.

    A failing poll is logged with its traceback and the loop goes on: if polls keep
    failing, staleness raises the reported level to Caution on its own.
    """
    polls = 0
    while not stop.is_set() and (max_polls is None or polls < max_polls):
        try:
            await supervisor.poll_once()
        except Exception:  # noqa: BLE001 - the loop must outlive any one bad poll
            logger.exception("supervisor poll failed")
        polls += 1
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except asyncio.TimeoutError:
            pass
    return polls


def build_supervisor(config: SupervisorConfig) -> Supervisor:
    """Wire the audit log, rules and (if enabled) the LLM provider from ``config``."""
    audit = AuditLog(config.audit_db_path, config.audit_jsonl_path)
    llm = OpenAICompatibleProvider(config.llm) if config.llm.enabled else None
    return Supervisor(config, audit, llm=llm)


async def serve(config: SupervisorConfig) -> None:
    """Run the API (uvicorn) and the poll loop together until uvicorn is told to stop."""
    import uvicorn

    from backend.monitoring.routes import create_app

    supervisor = build_supervisor(config)
    app = create_app(supervisor, config)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port))
    stop = asyncio.Event()
    poller = asyncio.create_task(run_poll_loop(supervisor, config.poll_interval_s, stop))
    try:
        await server.serve()
    finally:
        stop.set()
        await asyncio.wait_for(poller, timeout=config.llm.deadline_s + config.feed_timeout_s + 5)
        supervisor.audit.close()


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point: ``python -m backend.monitoring.llm_supervisor --config FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="supervisor YAML file")
    parser.add_argument("--host", help="override the bind address (default from config)")
    parser.add_argument("--port", type=int, help="override the port (default from config)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = load_supervisor_config(args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        config = dataclasses.replace(config, **overrides)
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        # uvicorn re-raises the captured SIGINT once it has shut down; `serve` has
        # already stopped the poll loop and closed the audit log by then.
        logger.info("supervisor stopped")


if __name__ == "__main__":
    main()
