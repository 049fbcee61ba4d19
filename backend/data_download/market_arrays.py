"""The numpy-only view of one symbol's bars that the trading environment consumes.

The environment's ``step()`` must not touch pandas (it is ~100x slower per row access and
drags timezone logic into the hot loop), so everything it needs is converted once, here, into
plain contiguous arrays with the dtypes fixed by ``Docs/CONTRACTS.md`` ("Env arrays"):

=================  ===========  =========================================================
field              dtype/shape  meaning
=================  ===========  =========================================================
timestamps         int64 (n,)   bar **start**, ns since epoch, UTC; strictly increasing
open, close        float64 (n,) the bar's first and last trade price; finite, > 0
features           float32 (n,F) normalized features of bar t, known at t's close; finite
feature_names      tuple[str]   column names, ``len == F``
session_index      int64 (n,)   trading session id, non-decreasing
bar_in_session     int64 (n,)   slot on the session's calendar grid (a missing bar = hole)
bars_in_session    int64 (n,)   scheduled bars of the session (26 full day, 14 half day)
symbol             str          ticker
=================  ===========  =========================================================

Validation happens once on construction so that the environment can trust the arrays
blindly; every error names the field and the first offending bar index, because "some value
is NaN" is useless on 20,000 rows. Arrays are stored read-only so that a frozen instance is
really immutable and slices can be cheap views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

_NS_PER_MINUTE = 60_000_000_000
_NS_PER_DAY = 86_400 * 1_000_000_000


def _readonly(value: npt.ArrayLike, dtype: type[np.generic], field: str) -> np.ndarray:
    """Coerce ``value`` to ``dtype`` and freeze it, copying only if the caller could mutate it.

    Datetime arrays are accepted for ``timestamps`` and converted to integer nanoseconds, since
    that is the one lossless conversion a caller is likely to need.
    """
    arr = np.asarray(value)
    if arr.dtype.kind == "M":
        arr = arr.astype("datetime64[ns]").view(np.int64)
    if dtype is np.int64 and arr.dtype.kind not in "iu":
        raise TypeError(f"{field}: expected an integer array, got dtype {arr.dtype}")
    if dtype is not np.int64 and arr.dtype.kind not in "fiu":
        raise TypeError(f"{field}: expected a numeric array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.flags.writeable:
        # A writeable array may be the caller's own buffer: copy before freezing so that
        # neither side can change the other (views of frozen arrays stay zero-copy).
        arr = arr.copy()
        arr.flags.writeable = False
    return arr


def _first(mask: np.ndarray) -> int:
    """Index of the first True in a 1-D boolean mask (caller guarantees one exists)."""
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True, eq=False)
class MarketArrays:
    """One symbol's bars as validated, read-only numpy arrays (see the module docstring).

    ``eq=False`` because element-wise array comparison has no single truth value; compare
    fields with ``np.array_equal`` where needed.

    Attributes:
        timestamps: Bar start times, int64 ns UTC, strictly increasing.
        open: Opening price of each bar, float64, finite and positive.
        close: Closing price of each bar, float64, finite and positive.
        features: Normalized features, float32 ``(n, F)``; row t uses data up to t's close.
        feature_names: Names of the ``F`` feature columns, unique.
        session_index: Session id per bar, int64, non-decreasing.
        bar_in_session: Calendar slot of the bar within its session, in
            ``[0, bars_in_session)``; increasing within a session (holes allowed).
        bars_in_session: Scheduled number of bars of the bar's session, >= 1, constant within
            a session.
        symbol: Ticker the arrays belong to.
    """

    timestamps: np.ndarray
    open: np.ndarray
    close: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    session_index: np.ndarray
    bar_in_session: np.ndarray
    bars_in_session: np.ndarray
    symbol: str

    def __post_init__(self) -> None:
        coerced = {
            "timestamps": _readonly(self.timestamps, np.int64, "timestamps"),
            "open": _readonly(self.open, np.float64, "open"),
            "close": _readonly(self.close, np.float64, "close"),
            "features": _readonly(self.features, np.float32, "features"),
            "session_index": _readonly(self.session_index, np.int64, "session_index"),
            "bar_in_session": _readonly(self.bar_in_session, np.int64, "bar_in_session"),
            "bars_in_session": _readonly(self.bars_in_session, np.int64, "bars_in_session"),
        }
        for name, arr in coerced.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValueError(f"symbol: expected a non-empty string, got {self.symbol!r}")
        n = self.timestamps.shape[0]
        if self.timestamps.ndim != 1 or n == 0:
            raise ValueError(
                f"timestamps: expected a non-empty 1-D array, got shape {self.timestamps.shape}"
            )
        for name in ("open", "close", "session_index", "bar_in_session", "bars_in_session"):
            arr: np.ndarray = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},) like timestamps, got {arr.shape}")
        if self.features.ndim != 2 or self.features.shape[0] != n:
            raise ValueError(f"features: expected shape ({n}, F), got {self.features.shape}")
        n_feat = self.features.shape[1]
        if n_feat == 0:
            raise ValueError("features: need at least one feature column, got F=0")
        if len(self.feature_names) != n_feat:
            raise ValueError(
                f"feature_names: {len(self.feature_names)} names for {n_feat} feature columns"
            )
        if not all(isinstance(f, str) for f in self.feature_names):
            raise TypeError("feature_names: every name must be a string")
        if len(set(self.feature_names)) != n_feat:
            dupes = sorted({f for f in self.feature_names if self.feature_names.count(f) > 1})
            raise ValueError(f"feature_names: duplicated names {dupes}")

        if n > 1:
            bad = np.diff(self.timestamps) <= 0
            if bad.any():
                i = _first(bad) + 1
                raise ValueError(
                    f"timestamps: not strictly increasing at bar {i} "
                    f"({self.timestamps[i]} <= {self.timestamps[i - 1]} at bar {i - 1})"
                )
        for name in ("open", "close"):
            arr = getattr(self, name)
            bad = ~np.isfinite(arr)
            if bad.any():
                i = _first(bad)
                raise ValueError(f"{name}: non-finite value {arr[i]} at bar {i}")
            bad = arr <= 0.0
            if bad.any():
                i = _first(bad)
                raise ValueError(f"{name}: non-positive price {arr[i]} at bar {i}")
        bad_rows = ~np.isfinite(self.features).all(axis=1)
        if bad_rows.any():
            i = _first(bad_rows)
            j = _first(~np.isfinite(self.features[i]))
            raise ValueError(
                f"features: non-finite value {self.features[i, j]} at bar {i}, column {j} "
                f"({self.feature_names[j]!r}); drop the feature warm-up rows first"
            )

        if self.session_index[0] < 0:
            raise ValueError(f"session_index: negative value {self.session_index[0]} at bar 0")
        if n > 1:
            step = np.diff(self.session_index)
            if (step < 0).any():
                i = _first(step < 0) + 1
                raise ValueError(
                    f"session_index: decreases at bar {i} "
                    f"({self.session_index[i]} after {self.session_index[i - 1]})"
                )
        bad = self.bars_in_session < 1
        if bad.any():
            i = _first(bad)
            raise ValueError(
                f"bars_in_session: {self.bars_in_session[i]} at bar {i}; every bar must belong "
                "to a scheduled session (the layout gives 0 for non-session days)"
            )
        bad = (self.bar_in_session < 0) | (self.bar_in_session >= self.bars_in_session)
        if bad.any():
            i = _first(bad)
            raise ValueError(
                f"bar_in_session: {self.bar_in_session[i]} at bar {i} is outside "
                f"[0, {self.bars_in_session[i]}) (bars_in_session)"
            )
        if n > 1:
            same = np.diff(self.session_index) == 0
            bad = same & (np.diff(self.bars_in_session) != 0)
            if bad.any():
                i = _first(bad) + 1
                raise ValueError(
                    f"bars_in_session: changes within session {self.session_index[i]} at bar {i}"
                )
            bad = same & (np.diff(self.bar_in_session) <= 0)
            if bad.any():
                i = _first(bad) + 1
                raise ValueError(
                    f"bar_in_session: not increasing within session {self.session_index[i]} "
                    f"at bar {i}"
                )

    # ------------------------------------------------------------------ derived views
    @property
    def n_bars(self) -> int:
        """Number of bars ``n``."""
        return int(self.timestamps.shape[0])

    @property
    def n_features(self) -> int:
        """Number of feature columns ``F``."""
        return int(self.features.shape[1])

    def session_starts(self) -> np.ndarray:
        """Index of the first bar of each session present, int64, increasing.

        Derived from changes in ``session_index`` rather than from ``bar_in_session == 0`` so
        that a session whose opening bar is missing still has a start.
        """
        change = np.empty(self.n_bars, dtype=bool)
        change[0] = True
        np.not_equal(self.session_index[1:], self.session_index[:-1], out=change[1:])
        return np.flatnonzero(change).astype(np.int64)

    @cached_property
    def is_last_bar_of_session(self) -> np.ndarray:
        """Bool ``(n,)``: the next bar belongs to another session, or there is no next bar.

        This is the *data's* last bar, not the calendar's: if the scheduled 15:45 bar is
        missing, 15:30 is the last bar anyone could trade at, so that is where a
        market-on-close flatten must happen. Read-only.
        """
        last = np.empty(self.n_bars, dtype=bool)
        last[-1] = True
        np.not_equal(self.session_index[1:], self.session_index[:-1], out=last[:-1])
        last.flags.writeable = False
        return last

    def slice(self, start: int, stop: int) -> MarketArrays:
        """Bars ``[start, stop)`` as a new instance sharing memory with this one.

        Session ids and calendar slots are kept as they are (not renumbered), so a bar keeps
        its identity across slices.

        Raises:
            ValueError: If the range is empty or outside ``[0, n_bars]``.
        """
        if not (0 <= start < stop <= self.n_bars):
            raise ValueError(
                f"slice: need 0 <= start < stop <= {self.n_bars}, got start={start}, stop={stop}"
            )
        return MarketArrays(
            timestamps=self.timestamps[start:stop],
            open=self.open[start:stop],
            close=self.close[start:stop],
            features=self.features[start:stop],
            feature_names=self.feature_names,
            session_index=self.session_index[start:stop],
            bar_in_session=self.bar_in_session[start:stop],
            bars_in_session=self.bars_in_session[start:stop],
            symbol=self.symbol,
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        feature_columns: Sequence[str],
        layout: pd.DataFrame,
        symbol: str,
    ) -> MarketArrays:
        """Build from a bar frame holding normalized feature columns and its session layout.

        Args:
            frame: Bar frame (``Docs/CONTRACTS.md``) with ``open``, ``close`` and the already
                normalized ``feature_columns``; its tz-aware ``DatetimeIndex`` labels bar
                starts. Feature warm-up rows (NaN) must be dropped beforehand.
            feature_columns: Columns to use as features, in observation order.
            layout: ``market_calendar.session_bar_layout(frame.index)`` output, same index.
            symbol: Ticker.

        Raises:
            ValueError: If the index is not tz-aware, the layout does not match the frame,
                columns are missing, or any field fails validation.
        """
        import pandas as pd

        if not isinstance(frame.index, pd.DatetimeIndex) or frame.index.tz is None:
            raise ValueError(
                "frame: expected a tz-aware DatetimeIndex (bar starts); naive timestamps "
                "are ambiguous across DST"
            )
        if not frame.index.equals(layout.index):
            raise ValueError("layout: index differs from the frame's; build it from frame.index")
        columns = list(feature_columns)
        missing = [c for c in ["open", "close", *columns] if c not in frame.columns]
        if missing:
            raise ValueError(f"frame: missing columns {missing}")
        missing = [
            c
            for c in ("session_index", "bar_in_session", "bars_in_session")
            if c not in layout.columns
        ]
        if missing:
            raise ValueError(f"layout: missing columns {missing}")
        timestamps = frame.index.tz_convert("UTC").as_unit("ns").asi8
        return cls(
            timestamps=timestamps,
            open=frame["open"].to_numpy(dtype=np.float64),
            close=frame["close"].to_numpy(dtype=np.float64),
            features=frame[columns].to_numpy(dtype=np.float32),
            feature_names=tuple(columns),
            session_index=layout["session_index"].to_numpy(dtype=np.int64),
            bar_in_session=layout["bar_in_session"].to_numpy(dtype=np.int64),
            bars_in_session=layout["bars_in_session"].to_numpy(dtype=np.int64),
            symbol=symbol,
        )


def synthetic_market_arrays(
    n_sessions: int = 20,
    n_features: int = 8,
    *,
    bars_per_session: int = 26,
    half_days: Sequence[int] = (),
    missing_bars: Sequence[tuple[int, int]] = (),
    volatility: float = 0.002,
    seed: int = 0,
    symbol: str = "SYN",
) -> MarketArrays:
    """A geometric random walk on a session grid, for tests, benchmarks and examples.

    Sessions are one calendar day apart starting 2024-01-02 14:30 UTC (09:30 New York in
    winter) with 15-minute bars. Each session opens with an overnight gap, so code that
    forgets the gap shows a PnL mismatch. Features are i.i.d. standard normal float32 and
    carry no signal; the first feature is the bar's own close-to-close return in
    volatility units, which a leak test can rely on being "about bar t".

    Args:
        n_sessions: Number of sessions.
        n_features: Feature columns ``F`` (>= 1).
        bars_per_session: Scheduled bars of a full session.
        half_days: Session ordinals scheduled with ``bars_per_session // 2 + 1`` bars
            (14 of 26, like a 13:00 NYSE close).
        missing_bars: ``(session, slot)`` pairs left out of the data (a hole in the grid).
        volatility: Per-bar log-return standard deviation.
        seed: Seed of the generator that makes the prices and features.
        symbol: Ticker to record.
    """
    if n_sessions < 1 or n_features < 1 or bars_per_session < 2:
        raise ValueError("need n_sessions >= 1, n_features >= 1 and bars_per_session >= 2")
    rng = np.random.default_rng(seed)
    half = set(half_days)
    missing = set(missing_bars)
    day0 = np.datetime64("2024-01-02T14:30", "ns").astype(np.int64)
    ts, sess, slot, sched = [], [], [], []
    for s in range(n_sessions):
        scheduled = bars_per_session // 2 + 1 if s in half else bars_per_session
        for b in range(scheduled):
            if (s, b) in missing:
                continue
            ts.append(day0 + s * _NS_PER_DAY + b * 15 * _NS_PER_MINUTE)
            sess.append(s)
            slot.append(b)
            sched.append(scheduled)
    n = len(ts)
    session_index = np.asarray(sess, dtype=np.int64)
    first_of_session = np.r_[True, session_index[1:] != session_index[:-1]]
    # Overnight gaps are larger than intraday moves; both are log-normal steps.
    gap_scale = np.where(first_of_session, 3.0 * volatility, 0.5 * volatility)
    open_log = np.cumsum(rng.normal(0.0, 1.0, n) * gap_scale)
    intraday = rng.normal(0.0, volatility, n)
    log_open = np.log(100.0) + open_log + np.r_[0.0, np.cumsum(intraday)[:-1]]
    log_close = log_open + intraday
    features = rng.standard_normal((n, n_features)).astype(np.float32)
    ret = np.r_[0.0, np.diff(log_close)] / volatility
    features[:, 0] = np.clip(ret, -8.0, 8.0).astype(np.float32)
    return MarketArrays(
        timestamps=np.asarray(ts, dtype=np.int64),
        open=np.exp(log_open),
        close=np.exp(log_close),
        features=features,
        feature_names=tuple(f"f{i}" for i in range(n_features)),
        session_index=session_index,
        bar_in_session=np.asarray(slot, dtype=np.int64),
        bars_in_session=np.asarray(sched, dtype=np.int64),
        symbol=symbol,
    )
