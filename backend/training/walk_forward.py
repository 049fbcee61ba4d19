"""Rolling walk-forward windows over trading sessions, with purge gaps.

Each window is laid out in session order as::

    | fit ................ | gap | val | gap | test ....... |
    |<------------- train_sessions ------->|

* ``fit``: what the model trains on; the normalizer is fit here too.
* ``val``: the last ``val_fraction`` of the training range, used only for early stopping.
* ``test``: out of sample; the model never saw it and nothing was tuned on it.
* ``gap``: whole sessions dropped so that no bar informs both sides. It spans at least
  ``gap_bars`` bars (the longest feature lookback plus the reward horizon), counted on the
  actual sessions, so half days widen the gap rather than shrink it (Qlib's
  ``RollingGen.trunc_days`` does the same in days; de Prado's purging/embargo in AFML ch. 7).

The next window starts ``step_sessions`` later (default: one test length), so test ranges
tile the data without overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from backend.config.walk_forward_config import WalkForwardConfig

__all__ = [
    "InsufficientDataError",
    "SessionRange",
    "WalkForwardConfig",
    "WalkForwardWindow",
    "generate_windows",
    "spread_indices",
    "window_table",
]


@dataclass(frozen=True)
class SessionRange:
    """A half-open range ``[start, stop)`` of positions in the session list."""

    start: int
    stop: int

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, (int, np.integer)) and bool(self.start <= item < self.stop)


@dataclass(frozen=True)
class WalkForwardWindow:
    """One window, as positions into the session list it was cut from."""

    index: int
    fit: SessionRange
    val: SessionRange
    test: SessionRange

    @property
    def train(self) -> SessionRange:
        """The whole training range: fit, purge gap and validation."""
        return SessionRange(self.fit.start, self.val.stop)


class InsufficientDataError(ValueError):
    """The data are too short for even one walk-forward window."""


def _gap_sessions(bars_per_session: np.ndarray, boundary: int, gap_bars: int) -> int:
    """Fewest whole sessions just before ``boundary`` that together hold ``gap_bars`` bars.

    Returns more than ``boundary`` when the sessions before it hold too few bars.
    """
    total, count = 0, 0
    while total < gap_bars:
        if count >= boundary:
            return boundary + 1
        total += int(bars_per_session[boundary - 1 - count])
        count += 1
    return count


def generate_windows(
    bars_per_session: Sequence[int] | np.ndarray, config: WalkForwardConfig
) -> list[WalkForwardWindow]:
    """Cut walk-forward windows over sessions whose bar counts are ``bars_per_session``.

    Windows are placed from their test ranges backwards, so successive test ranges tile
    the data with no session skipped or repeated (step = test length) and the concatenated
    out-of-sample record is continuous. Gaps are measured in bars on the real sessions, so
    a 104-bar gap is 4 full sessions but 5 when a half day falls inside it.

    Raises:
        InsufficientDataError: if not even one full window fits, with the sessions needed.
    """
    bars = np.asarray(bars_per_session, dtype=np.int64)
    n = len(bars)
    if np.any(bars <= 0):
        raise ValueError("every session must hold at least one bar")
    if config.windows is not None:
        return _tiling_windows(bars, config)

    def layout(test_start: int) -> WalkForwardWindow | None:
        gap_test = _gap_sessions(bars, test_start, config.purge_bars)
        train_stop = test_start - gap_test
        val = SessionRange(train_stop - config.val_sessions, train_stop)
        train_start = 0 if config.anchored else train_stop - config.train_sessions
        if train_start < 0 or val.start <= train_start:
            return None
        gap_fit = _gap_sessions(bars, val.start, config.purge_bars)
        fit = SessionRange(train_start, val.start - gap_fit)
        if len(fit) < 1:
            if config.anchored:
                return None  # a later test start leaves room to fit
            raise InsufficientDataError(
                f"train_sessions={config.train_sessions} leaves no session to fit on after "
                f"the {config.val_sessions}-session validation holdout and a "
                f"{gap_fit}-session gap; raise train_sessions or lower gap_bars"
            )
        test = SessionRange(test_start, test_start + config.test_sessions)
        return WalkForwardWindow(index=0, fit=fit, val=val, test=test)

    # The first test range starts at the first session that leaves room for a training
    # range before it; every later one starts where the previous one stepped to.
    first: WalkForwardWindow | None = None
    test_start = 0
    while test_start + config.test_sessions <= n:
        first = layout(test_start)
        if first is not None:
            break
        test_start += 1
    windows: list[WalkForwardWindow] = []
    while first is not None and test_start + config.test_sessions <= n:
        window = layout(test_start)
        if window is not None:
            windows.append(replace(window, index=len(windows)))
        test_start += config.step
    if not windows:
        needed = config.train_sessions + config.test_sessions
        raise InsufficientDataError(
            f"data hold {n} sessions but one walk-forward window needs at least {needed} "
            f"(train {config.train_sessions} + test {config.test_sessions}) plus purge gaps of "
            f"{config.gap_bars} bars; load a longer date range or shorten the windows"
        )
    if config.max_windows is not None and len(windows) > config.max_windows:
        keep = spread_indices(len(windows), config.max_windows)
        windows = [replace(windows[k], index=i) for i, k in enumerate(keep)]
    return windows


def _tiling_windows(bars: np.ndarray, config: WalkForwardConfig) -> list[WalkForwardWindow]:
    """``config.windows`` windows whose test ranges tile the data after the first fit."""
    assert config.windows is not None
    probe = generate_windows(
        bars, config.model_copy(update={"windows": None, "test_sessions": 1, "max_windows": None})
    )
    first = probe[0].test.start
    available = len(bars) - first
    length = available // config.windows
    if length < 1:
        raise InsufficientDataError(
            f"{available} session(s) after the first training range cannot hold "
            f"{config.windows} test windows; lower windows or load more data"
        )
    tiled = generate_windows(
        bars,
        config.model_copy(update={"windows": None, "test_sessions": length, "max_windows": None}),
    )[: config.windows]
    last = tiled[-1]
    tiled[-1] = replace(last, test=SessionRange(last.test.start, len(bars)))
    return tiled


def spread_indices(n: int, k: int) -> list[int]:
    """``k`` of ``range(n)`` spread evenly, first and last included (all of them if k >= n).

    Why: a budget that must drop windows should still test the whole range (issue 9: the
    old "keep the most recent" tested 80 of 756 real sessions, all from one autumn).
    """
    if k >= n:
        return list(range(n))
    if k == 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def window_table(
    windows: Sequence[WalkForwardWindow],
    sessions: pd.DatetimeIndex | list[pd.Timestamp],
    bars_per_session: Sequence[int] | np.ndarray,
) -> pd.DataFrame:
    """One row per window: first/last date and bar count of fit, val and test."""
    days = pd.DatetimeIndex(sessions)
    bars = np.asarray(bars_per_session, dtype=np.int64)
    rows = []
    for w in windows:
        row: dict[str, object] = {"window": w.index}
        for name, part in (("fit", w.fit), ("val", w.val), ("test", w.test)):
            row[f"{name}_start"] = days[part.start].date()
            row[f"{name}_end"] = days[part.stop - 1].date()
            row[f"{name}_sessions"] = len(part)
            row[f"{name}_bars"] = int(bars[part.start : part.stop].sum())
        rows.append(row)
    return pd.DataFrame(rows).set_index("window")
