"""Pure validation functions: every bad input gives an issue naming file, line and value."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from backend.data_download.schema import NY_TZ, DataIssue, Severity
from backend.data_download.validation import (
    MAX_ROW_ISSUES,
    ValidationResult,
    parse_bars,
    resolve_columns,
    validate_bars,
)

HEADER = "timestamp,open,high,low,close,volume"


def row(
    time: str = "09:30",
    o: object = 100,
    h: object = 101,
    lo: object = 99,
    c: object = 100.5,
    v: object = 1000,
    day: str = "2024-03-26",
    offset: str = "-04:00",
) -> str:
    return f"{day} {time}:00{offset},{o},{h},{lo},{c},{v}"


def session_rows(day: str = "2024-03-26", offset: str = "-04:00", n: int = 26) -> list[str]:
    times = pd.date_range(f"{day} 09:30", periods=n, freq="15min").strftime("%H:%M")
    return [row(t, day=day, offset=offset) for t in times]


def raw_frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)


def csv(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def validate(
    *texts: str, names: list[str] | None = None, symbol: str | None = None, **kwargs: object
) -> ValidationResult:
    names = names or [f"f{k}.csv" for k in range(len(texts))]
    parsed = [parse_bars(raw_frame(t), n, symbol=symbol) for t, n in zip(texts, names, strict=True)]
    return validate_bars(parsed, "15m", where="store", **kwargs)  # type: ignore[arg-type]


def only(issues: list[DataIssue], code: str) -> list[DataIssue]:
    return [i for i in issues if i.code == code]


def one(issues: list[DataIssue], code: str) -> DataIssue:
    found = only(issues, code)
    assert len(found) == 1, f"expected one {code}, got {[str(i) for i in issues]}"
    return found[0]


# --------------------------------------------------------------------------- columns


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


# --------------------------------------------------------------------------- timestamps


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


# --------------------------------------------------------------------------- values


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


def test_symbol_column_naming_another_symbol_is_an_error():
    header = "Datetime,Open,High,Low,Close,Volume,Symbol"
    text = csv(row("09:30") + ",SPY", row("09:45") + ",QQQ", header=header)
    issue = one(validate(text, symbol="SPY").issues, "symbol_mismatch")
    assert (issue.line, issue.value) == (3, "QQQ")


def test_row_issues_are_capped_with_a_summary_of_the_rest():
    n = MAX_ROW_ISSUES + 10
    times = pd.date_range("2024-03-26 09:30", periods=n, freq="1min").strftime("%H:%M")
    text = csv(*[row(t, v=-1) for t in times])
    issues = only(validate(text).issues, "negative_volume")
    assert len(issues) == MAX_ROW_ISSUES + 1
    assert "10 more row(s)" in issues[-1].message
    assert issues[-1].line == MAX_ROW_ISSUES + 2


# --------------------------------------------------------------------------- order, grid


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


# --------------------------------------------------------------------------- duplicates


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


# --------------------------------------------------------------------------- sessions


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


def test_result_is_a_canonical_bar_frame():
    result = validate(csv(*session_rows()))
    bars = result.bars
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dt == np.float64 for dt in bars.dtypes)
    assert bars.index.name == "timestamp"
    assert str(bars.index.dtype) == f"datetime64[ns, {NY_TZ}]"
    assert bars.index.is_unique and bars.index.is_monotonic_increasing


def test_issues_are_sorted_by_file_then_line():
    a = csv(row("09:30", v=-1), row("09:45", c="x"))
    b = csv(row("09:30", h=1))
    issues = validate(a, b, names=["a.csv", "b.csv"]).issues
    keys = [(i.file, i.line) for i in issues if i.line is not None]
    assert keys == sorted(keys)
