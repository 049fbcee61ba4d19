"""A seeded synthetic intraday market: the offline default data set of the project.

Why it exists: the main job must run, and tests must be able to check that an agent can
learn at all, without a network and without anyone's private data. So this module writes a
store (``<data_dir>/intraday/<SYMBOL>/15m/YYYY-MM-DD.csv``, see ``csv_store``) that looks
like the real one to every reader: the real XNYS regular-session grid (half days, holidays,
DST from ``exchange_calendars``), bar-start labels in New York time, float64 OHLCV.

The model, per session ``s`` and bar ``k`` (all randomness from one
``numpy.random.Generator(PCG64(seed))``):

* **Regimes.** A two-state Markov chain (calm / stressed) at session level, persistent, times
  a small lognormal day-to-day jitter, scales every volatility. Normalised so that the
  long-run average variance matches the configured annual volatility.
* **Intraday U-shape.** Bar volatility and volume follow ``1 + a_open * exp(-k / tau) +
  a_close * exp(-(n - 1 - k) / tau)`` over the ``n`` bars of the session.
* **One-factor correlation.** The standardized shock of underlying ``i`` is
  ``b_i * F + sqrt(1 - b_i**2) * e_i``, so ``corr(i, j) = b_i * b_j``.
* **Overnight gaps.** A share of the daily variance arrives between sessions: a session's
  first open differs from the previous close.
* **Planted signal** (``signal_strength = phi``, default 0): within a session the
  standardized shocks follow an AR(1), ``z_k = phi * z_{k-1} + sqrt(1 - phi**2) * e_k``
  (``z_0`` fresh each session, gaps never predictable). With ``phi = 0`` every underlying
  price is a martingale in everything an agent can observe; see
  :func:`theoretical_edge_per_bar` for what ``phi > 0`` is worth.
* **Planted pattern** (``pattern_strength = c``, default 0): within a session
  ``z_k = c * sign(z_{k-a}) * sign(z_{k-b}) + sqrt(1 - c**2) * e_k`` for ``k >= b``, with
  ``(a, b) = pattern_lags`` (default (2, 5)). The next bar's sign is the XOR (parity) of the
  signs of two single past bars: uncorrelated with every single lagged return and with every
  linear filter of them (multi-bar returns, RSI, MACD, ...), so it is invisible to the manual
  features of one bar and plain to any model that sees the window of single-bar returns.
* **Scenarios.** :data:`MARKET_SCENARIOS` names the ground-truth markets of the main job:
  ``null`` (no edge), ``momentum`` (the AR(1)) and ``sequence`` (the pattern); each writes
  its theoretical edge into the data set's marker (:func:`scenario_metadata`).
* **Log returns** are ``sigma * z - sigma**2 / 2`` so that ``E[P_t / P_{t-1}] = 1`` exactly
  at ``phi = 0`` (times ``exp(drift)`` if ``annual_drift`` is set; it is 0 by default).
* **Bar ranges.** High and low are drawn as the exact extremes of a Brownian bridge from the
  open to the close with the bar's volatility, so ``low <= open, close <= high`` always.
* **Leveraged ETFs** (UPRO~SPY, TQQQ~QQQ, TNA~IWM) are 3x *daily-reset* products: every
  price of a session satisfies ``L / L_prev_close - 1 = 3 * (U / U_prev_close - 1) - fee``
  where ``fee = expense_ratio / 252``, the overnight gap included.
* **VIX** is log-AR(1) towards a regime-dependent level, its shocks negatively correlated
  with SPY's (the leverage effect), volume 0 as in Yahoo's ``^VIX`` feed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from backend.data_download.csv_store import list_csv_files, write_sessions_bulk
from backend.data_download.market_calendar import expected_bar_starts, session_schedule
from backend.data_download.schema import DEFAULT_INTERVAL, OHLCV_COLUMNS, VIX_SYMBOL
from backend.utils.atomic_io import write_text_atomic

GENERATOR_VERSION = 1
"""Bump whenever the same config would produce different bytes: stale data sets regenerate."""

MARKER_FILE = "SYNTHETIC.json"
"""Name of the marker written into a synthetic data dir (config + generator version)."""

TRADING_DAYS_PER_YEAR = 252
FULL_DAY_BARS = 26
"""Bars of a full 09:30-16:00 session at 15 minutes; the unit the intraday profile uses."""

_FloatArray = np.ndarray[Any, np.dtype[np.float64]]
_IntArray = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class UnderlyingSpec:
    """One unleveraged index ETF of the synthetic market."""

    symbol: str
    """Ticker, as it appears in the store path."""
    annual_vol: float
    """Long-run annualised volatility of close-to-close returns (intraday + overnight)."""
    factor_loading: float
    """Loading ``b`` on the common market factor in [0, 1]; ``corr(i, j) = b_i * b_j``."""
    start_price: float
    """Close of the (virtual) session before the first generated one."""
    daily_volume: float
    """Average shares traded over a full calm session, before regime and noise."""


@dataclass(frozen=True)
class LeveragedSpec:
    """A daily-reset leveraged ETF that tracks one underlying."""

    symbol: str
    """Ticker, as it appears in the store path."""
    underlying: str
    """Symbol of the tracked :class:`UnderlyingSpec`."""
    leverage: float
    """Daily leverage factor (3.0 for UPRO, TQQQ, TNA)."""
    expense_ratio: float
    """Annual fee; ``expense_ratio / 252`` is taken from each session's return."""
    start_price: float
    """Close of the (virtual) session before the first generated one."""
    daily_volume: float
    """Average shares traded over a full calm session, before regime and noise."""


DEFAULT_UNDERLYINGS: tuple[UnderlyingSpec, ...] = (
    UnderlyingSpec(
        "SPY", annual_vol=0.16, factor_loading=0.97, start_price=470.0, daily_volume=60e6
    ),
    UnderlyingSpec(
        "QQQ", annual_vol=0.21, factor_loading=0.92, start_price=400.0, daily_volume=40e6
    ),
    UnderlyingSpec(
        "IWM", annual_vol=0.23, factor_loading=0.85, start_price=190.0, daily_volume=30e6
    ),
)
DEFAULT_LEVERAGED: tuple[LeveragedSpec, ...] = (
    LeveragedSpec(
        "UPRO", "SPY", leverage=3.0, expense_ratio=0.0091, start_price=60.0, daily_volume=5e6
    ),
    LeveragedSpec(
        "TQQQ", "QQQ", leverage=3.0, expense_ratio=0.0088, start_price=50.0, daily_volume=60e6
    ),
    LeveragedSpec(
        "TNA", "IWM", leverage=3.0, expense_ratio=0.0108, start_price=40.0, daily_volume=15e6
    ),
)


