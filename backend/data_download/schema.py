"""The canonical bar frame shared by every module, and the problem records validation emits.

A *bar frame* is a ``pandas.DataFrame`` with

* a ``DatetimeIndex`` named ``timestamp``, timezone ``America/New_York``, each label the
  bar's **start** time (the yfinance convention), strictly increasing, unique;
* float64 columns ``open, high, low, close, volume``.

A bar labelled ``t`` closes at ``t + interval``; nothing about it is known before then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import numpy as np

NY_TZ = "America/New_York"
"""Every timestamp inside the project is converted to this zone."""

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
INDEX_NAME = "timestamp"

INTERVALS: dict[str, pd.Timedelta] = {
    "1m": pd.Timedelta(minutes=1),
    "5m": pd.Timedelta(minutes=5),
    "15m": pd.Timedelta(minutes=15),
    "30m": pd.Timedelta(minutes=30),
    "60m": pd.Timedelta(minutes=60),
}
DEFAULT_INTERVAL = "15m"

DEFAULT_SYMBOLS: tuple[str, ...] = ("SPY", "QQQ", "IWM", "TNA", "UPRO", "TQQQ")
VIX_SYMBOL = "VIX"


def to_ny(value: str | date | pd.Timestamp | np.datetime64) -> pd.Timestamp:
    """``value`` in New York time: a naive value is read as New York time, an aware one converted.

    Raises:
        ValueError: a naive time that does not exist or is ambiguous on a DST change.
    """
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        return ts.tz_localize(NY_TZ, ambiguous="raise", nonexistent="raise")
    return ts.tz_convert(NY_TZ)


def interval_to_timedelta(interval: str) -> pd.Timedelta:
    """Return the bar length for an interval string such as ``"15m"``."""
    try:
        return INTERVALS[interval]
    except KeyError:
        raise ValueError(
            f"unknown interval {interval!r}; expected one of {sorted(INTERVALS)}"
        ) from None


def bar_index(frame: pd.DataFrame | pd.Series, what: str = "bar frame") -> pd.DatetimeIndex:
    """The index of ``frame`` as a tz-aware ``DatetimeIndex``, the one a bar frame must have.

    Raises:
        ValueError: naming ``what`` if the index is not a timezone-aware DatetimeIndex.
    """
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValueError(f"{what} needs a timezone-aware DatetimeIndex (Docs/CONTRACTS.md)")
    return index


class Severity(str, Enum):
    """How bad a data problem is: errors stop a load, warnings are reported and tolerated."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class DataIssue:
    """One problem found in one place of one file.

    ``line`` is the 1-based line number in the file as a text editor shows it (the header
    is line 1), so users can jump straight to it; ``None`` for file-level problems.
    """

    severity: Severity
    code: str
    file: str
    line: int | None
    message: str
    column: str | None = None
    value: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        col = f" [{self.column}={self.value!s}]" if self.column is not None else ""
        return f"{self.severity.value.upper()} {where}: {self.code}{col}: {self.message}"


class DataValidationError(ValueError):
    """Raised when a load finds errors; carries every issue so callers can print them all."""

    def __init__(self, issues: list[DataIssue], max_shown: int = 20) -> None:
        self.issues = issues
        errors = [i for i in issues if i.severity is Severity.ERROR]
        shown = "\n".join(f"  {i}" for i in errors[:max_shown])
        more = f"\n  ... and {len(errors) - max_shown} more" if len(errors) > max_shown else ""
        super().__init__(f"{len(errors)} data error(s):\n{shown}{more}")


def empty_bar_frame() -> pd.DataFrame:
    """A bar frame with no rows, for empty ranges."""
    index = pd.DatetimeIndex([], tz=NY_TZ, name=INDEX_NAME)
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in OHLCV_COLUMNS}, index=index)
