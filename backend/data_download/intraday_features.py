"""Causal features of a 15-minute market frame, from one typed registry.

Every feature is a function ``fn(market, config) -> Series`` registered with its group, its
``lookback`` and a one-line doc. :func:`compute_features` runs the enabled ones in
:class:`~backend.config.training_config.FeatureConfig` order and masks each feature's
warm-up with NaN.

**Causality.** The value at row ``t`` uses rows ``<= t`` only: no ``bfill``, no centred
windows, no negative shifts, no statistic of the whole series (the look-ahead bias of
FinRL #189/#317/#938). Rolling statistics are computed on explicit trailing windows
(:func:`numpy.lib.stride_tricks.sliding_window_view`) rather than with running sums, so a
value depends *bit for bit* on its window alone, and exponential averages run forward
only. A bar labelled ``t`` closes at ``t + 15min``; every feature of that row is known at
the bar's close, which is when the agent acts.

**Lookback.** ``FeatureSpec.lookback`` is the number of rows, the current one included,
a value may depend on, and values are finite from row ``lookback - 1`` on (given finite
inputs). Session-anchored features (gap, return since the open) remember back to the
session's first bar, so their lookback is a session's length. Exponential averages (RSI,
ATR, MACD) remember forever; their lookback is a warm-up length instead: the seed plus
the bars it takes the seed's weight to fall below ``FeatureConfig.ewm_residual``. They
are flagged ``windowed=False``.

**Gaps.** Rows are bars; a missing bar is simply absent, so "previous bar" means the
previous row and no NaN or inf appears at holes or session boundaries. Session and clock
positions come from the XNYS calendar (:func:`session_bar_layout`), so half days and DST
are exact.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from backend.data_download.feature_config import FEATURE_GROUPS, FeatureConfig
from backend.data_download.market_calendar import session_bar_layout
from backend.data_download.schema import OHLCV_COLUMNS, PRICE_COLUMNS

FeatureFn = Callable[[pd.DataFrame, FeatureConfig], pd.Series]
"""A feature: market frame (optionally with layout columns) and config to a float Series."""
Lookback = int | Callable[[FeatureConfig], int]

VIX_COLUMN = "vix"
LAYOUT_COLUMNS: tuple[str, ...] = ("session_index", "bar_in_session", "bars_in_session")
"""Calendar columns :func:`compute_features` attaches once so features need not recompute."""

_CHUNK_ELEMENTS = 1 << 20  # rows x window per block of a rolling reduction (8 MiB float64)


@dataclass(frozen=True)
class FeatureSpec:
    """One registered feature.

    ``fn`` returns raw values for every row; :func:`compute_features` then sets rows
    before ``lookback - 1`` to NaN, so every feature's warm-up is exactly its lookback.
    """

    name: str
    """Column name in the feature frame."""
    group: str
    """One of ``FEATURE_GROUPS``; switched on and off as a whole by ``FeatureConfig``."""
    lookback: int
    """Rows of history, current bar included, needed before the value is valid."""
    fn: FeatureFn
    """Computes the feature for every row of a market frame."""
    needs_vix: bool
    """Whether ``fn`` reads the market frame's ``vix`` column."""
    doc: str
    """What the feature measures, in one or two sentences."""
    windowed: bool = True
    """True when the value depends on the last ``lookback`` rows only.

    False for exponential averages, whose memory is infinite and whose ``lookback`` is a
    warm-up length.
    """


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------

_DEFINITIONS: list[tuple[str, Callable[[FeatureConfig], list[FeatureSpec]]]] = []


def _first_paragraph(fn: Callable[..., object]) -> str:
    doc = inspect.getdoc(fn) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _add_definition(group: str, build: Callable[[FeatureConfig], list[FeatureSpec]]) -> None:
    if group not in FEATURE_GROUPS:
        raise ValueError(f"unknown feature group {group!r}; expected one of {FEATURE_GROUPS}")
    _DEFINITIONS.append((group, build))
    _specs_for.cache_clear()