@dataclass(frozen=True)
class SyntheticMarketConfig:
    """Everything that determines the synthetic market; equal configs give equal bytes."""

    start: str = "2023-01-01"
    """First calendar date (YYYY-MM-DD); the first session is the first XNYS day on or after."""
    end: str | None = "2024-12-31"
    """Last calendar date, inclusive. Exactly one of ``end`` and ``n_sessions`` is set."""
    n_sessions: int | None = None
    """Number of sessions from ``start`` instead of an end date."""
    seed: int = 25
    """Seed of the one ``PCG64`` generator every random draw comes from. The default was
    picked among 1-40 for paths that stay realistic (SPY 410-580, no leveraged ETF wiped
    out) and a stressed share close to the stationary one, not for any trading result."""
    underlyings: tuple[UnderlyingSpec, ...] = DEFAULT_UNDERLYINGS
    """Index ETFs; the first one drives the VIX and is the reference for regimes."""
    leveraged: tuple[LeveragedSpec, ...] = DEFAULT_LEVERAGED
    """Daily-reset leveraged ETFs built from the underlyings."""
    include_vix: bool = True
    """Also write a ``VIX`` series (volume 0, like Yahoo's ``^VIX``)."""
    overnight_variance_share: float = 0.2
    """Fraction of daily variance that arrives overnight as the opening gap."""
    p_calm_to_stressed: float = 0.03
    """Daily probability of switching from the calm to the stressed regime."""
    p_stressed_to_calm: float = 0.10
    """Daily probability of leaving the stressed regime (mean stay 1/p sessions)."""
    stressed_vol_ratio: float = 2.0
    """Volatility in the stressed regime divided by volatility in the calm one."""
    daily_vol_jitter: float = 0.15
    """Std of the lognormal day-to-day volatility multiplier on top of the regime."""
    stressed_volume_ratio: float = 1.4
    """Volume in the stressed regime relative to the calm one."""
    open_vol_boost: float = 1.2
    """Extra volatility of the first bar (``1 + boost`` times midday, before normalising)."""
    close_vol_boost: float = 0.4
    """Extra volatility of the last bar of the session."""
    open_volume_boost: float = 1.5
    """Extra volume of the first bar."""
    close_volume_boost: float = 2.5
    """Extra volume of the last bar (closing auction)."""
    profile_decay_bars: float = 1.5
    """E-folding length, in bars, of the open/close boosts."""
    volume_noise: float = 0.3
    """Std of the lognormal per-bar volume noise."""
    volume_activity_weight: float = 0.5
    """Share of volume that scales with the bar's absolute shock (volume tracks |return|)."""
    annual_drift: float = 0.0
    """Expected annual return of the underlyings. Nonzero breaks the martingale property."""
    signal_strength: float = 0.0
    """AR(1) coefficient ``phi`` of standardized bar shocks within a session, in [0, 1)."""
    pattern_strength: float = 0.0
    """``c`` in [0, 1): correlation of a bar's shock with ``sign(z_{k-a}) * sign(z_{k-b})``
    (the planted sequence pattern, see the module docstring); 0 plants nothing."""
    pattern_lags: tuple[int, int] = (2, 5)
    """``(a, b)``, ``1 <= a < b``: the lags, in bars, of the two past bars whose sign parity
    sets the next bar's sign. With ``a >= 2`` the bar that just closed carries nothing."""
    vix_calm_level: float = 14.0
    """Level the VIX reverts to in the calm regime."""
    vix_stressed_level: float = 26.0
    """Level the VIX reverts to in the stressed regime."""
    vix_half_life_sessions: float = 5.0
    """Half-life, in sessions, of a VIX deviation from its regime level."""
    vix_daily_vol: float = 0.07
    """Daily std of log-VIX changes in the calm regime (grows with SPY's volatility)."""
    vix_return_correlation: float = -0.75
    """Correlation of each log-VIX change with the same step's SPY shock (must be < 0)."""

    def __post_init__(self) -> None:
        if (self.end is None) == (self.n_sessions is None):
            raise ValueError("set exactly one of end and n_sessions")
        if self.n_sessions is not None and self.n_sessions < 1:
            raise ValueError(f"n_sessions must be >= 1, got {self.n_sessions}")
        if self.end is not None and pd.Timestamp(self.end) < pd.Timestamp(self.start):
            raise ValueError(f"end {self.end} is before start {self.start}")
        if not self.underlyings:
            raise ValueError("need at least one underlying")
        names = [u.symbol for u in self.underlyings] + [lev.symbol for lev in self.leveraged]
        if self.include_vix:
            names.append(VIX_SYMBOL)
        if len(set(names)) != len(names):
            raise ValueError(f"symbols must be unique, got {names}")
        known = {u.symbol for u in self.underlyings}
        for u in self.underlyings:
            if not 0.0 <= u.factor_loading <= 1.0:
                raise ValueError(f"{u.symbol}: factor_loading must be in [0, 1]")
            if u.annual_vol <= 0 or u.start_price <= 0 or u.daily_volume <= 0:
                raise ValueError(f"{u.symbol}: vol, start_price and daily_volume must be > 0")
        for lev in self.leveraged:
            if lev.underlying not in known:
                raise ValueError(f"{lev.symbol}: unknown underlying {lev.underlying!r}")
            if lev.leverage == 0 or lev.start_price <= 0 or lev.daily_volume <= 0:
                raise ValueError(f"{lev.symbol}: leverage, start_price, daily_volume invalid")
        for name in ("p_calm_to_stressed", "p_stressed_to_calm"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1)")
        if not 0.0 <= self.overnight_variance_share < 1.0:
            raise ValueError("overnight_variance_share must be in [0, 1)")
        if not 0.0 <= self.signal_strength < 1.0:
            raise ValueError(f"signal_strength must be in [0, 1), got {self.signal_strength}")
        if not 0.0 <= self.pattern_strength < 1.0:
            raise ValueError(f"pattern_strength must be in [0, 1), got {self.pattern_strength}")
        if isinstance(self.pattern_lags, list):
            object.__setattr__(self, "pattern_lags", tuple(self.pattern_lags))
        lags = self.pattern_lags
        if (
            len(lags) != 2
            or not all(isinstance(x, int) for x in lags)
            or not 1 <= lags[0] < lags[1]
        ):
            raise ValueError(f"pattern_lags must be two ints 1 <= a < b, got {lags}")
        if self.signal_strength > 0.0 and self.pattern_strength > 0.0:
            raise ValueError(
                "plant one edge at a time: signal_strength and pattern_strength are both > 0, "
                "and the theoretical edge is only exact for one of them"
            )
        if not -1.0 < self.vix_return_correlation < 0.0:
            raise ValueError("vix_return_correlation must be in (-1, 0): VIX moves against SPY")
        if not 0.0 <= self.volume_activity_weight <= 1.0:
            raise ValueError("volume_activity_weight must be in [0, 1]")
        positive = (
            "stressed_vol_ratio",
            "stressed_volume_ratio",
            "profile_decay_bars",
            "vix_calm_level",
            "vix_stressed_level",
            "vix_half_life_sessions",
            "vix_daily_vol",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in (
            "daily_vol_jitter",
            "volume_noise",
            "open_vol_boost",
            "close_vol_boost",
            "open_volume_boost",
            "close_volume_boost",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every symbol the config produces, in generation order."""
        out = [u.symbol for u in self.underlyings] + [lev.symbol for lev in self.leveraged]
        if self.include_vix:
            out.append(VIX_SYMBOL)
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; what the marker file stores and compares."""
        payload: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(self)))
        return payload


