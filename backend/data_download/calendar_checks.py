"""Checks against the exchange calendar: bars outside the session, missing bars and days.

Holidays, half days and DST come from ``market_calendar``. Bars outside the chosen session
are dropped with one warning per file; gaps inside a session are one warning per session;
trading days without any bar between the first and last day present are one warning.

Codes raised here: ``outside_session``, ``missing_bars``, ``missing_sessions``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backend.data_download.issue_reports import summary_issue
from backend.data_download.market_calendar import session_bar_layout, session_schedule
from backend.data_download.schema import NY_TZ, DataIssue, Severity, interval_to_timedelta

SESSION_TEXT = {
    False: "the regular session (09:30-16:00 New York, 13:00 on half days, none on holidays)",
    True: "extended hours (04:00-20:00 New York on trading days)",
}


def _session_layout(index: pd.DatetimeIndex, interval: str, extended_hours: bool) -> pd.DataFrame:
    """``session_bar_layout`` for any bars, computed on the bars of trading days only.

    Bars on weekends and holidays get ``bars_in_session == 0`` without reaching
    ``session_bar_layout`` (which cannot handle a set of bars with no trading day at all),
    and restricting it to trading days also spares it work.
    """
    days = index.tz_convert(NY_TZ).tz_localize(None).normalize()
    layout = pd.DataFrame(
        {
            "session": days,
            "bar_in_session": np.full(len(index), -1, dtype=np.int64),
            "bars_in_session": np.zeros(len(index), dtype=np.int64),
        }
    )
    if len(index) == 0:
        return layout
    on_day = np.asarray(days.isin(session_schedule(days.min(), days.max()).index))
    if on_day.any():
        part = session_bar_layout(index[on_day], interval, extended_hours=extended_hours)
        for column in ("bar_in_session", "bars_in_session"):
            values = layout[column].to_numpy().copy()
            values[on_day] = part[column].to_numpy()
            layout[column] = values
    return layout


def check_session(
    rows: pd.DataFrame, interval: str = "15m", *, extended_hours: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, list[DataIssue]]:
    """Drop bars outside the session, with one warning per file.

    Holidays, half days and DST come from the exchange calendar (``market_calendar``).
    When a file has bars starting at the close and none at the open, the warning suggests
    that its stamps are bar ends.

    Args:
        rows: Unique, sorted rows with ``timestamp``, ``file``, ``line``.
        interval: Bar length.
        extended_hours: Keep pre- and post-market bars (04:00-20:00).

    Returns:
        The rows inside the session, their session layout (``session_bar_layout``), and
        the issues.
    """
    index = pd.DatetimeIndex(rows["timestamp"])
    layout = _session_layout(index, interval, extended_hours)
    bar_in = layout["bar_in_session"].to_numpy()
    bars_in = layout["bars_in_session"].to_numpy()
    inside = (bars_in > 0) & (bar_in >= 0) & (bar_in < bars_in)
    issues: list[DataIssue] = []
    if not inside.all():
        codes, files = pd.factorize(rows["file"].astype(object), sort=False)
        # Per file: any bar labelled at the close, any at the open (bar-end stamps?).
        at_close = np.bincount(codes[bar_in == bars_in], minlength=len(files)) > 0
        at_open = np.bincount(codes[inside & (bar_in == 0)], minlength=len(files)) > 0
        suspicious = at_close & ~at_open & (not extended_hours)
        hint = (
            "; the file has bars starting at the close but none at the open: are its "
            "stamps bar END times? (convert with --stamp end)"
        )
        out_codes = codes[~inside]
        issues = summary_issue(
            Severity.WARNING,
            "outside_session",
            np.asarray(files, dtype=object)[out_codes],
            rows["line"].to_numpy()[~inside],
            rows["timestamp"].loc[~inside].tolist(),
            lambda k: (
                f"outside {SESSION_TEXT[extended_hours]}, dropped"
                + (hint if suspicious[out_codes[k]] else "")
            ),
            column="timestamp",
        )
    keep = rows.loc[inside].reset_index(drop=True)
    return keep, layout.loc[inside].reset_index(drop=True), issues


def check_missing_bars(
    rows: pd.DataFrame, layout: pd.DataFrame, interval: str = "15m"
) -> tuple[list[DataIssue], int, int]:
    """Warn about bars absent inside each session present (one issue per session).

    Args:
        rows: In-session, unique, sorted rows with ``timestamp``, ``file``, ``line``.
        layout: Their ``session_bar_layout`` rows (same order).
        interval: Bar length.

    Returns:
        The issues, the number of missing bars, and the number of sessions present.
    """
    if len(rows) == 0:
        return [], 0, 0
    sessions = layout["session"].to_numpy()
    bar_in = layout["bar_in_session"].to_numpy()
    bars_in = layout["bars_in_session"].to_numpy()
    starts = np.r_[0, np.flatnonzero(sessions[1:] != sessions[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(rows)])
    expected = bars_in[starts]
    missing = expected - counts
    step = interval_to_timedelta(interval)
    issues: list[DataIssue] = []
    ts = rows["timestamp"]
    for k in np.flatnonzero(missing > 0):
        lo, hi = starts[k], starts[k] + counts[k]
        present = np.zeros(expected[k], dtype=bool)
        present[bar_in[lo:hi]] = True
        holes = np.flatnonzero(~present)
        first_bar = ts.iloc[lo] - int(bar_in[lo]) * step
        times = [(first_bar + int(h) * step).strftime("%H:%M") for h in holes]
        after = np.searchsorted(bar_in[lo:hi], holes[0])  # first present bar after the hole
        row = rows.iloc[lo + min(after, counts[k] - 1)]
        shown = ", ".join(times[:10]) + (", ..." if len(times) > 10 else "")
        day = pd.Timestamp(sessions[lo]).strftime("%Y-%m-%d")
        issues.append(
            DataIssue(
                Severity.WARNING,
                "missing_bars",
                str(row["file"]),
                int(row["line"]),
                f"session {day}: {missing[k]} of {expected[k]} bars missing ({shown})",
                column="timestamp",
                value=f"{day} {times[0]}",
            )
        )
    return issues, int(missing.sum()), len(starts)


def check_missing_sessions(
    rows: pd.DataFrame, layout: pd.DataFrame, where: str
) -> tuple[list[DataIssue], int]:
    """Warn once about trading days without any bar between the first and last day present.

    Args:
        rows: In-session rows.
        layout: Their ``session_bar_layout`` rows.
        where: What to name in the issue (the symbol's folder).

    Returns:
        The issues and the number of missing sessions.
    """
    if len(rows) == 0:
        return [], 0
    days = pd.DatetimeIndex(layout["session"].unique())
    sched = session_schedule(days.min(), days.max())
    absent = sched.index.difference(days)
    if len(absent) == 0:
        return [], 0
    shown = ", ".join(d.strftime("%Y-%m-%d") for d in absent[:10])
    more = ", ..." if len(absent) > 10 else ""
    issue = DataIssue(
        Severity.WARNING,
        "missing_sessions",
        where,
        None,
        f"{len(absent)} trading day(s) without any bar between "
        f"{days.min():%Y-%m-%d} and {days.max():%Y-%m-%d}: {shown}{more}",
        value=absent[0].strftime("%Y-%m-%d"),
    )
    return [issue], len(absent)
