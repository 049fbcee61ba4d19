"""Calendar checks: bars outside the session, missing bars and sessions, half days, DST."""

from __future__ import annotations

import pandas as pd
from bar_csv_support import csv, one, only, row, session_rows, validate

from backend.data_download.schema import Severity


def test_bars_outside_the_session_are_dropped_with_one_warning_per_file():
    text = csv(row("09:15"), *session_rows(), row("16:00"), row("16:15"))
    result = validate(text)
    issue = one(result.issues, "outside_session")
    assert issue.severity is Severity.WARNING
    assert (issue.line, issue.value) == (2, "2024-03-26 09:15:00-04:00")
    assert "3 row(s)" in issue.message and "lines 2, 29, 30" in issue.message
    assert len(result.bars) == 26
    extended = validate(text, extended_hours=True)
    assert only(extended.issues, "outside_session") == []
    assert len(extended.bars) == 29


def test_weekend_and_holiday_bars_are_outside_the_session():
    text = csv(row("10:00", day="2024-03-30"), row("10:00", day="2024-03-29"))  # Sat, Good Friday
    result = validate(text)
    assert "2 row(s)" in one(result.issues, "outside_session").message
    assert len(result.bars) == 0


def test_bar_end_stamps_get_a_hint_in_the_outside_session_warning():
    times = pd.date_range("2024-03-26 09:45", periods=26, freq="15min").strftime("%H:%M")
    issue = one(validate(csv(*[row(t) for t in times])).issues, "outside_session")
    assert "bar END" in issue.message and "--stamp end" in issue.message


def test_missing_bars_are_counted_per_session():
    rows = session_rows("2024-03-26") + session_rows("2024-03-27")
    del rows[26 + 25]  # 2024-03-27 15:45
    del rows[3:5]  # 2024-03-26 10:15, 10:30
    result = validate(csv(*rows))
    issues = only(result.issues, "missing_bars")
    assert [i.severity for i in issues] == [Severity.WARNING] * 2
    first, second = issues
    assert "session 2024-03-26: 2 of 26 bars missing (10:15, 10:30)" in first.message
    assert first.line == 5  # the 10:45 bar, first after the hole
    assert "session 2024-03-27: 1 of 26 bars missing (15:45)" in second.message
    assert result.n_missing_bars == 3
    assert result.n_sessions == 2


def test_half_day_expects_fourteen_bars():
    rows = session_rows("2024-11-29", "-05:00", n=14)
    result = validate(csv(*rows, row("13:00", day="2024-11-29", offset="-05:00")))
    assert len(result.bars) == 14
    assert only(result.issues, "missing_bars") == []
    assert "2024-11-29 13:00" in one(result.issues, "outside_session").value
    partial = validate(csv(*rows[:-1]))
    assert "1 of 14 bars missing (12:45)" in one(partial.issues, "missing_bars").message


def test_sessions_without_any_bar_are_one_warning():
    rows = session_rows("2024-03-25") + session_rows("2024-03-28")
    result = validate(csv(*rows))
    issue = one(result.issues, "missing_sessions")
    assert (issue.file, issue.line) == ("store", None)
    assert "2 trading day(s)" in issue.message and "2024-03-26, 2024-03-27" in issue.message
    assert result.n_missing_sessions == 2


def test_dst_weeks_keep_the_session_at_0930_new_york():
    rows = []
    for day, offset in [
        ("2024-03-08", "-05:00"),
        ("2024-03-11", "-04:00"),
        ("2024-11-01", "-04:00"),
        ("2024-11-04", "-05:00"),
    ]:
        rows += session_rows(day, offset)
    result = validate(csv(*rows))
    assert result.errors == [] and result.issues == [only(result.issues, "missing_sessions")[0]]
    bars = result.bars
    per_day = bars.groupby(bars.index.date).size()
    assert per_day.tolist() == [26, 26, 26, 26]
    firsts = bars.groupby(bars.index.date).head(1).index
    assert list(firsts.strftime("%H:%M")) == ["09:30"] * 4
    assert list(firsts.tz_convert("UTC").hour) == [14, 13, 13, 14]