DEFAULT_CONFIG = SyntheticMarketConfig()
"""Sessions of 2023 and 2024 (502), seed 25, no planted signal: the ``null`` scenario."""


@dataclass(frozen=True)
class SignalEdge:
    """What the planted edge is worth to the simplest strategy that exploits it.

    The strategy, on full sessions, for ``kind="momentum"``: flat over the first bar, then
    hold ``sign(r_k)`` (the sign of the bar that just closed) over bar ``k + 1``, flat at the
    close. For ``kind="sequence"``: flat until bar ``b``, then hold ``sign(r_{k-a}) *
    sign(r_{k-b})`` over bar ``k``. At zero cost this is the optimal policy among positions
    in ``[-1, 1]`` (it holds the sign of the conditional mean). Returns are fractions
    (0.0001 = 1 bp). ``kind="none"`` has every edge figure at 0.
    """

    symbol: str
    """Symbol the numbers are for."""
    signal_strength: float
    """``phi`` (momentum) or ``c`` (sequence): the planted correlation."""
    bar_vol: float
    """Root-mean-square return std of one bar (regimes and time of day averaged)."""
    edge_per_bar: float
    """Expected gross return per bar held (momentum: ``phi * sqrt(2 / pi) * E[sigma]``,
    sequence: ``c * E[sigma]``)."""
    edge_to_vol: float
    """``edge_per_bar / bar_vol``; what a test can compare with a measured edge / bar std."""
    flip_probability: float
    """Chance the position flips sign from one held bar to the next (momentum:
    ``1/2 - arcsin(phi) / pi``, the bivariate-normal orthant probability; sequence: exact
    from the Markov chain of the last ``b`` signs)."""
    breakeven_round_trip_cost: float
    """Round-trip cost at which the strategy's expected net return is zero: gross edge of
    the held bars over ``1 + (held - 1) * flip_probability`` round trips per session."""
    kind: str = "momentum"
    """``none``, ``momentum`` or ``sequence``: which planted edge the figures describe."""
    held_bars: int = FULL_DAY_BARS - 1
    """Bars of a full session the strategy holds a position over."""

    def per_session_bar(self, cost_rate: float = 0.0) -> float:
        """Expected net return per bar of a full session (held or not) at ``cost_rate``.

        ``cost_rate`` is the cost per unit of notional traded (commission plus slippage,
        ``EnvConfig.cost_rate``); a session trades 1 unit in, 2 per flip and 1 out. Negative
        when costs eat the edge (then flat, 0, is better).
        """
        if self.kind == "none":
            return 0.0
        trades = 2.0 + 2.0 * (self.held_bars - 1) * self.flip_probability
        gross = self.held_bars * self.edge_per_bar
        return (gross - cost_rate * trades) / FULL_DAY_BARS

    def annual_sharpe(self, cost_rate: float = 0.0) -> float:
        """Approximate annualized Sharpe of the strategy (bar std: ``bar_vol`` on held bars).

        An approximation for orientation (the report's "how close" column), not a test
        statistic: it ignores the edge's own contribution to the variance.
        """
        std = self.bar_vol * math.sqrt(self.held_bars / FULL_DAY_BARS)
        bars_per_year = TRADING_DAYS_PER_YEAR * FULL_DAY_BARS
        return self.per_session_bar(cost_rate) / std * math.sqrt(bars_per_year)

    def to_dict(self, cost_rate: float | None = None) -> dict[str, Any]:
        """JSON-ready figures; with ``cost_rate`` also the net ones at that cost."""
        out: dict[str, Any] = dataclasses.asdict(self)
        out["per_session_bar_gross"] = self.per_session_bar(0.0)
        out["annual_sharpe_gross"] = self.annual_sharpe(0.0)
        if cost_rate is not None:
            out["cost_rate"] = cost_rate
            out["per_session_bar_net"] = self.per_session_bar(cost_rate)
            out["annual_sharpe_net"] = self.annual_sharpe(cost_rate)
        return out


@dataclass(frozen=True)
class MarketScenario:
    """A named ground-truth market: what is planted and how the main job should read it."""

    name: str
    """Registry key (``--market``, ``data.market``)."""
    description: str
    """One line for ``--help`` and reports."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Fields of :class:`SyntheticMarketConfig` set over :data:`DEFAULT_CONFIG`."""
    planted: str = "none"
    """``none``, ``momentum`` or ``sequence``: the kind of edge (``SignalEdge.kind``)."""
    findable_by_manual: bool = False
    """Whether the one-bar manual features can see the edge (the report's expectation)."""


MARKET_SCENARIOS: dict[str, MarketScenario] = {
    "null": MarketScenario(
        "null",
        "no edge: prices are martingales in everything an agent sees; nobody may claim one",
    ),
    "momentum": MarketScenario(
        "momentum",
        "AR(1) momentum of bar shocks (phi = 0.3): the last bar's sign predicts the next; "
        "every encoder mode, manual included, should find it",
        overrides={"signal_strength": 0.3},
        planted="momentum",
        findable_by_manual=True,
    ),
    "sequence": MarketScenario(
        "sequence",
        "the next bar's sign is the parity of the signs of bars t-1 and t-4 (c = 0.3): "
        "invisible to one bar's manual features, plain to a window of single bars",
        overrides={"pattern_strength": 0.3, "pattern_lags": (2, 5)},
        planted="sequence",
        findable_by_manual=False,
    ),
}
"""The ground-truth markets, by name: the one source of scenario names."""

