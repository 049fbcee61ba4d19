"""Row checks: prices, volume, order, bar grid, duplicates; each issue names file, line, value."""

from __future__ import annotations

import pandas as pd
import pytest
from bar_csv_support import csv, one, only, row, session_rows, validate

from backend.data_download.issue_reports import MAX_ROW_ISSUES
from backend.data_download.schema import Severity


@pytest.mark.parametrize(
    ("cells", "code", "column", "value"),
    [
        ({"c": ""}, "missing_value", "close", ""),
        ({"o": "NaN"}, "missing_value", "open", "NaN"),
        ({"v": "null"}, "missing_value", "volume", "null"),
        ({"h": "1o1"}, "bad_number", "high", "1o1"),
        ({"lo": "inf"}, "bad_number", "low", "inf"),
        ({"o": 0, "lo": 0}, "non_positive_price", "open", "0"),
        ({"c": -5, "lo": -6}, "non_positive_price", "low", "-6"),
        ({"h": 98.5}, "high_below_low", "high", "98.5"),
        ({"o": 101.5}, "open_outside_range", "open", "101.5"),
        ({"c": 98.9}, "close_outside_range", "close", "98.9"),
        ({"v": -1}, "negative_volume", "volume", "-1"),
    ],
)
def test_bad_values_are_errors_naming_file_line_column_value(
    cells: dict[str, object], code: str, column: str, value: str
):
    text = csv(row("09:30"), row("09:45", **cells), row("10:00"))  # type: ignore[arg-type]
    result = validate(text, names=["SPY.csv"])
    issue = [i for i in only(result.issues, code) if i.column == column][0]
    assert (issue.severity, issue.file, issue.line, issue.value) == (
        Severity.ERROR,
        "SPY.csv",
        3,
        value,
    )
    assert f"SPY.csv:3: {code} [{column}={value}]" in str(issue)
    # The bad row is gone; its neighbours are kept.
    assert result.bars.index.strftime("%H:%M").tolist() == ["09:30", "10:00"]


def test_open_close_rounding_within_tolerance_is_accepted():
    text = csv(row("09:30", o=101.00000001, c=98.99999999, h=101, lo=99))
    result = validate(text)
    assert result.errors == []


def test_zero_volume_is_one_warning_per_file_and_skipped_for_index_symbols():
    text = csv(row("09:30", v=0), row("09:45"), row("10:00", v=0))
    result = validate(text)
    issue = one(result.issues, "zero_volume")
    assert issue.severity is Severity.WARNING
    assert (issue.line, issue.column, issue.value) == (2, "volume", "0")
    assert "2 row(s)" in issue.message and "lines 2, 4" in issue.message
    assert len(result.bars) == 3  # warnings never drop rows
    assert only(validate(text, allow_zero_volume=True).issues, "zero_volume") == []


def test_row_issues_are_capped_with_a_summary_of_the_rest():
    n = MAX_ROW_ISSUES + 10
    times = pd.date_range("2024-03-26 09:30", periods=n, freq="1min").strftime("%H:%M")
    text = csv(*[row(t, v=-1) for t in times])
    issues = only(validate(text).issues, "negative_volume")
    assert len(issues) == MAX_ROW_ISSUES + 1
    assert "10 more row(s)" in issues[-1].message
    assert issues[-1].line == MAX_ROW_ISSUES + 2


def test_descending_file_is_one_warning_and_gets_sorted():
    text = csv(*reversed(session_rows()))
    result = validate(text)
    issue = one(result.issues, "unsorted")
    assert issue.severity is Severity.WARNING
    assert "descending" in issue.message
    assert result.bars.index.is_monotonic_increasing
    assert len(result.bars) == 26
    assert result.errors == []


def test_shuffled_rows_are_a_warning_naming_the_first_out_of_order_line():
    rows = session_rows()
    rows[5], rows[6] = rows[6], rows[5]
    issue = one(validate(csv(*rows)).issues, "unsorted")
    assert issue.line == 8  # header + 6 rows before it
    assert issue.value == "2024-03-26 10:45:00-04:00"


@pytest.mark.parametrize("stamp", ["09:37:00", "09:30:30", "10:00:00.500"])
def test_off_grid_bars_are_errors(stamp: str):
    text = csv(row("09:15"), f"2024-03-26 {stamp}-04:00,100,101,99,100,1")
    issue = one(validate(text).issues, "off_grid")
    assert (issue.severity, issue.line) == (Severity.ERROR, 3)
    assert issue.value.startswith(f"2024-03-26 {stamp[:8]}")


def test_identical_duplicates_within_a_file_are_a_warning_and_kept_once():
    result = validate(csv(row("09:30"), row("09:45"), row("09:45")))
    issue = one(result.issues, "duplicate_identical")
    assert (issue.severity, issue.file, issue.line) == (Severity.WARNING, "f0.csv", 4)
    assert "first at f0.csv:3" in issue.message
    assert len(result.bars) == 2


def test_identical_duplicates_across_files_name_both_files():
    a = csv(row("09:30"), row("09:45"))
    b = csv(row("09:45"), row("10:00"))
    result = validate(a, b, names=["a.csv", "b.csv"])
    issue = one(result.issues, "duplicate_identical")
    assert (issue.file, issue.line) == ("b.csv", 2)
    assert "a.csv:3" in issue.message
    assert result.bars.index.strftime("%H:%M").tolist() == ["09:30", "09:45", "10:00"]
    assert result.errors == []


def test_conflicting_duplicates_are_errors_and_every_copy_is_dropped():
    a = csv(row("09:30"), row("09:45", c=100.5))
    b = csv(row("09:45", c=100.75), row("10:00"))
    result = validate(a, b, names=["a.csv", "b.csv"])
    issue = one(result.issues, "duplicate_conflict")
    assert (issue.severity, issue.file, issue.line) == (Severity.ERROR, "b.csv", 2)
    assert "a.csv:3" in issue.message
    assert "close 100.75 here, 100.5 there" in issue.message
    assert result.bars.index.strftime("%H:%M").tolist() == ["09:30", "10:00"]


def test_duplicate_check_sees_the_same_instant_written_with_different_offsets():
    a = csv(row("09:45"))
    b = csv("2024-03-26 13:45:00+00:00,100,101,99,100.5,1000")
    result = validate(a, b)
    assert one(result.issues, "duplicate_identical").file == "f1.csv"
    assert len(result.bars) == 1
