r"""Offline rule-based risk classifier: the floor of every supervisor decision.

It always runs, needs no network, and its verdict can only be raised, never lowered, by
the LLM (``llm_supervisor.merge_verdicts``). Rules, in order of precedence:

1. **Halt** if at least ``halt_min_items`` distinct headlines match a Halt pattern
   (defaults: trading halt/halted/suspended, circuit breaker, flash crash, default, war,
   Fed emergency / emergency rate cut, market-wide halt).
2. **Halt** if at least ``halt_items_escalate_caution`` headlines match Caution patterns
   (a cluster of bad news is worse than its parts).
3. **Caution** if at least ``caution_min_items`` headlines match a Caution pattern
   (defaults: downgrade, volatility/VIX spike, recession fears, sell-off, bank run,
   liquidity crunch).
4. **Caution** if at least ``sentiment_min_items`` items are in the window and their
   mean lexicon sentiment is at or below ``sentiment_caution_threshold``.
5. **OK** otherwise.

Patterns are case-insensitive regexes from :class:`RuleConfig`, matched against title and
summary. Word boundaries matter: ``\bwar\b`` must not fire on "warrant" or "Warner".
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from backend.config.supervisor_config import RuleConfig
from backend.monitoring.risk_levels import ProviderResult, RiskLevel, Verdict
from backend.monitoring.sentiment_service import ScoredItem

PROVIDER_NAME = "rules"


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    level: RiskLevel


class RuleClassifier:
    """Compile the configured patterns once; classify scored headlines deterministically."""

    def __init__(self, config: RuleConfig) -> None:
        """Compile the rules.

        Raises:
            ValueError: If a pattern is not a valid regex (caught at startup, not mid-day).
        """
        self.config = config
        rules: list[_Rule] = []
        for level, patterns in (
            (RiskLevel.HALT, config.halt_patterns),
            (RiskLevel.CAUTION, config.caution_patterns),
        ):
            for pattern in patterns:
                try:
                    rules.append(_Rule(re.compile(pattern, re.IGNORECASE), level))
                except re.error as exc:
                    raise ValueError(f"invalid rule pattern {pattern!r}: {exc}") from exc
        self._rules = tuple(rules)

    @property
    def name(self) -> str:
        """Provider label (``rules``)."""
        return PROVIDER_NAME

    async def assess(self, items: Sequence[ScoredItem]) -> ProviderResult:
        """:meth:`classify` behind the common ``RiskProvider`` interface; cannot fail."""
        t0 = time.monotonic()
        verdict = self.classify(items)
        return ProviderResult(verdict, None, "", time.monotonic() - t0, 0)

    def matches(self, text: str) -> list[tuple[RiskLevel, str]]:
        """Every (level, matched text) of the rules hitting ``text``."""
        out = []
        for rule in self._rules:
            m = rule.pattern.search(text)
            if m:
                out.append((rule.level, m.group(0)))
        return out

    def classify(self, items: Sequence[ScoredItem]) -> Verdict:
        """Apply the rules of the module docstring to ``items``."""
        cfg = self.config
        halt_titles: list[str] = []
        caution_titles: list[str] = []
        halt_terms: list[str] = []
        caution_terms: list[str] = []
        for scored in items:
            text = f"{scored.item.title}\n{scored.item.summary}"
            hits = self.matches(text)
            levels = {level for level, _ in hits}
            if RiskLevel.HALT in levels:
                halt_titles.append(scored.item.title)
                halt_terms += [t.lower() for lvl, t in hits if lvl is RiskLevel.HALT]
            elif RiskLevel.CAUTION in levels:
                caution_titles.append(scored.item.title)
                caution_terms += [t.lower() for lvl, t in hits if lvl is RiskLevel.CAUTION]
        if len(halt_titles) >= cfg.halt_min_items:
            terms = ", ".join(sorted(set(halt_terms)))
            return Verdict(
                RiskLevel.HALT,
                f"{len(halt_titles)} headline(s) match Halt rules ({terms})",
                tuple(halt_titles),
                PROVIDER_NAME,
            )
        if len(caution_titles) >= cfg.halt_items_escalate_caution:
            return Verdict(
                RiskLevel.HALT,
                f"{len(caution_titles)} Caution headlines at once (>= "
                f"{cfg.halt_items_escalate_caution}) escalate to Halt",
                tuple(caution_titles),
                PROVIDER_NAME,
            )
        if len(caution_titles) >= cfg.caution_min_items:
            terms = ", ".join(sorted(set(caution_terms)))
            return Verdict(
                RiskLevel.CAUTION,
                f"{len(caution_titles)} headline(s) match Caution rules ({terms})",
                tuple(caution_titles),
                PROVIDER_NAME,
            )
        if len(items) >= cfg.sentiment_min_items:
            mean = sum(s.score for s in items) / len(items)
            if mean <= cfg.sentiment_caution_threshold:
                worst = sorted(items, key=lambda s: s.score)[:5]
                return Verdict(
                    RiskLevel.CAUTION,
                    f"mean headline sentiment {mean:+.2f} <= "
                    f"{cfg.sentiment_caution_threshold:+.2f} over {len(items)} items",
                    tuple(s.item.title for s in worst),
                    PROVIDER_NAME,
                )
        return Verdict(
            RiskLevel.OK, f"no rule fired on {len(items)} headline(s)", (), PROVIDER_NAME
        )