MARKET_NAMES: tuple[str, ...] = tuple(MARKET_SCENARIOS)
"""Valid scenario names, in report order (``null`` first)."""


def market_scenario(
    name: str, base: SyntheticMarketConfig = DEFAULT_CONFIG
) -> SyntheticMarketConfig:
    """The market config of scenario ``name`` (its overrides applied over ``base``).

    Raises:
        ValueError: If ``name`` is not a registered scenario.
    """
    try:
        scenario = MARKET_SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"unknown market scenario {name!r}; expected one of {', '.join(MARKET_NAMES)}"
        ) from None
    return dataclasses.replace(base, **dict(scenario.overrides))


def scenario_of(config: SyntheticMarketConfig) -> str:
    """Which planted edge ``config`` carries: ``none``, ``momentum`` or ``sequence``."""
    if config.signal_strength > 0.0:
        return "momentum"
    if config.pattern_strength > 0.0:
        return "sequence"
    return "none"


# --------------------------------------------------------------------------- model pieces


def _regime_vol_multipliers(config: SyntheticMarketConfig) -> tuple[float, float]:
    """Calm and stressed volatility multipliers whose stationary mean variance is 1."""
    p_cs, p_sc = config.p_calm_to_stressed, config.p_stressed_to_calm
    pi_stressed = p_cs / (p_cs + p_sc)
    calm = 1.0 / math.sqrt((1.0 - pi_stressed) + pi_stressed * config.stressed_vol_ratio**2)
    return calm, calm * config.stressed_vol_ratio


def _u_profile(
    bar: _FloatArray, n_bars: _FloatArray, open_boost: float, close_boost: float, tau: float
) -> _FloatArray:
    """U-shaped multiplier for bar ``bar`` of a session with ``n_bars`` bars."""
    profile: _FloatArray = (
        1.0 + open_boost * np.exp(-bar / tau) + close_boost * np.exp(-(n_bars - 1.0 - bar) / tau)
    )
    return profile


def _vol_profile(
    config: SyntheticMarketConfig, bar: _FloatArray, n_bars: _FloatArray
) -> _FloatArray:
    """Volatility multiplier per bar, normalised to mean variance 1 over a full session."""
    args = (config.open_vol_boost, config.close_vol_boost, config.profile_decay_bars)
    full = _u_profile(np.arange(FULL_DAY_BARS, dtype=float), np.full(FULL_DAY_BARS, 26.0), *args)
    scale = math.sqrt(float(np.mean(full**2)))
    out: _FloatArray = _u_profile(bar, n_bars, *args) / scale
    return out


def _volume_profile(
    config: SyntheticMarketConfig, bar: _FloatArray, n_bars: _FloatArray
) -> _FloatArray:
    """Volume multiplier per bar, normalised to mean 1 over a full session."""
    args = (config.open_volume_boost, config.close_volume_boost, config.profile_decay_bars)
    full = _u_profile(np.arange(FULL_DAY_BARS, dtype=float), np.full(FULL_DAY_BARS, 26.0), *args)
    out: _FloatArray = _u_profile(bar, n_bars, *args) / float(np.mean(full))
    return out


def intraday_bar_vol(annual_vol: float, config: SyntheticMarketConfig) -> float:
    """Root-mean-square std of one bar's return for an asset of ``annual_vol``.

    The intraday share of the daily variance, spread over the 26 bars of a full session.
    """
    share = 1.0 - config.overnight_variance_share
    return annual_vol * math.sqrt(share / (TRADING_DAYS_PER_YEAR * FULL_DAY_BARS))


def _pattern_flip_probability(c: float, a: int, b: int) -> float:
    """Exact mean flip rate of ``sign(z_{k-a} z_{k-b})`` over the held bars of a session.

    The signs of the last ``b`` bars form a Markov chain with ``2**b`` states: bars before
    ``b`` are fair coins, later ones are +1 with probability ``Phi(c p / sqrt(1 - c**2))``
    where ``p`` is the parity of the state's bits at lags ``a`` and ``b``. Propagating the
    state distribution over a full session gives the flip rate without simulation.
    """
    from scipy.stats import norm

    n_states = 1 << b  # bit j of a state: sign of the bar j + 1 bars back (1 = positive)
    states = np.arange(n_states)
    bit = lambda lag: (states >> (lag - 1)) & 1  # noqa: E731
    parity = np.where(bit(a) == bit(b), 1.0, -1.0)  # (2**b,)
    p_up = norm.cdf(c * parity / math.sqrt(1.0 - c * c)) if c > 0 else np.full(n_states, 0.5)
    dist = np.full(n_states, 1.0 / n_states)  # first b bars: fair coins, independent
    flips, count = 0.0, 0
    for k in range(b, FULL_DAY_BARS):
        # Position over bar k is the parity of the state before it; over bar k + 1 the
        # parity of the state after bar k.
        up_state = ((states << 1) | 1) & (n_states - 1)
        down_state = (states << 1) & (n_states - 1)
        if k + 1 < FULL_DAY_BARS:
            p_next_up = parity[up_state]
            p_next_down = parity[down_state]
            flip = p_up * (p_next_up != parity) + (1 - p_up) * (p_next_down != parity)
            flips += float(np.sum(dist * flip))
            count += 1
        new = np.zeros(n_states)
        np.add.at(new, up_state, dist * p_up)
        np.add.at(new, down_state, dist * (1 - p_up))
        dist = new
    return flips / max(count, 1)


