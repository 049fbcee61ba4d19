"""NYSE sessions, half days and DST from ``exchange_calendars``, mapped onto the bar grid.

Hand-written holiday rules go stale; the XNYS calendar is maintained upstream. Everything
here answers "which bars should exist", in New York time.
"""

from __future__ import annotations

from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from backend.data_download.schema import NY_TZ, interval_to_timedelta

EXCHANGE = "XNYS"
EXTENDED_OPEN = pd.Timedelta(hours=4)  # 04:00 New York, pre-market start
EXTENDED_CLOSE = pd.Timedelta(hours=20)  # 20:00 New York, after-hours end


@lru_cache(maxsize=8)
def _calendar(first_year: int, last_year: int) -> xcals.ExchangeCalendar:
    return xcals.get_calendar(EXCHANGE, start=f"{first_year}-01-01", end=f"{last_year}-12-31")


def _calendar_for(start: pd.Timestamp, end: pd.Timestamp) -> xcals.ExchangeCalendar:
    # Whole years (at least 1990 onwards, two years past today) keep the cache small.
    first = min(start.year, 2000)
    last = max(end.year, pd.Timestamp.now().year + 1)
    return _calendar(first, last)


def _as_date(value: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(NY_TZ).tz_localize(None)
    return ts.normalize()


def session_schedule(start: pd.Timestamp | str, end: pd.Timestamp | str) -> pd.DataFrame:
    """Sessions between two dates (inclusive).

    Returns a frame indexed by the session date (naive midnight), with ``open`` and
    ``close`` as New York timestamps; half days close at 13:00.
    """
    first, last = _as_date(start), _as_date(end)
    if last < first:
        return pd.DataFrame(columns=["open", "close"], index=pd.DatetimeIndex([], name="session"))
    cal = _calendar_for(first, last)
    sched = cal.schedule.loc[first:last, ["open", "close"]]
    out = pd.DataFrame(
        {"open": sched["open"].dt.tz_convert(NY_TZ), "close": sched["close"].dt.tz_convert(NY_TZ)},
        index=pd.DatetimeIndex(sched.index, name="session"),
    )
    return out


def is_session(day: pd.Timestamp | str) -> bool:
    """Whether the exchange trades on this date."""
    d = _as_date(day)
    return bool(len(session_schedule(d, d)))


def expected_bar_starts(
    schedule: pd.DataFrame, interval: str = "15m", extended_hours: bool = False
) -> pd.DatetimeIndex:
    """Bar start times the schedule implies, in New York time.

    Regular hours: from the open to the close minus one bar. Extended hours: 04:00 to
    20:00 local on session days (half days keep the 20:00 end; Yahoo does too).
    """
    step = interval_to_timedelta(interval)
    pieces: list[pd.DatetimeIndex] = []
    days = pd.DatetimeIndex(schedule.index)  # naive session dates
    for day, opening, closing in zip(days, schedule["open"], schedule["close"], strict=True):
        if extended_hours:
            local_day = day.tz_localize(NY_TZ)
            first, end = local_day + EXTENDED_OPEN, local_day + EXTENDED_CLOSE
        else:
            first, end = opening, closing
        pieces.append(pd.date_range(first, end - step, freq=step, tz=NY_TZ))
    if not pieces:
        return pd.DatetimeIndex([], tz=NY_TZ, name="timestamp")
    out = pieces[0].append(pieces[1:]) if len(pieces) > 1 else pieces[0]
    return out.rename("timestamp")


def session_bar_layout(
    index: pd.DatetimeIndex, interval: str = "15m", extended_hours: bool = False
) -> pd.DataFrame:
    """Where each bar sits in its session, from the calendar (not from the data).

    Columns: ``session`` (date), ``session_index`` (0..S-1 over the sessions present),
    ``bar_in_session`` (position on the session's grid, so a missing bar leaves a hole),
    ``bars_in_session`` (scheduled count: 26 on a full regular day, 14 on a half day).
    Bars on non-session days get ``bars_in_session == 0``.
    """
    if len(index) == 0:
        return pd.DataFrame(
            {
                "session": pd.Series(dtype="datetime64[ns]"),
                "session_index": pd.Series(dtype="int64"),
                "bar_in_session": pd.Series(dtype="int64"),
                "bars_in_session": pd.Series(dtype="int64"),
            },
            index=index,
        )
    local = index.tz_convert(NY_TZ)
    days = local.tz_localize(None).normalize()
    sched = session_schedule(days.min(), days.max())
    step_ns = interval_to_timedelta(interval).value
    # Work in int64 nanoseconds (UTC): datetime arithmetic through object arrays was the
    # bottleneck of this function on long histories.
    starts_ns = local.as_unit("ns").asi8
    pos = pd.DatetimeIndex(sched.index).as_unit("ns").get_indexer(days.as_unit("ns"))
    on_session = pos >= 0
    if extended_hours:
        midnight = days.tz_localize(NY_TZ).as_unit("ns").asi8
        first_ns = midnight + EXTENDED_OPEN.value
        end_ns = midnight + EXTENDED_CLOSE.value
    else:
        opens = pd.DatetimeIndex(sched["open"]).as_unit("ns").asi8
        closes = pd.DatetimeIndex(sched["close"]).as_unit("ns").asi8
        if len(opens) == 0:  # every bar falls on a non-session day
            opens = closes = np.zeros(1, dtype="int64")
        safe = np.where(on_session, pos, 0)
        first_ns, end_ns = opens[safe], closes[safe]
    bar_in = np.where(on_session, np.floor_divide(starts_ns - first_ns, step_ns), -1)
    bars_in = np.where(on_session, (end_ns - first_ns) // step_ns, 0)
    bar_in = bar_in.astype("int64")
    bars_in = bars_in.astype("int64")
    codes = pd.factorize(days, sort=True)[0].astype("int64")
    return pd.DataFrame(
        {
            "session": days,
            "session_index": codes,
            "bar_in_session": bar_in,
            "bars_in_session": bars_in,
        },
        index=index,
    )
