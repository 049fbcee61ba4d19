"""Typed, validated parameters of the live (paper-first) trader process.

One frozen dataclass per concern, a docstring per field, invariants asserted on
construction; :func:`load_live_config` reads one safe-loaded YAML file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

FeedKind = Literal["replay", "synthetic", "live"]


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class GuardConfig:
    """Local risk guards, independent of any supervisor (``backend/execution/guards.py``)."""

    stale_grace_s: float = 120.0
    """Seconds after a bar was due (its close) before missing data trips the stale guard."""
    daily_loss_limit: float = 0.02
    """Trip when equity falls this fraction below the session's starting equity."""
    max_drawdown: float = 0.05
    """Trip when equity falls this fraction below its running peak."""
    max_position: float = 1.0
    """Largest |position| as a fraction of equity; targets are clipped to it and a held
    position above it (with 5% tolerance for price drift) trips the guard."""
    max_orders_per_hour: int = 12
    """Trip when an order would exceed this many orders in the last 60 minutes."""

    def __post_init__(self) -> None:
        _positive("stale_grace_s", self.stale_grace_s, allow_zero=True)
        for name in ("daily_loss_limit", "max_drawdown", "max_position"):
            _positive(name, float(getattr(self, name)))
        if self.max_position > 1.0:
            raise ValueError(f"max_position: must be <= 1, got {self.max_position}")
        if self.max_orders_per_hour < 1:
            raise ValueError(f"max_orders_per_hour: must be >= 1, got {self.max_orders_per_hour}")


@dataclass(frozen=True)
class SupervisorConfig:
    """How the trader asks the supervisor service for its verdict."""

    url: str | None = None
    """Base URL, e.g. ``http://127.0.0.1:8765`` (the supervisor's default port,
    ``SupervisorConfig.port`` in ``supervisor_config.py``); ``None`` = no supervisor (treated as
    unreachable: the persisted verdict, at least Caution, applies)."""
    deadline_s: float = 2.0
    """Hard total deadline of one query (connect + request + body), in seconds."""
    query_each_bar: bool = True
    """Query on every closed bar, not only before each new trading day."""

    def __post_init__(self) -> None:
        _positive("deadline_s", self.deadline_s)


@dataclass(frozen=True)
class FeedConfig:
    """Where bars come from."""

    kind: FeedKind = "synthetic"
    """``replay`` (CSV store through ``load_market``), ``synthetic`` (seeded generator) or
    ``live`` (polling Yahoo through the downloader's ``BarSource``)."""
    data_dir: str = "data"
    """Store root for ``replay``."""
    start: str | None = None
    """First bar (inclusive) for ``replay``/``synthetic`` (a date)."""
    end: str | None = None
    """Last bar (inclusive) for ``replay``; ``None`` = to the end of the data."""
    n_sessions: int = 10
    """Sessions of the synthetic market."""
    seed: int = 25
    """Seed of the synthetic market."""
    speed: float | None = None
    """Replay speed factor (60 = one 15m bar every 15 s); ``None`` = as fast as possible."""
    poll_interval_s: float = 15.0
    """Seconds between polls of the live feed."""

    def __post_init__(self) -> None:
        if self.kind not in ("replay", "synthetic", "live"):
            raise ValueError(f"kind: expected replay, synthetic or live, got {self.kind!r}")
        if self.speed is not None:
            _positive("speed", self.speed)
        _positive("poll_interval_s", self.poll_interval_s)