def theoretical_edge_per_bar(config: SyntheticMarketConfig, symbol: str = "SPY") -> SignalEdge:
    """How much the planted edge is worth, so tests can pick a strength that beats costs.

    Momentum, ``phi = config.signal_strength``: the standardized shocks ``z`` of consecutive
    bars in a session are jointly normal with correlation ``phi``, and bar ``k + 1`` returns
    ``sigma_{k+1} * z_{k+1}`` (plus ``-sigma**2 / 2``, negligible at 15 minutes). Holding
    ``sign(r_k)`` over bar ``k + 1`` therefore earns ``sigma_{k+1} * phi * E|z_k| = phi *
    sqrt(2 / pi) * sigma_{k+1}``; averaged over regimes, day jitter and bars 2..26 of a full
    session this is ``edge_per_bar``. Because volatility varies, ``E[sigma]`` is ~13 % below
    the rms ``bar_vol``. The position flips with probability ``1/2 - arcsin(phi) / pi`` (the
    orthant probability of a bivariate normal). A leveraged ETF scales every figure by its
    leverage except the ratios.

    Sequence, ``c = config.pattern_strength``: ``E[p_k z_k] = c`` for the parity ``p_k`` of
    the two lagged signs, so holding ``p_k`` over bar ``k`` earns ``c * sigma_k`` on bars
    ``b..26``; the flip rate comes from :func:`_pattern_flip_probability`.

    Example, default config, SPY: ``bar_vol`` ~0.18 %; at ``phi = 0.3`` the edge is ~3.7 bp
    per bar held and the break-even round trip ~8.7 bp, well above 2-4 bp costs; at ``phi =
    0.2`` ~5.4 bp; at ``phi = 0.1`` ~2.5 bp, marginal; at ``phi = 0`` all zero. For UPRO,
    TQQQ and TNA (3x the volatility, same bp costs) every break-even is three times higher.

    Args:
        config: The market configuration.
        symbol: An underlying or leveraged symbol of ``config``.

    Returns:
        The edge figures for ``symbol``.

    Raises:
        ValueError: If ``symbol`` is not a tradable symbol of ``config`` (VIX is not).
    """
    underlyings = {u.symbol: u for u in config.underlyings}
    if symbol in underlyings:
        bar_vol = intraday_bar_vol(underlyings[symbol].annual_vol, config)
    else:
        lev = next((x for x in config.leveraged if x.symbol == symbol), None)
        if lev is None:
            raise ValueError(f"{symbol!r} is not a tradable symbol of this config")
        base = intraday_bar_vol(underlyings[lev.underlying].annual_vol, config)
        bar_vol = abs(lev.leverage) * base
    p_cs, p_sc = config.p_calm_to_stressed, config.p_stressed_to_calm
    pi_stressed = p_cs / (p_cs + p_sc)
    calm, stressed = _regime_vol_multipliers(config)
    # E[exp(j N - j**2)] = exp(-j**2 / 2): the jitter's effect on the *mean* sigma.
    mean_day = ((1.0 - pi_stressed) * calm + pi_stressed * stressed) * math.exp(
        -0.5 * config.daily_vol_jitter**2
    )
    bars = np.arange(FULL_DAY_BARS, dtype=float)
    profile = _vol_profile(config, bars, np.full(FULL_DAY_BARS, float(FULL_DAY_BARS)))
    kind = scenario_of(config)
    if kind == "sequence":
        a, b = config.pattern_lags
        strength = config.pattern_strength
        held = FULL_DAY_BARS - b
        held_sigma = bar_vol * mean_day * float(np.mean(profile[b:]))
        edge = strength * held_sigma
        flip = _pattern_flip_probability(strength, a, b)
    else:
        strength = config.signal_strength
        held = FULL_DAY_BARS - 1
        held_sigma = bar_vol * mean_day * float(np.mean(profile[1:]))
        edge = strength * math.sqrt(2.0 / math.pi) * held_sigma
        flip = 0.5 - math.asin(strength) / math.pi
    return SignalEdge(
        symbol=symbol,
        signal_strength=strength,
        bar_vol=bar_vol,
        edge_per_bar=edge,
        edge_to_vol=edge / bar_vol,
        flip_probability=flip,
        breakeven_round_trip_cost=held * edge / (1.0 + (held - 1) * flip),
        kind=kind,
        held_bars=held,
    )


def scenario_metadata(
    config: SyntheticMarketConfig, cost_rate: float | None = None
) -> dict[str, Any]:
    """What a data set's marker records about its planted edge, per tradable symbol."""
    tradable = [u.symbol for u in config.underlyings] + [lev.symbol for lev in config.leveraged]
    return {
        "planted": scenario_of(config),
        "theoretical_edge": {
            sym: theoretical_edge_per_bar(config, sym).to_dict(cost_rate) for sym in tradable
        },
    }


@dataclass(frozen=True)
class _Grid:
    """The bar grid in the padded (session, bar) layout the simulation uses."""

    index: pd.DatetimeIndex  # (B,) bar starts, New York
    n_bars: _IntArray  # (S,) bars per session
    valid: np.ndarray[Any, np.dtype[np.bool_]]  # (S, K) True where bar k exists


def _build_grid(config: SyntheticMarketConfig) -> _Grid:
    start = pd.Timestamp(config.start)
    if config.end is not None:
        sched = session_schedule(start, config.end)
    else:
        assert config.n_sessions is not None
        # Two calendar days per session plus slack always covers n sessions of XNYS.
        sched = session_schedule(start, start + pd.Timedelta(days=2 * config.n_sessions + 14))
        sched = sched.iloc[: config.n_sessions]
        if len(sched) < config.n_sessions:
            raise ValueError(f"calendar has only {len(sched)} sessions after {config.start}")
    if sched.empty:
        raise ValueError(f"no XNYS session between {config.start} and {config.end}")
    index = expected_bar_starts(sched, DEFAULT_INTERVAL)
    counts = pd.Series(index.tz_localize(None).normalize()).value_counts(sort=False)
    n_bars = counts.reindex(sched.index).to_numpy(dtype=np.int64)
    valid = np.arange(int(n_bars.max()))[None, :] < n_bars[:, None]  # (S, K)
    return _Grid(index=index, n_bars=n_bars, valid=valid)