def register_feature(
    name: str,
    group: str,
    lookback: Lookback,
    *,
    needs_vix: bool = False,
    windowed: bool = True,
) -> Callable[[FeatureFn], FeatureFn]:
    """Register ``fn`` as the feature ``name``; its docstring's first paragraph is the doc.

    Args:
        name: Column name.
        group: Feature group (see ``FEATURE_GROUPS``).
        lookback: Rows needed, or a function of the config when parameters set it.
        needs_vix: Whether the feature reads ``vix``.
        windowed: False for infinite-memory (exponential) features.
    """

    def decorator(fn: FeatureFn) -> FeatureFn:
        def build(config: FeatureConfig) -> list[FeatureSpec]:
            resolved = lookback(config) if callable(lookback) else lookback
            return [
                FeatureSpec(
                    name=name,
                    group=group,
                    lookback=int(resolved),
                    fn=fn,
                    needs_vix=needs_vix,
                    doc=_first_paragraph(fn),
                    windowed=windowed,
                )
            ]

        _add_definition(group, build)
        return fn

    return decorator


def register_family(
    group: str,
) -> Callable[
    [Callable[[FeatureConfig], list[FeatureSpec]]], Callable[[FeatureConfig], list[FeatureSpec]]
]:
    """Register a builder of several specs whose names depend on the config (horizons)."""

    def decorator(
        build: Callable[[FeatureConfig], list[FeatureSpec]],
    ) -> Callable[[FeatureConfig], list[FeatureSpec]]:
        _add_definition(group, build)
        return build

    return decorator


@lru_cache(maxsize=32)
def _specs_for(config: FeatureConfig) -> tuple[FeatureSpec, ...]:
    specs: list[FeatureSpec] = []
    for group in FEATURE_GROUPS:
        for def_group, build in _DEFINITIONS:
            if def_group == group:
                specs.extend(build(config))
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"feature {spec.name!r} is registered twice")
        if spec.lookback < 1:
            raise ValueError(f"feature {spec.name!r} declares lookback {spec.lookback} < 1")
        seen.add(spec.name)
    return tuple(specs)


def feature_registry(config: FeatureConfig | None = None) -> dict[str, FeatureSpec]:
    """Every registered feature (all groups, enabled or not) with the config's parameters.

    Names of parametrised families (``ret_<h>``) and lookbacks follow ``config``; the
    dict is in column order (group order, then registration order).
    """
    return {s.name: s for s in _specs_for(config if config is not None else FeatureConfig())}


def feature_specs(config: FeatureConfig) -> list[FeatureSpec]:
    """The enabled features, in column order."""
    enabled = set(config.enabled_groups)
    return [s for s in _specs_for(config) if s.group in enabled]


def feature_names(config: FeatureConfig) -> list[str]:
    """Column names :func:`compute_features` returns for ``config``, in order."""
    return [s.name for s in feature_specs(config)]


def max_lookback(config: FeatureConfig) -> int:
    """Longest lookback of the enabled features: the bars of history a live loop needs."""
    return max(s.lookback for s in feature_specs(config))


# ---------------------------------------------------------------------------------------
# Numeric primitives (numpy float64, strictly trailing)
# ---------------------------------------------------------------------------------------


def _col(market: pd.DataFrame, name: str) -> np.ndarray:
    return market[name].to_numpy(dtype=np.float64, na_value=np.nan)


def _shift(x: np.ndarray, periods: int) -> np.ndarray:
    """``x`` delayed by ``periods >= 1`` rows, NaN-padded at the start."""
    out = np.full_like(x, np.nan)
    if periods < len(x):
        out[periods:] = x[: len(x) - periods]
    return out


def _log_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``log(num / den)``, NaN (not a warning) where either side is NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(num / den)


