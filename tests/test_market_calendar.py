import pandas as pd
import pytest

from backend.data_download.market_calendar import (
    expected_bar_starts,
    is_session,
    session_bar_layout,
    session_schedule,
)


def test_full_day_half_day_and_holiday():
    sched = session_schedule("2024-11-27", "2024-12-02")
    # Thanksgiving (11-28) is closed, the day after closes at 13:00
    assert [d.date().isoformat() for d in sched.index] == ["2024-11-27", "2024-11-29", "2024-12-02"]
    bars = expected_bar_starts(sched)
    per_day = pd.Series(1, index=bars).groupby(bars.date).sum()
    assert per_day.tolist() == [26, 14, 26]
    assert bars[26 + 13].strftime("%H:%M") == "12:45"
    assert not is_session("2024-11-28") and is_session("2024-11-29")


@pytest.mark.parametrize("days", [("2024-03-08", "2024-03-11"), ("2024-11-01", "2024-11-04")])
def test_dst_switch_keeps_0930_new_york(days):
    bars = expected_bar_starts(session_schedule(*days))
    firsts = bars[[0, 26]]
    assert [t.strftime("%H:%M") for t in firsts] == ["09:30", "09:30"]
    # the UTC hour moves by one across the switch
    assert firsts[0].tz_convert("UTC").hour != firsts[1].tz_convert("UTC").hour


def test_extended_hours_grid():
    bars = expected_bar_starts(session_schedule("2024-07-01", "2024-07-01"), extended_hours=True)
    assert len(bars) == 64
    assert bars[0].strftime("%H:%M") == "04:00" and bars[-1].strftime("%H:%M") == "19:45"


def test_layout_from_calendar_not_from_data():
    sched = session_schedule("2024-11-27", "2024-11-29")
    bars = expected_bar_starts(sched)
    holey = bars.delete([3, 30])  # a missing bar on each day
    layout = session_bar_layout(holey)
    assert layout["bars_in_session"].tolist() == [26] * 25 + [14] * 13
    # positions stay on the calendar grid, so the hole is visible
    assert layout["bar_in_session"].iloc[3] == 4
    assert layout["session_index"].tolist() == [0] * 25 + [1] * 13


def test_layout_marks_non_session_bars():
    idx = pd.DatetimeIndex(["2024-03-09 10:00", "2024-03-11 09:30"], tz="America/New_York")
    layout = session_bar_layout(idx)
    assert layout["bars_in_session"].tolist() == [0, 26]
    assert layout["bar_in_session"].tolist() == [-1, 0]


def test_layout_with_only_non_session_bars():
    idx = pd.DatetimeIndex(["2024-03-09 10:00", "2024-03-10 11:00"], tz="America/New_York")
    layout = session_bar_layout(idx)
    assert layout["bars_in_session"].tolist() == [0, 0]
    assert layout["bar_in_session"].tolist() == [-1, -1]


def test_empty_inputs():
    assert len(session_schedule("2024-01-02", "2024-01-01")) == 0
    assert len(session_bar_layout(pd.DatetimeIndex([], tz="America/New_York"))) == 0