def _simulate_regimes(
    config: SyntheticMarketConfig, rng: np.random.Generator, n_sessions: int
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Session-level calm (False) / stressed (True) Markov chain, started stationary."""
    draws = rng.random(n_sessions)
    p_cs, p_sc = config.p_calm_to_stressed, config.p_stressed_to_calm
    stressed = np.empty(n_sessions, dtype=bool)
    state = bool(draws[0] < p_cs / (p_cs + p_sc))
    stressed[0] = state
    # One step per *session* (hundreds), not per bar: a loop is clearest here.
    for s in range(1, n_sessions):
        state = bool(draws[s] >= p_sc) if state else bool(draws[s] < p_cs)
        stressed[s] = state
    return stressed


def _ar1_within_sessions(shocks: _FloatArray, phi: float) -> _FloatArray:
    """Unit-variance AR(1) along axis 1 of ``(S, K)`` iid N(0,1) shocks, fresh each row."""
    if phi == 0.0:
        return shocks
    innov = shocks * math.sqrt(1.0 - phi**2)
    innov[:, 0] = shocks[:, 0]  # z_0 ~ N(0, 1): each session starts stationary
    out: _FloatArray = lfilter([1.0], [1.0, -phi], innov, axis=1)
    return out


def _pattern_within_sessions(shocks: _FloatArray, c: float, lags: tuple[int, int]) -> _FloatArray:
    """Plant the sign-parity pattern: ``z_k = c p_k + sqrt(1 - c**2) e_k`` from bar ``b`` on.

    ``p_k = sign(z_{k-a}) * sign(z_{k-b})`` uses the *planted* shocks of earlier bars, so
    the recursion runs bar by bar (26 steps, vectorised over sessions). Each ``z_k`` keeps
    mean 0 and variance 1 (``p_k**2 = 1``), so volatility and every linear autocorrelation
    are unchanged; only the sign parity carries information.
    """
    if c == 0.0:
        return shocks
    a, b = lags
    out = shocks.copy()
    scale = math.sqrt(1.0 - c * c)
    for k in range(b, shocks.shape[1]):
        parity = np.where(out[:, k - a] >= 0.0, 1.0, -1.0) * np.where(
            out[:, k - b] >= 0.0, 1.0, -1.0
        )
        out[:, k] = c * parity + scale * shocks[:, k]
    return out


def _bridge_extremes(
    rng: np.random.Generator, log_move: _FloatArray, sigma: _FloatArray
) -> tuple[_FloatArray, _FloatArray]:
    """Max and min (relative to the open, in log units) of a Brownian bridge.

    For a Brownian motion with variance ``sigma**2`` over the bar pinned at ``log_move``,
    ``P(max > m) = exp(-2 m (m - b) / sigma**2)``; inverting with a uniform gives the exact
    draw; the min follows by symmetry (see e.g. Glasserman, *Monte Carlo Methods in
    Financial Engineering*, 2004, sec. 6.4). Each marginal is exact; max and min are drawn
    independently, which only slightly widens ranges and keeps ``low <= open, close <= high``.
    """
    u_hi = 1.0 - rng.random(log_move.shape)  # in (0, 1]: log is finite
    u_lo = 1.0 - rng.random(log_move.shape)
    b2 = log_move**2
    hi: _FloatArray = 0.5 * (log_move + np.sqrt(b2 - 2.0 * sigma**2 * np.log(u_hi)))
    lo: _FloatArray = 0.5 * (log_move - np.sqrt(b2 - 2.0 * sigma**2 * np.log(u_lo)))
    return hi, lo


@dataclass(frozen=True)
class _Paths:
    """Log-price paths of one series on the padded grid."""

    open: _FloatArray  # (S, K)
    close: _FloatArray  # (S, K)
    high: _FloatArray  # (S, K)
    low: _FloatArray  # (S, K)
    prev_close: _FloatArray  # (S,) previous session's last close (log)


def _price_paths(
    rng: np.random.Generator,
    log_start: float,
    gap_returns: _FloatArray,
    bar_returns: _FloatArray,
    bar_sigma: _FloatArray,
    valid: np.ndarray[Any, np.dtype[np.bool_]],
) -> _Paths:
    """Cumulate gap + bar log returns into OHLC, padding steps contribute nothing."""
    n_sessions, max_bars = bar_returns.shape
    steps = np.zeros((n_sessions, max_bars + 1))
    steps[:, 0] = gap_returns
    steps[:, 1:] = np.where(valid, bar_returns, 0.0)
    level = log_start + np.cumsum(steps.ravel()).reshape(n_sessions, max_bars + 1)
    prev_close = np.empty(n_sessions)
    prev_close[0] = log_start
    prev_close[1:] = level[:-1, -1]
    bar_open, bar_close = level[:, :-1], level[:, 1:]
    hi, lo = _bridge_extremes(rng, bar_close - bar_open, bar_sigma)
    return _Paths(
        open=bar_open,
        close=bar_close,
        high=bar_open + hi,
        low=bar_open + lo,
        prev_close=prev_close,
    )


def _frame(
    index: pd.DatetimeIndex,
    valid: np.ndarray[Any, np.dtype[np.bool_]],
    columns: dict[str, _FloatArray],
) -> pd.DataFrame:
    """Flatten padded ``(S, K)`` arrays into a bar frame on ``index``."""
    data = {
        name: np.ascontiguousarray(columns[name][valid], dtype=np.float64) for name in OHLCV_COLUMNS
    }
    return pd.DataFrame(data, index=index)


def _volume(
    config: SyntheticMarketConfig,
    rng: np.random.Generator,
    daily_volume: float,
    profile: _FloatArray,
    regime_volume: _FloatArray,
    abs_shock: _FloatArray,
) -> _FloatArray:
    """Positive whole-share volume: U-shape x regime x |shock| activity x lognormal noise."""
    w = config.volume_activity_weight
    activity = (1.0 - w) + w * abs_shock * math.sqrt(math.pi / 2.0)  # mean 1 for |N(0,1)|
    noise = np.exp(
        config.volume_noise * rng.standard_normal(profile.shape) - 0.5 * config.volume_noise**2
    )
    raw = daily_volume / FULL_DAY_BARS * profile * regime_volume[:, None] * activity * noise
    out: _FloatArray = np.maximum(np.rint(raw), 1.0)
    return out


def generate_synthetic_market(
    config: SyntheticMarketConfig = DEFAULT_CONFIG,
) -> dict[str, pd.DataFrame]:
    """Generate every symbol of the synthetic market as bar frames, fully vectorised.

    Args:
        config: What to generate; equal configs give identical frames.

    Returns:
        ``{symbol: bar frame}`` in ``config.symbols`` order; all frames share one index (the
        XNYS regular-session 15-minute grid between the configured dates).

    Raises:
        ValueError: If the calendar has no session in the range.
        RuntimeError: If a leveraged ETF would lose everything in one session (only for
            absurd volatilities; real products would have been halted).
    """
    rng = np.random.Generator(np.random.PCG64(config.seed))
    grid = _build_grid(config)
    n_sessions, max_bars = grid.valid.shape

    # Session-level volatility: regime x lognormal jitter with E[mult**2] = 1 per regime.
    stressed = _simulate_regimes(config, rng, n_sessions)
    calm_mult, stressed_mult = _regime_vol_multipliers(config)
    jitter = config.daily_vol_jitter
    day_mult = np.where(stressed, stressed_mult, calm_mult) * np.exp(
        jitter * rng.standard_normal(n_sessions) - jitter**2
    )  # (S,)
    regime_volume = np.where(stressed, config.stressed_volume_ratio, 1.0)  # (S,)

    bar_pos = np.broadcast_to(np.arange(max_bars, dtype=float), (n_sessions, max_bars))
    n_bars = np.broadcast_to(grid.n_bars[:, None].astype(float), (n_sessions, max_bars))
    vol_prof = _vol_profile(config, bar_pos, n_bars)  # (S, K)
    volume_prof = _volume_profile(config, bar_pos, n_bars)  # (S, K)

    # One-factor shocks, drawn in a fixed order so the seed pins every number.
    n_under = len(config.underlyings)
    factor_bar = rng.standard_normal((n_sessions, max_bars))
    factor_gap = rng.standard_normal(n_sessions)
    idio_bar = rng.standard_normal((n_under, n_sessions, max_bars))
    idio_gap = rng.standard_normal((n_under, n_sessions))

    step_drift = config.annual_drift / (TRADING_DAYS_PER_YEAR * (FULL_DAY_BARS + 1))
    gap_scale = math.sqrt(config.overnight_variance_share / TRADING_DAYS_PER_YEAR)
    frames: dict[str, pd.DataFrame] = {}
    paths: dict[str, _Paths] = {}
    bar_shocks: dict[str, _FloatArray] = {}
    gap_shocks: dict[str, _FloatArray] = {}
    for i, spec in enumerate(config.underlyings):
        b = spec.factor_loading
        eps = b * factor_bar + math.sqrt(1.0 - b**2) * idio_bar[i]  # (S, K) iid N(0, 1)
        z = _ar1_within_sessions(eps, config.signal_strength)  # (S, K)
        z = _pattern_within_sessions(z, config.pattern_strength, config.pattern_lags)
        z_gap = b * factor_gap + math.sqrt(1.0 - b**2) * idio_gap[i]  # (S,)
        sigma = intraday_bar_vol(spec.annual_vol, config) * day_mult[:, None] * vol_prof
        sigma_gap = spec.annual_vol * gap_scale * day_mult  # (S,)
        # -sigma**2/2 makes exp(return) mean-one: the price is a martingale at phi = 0.
        bar_ret = step_drift + sigma * z - 0.5 * sigma**2
        gap_ret = step_drift + sigma_gap * z_gap - 0.5 * sigma_gap**2
        p = _price_paths(rng, math.log(spec.start_price), gap_ret, bar_ret, sigma, grid.valid)
        volume = _volume(config, rng, spec.daily_volume, volume_prof, regime_volume, np.abs(z))
        paths[spec.symbol], bar_shocks[spec.symbol], gap_shocks[spec.symbol] = p, z, z_gap
        frames[spec.symbol] = _frame(
            grid.index,
            grid.valid,
            {
                "open": np.exp(p.open),
                "high": np.exp(p.high),
                "low": np.exp(p.low),
                "close": np.exp(p.close),
                "volume": volume,
            },
        )

    for lev in config.leveraged:
        frames[lev.symbol] = _leveraged_frame(
            config,
            rng,
            lev,
            paths[lev.underlying],
            np.abs(bar_shocks[lev.underlying]),
            grid,
            volume_prof,
            regime_volume,
        )

    if config.include_vix:
        ref = config.underlyings[0].symbol
        frames[VIX_SYMBOL] = _vix_frame(
            config,
            rng,
            grid,
            stressed,
            bar_shocks[ref],
            gap_shocks[ref],
            day_mult / calm_mult,
            vol_prof,
        )
    return {symbol: frames[symbol] for symbol in config.symbols}


def _leveraged_frame(
    config: SyntheticMarketConfig,
    rng: np.random.Generator,
    lev: LeveragedSpec,
    under: _Paths,
    under_abs_shock: _FloatArray,
    grid: _Grid,
    volume_prof: _FloatArray,
    regime_volume: _FloatArray,
) -> pd.DataFrame:
    """Daily-reset leveraged prices: ``L / L_pc - 1 = lev * (U / U_pc - 1) - fee``.

    ``L_pc`` compounds from session to session through the same identity applied to the
    underlying's last close, which is exactly what a daily-rebalanced fund does.
    """
    fee = lev.expense_ratio / TRADING_DAYS_PER_YEAR
    u_pc = under.prev_close[:, None]  # (S, 1), log

    def ratio(log_price: _FloatArray) -> _FloatArray:
        out: _FloatArray = 1.0 + lev.leverage * np.expm1(log_price - u_pc) - fee
        return out

    # For negative leverage the underlying's high maps to the product's low.
    hi_src, lo_src = (under.high, under.low) if lev.leverage > 0 else (under.low, under.high)
    r_open, r_high, r_low, r_close = (
        ratio(under.open),
        ratio(hi_src),
        ratio(lo_src),
        ratio(under.close),
    )
    if np.any(r_low[grid.valid] <= 0.0):
        raise RuntimeError(
            f"{lev.symbol}: a {lev.leverage}x daily-reset product would lose everything in one "
            "session; lower the underlying's volatility"
        )
    day_ratio = r_close[np.arange(len(grid.n_bars)), grid.n_bars - 1]  # (S,) close / prev
    l_pc = lev.start_price * np.concatenate(([1.0], np.cumprod(day_ratio[:-1])))[:, None]
    volume = _volume(config, rng, lev.daily_volume, volume_prof, regime_volume, under_abs_shock)
    return _frame(
        grid.index,
        grid.valid,
        {
            "open": l_pc * r_open,
            "high": l_pc * r_high,
            "low": l_pc * r_low,
            "close": l_pc * r_close,
            "volume": volume,
        },
    )


def _vix_frame(
    config: SyntheticMarketConfig,
    rng: np.random.Generator,
    grid: _Grid,
    stressed: np.ndarray[Any, np.dtype[np.bool_]],
    spy_bar_shock: _FloatArray,
    spy_gap_shock: _FloatArray,
    rel_day_vol: _FloatArray,
    vol_prof: _FloatArray,
) -> pd.DataFrame:
    """Log-AR(1) VIX towards the regime level, shocked against SPY; volume 0.

    Steps are the overnight gap plus every real bar of each session, in time order. With
    ``x = log VIX``: ``x_t = (1 - kappa) x_{t-1} + kappa mu_t + v_t (rho z_t + sqrt(1 -
    rho**2) xi_t)``, ``z_t`` SPY's standardized shock of the same step, ``rho < 0``, and the
    vol-of-vol ``v_t`` growing with the square root of SPY's volatility relative to calm.
    """
    n_sessions, max_bars = grid.valid.shape
    kappa = 1.0 - 0.5 ** (1.0 / (config.vix_half_life_sessions * (FULL_DAY_BARS + 1)))
    rho = config.vix_return_correlation
    share = config.overnight_variance_share

    # Per step (S, K+1); column 0 is the overnight gap, columns 1.. the bars.
    step_valid = np.concatenate([np.ones((n_sessions, 1), dtype=bool), grid.valid], axis=1)
    shock = np.concatenate([spy_gap_shock[:, None], spy_bar_shock], axis=1)
    vov = np.empty((n_sessions, max_bars + 1))
    vov[:, 0] = config.vix_daily_vol * math.sqrt(share) * np.sqrt(rel_day_vol)
    vov[:, 1:] = (
        config.vix_daily_vol
        * math.sqrt((1.0 - share) / FULL_DAY_BARS)
        * np.sqrt(rel_day_vol[:, None] * vol_prof)
    )
    noise = rng.standard_normal((n_sessions, max_bars + 1))
    mu = np.log(np.where(stressed, config.vix_stressed_level, config.vix_calm_level))  # (S,)
    innov = kappa * mu[:, None] + vov * (rho * shock + math.sqrt(1.0 - rho**2) * noise)

    # AR(1) over the time-ordered real steps only: padding must not decay the level.
    x0 = float(mu[0])
    level = lfilter([1.0], [1.0, -(1.0 - kappa)], innov[step_valid], zi=[(1.0 - kappa) * x0])[0]
    after = np.zeros((n_sessions, max_bars + 1))
    before = np.zeros((n_sessions, max_bars + 1))
    after[step_valid] = level
    before[step_valid] = np.concatenate(([x0], level[:-1]))
    bar_open, bar_close = before[:, 1:], after[:, 1:]
    hi, lo = _bridge_extremes(rng, bar_close - bar_open, vov[:, 1:])
    return _frame(
        grid.index,
        grid.valid,
        {
            "open": np.exp(bar_open),
            "high": np.exp(bar_open + hi),
            "low": np.exp(bar_open + lo),
            "close": np.exp(bar_close),
            "volume": np.zeros((n_sessions, max_bars)),
        },
    )


# --------------------------------------------------------------------------- the store


def _marker_payload(config: SyntheticMarketConfig) -> dict[str, Any]:
    return {
        "generator_version": GENERATOR_VERSION,
        "interval": DEFAULT_INTERVAL,
        "config": config.to_dict(),
    }


DEFAULT_COST_RATE = 2e-4
"""Commission plus slippage per unit traded of the env's defaults (1 + 1 bp,
``EnvConfig.cost_rate``), at which the marker states the net theoretical edge."""


def read_marker(data_dir: str | Path) -> dict[str, Any] | None:
    """The ``SYNTHETIC.json`` marker of ``data_dir`` (scenario, edge, config), or None."""
    return _read_marker(Path(data_dir))


def _read_marker(data_dir: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads((data_dir / MARKER_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _write_marker(data_dir: Path, payload: dict[str, Any]) -> None:
    """Write the marker atomically: it is the 'this data set is complete' flag."""
    write_text_atomic(data_dir / MARKER_FILE, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _has_foreign_bars(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds bar CSVs but no marker: possibly real, downloaded data."""
    intraday = data_dir / "intraday"
    if (data_dir / MARKER_FILE).exists() or not intraday.is_dir():
        return False
    return any(intraday.rglob("*.csv"))


