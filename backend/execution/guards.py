"""Local risk guards and the trader's mode logic, independent of any LLM or supervisor.

Levels are ordered ``OK < CAUTION < HALT`` and map to trader modes ``ACTIVE``,
``REDUCING`` and ``HALTED``. The effective level is the maximum of

* the manual Halt (REST API),
* latched local guard trips (stale data, daily loss, drawdown, position, order rate),
* the supervisor's verdict as reported (with de-escalation hysteresis),
* the supervisor's staleness (unreachable or ``stale: true`` -> at least Caution).

Escalation is immediate; the supervisor component de-escalates only after two consecutive
lower verdicts; a Halt (from any source) latches until a human resumes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pandas as pd

from backend.config.live_config import GuardConfig


class Level(enum.IntEnum):
    """Risk level; larger is more restrictive."""

    OK = 0
    CAUTION = 1
    HALT = 2

    @classmethod
    def parse(cls, value: str | int | Level) -> Level:
        """``"OK"``, ``"Caution"``, ``"Halt"`` (any case) or an int."""
        if isinstance(value, Level):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            raise ValueError(f"level: expected OK, Caution or Halt, got {value!r}") from None

    @property
    def label(self) -> str:
        """The supervisor's spelling: ``OK``, ``Caution``, ``Halt``."""
        return {Level.OK: "OK", Level.CAUTION: "Caution", Level.HALT: "Halt"}[self]


class Mode(str, enum.Enum):
    """What the trader may do (a str enum that also runs on Python 3.10)."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"

    def __str__(self) -> str:
        return self.value


MODE_OF_LEVEL = {Level.OK: Mode.ACTIVE, Level.CAUTION: Mode.REDUCING, Level.HALT: Mode.HALTED}


@dataclass(frozen=True)
class GuardTrip:
    """One guard that fired."""

    guard: str
    message: str


@dataclass
class RiskGuards:
    """Stateless checks over the trader's numbers; each returns the trips it finds."""

    config: GuardConfig = field(default_factory=GuardConfig)

    def check_stale(
        self, now: pd.Timestamp, next_bar_close: pd.Timestamp | None
    ) -> GuardTrip | None:
        """Trip when the next expected bar closed more than ``stale_grace_s`` ago."""
        if next_bar_close is None:
            return None
        late = (now - next_bar_close).total_seconds()
        if late > self.config.stale_grace_s:
            return GuardTrip(
                "stale_data",
                f"bar due at {next_bar_close.isoformat()} is {late:.0f}s late "
                f"(grace {self.config.stale_grace_s:.0f}s)",
            )
        return None

    def check_account(
        self, equity: float, day_start_equity: float, peak_equity: float, position: float
    ) -> list[GuardTrip]:
        """Daily loss, drawdown and held-position limits."""
        trips = []
        cfg = self.config
        if day_start_equity > 0 and equity < day_start_equity * (1 - cfg.daily_loss_limit):
            loss = 1 - equity / day_start_equity
            trips.append(
                GuardTrip("daily_loss", f"daily loss {loss:.2%} > {cfg.daily_loss_limit:.2%}")
            )
        if peak_equity > 0 and equity < peak_equity * (1 - cfg.max_drawdown):
            dd = 1 - equity / peak_equity
            trips.append(GuardTrip("max_drawdown", f"drawdown {dd:.2%} > {cfg.max_drawdown:.2%}"))
        if abs(position) > cfg.max_position * 1.05 + 1e-9:
            trips.append(
                GuardTrip("max_position", f"|position| {abs(position):.3f} > {cfg.max_position}")
            )
        return trips

    def check_order_rate(
        self, now: pd.Timestamp, recent_orders: list[pd.Timestamp]
    ) -> GuardTrip | None:
        """Trip when one more order would exceed ``max_orders_per_hour``."""
        window = [t for t in recent_orders if now - t < pd.Timedelta(hours=1)]
        if len(window) + 1 > self.config.max_orders_per_hour:
            return GuardTrip(
                "order_rate",
                f"{len(window)} orders in the last hour; limit {self.config.max_orders_per_hour}",
            )
        return None


@dataclass
class ModeController:
    """Combine the level sources with hysteresis and the Halt latch.

    Attributes:
        supervisor_level: The supervisor component after hysteresis.
        pending_lower: Consecutive lower verdicts seen (and the lowest-but-latest level).
        halt_latched: A Halt happened and no human resumed since.
        halt_reason: Why.
    """

    supervisor_level: Level = Level.CAUTION
    pending_lower: int = 0
    halt_latched: bool = False
    halt_reason: str = ""

    @classmethod
    def boot(cls, persisted: dict[str, object] | None) -> ModeController:
        """Restore from the store; never boot at OK (Caution if nothing was persisted)."""
        if not persisted:
            return cls()
        level = Level.parse(persisted.get("supervisor_level", "Caution"))  # type: ignore[arg-type]
        return cls(
            supervisor_level=max(level, Level.CAUTION),
            pending_lower=0,
            halt_latched=bool(persisted.get("halt_latched", False)),
            halt_reason=str(persisted.get("halt_reason", "")),
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready state for the store."""
        return {
            "supervisor_level": self.supervisor_level.label,
            "pending_lower": self.pending_lower,
            "halt_latched": self.halt_latched,
            "halt_reason": self.halt_reason,
        }

    def observe_supervisor(self, reported: Level) -> Level:
        """Feed one verdict (already floored at Caution when stale/unreachable)."""
        if reported >= self.supervisor_level:
            self.supervisor_level = reported  # escalation (or same level) is immediate
            self.pending_lower = 0
        else:
            self.pending_lower += 1
            if self.pending_lower >= 2:
                self.supervisor_level = reported
                self.pending_lower = 0
        return self.supervisor_level

    def effective(self, *, manual_halt: bool, guard_trips: list[GuardTrip]) -> Level:
        """The effective level; a Halt from any source latches."""
        level = self.supervisor_level
        if manual_halt:
            level = Level.HALT
            self._latch("manual halt")
        if guard_trips:
            level = Level.HALT
            self._latch("; ".join(f"{t.guard}: {t.message}" for t in guard_trips))
        if level == Level.HALT and not self.halt_latched:
            self._latch("supervisor Halt")
        if self.halt_latched:
            level = Level.HALT
        return level

    def _latch(self, reason: str) -> None:
        if not self.halt_latched:
            self.halt_latched = True
            self.halt_reason = reason

    def resume(self) -> None:
        """A human resumed: clear the latch and restart from Caution (two OK verdicts to ACTIVE)."""
        self.halt_latched = False
        self.halt_reason = ""
        self.supervisor_level = Level.CAUTION
        self.pending_lower = 0