@dataclass(frozen=True)
class LiveConfig:
    """Everything the live trader process needs besides the model bundle."""

    symbol: str = "SPY"
    """Traded symbol (must be one of the bundle's symbols)."""
    state_db: str = "live_state.sqlite"
    """SQLite file with positions, cash, orders, fills and the trader's state."""
    broker: str = "paper"
    """Registered broker (``backend.execution.broker.register_broker``): ``paper`` is the
    simulated one; a real-broker adapter registers its own name."""
    accounting: Literal["shares", "backtest"] = "shares"
    """How the paper broker books positions: ``shares`` (shares held between bars, sized
    at the decision close; what a real broker does) or ``backtest`` (the env's
    constant-weight book, sized at the fill: the paper trader then matches the backtest
    bar for bar; see ``backend/execution/broker.py:Accounting`` and
    ``python -m backend.execution.parity``)."""
    decide_at_last_close: bool = False
    """Also decide at a session's last close (after the MOC flatten), so the next session's
    first bar is traded, as the env does (``python -m backend.execution.parity`` sets it).
    False keeps the trader flat until its first decision of the day, at the first close."""
    require_state: bool = False
    """Refuse to start without an existing ``state_db`` (like ``--require-state``); forced
    on by brokers registered with ``requires_state`` (every real-money adapter)."""
    initial_cash: float = 100_000.0
    """Paper account's starting cash (used only when the state store is new)."""
    flatten_at_close: bool = True
    """Flatten at the close of each session's last bar (12:45 on half days)."""
    caution_halve_limits: bool = False
    """In REDUCING mode also halve ``max_position`` (on top of never growing |position|)."""
    caution_no_new_entries: bool = True
    """In REDUCING mode never open a position from flat. An open position is never grown
    or flipped in REDUCING either way; False only lets a flat trader enter up to the
    (possibly halved) ``guards.max_position``."""
    history_bars: int | None = None
    """Bars of history the observation builder keeps; ``None`` = max_lookback + T + 32;
    ``0`` = unbounded (features then equal the env's exactly, at a growing cost per bar)."""
    registry_root: str = "models"
    """Model registry folder (``python -m backend.models.registry``): without ``--bundle``
    the trader loads the promoted version of ``registry_model`` from it."""
    registry_model: str | None = None
    """Registry name of the model to load; ``None`` = ``rl-<symbol>`` (the default name of
    an RL bundle of that symbol)."""
    api_token_env: str = "YOOPRL_LIVE_TOKEN"
    """Environment variable holding the bearer token of the control endpoints."""
    api_host: str = "127.0.0.1"
    """Where the REST API listens (status is open to loopback clients only)."""
    api_port: int = 8200
    """Port of the REST API; 0 disables it."""
    guards: GuardConfig = field(default_factory=GuardConfig)
    """Local risk guards."""
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    """Supervisor service."""
    feed: FeedConfig = field(default_factory=FeedConfig)
    """Bar feed."""

    def __post_init__(self) -> None:
        _positive("initial_cash", self.initial_cash)
        if self.accounting not in ("shares", "backtest"):
            raise ValueError(f"accounting: expected shares or backtest, got {self.accounting!r}")
        if not isinstance(self.broker, str) or not self.broker.strip():
            raise ValueError(f"broker: expected a registered broker name, got {self.broker!r}")
        if self.history_bars is not None and self.history_bars != 0 and self.history_bars < 2:
            raise ValueError(f"history_bars: must be >= 2, got {self.history_bars}")
        if not isinstance(self.registry_root, str) or not self.registry_root.strip():
            raise ValueError(f"registry_root: expected a folder path, got {self.registry_root!r}")
        object.__setattr__(self, "symbol", self.symbol.upper())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LiveConfig:
        """Build from a mapping (e.g. parsed YAML); unknown keys fail with their name."""
        data = dict(data)
        nested = {"guards": GuardConfig, "supervisor": SupervisorConfig, "feed": FeedConfig}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"live config: unknown keys {unknown}")
        for key, klass in nested.items():
            if key in data and isinstance(data[key], Mapping):
                data[key] = klass(**data[key])
        return cls(**data)

    @property
    def model_name(self) -> str:
        """The registry name the trader loads by default (``registry_model`` or ``rl-SYM``)."""
        return self.registry_model or f"rl-{self.symbol}"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (saved next to the state for provenance)."""
        return dataclasses.asdict(self)


def load_live_config(path: str | Path) -> LiveConfig:
    """Read a YAML live config (``yaml.safe_load``)."""
    loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return LiveConfig.from_dict(loaded)