def write_synthetic_market(
    data_dir: str | Path, config: SyntheticMarketConfig = DEFAULT_CONFIG
) -> dict[str, list[Path]]:
    """Generate the market and (re)write it as a per-session CSV store under ``data_dir``.

    The marker is first written with ``"complete": false`` and rewritten with ``true`` only
    after every file is on disk: an interrupted run is recognised as synthetic (so it may be
    overwritten) and as unfinished (so :func:`ensure_synthetic_dataset` redoes it). Symbol
    folders of a previous synthetic data set are cleared, so a shorter config leaves no
    stale sessions behind.

    Args:
        data_dir: Root of the store (``<data_dir>/intraday/<SYMBOL>/15m/*.csv``).
        config: What to generate.

    Returns:
        ``{symbol: written paths}``, one file per session.

    Raises:
        FileExistsError: If ``data_dir`` holds bar CSVs without a ``SYNTHETIC.json`` marker:
            that may be real data and is never overwritten.
    """
    root = Path(data_dir)
    if _has_foreign_bars(root):
        raise FileExistsError(
            f"{root} holds bar CSVs but no {MARKER_FILE}; refusing to overwrite what may be "
            "real data. Point the synthetic market at its own folder (e.g. data/synthetic)."
        )
    frames = generate_synthetic_market(config)  # may raise: nothing on disk touched yet
    root.mkdir(parents=True, exist_ok=True)
    payload = _marker_payload(config)
    _write_marker(root, {**payload, "complete": False})
    intraday = root / "intraday"
    if intraday.is_dir():  # a previous synthetic set (the guard above checked the marker)
        for child in intraday.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
    written = {
        symbol: write_sessions_bulk(frame, root, symbol, DEFAULT_INTERVAL, durable=False)
        for symbol, frame in frames.items()
    }
    # Files were written without per-file fsync (3,500 fsyncs take ~15 s); one sync here,
    # before the final marker, makes "complete" imply "files on disk" after a power cut.
    if hasattr(os, "sync"):
        os.sync()
    sessions = len({p.name for paths in written.values() for p in paths})
    edge = scenario_metadata(config, DEFAULT_COST_RATE)
    _write_marker(root, {**payload, **edge, "complete": True, "sessions": sessions})
    return written


