"""Parsing bar CSVs: header spellings, timestamps, cells; each failure names file, line, value."""

from __future__ import annotations

import pandas as pd
import pytest
from bar_csv_support import HEADER, csv, one, only, raw_frame, row, validate

from backend.data_download.csv_columns import resolve_columns
from backend.data_download.csv_parsing import parse_bars
from backend.data_download.schema import NY_TZ, Severity


@pytest.mark.parametrize(
    ("header", "stamp"),
    [
        ("timestamp,open,high,low,close,volume", ("timestamp",)),
        ("Datetime,Open,High,Low,Close,Volume,Symbol", ("Datetime",)),
        ("time,open,high,low,close,volume", ("time",)),
        ("date,open,high,low,close,volume", ("date",)),
        ("Date,Time,Open,High,Low,Close,Volume", ("Date", "Time")),
        ("datetime,Open,High,Low,Close,Adj Close,Volume", ("datetime",)),
        ("DATE_TIME,O,H,L,C,Vol", None),
        (" Timestamp , OPEN ,high,low,Last,volume", (" Timestamp ",)),
    ],
)
def test_resolve_columns_accepts_common_spellings(header: str, stamp: tuple[str, ...] | None):
    columns, issues = resolve_columns(header.split(","), "f.csv")
    if stamp is None:  # 'DATE_TIME' normalises to 'datetime'
        stamp = ("DATE_TIME",)
    assert issues == []
    assert columns is not None
    assert columns.timestamp == stamp
    assert set(columns.values) == {"open", "high", "low", "close", "volume"}
    assert "Adj Close" not in columns.values.values()


def test_misnamed_column_is_an_error_suggesting_the_expected_name():
    columns, issues = resolve_columns(
        ["timestamp", "open", "high", "low", "closing", "volume"], "f.csv"
    )
    assert columns is None
    issue = one(issues, "missing_column")
    assert (issue.severity, issue.file, issue.line) == (Severity.ERROR, "f.csv", 1)
    assert issue.column == "close"
    assert issue.value == "closing"
    assert "rename it to 'close'" in issue.message


def test_adj_close_alone_is_not_taken_for_close():
    _, issues = resolve_columns(["Date", "Open", "High", "Low", "Adj Close", "Volume"], "f.csv")
    issue = one(issues, "missing_column")
    assert issue.column == "close"
    assert "Adj Close" in issue.message


def test_missing_timestamp_and_volume_columns_are_both_reported():
    _, issues = resolve_columns(["when", "open", "high", "low", "close"], "f.csv")
    assert {i.column for i in only(issues, "missing_column")} == {"timestamp", "volume"}


def test_two_columns_with_the_same_meaning_are_an_error():
    _, issues = resolve_columns(
        ["timestamp", "Close", "close", "open", "high", "low", "volume"], "f.csv"
    )
    issue = one(issues, "ambiguous_column")
    assert issue.value == "Close, close"


def test_file_with_missing_column_yields_no_rows():
    parsed = parse_bars(
        raw_frame(csv(row(), header="timestamp,open,high,low,closing,volume")), "f.csv"
    )
    assert len(parsed.frame) == 0
    assert one(parsed.issues, "missing_column").line == 1


def test_offsets_and_naive_times_all_map_to_new_york():
    text = csv(
        "2024-03-26 09:30:00-04:00,100,101,99,100,1",
        "2024-03-26 13:45:00+00:00,100,101,99,100,1",
        "2024-03-26T14:00:00Z,100,101,99,100,1",
        "2024-03-26 10:15:00,100,101,99,100,1",
        "2024-03-26 10:30,100,101,99,100,1",
    )
    parsed = parse_bars(raw_frame(text), "f.csv")
    assert parsed.issues == []
    ts = parsed.frame["timestamp"]
    assert str(ts.dt.tz) == NY_TZ
    assert ts.dt.strftime("%H:%M").tolist() == ["09:30", "09:45", "10:00", "10:15", "10:30"]
    assert parsed.frame["line"].tolist() == [2, 3, 4, 5, 6]


def test_naive_times_use_source_tz_and_end_stamps_are_shifted_back():
    text = csv("2024-03-26 13:45:00,100,101,99,100,1")
    start = parse_bars(raw_frame(text), "f.csv", source_tz="UTC")
    assert start.frame["timestamp"].iloc[0] == pd.Timestamp("2024-03-26 09:45", tz=NY_TZ)
    end = parse_bars(raw_frame(text), "f.csv", source_tz="UTC", stamp="end", interval="15m")
    assert end.frame["timestamp"].iloc[0] == pd.Timestamp("2024-03-26 09:30", tz=NY_TZ)


@pytest.mark.parametrize(
    ("stamp", "code"),
    [
        ("26/03/2024 09:30", "bad_timestamp"),
        ("yesterday", "bad_timestamp"),
        ("2024-02-30 09:30:00", "bad_timestamp"),
        ("2024-03-26", "date_only"),
        ("2024-03-10 02:30:00", "nonexistent_time"),
        ("2024-11-03 01:30:00", "ambiguous_time"),
        ("", "missing_value"),
    ],
)
def test_unplaceable_timestamps_are_errors_with_file_line_and_value(stamp: str, code: str):
    text = csv(row("09:30"), f"{stamp},100,101,99,100,1", row("10:00"))
    parsed = parse_bars(raw_frame(text), "f.csv")
    issue = one(parsed.issues, code)
    assert (issue.severity, issue.file, issue.line, issue.value) == (
        Severity.ERROR,
        "f.csv",
        3,
        stamp,
    )
    assert issue.column == "timestamp"
    assert parsed.error.tolist() == [False, True, False]
    if code.endswith("_time"):
        assert "DST" in issue.message and "UTC offset" in issue.message


def test_dst_times_with_an_offset_are_fine():
    text = csv("2024-11-03 01:30:00-04:00,1,1,1,1,1", "2024-11-03 01:30:00-05:00,1,1,1,1,1")
    parsed = parse_bars(raw_frame(text), "f.csv")
    assert parsed.issues == []
    ts = parsed.frame["timestamp"]
    assert ts.iloc[1] - ts.iloc[0] == pd.Timedelta(hours=1)


def test_blank_lines_do_not_shift_line_numbers():
    text = HEADER + "\n" + row("09:30") + "\n\n" + row("09:45", c="x") + "\n\n"
    parsed = parse_bars(raw_frame(text), "f.csv")
    assert parsed.frame["line"].tolist() == [2, 4]
    assert one(parsed.issues, "bad_number").line == 4


def test_symbol_column_naming_another_symbol_is_an_error():
    header = "Datetime,Open,High,Low,Close,Volume,Symbol"
    text = csv(row("09:30") + ",SPY", row("09:45") + ",QQQ", header=header)
    issue = one(validate(text, symbol="SPY").issues, "symbol_mismatch")
    assert (issue.line, issue.value) == (3, "QQQ")
