"""The three risk levels, and the types every risk provider shares.

An ``IntEnum`` so that "the more cautious of two verdicts" is ``max(a, b)``; the wire
format uses the names ``'OK'``, ``'Caution'``, ``'Halt'`` (``RiskLevel.wire``), which the
trader's client parses with :meth:`RiskLevel.from_wire`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from backend.monitoring.sentiment_service import ScoredItem

WireLevel = Literal["OK", "Caution", "Halt"]
"""The level as it travels in JSON."""


class RiskLevel(IntEnum):
    """Ordered risk levels: a larger value is more restrictive for the trader."""

    OK = 0
    CAUTION = 1
    HALT = 2

    @property
    def wire(self) -> WireLevel:
        """The JSON spelling of the level."""
        return _TO_WIRE[self]

    @classmethod
    def from_wire(cls, value: str) -> RiskLevel:
        """Parse the JSON spelling (case-insensitive, so 'HALT' from an LLM still parses).

        Raises:
            ValueError: If ``value`` is not one of the three levels.
        """
        try:
            return _FROM_WIRE[value.strip().lower()]
        except (KeyError, AttributeError):
            raise ValueError(
                f"unknown risk level {value!r}; expected OK, Caution or Halt"
            ) from None


_TO_WIRE: dict[RiskLevel, WireLevel] = {
    RiskLevel.OK: "OK",
    RiskLevel.CAUTION: "Caution",
    RiskLevel.HALT: "Halt",
}
_FROM_WIRE: dict[str, RiskLevel] = {v.lower(): k for k, v in _TO_WIRE.items()}


@dataclass(frozen=True)
class Verdict:
    """One classifier's answer: a level, a human-readable reason, the headlines behind it."""

    level: RiskLevel
    """The level this classifier asks for."""

    reason: str
    """Why, in one line (goes to the status endpoint and the audit trail)."""

    drivers: tuple[str, ...] = field(default_factory=tuple)
    """Headlines (titles) that drove the verdict."""

    provider: str = "rules"
    """Which classifier produced it (``rules``, ``llm:<model>``, ``merged``...)."""


@dataclass(frozen=True)
class ProviderResult:
    """Outcome of one classification: a verdict, or an error; never both missing."""

    verdict: Verdict | None
    """The validated verdict, or ``None`` when the call failed."""

    error: str | None
    """Why the call failed (secret-free), or ``None``."""

    raw: str
    """The raw answer (truncated, secret-free); empty for offline providers."""

    latency_s: float
    """Wall-clock time of the whole call, retries included."""

    attempts: int
    """Remote attempts made (0 when the breaker refused the call or for offline providers)."""


class RiskProvider(Protocol):
    """The one interface of every classifier (rules, LLM): scored headlines in, result out.

    ``assess`` must not raise for provider trouble (it returns ``verdict=None`` with an
    ``error``) and must respect its own deadline: the supervisor awaits it inline.
    """

    @property
    def name(self) -> str:
        """Label for status and audit (``rules``, ``llm:<model>``)."""
        ...

    async def assess(self, items: Sequence[ScoredItem]) -> ProviderResult:
        """Classify ``items``."""
        ...