def ensure_synthetic_dataset(
    data_dir: str | Path, config: SyntheticMarketConfig = DEFAULT_CONFIG
) -> Path:
    """Make sure ``data_dir`` holds exactly the market ``config`` describes; cheap if it does.

    Regenerates only when the marker is missing or unfinished, records another config or
    generator version, or a symbol folder lacks sessions, so the main job can call this on
    every run.

    Args:
        data_dir: Root of the synthetic store.
        config: The market wanted.

    Returns:
        ``data_dir`` as a ``Path``, ready for the loader.
    """
    root = Path(data_dir)
    marker = _read_marker(root)
    wanted = _marker_payload(config)
    same = marker is not None and all(marker.get(k) == v for k, v in wanted.items())
    if same and marker is not None and marker.get("complete") is True:
        sessions = marker.get("sessions")
        complete = isinstance(sessions, int) and all(
            len(list_csv_files(root, s, DEFAULT_INTERVAL)) == sessions for s in config.symbols
        )
        if complete:
            return root
    write_synthetic_market(root, config)
    return root


def ensure_scenario_dataset(data_root: str | Path, name: str) -> Path:
    """The scenario's market in ``<data_root>/<name>`` (generated once, then cheap).

    One folder per scenario, so switching ``--market`` never overwrites another scenario's
    data; the marker there records the scenario name and its theoretical edge.
    """
    config = market_scenario(name)
    return ensure_synthetic_dataset(Path(data_root) / name, config)
