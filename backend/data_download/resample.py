"""Aggregate validated finer bars (1m, 5m, ...) into coarser ones (15m), anchored at the open.

Rule (also printed by the converter):

* a coarse bar is labelled by its **start**; groups are anchored at the **session open**
  (09:30 New York, or 04:00 with extended hours), so 15m bars start at 09:30, 09:45, ...
  and a 60m grid would start at 09:30, 10:30, ... (never at 09:00);
* a group holds the fine bars whose start falls in ``[start, start + coarse)``, cut at the
  session close (the last 60m bar of a regular day covers 15:30-16:00 and needs 6 five-minute
  bars, a half day ends at 13:00);
* open = first open, high = max, low = min, close = last close, volume = sum;
* **incomplete groups** (fewer fine bars than the calendar expects, e.g. a missing 09:35
  five-minute bar) are dropped by default (``incomplete="drop"``: an open or close taken
  from the wrong bar would be silently wrong; the loader then reports the coarse bar as
  missing), or built from the bars present with ``incomplete="keep"``.

The input must already be validated (``validation.validate_bars`` at the fine interval):
sorted, unique, on the session grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from backend.data_download.market_calendar import session_bar_layout
from backend.data_download.schema import OHLCV_COLUMNS, empty_bar_frame, interval_to_timedelta

Incomplete = Literal["drop", "keep"]

RULE = (
    "coarse bars labelled by their start, anchored at the session open, cut at the close; "
    "OHLC first/max/min/last, volume summed; incomplete groups {incomplete}"
)
"""One-line statement of the rule (``{incomplete}`` filled in)."""


@dataclass(frozen=True)
class ResampleReport:
    """What :func:`resample_bars` did."""

    n_input: int
    """Fine bars in."""
    n_groups: int
    """Coarse groups formed."""
    n_incomplete: int
    """Groups with fewer fine bars than the calendar expects."""
    n_output: int
    """Coarse bars out (``n_groups - n_incomplete`` under ``drop``)."""
    incomplete: Incomplete
    """The rule applied to incomplete groups."""

    def describe(self) -> str:
        """One line for logs and the converter's output."""
        what = "dropped" if self.incomplete == "drop" else "kept from the bars present"
        return (
            f"resampled {self.n_input} bars into {self.n_groups} groups; {self.n_incomplete} "
            f"incomplete group(s) {what}; {self.n_output} bars out"
        )


def resample_bars(
    bars: pd.DataFrame,
    from_interval: str,
    to_interval: str,
    *,
    extended_hours: bool = False,
    incomplete: Incomplete = "drop",
) -> tuple[pd.DataFrame, ResampleReport]:
    """Aggregate a validated bar frame to a coarser interval (see the module docstring).

    Args:
        bars: Validated bars at ``from_interval`` (New York index at bar start).
        from_interval: Their interval, e.g. ``"5m"``.
        to_interval: The target, a whole multiple of ``from_interval`` (``"15m"``).
        extended_hours: Anchor at 04:00 and cut at 20:00 instead of the regular session.
        incomplete: ``"drop"`` or ``"keep"`` incomplete groups.

    Returns:
        The coarse bar frame and a report.

    Raises:
        ValueError: If ``to_interval`` is not a whole multiple (> 1) of ``from_interval``,
            or ``incomplete`` is unknown.
    """
    fine, coarse = interval_to_timedelta(from_interval), interval_to_timedelta(to_interval)
    if coarse <= fine or coarse % fine != pd.Timedelta(0):
        raise ValueError(
            f"cannot resample {from_interval} to {to_interval}: the target must be a whole "
            f"multiple (> 1) of the input interval"
        )
    if incomplete not in ("drop", "keep"):
        raise ValueError(f"incomplete: expected 'drop' or 'keep', got {incomplete!r}")
    ratio = int(coarse // fine)
    if len(bars) == 0:
        return empty_bar_frame(), ResampleReport(0, 0, 0, 0, incomplete)
    layout = session_bar_layout(pd.DatetimeIndex(bars.index), from_interval, extended_hours)
    slot = layout["bar_in_session"].to_numpy(dtype=np.int64)
    per_session = layout["bars_in_session"].to_numpy(dtype=np.int64)
    group = slot // ratio
    offset = pd.to_timedelta((slot - group * ratio) * fine.value, unit="ns")
    starts = pd.DatetimeIndex(bars.index) - offset
    expected = np.minimum((group + 1) * ratio, per_session) - group * ratio
    frame = bars[list(OHLCV_COLUMNS)].copy()
    frame["_start"] = starts
    frame["_expected"] = expected
    grouped = frame.groupby("_start", sort=True)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        _n=("open", "size"),
        _expected=("_expected", "first"),
    )
    complete = out["_n"].to_numpy() >= out["_expected"].to_numpy()
    n_incomplete = int((~complete).sum())
    if incomplete == "drop":
        out = out.loc[complete]
    result = out[list(OHLCV_COLUMNS)].astype("float64")
    result.index = pd.DatetimeIndex(result.index).as_unit("ns")
    result.index.name = bars.index.name
    report = ResampleReport(len(bars), len(complete), n_incomplete, len(result), incomplete)
    return result, report
