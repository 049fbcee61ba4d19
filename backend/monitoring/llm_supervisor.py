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

Run as a service: ``python -m backend.monitoring.service --config FILE`` (or the
historical ``python -m backend.monitoring.llm_supervisor --config FILE``).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from backend.config.supervisor_config import SupervisorConfig
from backend.monitoring import news_sources
from backend.monitoring.audit_log import AuditLog, AuditRecord, inputs_digest
from backend.monitoring.risk_levels import ProviderResult, RiskLevel, RiskProvider, Verdict
from backend.monitoring.rule_classifier import RuleClassifier
from backend.monitoring.sentiment_service import ScoredItem, score_items
from backend.utils.text_sanitize import clean_text

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
    audit_error: str | None = None
    """Why the audit trail last failed to take a row (``None`` while it works)."""
    audit_failures: int = 0
    """Audit rows that could not be written since the trail last worked."""


class AuditUnavailableError(RuntimeError):
    """A change that would lower the level was refused: its audit row cannot be written."""


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
        now = clock()
        self._audit_error: str | None = None
        self._audit_failures = 0
        self._audit_failed_since: str | None = None
        # The more restrictive of the database's and the mirror's last row: a row SQLite
        # refused is still in the mirror, so a restart never boots below it.
        persisted_rows = [r for r in (audit.last(), audit.last_mirrored()) if r is not None]
        persisted: RiskLevel | None = None
        when = ""
        for row in persisted_rows:
            try:
                lvl = RiskLevel.from_wire(str(row["level"]))
            except ValueError:
                continue
            if persisted is None or lvl > persisted:
                persisted, when = lvl, str(row.get("decided_at", ""))
        if persisted is None:
            level, reason = RiskLevel.CAUTION, "boot: no persisted level, starting at Caution"
        else:
            level = max(persisted, RiskLevel.CAUTION)
            reason = f"boot: last persisted level {persisted.wire} ({when})"
        self._state = _State(level=level, reason=reason, decided_at=now)
        self._in_commit = False
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
            if self._audit_error is not None and level < RiskLevel.CAUTION:
                # Decisions that cannot be audited may not keep the trader at OK.
                level = RiskLevel.CAUTION
                reason = f"audit failing ({self._audit_failures} row(s) lost); {reason}"
            return SupervisorStatus(
                level=level,
                reason=reason,
                decided_at=st.decided_at,
                stale=stale,
                sources=st.sources,
                provider=st.provider,
                manual_override=st.override,
                audit_error=self._audit_error,
                audit_failures=self._audit_failures,
            )

    # ---------------------------------------------------------------- deciding

    async def poll_once(self) -> SupervisorStatus:
        """Collect the configured inputs, score them and decide.

        Reading and scoring run in worker threads within the configured budget (bytes,
        items, seconds), so the API on the same event loop keeps answering meanwhile.
        """
        cfg = self.config
        now = self._clock()
        budget = news_sources.ReadBudget(
            max_bytes=cfg.max_poll_bytes,
            max_items=cfg.max_poll_items,
            max_seconds=cfg.max_poll_seconds,
        )
        raw, errors = await news_sources.collect(
            cfg.news_paths, cfg.feed_urls, cfg.feed_timeout_s, budget=budget
        )
        items = await asyncio.to_thread(score_items, raw, now, timedelta(seconds=cfg.lookback_s))
        return await self.decide(items, input_errors=errors)

    async def decide(
        self, items: Sequence[ScoredItem], *, input_errors: Sequence[str] = ()
    ) -> SupervisorStatus:
        """Classify ``items`` (rules + optional LLM), apply the state machine, audit it.

        The new level and its audit row are one unit (:meth:`_commit`): if the row cannot
        be written, a decision that would lower the level is dropped, one that raises it
        stands, and the failure shows in :meth:`status`.
        """
        t0 = time.monotonic()
        rule_verdict = await asyncio.to_thread(self.rules.classify, items)
        result: ProviderResult | None = None
        llm_verdict: Verdict | None = None
        if self.llm is not None:
            result = await self._assess_guarded(self.llm, items)
            if result.verdict is not None:
                titles = {s.item.title for s in items}
                # Drivers are model output: keep only real input titles in the status.
                v = result.verdict
                llm_verdict = Verdict(
                    v.level,
                    clean_text(v.reason, 1000),
                    tuple(d for d in v.drivers if d in titles),
                    v.provider,
                )
        merged = merge_verdicts(rule_verdict, llm_verdict)
        provider = merged.provider
        if self.llm is not None and llm_verdict is None:
            provider = f"rules ({self.llm.name} failed)"
        digest = inputs_digest([s.item.to_json() for s in items])
        errors = [*input_errors, *([result.error] if result and result.error else [])]
        now = self._clock()
        latency_ms = (time.monotonic() - t0) * 1000.0

        def record() -> AuditRecord:
            st = self._state
            return AuditRecord(
                decided_at=now.isoformat(),
                kind="decision",
                inputs_digest=digest,
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

        def change() -> None:
            self.apply_verdict(merged, now, provider)
            self._expire_override(now)

        # The database write (with fsync) runs off the event loop too.
        await asyncio.to_thread(self._commit, now, change, record, refuse_lower=False)
        return self.status(now)

    def _commit(
        self,
        now: datetime,
        change: Callable[[], None],
        record: Callable[[], AuditRecord],
        *,
        refuse_lower: bool,
    ) -> bool:
        """Apply ``change`` and write its audit row as one unit; returns whether it stands.

        If the row cannot be written, a change that lowers the effective level is undone
        (``refuse_lower`` then raises :class:`AuditUnavailableError`); a change that keeps
        or raises it stands. Either way the failure is counted, logged, shown in
        :meth:`status`, and written as an ``audit_failure`` row once the trail works again.
        """
        with self._lock:
            before = copy.deepcopy(self._state)
            level_before = self._effective_level_locked()
            self._in_commit = True
            try:
                change()
            finally:
                self._in_commit = False
            try:
                self._flush_audit_failure(now)
                self.audit.append(record())
                return True
            except Exception as exc:  # noqa: BLE001 - any audit failure takes this path
                error = clean_text(f"{type(exc).__name__}: {exc}", 500)
                self._audit_failures += 1
                self._audit_error = error
                self._audit_failed_since = self._audit_failed_since or now.isoformat()
                lowered = self._effective_level_locked() < level_before
                logger.error(
                    "audit row not written (%d since %s): %s%s",
                    self._audit_failures,
                    self._audit_failed_since,
                    error,
                    "; change that lowered the level undone" if lowered else "",
                )
                if lowered:
                    self._state = before
                    if refuse_lower:
                        raise AuditUnavailableError(
                            f"refused: lowering the level needs its audit row, which cannot "
                            f"be written ({error})"
                        ) from exc
                    return False
                return True

    def _flush_audit_failure(self, now: datetime) -> None:
        """Write the pending ``audit_failure`` row (if any) before the next row."""
        if self._audit_error is None:
            return
        st = self._state
        self.audit.append(
            AuditRecord(
                decided_at=now.isoformat(),
                kind="audit_failure",
                inputs_digest=inputs_digest([]),
                n_items=0,
                provider="audit",
                raw_answer="",
                rule_level=None,
                llm_level=None,
                verdict_level=None,
                level=self._effective_level_locked().wire,
                reason=(
                    f"{self._audit_failures} audit row(s) could not be written since "
                    f"{self._audit_failed_since}"
                ),
                sources=(),
                latency_ms=0.0,
                error=self._audit_error,
                override=st.override.to_json() if st.override else None,
            )
        )
        logger.warning("audit trail works again after %d lost row(s)", self._audit_failures)
        self._audit_error = None
        self._audit_failures = 0
        self._audit_failed_since = None

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

        Raises:
            AuditUnavailableError: The audit row cannot be written, and resuming would
                lower the level without one.
        """
        who, why = clean_text(who, 200), clean_text(why, 2000)
        now = self._clock()
        info: dict[str, Any] = {}

        def change() -> None:
            st = self._state
            computed = st.last_verdict.level if st.last_verdict else RiskLevel.CAUTION
            info["cleared"] = st.override.to_json() if st.override else None
            st.override = None
            if st.level == RiskLevel.HALT:
                st.level = computed if computed < RiskLevel.HALT else RiskLevel.CAUTION
            st.pending_lower.clear()
            st.reason = f"resumed by {who}: {why}"

        def record() -> AuditRecord:
            return self._manual_record(
                now,
                "resume",
                {"who": who, "why": why, "cleared": info["cleared"]},
                self._state.reason,
            )

        self._commit(now, change, record, refuse_lower=True)
        return self.status(now)

    def _set_override(
        self, level: RiskLevel, who: str, why: str, expires_at: datetime | None, kind: str
    ) -> SupervisorStatus:
        who, why = clean_text(who, 200), clean_text(why, 2000)
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise ValueError("expires_at must be in the future")
        ov = ManualOverride(level, who, why, now, expires_at)

        def change() -> None:
            self._state.override = ov

        def record() -> AuditRecord:
            return self._manual_record(now, kind, ov.to_json(), f"manual {kind} by {who}: {why}")

        self._commit(now, change, record, refuse_lower=True)
        return self.status(now)

    def _expire_override(self, now: datetime) -> None:
        st = self._state
        if st.override is None or st.override.active(now):
            return
        lapsed = st.override.to_json()

        def change() -> None:
            self._state.override = None

        def record() -> AuditRecord:
            return self._manual_record(
                now, "expire", lapsed, f"override by {lapsed['who']} expired"
            )

        if self._in_commit:
            change()  # part of the enclosing unit; its row records the result
            return
        self._commit(now, change, record, refuse_lower=False)

    def _effective_level_locked(self) -> RiskLevel:
        st = self._state
        return st.override.level if st.override else st.level

    def _manual_record(
        self, now: datetime, kind: str, override: dict[str, Any], reason: str
    ) -> AuditRecord:
        return AuditRecord(
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


if __name__ == "__main__":
    # Thin shim: the service start-up lives in backend.monitoring.service (imported by
    # name so this domain module does not depend on the service layer above it).
    import importlib

    importlib.import_module("backend.monitoring.service").main()