def _safe_divide(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """``num / den`` where ``den > 0``, ``fill`` where ``den == 0``, NaN where NaN."""
    positive = den > 0
    out = np.where(positive, num / np.where(positive, den, 1.0), fill)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return out


def _rolling(x: np.ndarray, window: int, reducer: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``reducer`` to each trailing window ``x[t-window+1 : t+1]`` (NaN before).

    Reduces explicit windows in blocks, so memory stays bounded and a value depends only
    on its own window; running-sum implementations carry rounding residue from rows that
    left the window long ago.
    """
    out = np.full(len(x), np.nan)
    if window > len(x):
        return out
    view = sliding_window_view(x, window)  # (n - window + 1, window)
    block = max(1, _CHUNK_ELEMENTS // window)
    for start in range(0, len(view), block):
        stop = min(start + block, len(view))
        out[window - 1 + start : window - 1 + stop] = reducer(view[start:stop])
    return out


def _mean_reducer(windows: np.ndarray) -> np.ndarray:
    return windows.mean(axis=1)


def _std_reducer(windows: np.ndarray) -> np.ndarray:
    # Two-pass population std; a window of equal values is exactly 0 (not 1e-17), so the
    # callers' "constant window" branch is taken reliably.
    mean = windows.mean(axis=1, keepdims=True)
    std = np.sqrt(((windows - mean) ** 2).mean(axis=1))
    std[windows.max(axis=1) == windows.min(axis=1)] = 0.0
    return std


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` rows; NaN if the window holds a NaN or is incomplete."""
    return _rolling(x, window, _mean_reducer)


def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing population std (ddof=0) over ``window`` rows; exactly 0 on a flat window."""
    return _rolling(x, window, _std_reducer)


def rolling_zscore(x: np.ndarray, window: int) -> np.ndarray:
    """``(x_t - mean) / std`` over the trailing window, 0 when the window is flat."""
    return _safe_divide(x - rolling_mean(x, window), rolling_std(x, window), 0.0)


def seeded_ewm(x: np.ndarray, alpha: float, seed_length: int) -> np.ndarray:
    """Exponential average seeded with the mean of the first ``seed_length`` valid values.

    This is Wilder's smoothing for ``alpha = 1/n`` and the TA-Lib EMA for
    ``alpha = 2/(n+1)``: the first output is the simple mean of the first ``n`` inputs,
    then ``y_t = (1 - alpha) * y_{t-1} + alpha * x_t``. NaNs are allowed only as a leading
    block (diffs, upstream warm-ups). The recursion runs forward only, so it is causal.
    """
    out = np.full(len(x), np.nan)
    valid = ~np.isnan(x)
    if not valid.any():
        return out
    first = int(np.argmax(valid))
    seed_at = first + seed_length - 1
    if seed_at >= len(x):
        return out
    seeded = x.copy()
    seeded[:seed_at] = np.nan
    seeded[seed_at] = x[first : seed_at + 1].mean()
    return pd.Series(seeded).ewm(alpha=alpha, adjust=False).mean().to_numpy(dtype=np.float64)


def ewm_settle_bars(alpha: float, residual: float) -> int:
    """Bars after seeding until the seed's weight ``(1 - alpha)**k`` is below ``residual``."""
    if residual >= 1.0 or alpha >= 1.0:
        return 0
    return math.ceil(math.log(residual) / math.log(1.0 - alpha))


def _wilder_alpha(period: int) -> float:
    return 1.0 / period


def _ema_alpha(span: int) -> float:
    return 2.0 / (span + 1.0)


def _session_layout(market: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Calendar layout columns: attached ones if present, else from the XNYS calendar."""
    if all(c in market.columns for c in LAYOUT_COLUMNS):
        return market.loc[:, list(LAYOUT_COLUMNS)]
    if not isinstance(market.index, pd.DatetimeIndex):
        raise TypeError("market frame needs a DatetimeIndex of bar starts")
    return session_bar_layout(market.index, interval=config.interval).loc[:, list(LAYOUT_COLUMNS)]


def _session_starts(session_index: np.ndarray) -> np.ndarray:
    """Row of the first bar present in each row's session (the running last "new session")."""
    n = len(session_index)
    is_first = np.ones(n, dtype=bool)
    is_first[1:] = session_index[1:] != session_index[:-1]
    return np.maximum.accumulate(np.where(is_first, np.arange(n), 0))


def _series(market: pd.DataFrame, values: np.ndarray, name: str) -> pd.Series:
    return pd.Series(values, index=market.index, name=name, dtype="float64")


# ---------------------------------------------------------------------------------------
# bar: the bar itself relative to the previous close (the sequence encoder's tape)
# ---------------------------------------------------------------------------------------


def _bar_price_feature(market: pd.DataFrame, config: FeatureConfig, column: str) -> pd.Series:
    prev_close = _shift(_col(market, "close"), 1)
    return _series(market, _log_ratio(_col(market, column), prev_close), f"bar_{column}")


@register_feature("bar_open", "bar", 2)
def bar_open(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(open_t / close_{t-1}); at a session's first bar this is the overnight gap."""
    return _bar_price_feature(market, config, "open")


@register_feature("bar_high", "bar", 2)
def bar_high(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(high_t / close_{t-1})."""
    return _bar_price_feature(market, config, "high")


@register_feature("bar_low", "bar", 2)
def bar_low(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(low_t / close_{t-1})."""
    return _bar_price_feature(market, config, "low")


@register_feature("bar_close", "bar", 2)
def bar_close(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(close_t / close_{t-1}), the one-bar log return."""
    return _bar_price_feature(market, config, "close")


@register_feature("bar_volume", "bar", lambda c: c.bar_volume_window)
def bar_volume(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log1p(volume_t) minus its trailing mean over ``bar_volume_window`` bars.

    A log ratio to the recent typical volume: scale-free across symbols and years, and
    log1p keeps zero-volume bars finite.
    """
    log_volume = np.log1p(_col(market, "volume"))
    values = log_volume - rolling_mean(log_volume, config.bar_volume_window)
    return _series(market, values, "bar_volume")


# ---------------------------------------------------------------------------------------
# returns
# ---------------------------------------------------------------------------------------


def log_return(market: pd.DataFrame, config: FeatureConfig, horizon: int) -> pd.Series:
    """log(close_t / close_{t-horizon})."""
    close = _col(market, "close")
    return _series(market, _log_ratio(close, _shift(close, horizon)), f"ret_{horizon}")


@register_family("returns")
def _return_specs(config: FeatureConfig) -> list[FeatureSpec]:
    return [
        FeatureSpec(
            name=f"ret_{h}",
            group="returns",
            lookback=h + 1,
            fn=partial(log_return, horizon=h),
            needs_vix=False,
            doc=f"Log return of the close over {h} bar(s): log(close_t / close_(t-{h})).",
        )
        for h in config.return_horizons
    ]


# ---------------------------------------------------------------------------------------
# range_gap: intrabar shape and where the price sits within today's session
# ---------------------------------------------------------------------------------------


@register_feature("bar_range", "range_gap", 1)
def bar_range(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(high_t / low_t), the bar's relative range (a one-bar volatility estimate)."""
    return _series(market, _log_ratio(_col(market, "high"), _col(market, "low")), "bar_range")


@register_feature("close_location", "range_gap", 1)
def close_location(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Close location value ((C-L) - (H-C)) / (H-L) in [-1, 1]; 0 when H == L.

    +1 closes at the high, -1 at the low. A bar without range carries no information on
    where it closed, so it gets the neutral 0 rather than 0/0.
    """
    high, low, close = _col(market, "high"), _col(market, "low"), _col(market, "close")
    values = _safe_divide((close - low) - (high - close), high - low, 0.0)
    return _series(market, values, "close_location")


@register_feature("overnight_gap", "range_gap", lambda c: c.session_bars + 1)
def overnight_gap(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Today's gap: log(open of the session's first bar / previous session's last close).

    Set at the first bar present in a session and carried through the session, so every
    bar knows how the day opened. NaN for the first session in the frame, where the
    previous close is unknown: a 0 would claim "no gap", which nobody observed. With a
    full first session that is ``session_bars`` rows, hence the lookback of
    ``session_bars + 1``. If the session's first bar is missing, the first present bar
    stands in for it.
    """
    layout = _session_layout(market, config)
    starts = _session_starts(layout["session_index"].to_numpy())
    gap_at_start = _log_ratio(_col(market, "open"), _shift(_col(market, "close"), 1))
    return _series(market, gap_at_start[starts], "overnight_gap")


@register_feature("session_return", "range_gap", lambda c: c.session_bars)
def session_return(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(close_t / open of the session's first bar): the return since today's open."""
    layout = _session_layout(market, config)
    starts = _session_starts(layout["session_index"].to_numpy())
    values = _log_ratio(_col(market, "close"), _col(market, "open")[starts])
    return _series(market, values, "session_return")


def _session_extreme(market: pd.DataFrame, config: FeatureConfig, column: str) -> np.ndarray:
    layout = _session_layout(market, config)
    grouped = pd.Series(_col(market, column)).groupby(layout["session_index"].to_numpy())
    running = grouped.cummax() if column == "high" else grouped.cummin()
    return running.to_numpy(dtype=np.float64)


@register_feature("session_high_dist", "range_gap", lambda c: c.session_bars)
def session_high_dist(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(close_t / highest high of the session so far), <= 0."""
    values = _log_ratio(_col(market, "close"), _session_extreme(market, config, "high"))
    return _series(market, values, "session_high_dist")


@register_feature("session_low_dist", "range_gap", lambda c: c.session_bars)
def session_low_dist(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(close_t / lowest low of the session so far), >= 0."""
    values = _log_ratio(_col(market, "close"), _session_extreme(market, config, "low"))
    return _series(market, values, "session_low_dist")


# ---------------------------------------------------------------------------------------
# technical
# ---------------------------------------------------------------------------------------


def _wilder_lookback(period: int, config: FeatureConfig) -> int:
    # The input (a diff or a true range) starts at row 1; the seed needs `period` of them.
    return period + 1 + ewm_settle_bars(_wilder_alpha(period), config.ewm_residual)


@register_feature("rsi", "technical", lambda c: _wilder_lookback(c.rsi_period, c), windowed=False)
def rsi(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Wilder's RSI in [0, 100] over ``rsi_period`` bars; 50 on a flat market.

    Average gain and loss use Wilder's smoothing seeded with a simple mean (Wilder 1978;
    TA-Lib). ``100 * gain / (gain + loss)`` equals ``100 - 100 / (1 + RS)`` and stays
    defined when there were no losses (100) or no moves at all (50).
    """
    n = config.rsi_period
    diff = np.diff(_col(market, "close"), prepend=np.nan)
    gain = seeded_ewm(np.clip(diff, 0.0, None), _wilder_alpha(n), n)  # NaN at row 0 stays
    loss = seeded_ewm(np.clip(-diff, 0.0, None), _wilder_alpha(n), n)
    values = 100.0 * _safe_divide(gain, gain + loss, 0.5)
    return _series(market, values, "rsi")


@register_feature("atr", "technical", lambda c: _wilder_lookback(c.atr_period, c), windowed=False)
def atr(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Wilder's average true range over ``atr_period`` bars, divided by the close.

    True range = max(H - L, |H - C_prev|, |L - C_prev|) (so overnight gaps count), from
    the second row on; smoothing seeded with a simple mean as in TA-Lib.
    """
    high, low, close = _col(market, "high"), _col(market, "low"), _col(market, "close")
    prev_close = _shift(close, 1)
    true_range = np.maximum(high - low, np.abs(high - prev_close))
    true_range = np.maximum(true_range, np.abs(low - prev_close))  # NaN at row 0 propagates
    n = config.atr_period
    values = seeded_ewm(true_range, _wilder_alpha(n), n) / close
    return _series(market, values, "atr")


def _macd_line(market: pd.DataFrame, config: FeatureConfig) -> np.ndarray:
    close = _col(market, "close")
    fast = seeded_ewm(close, _ema_alpha(config.macd_fast), config.macd_fast)
    slow = seeded_ewm(close, _ema_alpha(config.macd_slow), config.macd_slow)
    return fast - slow


def _macd_signal(line: np.ndarray, config: FeatureConfig) -> np.ndarray:
    return seeded_ewm(line, _ema_alpha(config.macd_signal), config.macd_signal)


def _macd_line_lookback(config: FeatureConfig) -> int:
    return config.macd_slow + ewm_settle_bars(_ema_alpha(config.macd_slow), config.ewm_residual)


def _macd_signal_lookback(config: FeatureConfig) -> int:
    # Conservative: the line must settle, then the signal's own seed must decay.
    return (
        config.macd_slow
        + config.macd_signal
        - 1
        + ewm_settle_bars(_ema_alpha(config.macd_slow), config.ewm_residual)
        + ewm_settle_bars(_ema_alpha(config.macd_signal), config.ewm_residual)
    )


@register_feature("macd", "technical", _macd_line_lookback, windowed=False)
def macd(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """MACD line EMA_fast(close) - EMA_slow(close), divided by the close (scale-free)."""
    return _series(market, _macd_line(market, config) / _col(market, "close"), "macd")


@register_feature("macd_signal", "technical", _macd_signal_lookback, windowed=False)
def macd_signal(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """MACD signal line (EMA of the MACD line over ``macd_signal``), divided by the close."""
    values = _macd_signal(_macd_line(market, config), config) / _col(market, "close")
    return _series(market, values, "macd_signal")


@register_feature("macd_hist", "technical", _macd_signal_lookback, windowed=False)
def macd_hist(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """MACD histogram (line - signal), divided by the close."""
    line = _macd_line(market, config)
    values = (line - _macd_signal(line, config)) / _col(market, "close")
    return _series(market, values, "macd_hist")


@register_feature("bollinger_b", "technical", lambda c: c.bollinger_window)
def bollinger_b(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Bollinger %b: (close - lower) / (upper - lower); 0.5 when the window is flat.

    Bands are the ``bollinger_window`` simple mean +/- ``bollinger_k`` population standard
    deviations (Bollinger's definition). %b = 0.5 + (C - MA) / (2 k sd).
    """
    close = _col(market, "close")
    window, k = config.bollinger_window, config.bollinger_k
    values = 0.5 + _safe_divide(
        close - rolling_mean(close, window), 2.0 * k * rolling_std(close, window), 0.0
    )
    return _series(market, values, "bollinger_b")


# ---------------------------------------------------------------------------------------
# volume
# ---------------------------------------------------------------------------------------


@register_feature("volume_zscore", "volume", lambda c: c.volume_zscore_window)
def volume_zscore(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Z-score of log1p(volume) within its trailing ``volume_zscore_window`` bars.

    log1p tames volume spikes and keeps zero volume at 0; a flat window gives 0. Being a
    z-score within its own window, |z| <= sqrt(window - 1).
    """
    values = rolling_zscore(np.log1p(_col(market, "volume")), config.volume_zscore_window)
    return _series(market, values, "volume_zscore")


# ---------------------------------------------------------------------------------------
# calendar: positions from the exchange calendar, never from clock arithmetic
# ---------------------------------------------------------------------------------------


def _session_phase(market: pd.DataFrame, config: FeatureConfig) -> np.ndarray:
    layout = _session_layout(market, config)
    position = layout["bar_in_session"].to_numpy(dtype=np.float64)
    length = layout["bars_in_session"].to_numpy(dtype=np.float64)
    return 2.0 * np.pi * position / length


@register_feature("tod_sin", "calendar", 1)
def tod_sin(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """sin(2 pi bar_in_session / bars_in_session): the bar's place in its own session.

    Measured on the session's bar grid, so 09:30 is phase 0 on every day (DST-proof) and
    a 13:00 half day spans the full cycle in 14 bars.
    """
    return _series(market, np.sin(_session_phase(market, config)), "tod_sin")


@register_feature("tod_cos", "calendar", 1)
def tod_cos(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """cos(2 pi bar_in_session / bars_in_session)."""
    return _series(market, np.cos(_session_phase(market, config)), "tod_cos")


def _weekday_phase(market: pd.DataFrame) -> np.ndarray:
    if not isinstance(market.index, pd.DatetimeIndex):
        raise TypeError("market frame needs a DatetimeIndex of bar starts")
    return 2.0 * np.pi * market.index.day_of_week.to_numpy(dtype=np.float64) / 5.0


@register_feature("dow_sin", "calendar", 1)
def dow_sin(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """sin(2 pi weekday / 5), Monday = 0 (New York local date)."""
    return _series(market, np.sin(_weekday_phase(market)), "dow_sin")


@register_feature("dow_cos", "calendar", 1)
def dow_cos(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """cos(2 pi weekday / 5), Monday = 0 (New York local date)."""
    return _series(market, np.cos(_weekday_phase(market)), "dow_cos")


@register_feature("session_left", "calendar", 1)
def session_left(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Share of the session's bars still to come after this one, in [0, 1); 0 on the last.

    (bars_in_session - 1 - bar_in_session) / bars_in_session, from the calendar, so a half
    day runs out sooner and a missing bar does not shift the count.
    """
    layout = _session_layout(market, config)
    position = layout["bar_in_session"].to_numpy(dtype=np.float64)
    length = layout["bars_in_session"].to_numpy(dtype=np.float64)
    return _series(market, (length - 1.0 - position) / length, "session_left")


# ---------------------------------------------------------------------------------------
# vix: regime context; NaN wherever the as-of VIX was not known yet
# ---------------------------------------------------------------------------------------


def _log_vix(market: pd.DataFrame) -> np.ndarray:
    vix = _col(market, VIX_COLUMN)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(vix)


@register_feature("vix_level", "vix", 1, needs_vix=True)
def vix_level(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(VIX_t): the volatility regime."""
    return _series(market, _log_vix(market), "vix_level")


@register_feature("vix_change", "vix", 2, needs_vix=True)
def vix_change(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(VIX_t / VIX_{t-1}): the latest VIX move."""
    log_vix = _log_vix(market)
    return _series(market, log_vix - _shift(log_vix, 1), "vix_change")


@register_feature("vix_trend", "vix", lambda c: c.vix_trend_window, needs_vix=True)
def vix_trend(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """log(VIX_t / its trailing ``vix_trend_window`` mean): > 0 when fear is building."""
    vix = _col(market, VIX_COLUMN)
    values = _log_ratio(vix, rolling_mean(vix, config.vix_trend_window))
    return _series(market, values, "vix_trend")


@register_feature("vix_volatility", "vix", lambda c: c.vix_volatility_window + 1, needs_vix=True)
def vix_volatility(market: pd.DataFrame, config: FeatureConfig) -> pd.Series:
    """Trailing population std of VIX log changes over ``vix_volatility_window`` bars."""
    log_vix = _log_vix(market)
    values = rolling_std(log_vix - _shift(log_vix, 1), config.vix_volatility_window)
    return _series(market, values, "vix_volatility")


# ---------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------


def _validated_inputs(market: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """Float64 copy of the columns the enabled features read, plus the session layout.

    Bad inputs are refused here rather than turning into inf deep inside a feature.
    """
    if not isinstance(market, pd.DataFrame):
        raise TypeError(f"market must be a DataFrame, got {type(market).__name__}")
    index = market.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValueError("market frame needs a timezone-aware DatetimeIndex (bar starts)")
    if not (index.is_unique and index.is_monotonic_increasing):
        raise ValueError("market frame index must be strictly increasing and unique")
    needs_vix = config.use_vix
    columns = list(OHLCV_COLUMNS) + ([VIX_COLUMN] if needs_vix else [])
    missing = [c for c in columns if c not in market.columns]
    if missing:
        hint = " (or set use_vix=False)" if missing == [VIX_COLUMN] else ""
        raise ValueError(f"market frame lacks column(s) {missing}{hint}")
    data = {c: _col(market, c) for c in columns}
    for c in PRICE_COLUMNS:
        bad = ~(np.isfinite(data[c]) & (data[c] > 0))
        if bad.any():
            first = index[int(np.argmax(bad))]
            raise ValueError(
                f"{c} must be finite and > 0; {int(bad.sum())} bad value(s), first at {first}"
            )
    bad = ~(np.isfinite(data["volume"]) & (data["volume"] >= 0))
    if bad.any():
        first = index[int(np.argmax(bad))]
        raise ValueError(f"volume must be finite and >= 0; first bad value at {first}")
    if needs_vix:
        vix = data[VIX_COLUMN]
        bad = ~(np.isnan(vix) | (np.isfinite(vix) & (vix > 0)))
        if bad.any():
            first = index[int(np.argmax(bad))]
            raise ValueError(f"vix must be NaN or finite and > 0; first bad value at {first}")
    layout = session_bar_layout(index, interval=config.interval)
    position = layout["bar_in_session"].to_numpy()
    length = layout["bars_in_session"].to_numpy()
    off_grid = (position < 0) | (position >= length)
    if off_grid.any():
        first = index[int(np.argmax(off_grid))]
        raise ValueError(
            f"{int(off_grid.sum())} bar(s) lie outside the regular XNYS sessions "
            f"(first at {first}); features expect regular-hours bars only"
        )
    for c in LAYOUT_COLUMNS:
        data[c] = layout[c].to_numpy()
    return pd.DataFrame(data, index=index)


def compute_features(market: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """All enabled features of a market frame, strictly causal.

    Args:
        market: Bar frame plus ``vix`` (needed when ``config.use_vix``), regular-session
            bars on the ``config.interval`` grid; gaps, half days and holidays are fine.
        config: Which groups and parameters.

    Returns:
        Frame on ``market.index`` with one float64 column per feature in
        :func:`feature_names` order. Rows before a feature's ``lookback - 1`` are NaN, as
        are values whose inputs are NaN (VIX before it was known); nothing is inf.

    Raises:
        ValueError: on a malformed market frame (missing columns, non-positive prices,
            bars off the session grid).
    """
    inputs = _validated_inputs(market, config)
    columns: dict[str, np.ndarray] = {}
    for spec in feature_specs(config):
        values = spec.fn(inputs, config).to_numpy(dtype=np.float64, na_value=np.nan).copy()
        if len(values) != len(inputs):
            raise RuntimeError(f"feature {spec.name!r} returned {len(values)} rows")
        values[: spec.lookback - 1] = np.nan
        if np.isinf(values).any():
            raise RuntimeError(f"feature {spec.name!r} produced inf; this is a bug")
        columns[spec.name] = values
    return pd.DataFrame(columns, index=market.index.copy(), dtype="float64")


def first_valid_row(features: pd.DataFrame) -> int:
    """Position of the first row whose features are all finite (``len`` if none is).

    The caller drops the rows before it. Rows after it must all be finite too: a NaN
    there means bad input data (a VIX hole), which should fail loudly here rather than
    reach the environment.

    Raises:
        ValueError: if a non-finite value follows the first complete row.
    """
    values = features.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    complete = finite.all(axis=1)
    if not complete.any():
        return len(features)
    first = int(np.argmax(complete))
    tail = ~finite[first:]
    if tail.any():
        row, col = np.argwhere(tail)[0]
        raise ValueError(
            f"feature {features.columns[col]!r} is not finite at {features.index[first + row]} "
            f"after the warm-up ended at row {first}; {int(tail.sum())} such value(s)"
        )
    return first


FEATURE_REGISTRY: dict[str, FeatureSpec] = feature_registry(FeatureConfig())
"""Every registered feature with the default ``FeatureConfig`` parameters, in column order.

A snapshot taken at import; :func:`feature_registry` gives the registry for another config.
"""
