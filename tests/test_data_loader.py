"""The loader: store layout, errors vs warnings, windows, cache, VIX as-of join."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend.data_download import loader, parquet_cache
from backend.data_download.csv_store import symbol_dir
from backend.data_download.loader import (
    DataQualityWarning,
    check_symbol,
    join_vix_asof,
    load_bars,
    load_bars_with_issues,
    load_market,
    read_raw_csv,
)
from backend.data_download.schema import (
    NY_TZ,
    OHLCV_COLUMNS,
    DataValidationError,
    Severity,
    bar_index,
    empty_bar_frame,
)

HEADER = "timestamp,open,high,low,close,volume"
MakeBars = Callable[..., pd.DataFrame]
WriteStore = Callable[..., list[Path]]


def write_text(data_dir: Path, name: str, lines: list[str], symbol: str = "SPY") -> Path:
    path = symbol_dir(data_dir, symbol) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def bar_line(
    time: str,
    close: float = 100.5,
    day: str = "2024-03-26",
    offset: str = "-04:00",
    volume: float = 1000,
) -> str:
    return f"{day} {time}:00{offset},100,101,99,{close},{volume}"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def spy_store(tmp_data_dir: Path, make_bars: MakeBars, write_store: WriteStore) -> pd.DataFrame:
    bars = make_bars("2024-03-25", "2024-03-28")
    write_store(bars, tmp_data_dir, "SPY")
    return bars


# --------------------------------------------------------------------------- round trip


def test_round_trip_returns_the_written_bar_frame(tmp_data_dir: Path, spy_store: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        bars = load_bars("SPY", data_dir=tmp_data_dir)
    pd.testing.assert_frame_equal(bars, spy_store, check_freq=False)
    assert str(bars.index.dtype) == f"datetime64[ns, {NY_TZ}]"
    assert bars.index.name == "timestamp"
    assert list(bars.columns) == list(OHLCV_COLUMNS)


def test_symbol_is_case_insensitive_and_files_can_be_consolidated(
    tmp_data_dir: Path, make_bars: MakeBars
):
    bars = make_bars("2024-03-08", "2024-03-12")  # across the March DST switch
    path = symbol_dir(tmp_data_dir, "SPY") / "all.csv"
    path.parent.mkdir(parents=True)
    out = bars.copy()
    out.index = out.index.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S+00:00")
    out.to_csv(path, index_label="Datetime")
    pd.testing.assert_frame_equal(load_bars("spy", data_dir=tmp_data_dir), bars, check_freq=False)


def test_missing_symbol_names_the_expected_path(tmp_data_dir: Path, spy_store: pd.DataFrame):
    expected = symbol_dir(tmp_data_dir, "QQQ")
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(expected))}.*15m data.*SPY"):
        load_bars("QQQ", data_dir=tmp_data_dir)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interval": "7m"}, "unknown interval"),
        ({"session": "overnight"}, "session must be one of"),
        ({"on_error": "ignore"}, "on_error must be one of"),
    ],
)
def test_bad_arguments_raise_value_error(
    tmp_data_dir: Path, spy_store: pd.DataFrame, kwargs: dict[str, str], match: str
):
    with pytest.raises(ValueError, match=match):
        load_bars("SPY", data_dir=tmp_data_dir, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- errors


def test_error_raises_listing_file_line_and_value(tmp_data_dir: Path):
    path = write_text(
        tmp_data_dir,
        "2024-03-26.csv",
        [bar_line("09:30"), bar_line("09:45", close=-3), bar_line("10:00")],
    )
    with pytest.raises(DataValidationError, match=rf"{re.escape(str(path))}:3: .*close=-3") as info:
        load_bars("SPY", data_dir=tmp_data_dir)
    codes = {i.code for i in info.value.issues if i.severity is Severity.ERROR}
    assert codes == {"non_positive_price"}


BAD_ROWS = [
    # (line 3 of the file, code, the "[column=value]" the issue must show)
    ("2024-03-26 9h45,100,101,99,100.5,1000", "bad_timestamp", "timestamp=2024-03-26 9h45"),
    ("2024-03-26,100,101,99,100.5,1000", "date_only", "timestamp=2024-03-26"),
    (
        "2024-03-10 02:30:00,100,101,99,100.5,1000",
        "nonexistent_time",
        "timestamp=2024-03-10 02:30:00",
    ),
    (
        "2024-11-03 01:30:00,100,101,99,100.5,1000",
        "ambiguous_time",
        "timestamp=2024-11-03 01:30:00",
    ),
    ("2024-03-26 09:45:00-04:00,100,abc,99,100.5,1000", "bad_number", "high=abc"),
    ("2024-03-26 09:45:00-04:00,100,101,99,,1000", "missing_value", "close="),
    ("2024-03-26 09:45:00-04:00,NaN,101,99,100.5,1000", "missing_value", "open=NaN"),
    ("2024-03-26 09:45:00-04:00,100,101,0,100.5,1000", "non_positive_price", "low=0"),
    ("2024-03-26 09:45:00-04:00,100,98,99,98.5,1000", "high_below_low", "high=98"),
    ("2024-03-26 09:45:00-04:00,102,101,99,100.5,1000", "open_outside_range", "open=102"),
    ("2024-03-26 09:45:00-04:00,100,101,99,98.9,1000", "close_outside_range", "close=98.9"),
    ("2024-03-26 09:45:00-04:00,100,101,99,100.5,-10", "negative_volume", "volume=-10"),
    (
        "2024-03-26 09:40:00-04:00,100,101,99,100.5,1000",
        "off_grid",
        "timestamp=2024-03-26 09:40:00-04:00",
    ),
    (
        "2024-03-26 09:30:00-04:00,100,101,99,100.25,1000",
        "duplicate_conflict",
        "timestamp=2024-03-26 09:30:00-04:00",
    ),
]
BAD_WARNINGS = [
    ("2024-03-26 09:45:00-04:00,100,101,99,100.5,0", "zero_volume", "volume=0"),
    (
        "2024-03-26 09:15:00-04:00,100,101,99,100.5,1000",
        "outside_session",
        "timestamp=2024-03-26 09:15:00-04:00",
    ),
    (
        "2024-03-26 09:30:00-04:00,100,101,99,100.5,1000",
        "duplicate_identical",
        "timestamp=2024-03-26 09:30:00-04:00",
    ),
    (
        "2024-03-26 09:00:00-04:00,100,101,99,100.5,1000",
        "unsorted",
        "timestamp=2024-03-26 09:00:00-04:00",
    ),
]


@pytest.mark.parametrize(("line", "code", "shown"), BAD_ROWS)
def test_each_bad_row_is_an_error_naming_file_line_and_value(
    tmp_data_dir: Path, line: str, code: str, shown: str
):
    path = write_text(tmp_data_dir, "2024-03-26.csv", [bar_line("09:30"), line, bar_line("10:00")])
    where = re.escape(f"{path}:3: {code} [{shown}]")
    with pytest.raises(DataValidationError, match=where) as info:
        load_bars("SPY", data_dir=tmp_data_dir)
    assert code in {i.code for i in info.value.issues if i.severity is Severity.ERROR}
    with pytest.warns(DataQualityWarning, match=where):
        bars = load_bars("SPY", data_dir=tmp_data_dir, on_error="drop")
    assert pd.Timestamp("2024-03-26 10:00", tz=NY_TZ) in bars.index  # the rest is kept


@pytest.mark.parametrize(("line", "code", "shown"), BAD_WARNINGS)
def test_each_suspicious_row_is_a_warning_naming_file_line_and_value(
    tmp_data_dir: Path, line: str, code: str, shown: str
):
    path = write_text(tmp_data_dir, "2024-03-26.csv", [bar_line("09:30"), line, bar_line("10:00")])
    with pytest.warns(DataQualityWarning, match=re.escape(f"{path}:3: {code} [{shown}]")):
        bars = load_bars("SPY", data_dir=tmp_data_dir)
    assert {"09:30", "10:00"} <= set(bars.index.strftime("%H:%M"))


def test_misnamed_column_error_names_file_line_one_and_the_column(tmp_data_dir: Path):
    path = symbol_dir(tmp_data_dir, "SPY") / "a.csv"
    path.parent.mkdir(parents=True)
    path.write_text("Datetime,Open,High,Low,Closing,Volume\n" + bar_line("09:30") + "\n")
    with pytest.raises(
        DataValidationError, match=re.escape(f"{path}:1: missing_column [close=Closing]")
    ) as info:
        load_bars("SPY", data_dir=tmp_data_dir)
    assert "rename it to 'close'" in str(info.value)


def test_all_errors_are_listed(tmp_data_dir: Path):
    write_text(tmp_data_dir, "a.csv", [bar_line("09:30", close=float("nan")), bar_line("09:45")])
    write_text(tmp_data_dir, "b.csv", ["2024-03-26 25:00:00-04:00,1,1,1,1,1", bar_line("10:00")])
    with pytest.raises(DataValidationError, match=r"2 data error") as info:
        load_bars("SPY", data_dir=tmp_data_dir)
    message = str(info.value)
    assert "a.csv:2: missing_value [close=nan]" in message
    assert "b.csv:2: bad_timestamp [timestamp=2024-03-26 25:00:00-04:00]" in message


def test_drop_mode_drops_bad_rows_and_warns_with_the_issues(tmp_data_dir: Path):
    path = write_text(
        tmp_data_dir,
        "2024-03-26.csv",
        [bar_line("09:30"), bar_line("09:45", close=500), bar_line("10:00")],
    )
    with pytest.warns(
        DataQualityWarning, match=rf"{re.escape(str(path))}:3: close_outside_range"
    ) as record:
        bars = load_bars("SPY", data_dir=tmp_data_dir, on_error="drop")
    assert bars.index.strftime("%H:%M").tolist() == ["09:30", "10:00"]
    issues = record[0].message.issues  # type: ignore[union-attr]
    assert [i.code for i in issues if i.severity is Severity.ERROR] == ["close_outside_range"]
    assert any(i.code == "missing_bars" for i in issues)


def test_issues_are_returned_without_warning_by_load_bars_with_issues(tmp_data_dir: Path):
    write_text(tmp_data_dir, "x.csv", [bar_line("09:30", volume=0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        bars, issues = load_bars_with_issues("SPY", data_dir=tmp_data_dir)
    assert len(bars) == 1
    assert {i.code for i in issues} == {"zero_volume", "missing_bars"}


def test_naive_store_times_are_new_york_and_dst_ambiguity_names_file_and_line(
    tmp_data_dir: Path,
):
    write_text(tmp_data_dir, "a.csv", ["2024-03-26 09:30:00,100,101,99,100.5,1000"])
    with pytest.warns(DataQualityWarning, match="63 of 64 bars missing"):
        bars = load_bars("SPY", data_dir=tmp_data_dir, session="extended")
    assert bars.index[0] == pd.Timestamp("2024-03-26 13:30", tz="UTC")
    path = write_text(tmp_data_dir, "b.csv", ["2024-11-03 01:30:00,100,101,99,100.5,1000"])
    with pytest.raises(DataValidationError, match=rf"{re.escape(str(path))}:2: ambiguous_time"):
        load_bars("SPY", data_dir=tmp_data_dir)


def test_line_with_too_many_cells_is_reported_and_the_rest_read(tmp_data_dir: Path):
    path = write_text(
        tmp_data_dir, "a.csv", [bar_line("09:30"), bar_line("09:45") + ",7", bar_line("10:00")]
    )
    raw = read_raw_csv(path)
    assert raw.lines.tolist() == [2, 4]
    with pytest.raises(DataValidationError, match=rf"{re.escape(str(path))}:3: bad_field_count"):
        load_bars("SPY", data_dir=tmp_data_dir)
    with pytest.warns(DataQualityWarning):
        bars = load_bars("SPY", data_dir=tmp_data_dir, on_error="drop")
    assert bars.index.strftime("%H:%M").tolist() == ["09:30", "10:00"]


def test_empty_and_header_only_files(tmp_data_dir: Path):
    folder = symbol_dir(tmp_data_dir, "SPY")
    write_text(tmp_data_dir, "b.csv", [])
    with pytest.warns(DataQualityWarning, match="empty_data"):
        assert load_bars("SPY", data_dir=tmp_data_dir).empty
    (folder / "a.csv").write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"a.csv: empty_file"):
        load_bars("SPY", data_dir=tmp_data_dir)


# --------------------------------------------------------------------------- never rewritten


def test_csv_files_are_never_rewritten(
    tmp_data_dir: Path, make_bars: MakeBars, write_store: WriteStore
):
    write_store(make_bars("2024-03-26", "2024-03-27"), tmp_data_dir)
    folder = symbol_dir(tmp_data_dir, "SPY")
    (folder / "2024-03-27.csv").write_text(  # unsorted, duplicated, with an error
        "\n".join(
            [
                HEADER,
                bar_line("10:00", day="2024-03-27"),
                bar_line("09:30"),
                bar_line("09:45", day="2024-03-27", close=-1),
            ]
        )
        + "\n"
    )
    before = snapshot(folder)
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    for mode in ("drop", "drop", "raise"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataQualityWarning)
            try:
                load_bars("SPY", data_dir=tmp_data_dir, on_error=mode)  # type: ignore[arg-type]
            except DataValidationError:
                assert mode == "raise"
    check_symbol("SPY", data_dir=tmp_data_dir)
    assert snapshot(folder) == before
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes
    cached = list((tmp_data_dir / ".cache").rglob("*.parquet"))
    assert [p.relative_to(tmp_data_dir).parts[:4] for p in cached] == [
        (".cache", "intraday", "SPY", "15m")
    ]


# --------------------------------------------------------------------------- cache


def _forbid_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("CSV parsed although the cache is valid")

    monkeypatch.setattr(loader, "parse_csvs", fail)


def test_cache_is_used_when_nothing_changed(
    tmp_data_dir: Path, spy_store: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
):
    first = load_bars("SPY", data_dir=tmp_data_dir)
    _forbid_parsing(monkeypatch)
    pd.testing.assert_frame_equal(load_bars("SPY", data_dir=tmp_data_dir), first)
    report = check_symbol("SPY", data_dir=tmp_data_dir)
    assert report.n_bars == len(first)


def test_cache_keeps_issues(tmp_data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    write_text(tmp_data_dir, "a.csv", [bar_line("09:30", volume=0), bar_line("09:45", close=-1)])
    with pytest.raises(DataValidationError) as first:
        load_bars("SPY", data_dir=tmp_data_dir)
    _forbid_parsing(monkeypatch)
    with pytest.raises(DataValidationError) as second:
        load_bars("SPY", data_dir=tmp_data_dir)
    assert second.value.issues == first.value.issues


def test_cache_is_rebuilt_when_content_changes_with_same_size_and_mtime(
    tmp_data_dir: Path, spy_store: pd.DataFrame
):
    path = symbol_dir(tmp_data_dir, "SPY") / "2024-03-26.csv"
    load_bars("SPY", data_dir=tmp_data_dir)
    stat = path.stat()
    old = path.read_text()
    lines = old.splitlines()
    fields = lines[1].split(",")
    fields[5] = fields[5][:-1] + ("1" if fields[5][-1] != "1" else "2")  # same width volume
    path.write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    bars = load_bars("SPY", data_dir=tmp_data_dir)
    assert bars["volume"].iloc[26] == float(fields[5])
    assert bars["volume"].iloc[26] != spy_store["volume"].iloc[26]


def test_cache_is_rebuilt_when_files_are_added_removed_or_renamed(
    tmp_data_dir: Path, spy_store: pd.DataFrame, make_bars: MakeBars, write_store: WriteStore
):
    assert len(load_bars("SPY", data_dir=tmp_data_dir)) == 4 * 26
    write_store(make_bars("2024-03-29", "2024-04-01", seed=3), tmp_data_dir)  # adds 04-01
    assert len(load_bars("SPY", data_dir=tmp_data_dir)) == 5 * 26
    folder = symbol_dir(tmp_data_dir, "SPY")
    (folder / "2024-03-25.csv").unlink()
    assert load_bars("SPY", data_dir=tmp_data_dir).index[0].day == 26
    (folder / "2024-03-26.csv").rename(folder / "2024-03-26.txt")  # no longer a CSV
    assert load_bars("SPY", data_dir=tmp_data_dir).index[0].day == 27


def test_cache_variants_are_separate_for_sessions(
    tmp_data_dir: Path, make_bars: MakeBars, write_store: WriteStore
):
    write_store(make_bars("2024-03-26", extended_hours=True), tmp_data_dir)
    with pytest.warns(DataQualityWarning, match="outside_session"):
        assert len(load_bars("SPY", data_dir=tmp_data_dir)) == 26
    assert len(load_bars("SPY", data_dir=tmp_data_dir, session="extended")) == 64
    with pytest.warns(DataQualityWarning):
        assert len(load_bars("SPY", data_dir=tmp_data_dir)) == 26


def test_use_cache_false_writes_no_cache(tmp_data_dir: Path, spy_store: pd.DataFrame):
    load_bars("SPY", data_dir=tmp_data_dir, use_cache=False)
    assert not (tmp_data_dir / ".cache").exists()


def test_corrupt_or_unwritable_cache_is_not_fatal(tmp_data_dir: Path, spy_store: pd.DataFrame):
    path = parquet_cache.cache_path(tmp_data_dir, "SPY", "15m", "regular")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet")
    pd.testing.assert_frame_equal(
        load_bars("SPY", data_dir=tmp_data_dir), spy_store, check_freq=False
    )
    assert path.read_bytes()[:4] == b"PAR1"  # rebuilt
    path.unlink()
    path.mkdir()  # a directory where the entry should go: os.replace fails
    pd.testing.assert_frame_equal(
        load_bars("SPY", data_dir=tmp_data_dir), spy_store, check_freq=False
    )


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-03-26", "2024-03-26", (26, "2024-03-26 09:30", "2024-03-26 15:45")),
        ("2024-03-26", "2024-03-27", (52, "2024-03-26 09:30", "2024-03-27 15:45")),
        ("2024-03-26 10:00", "2024-03-26 11:00", (5, "2024-03-26 10:00", "2024-03-26 11:00")),
        (pd.Timestamp("2024-03-27 14:00", tz="UTC"), None, (None, "2024-03-27 10:00", None)),
        (None, pd.Timestamp("2024-03-25", tz=NY_TZ).date(), (26, "2024-03-25 09:30", None)),
    ],
)
def test_window_selection(
    tmp_data_dir: Path,
    spy_store: pd.DataFrame,
    start: object,
    end: object,
    expected: tuple[int | None, str, str | None],
):
    bars = load_bars("SPY", data_dir=tmp_data_dir, start=start, end=end)  # type: ignore[arg-type]
    n, first, last = expected
    if n is not None:
        assert len(bars) == n
    assert bars.index[0] == pd.Timestamp(first, tz=NY_TZ)
    if last is not None:
        assert bars.index[-1] == pd.Timestamp(last, tz=NY_TZ)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2024-03-30", "2024-03-31"),
        ("2024-03-28", "2024-03-26"),
        ("2025-01-01", None),
        (None, "2024-03-22 23:00"),
    ],
)
def test_empty_window_is_an_empty_bar_frame(
    tmp_data_dir: Path, spy_store: pd.DataFrame, start: str | None, end: str | None
):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        bars = load_bars("SPY", data_dir=tmp_data_dir, start=start, end=end)
    assert bars.empty
    expected = empty_bar_frame()
    assert list(bars.columns) == list(expected.columns)
    assert (bars.dtypes == expected.dtypes).all()
    assert str(bars.index.tz) == NY_TZ and bars.index.name == "timestamp"


# --------------------------------------------------------------------------- calendar


def test_dst_weeks_and_utc_files(tmp_data_dir: Path, make_bars: MakeBars):
    frames = [make_bars("2024-03-08", "2024-03-12"), make_bars("2024-11-01", "2024-11-05")]
    bars = pd.concat(frames)
    out = bars.copy()
    out.index = out.index.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S+00:00")
    path = symbol_dir(tmp_data_dir, "SPY") / "SPY_15m.csv"
    path.parent.mkdir(parents=True)
    out.to_csv(path, index_label="timestamp")
    with pytest.warns(DataQualityWarning, match="missing_sessions"):
        loaded = load_bars("SPY", data_dir=tmp_data_dir)
    pd.testing.assert_frame_equal(loaded, bars, check_freq=False)
    days = loaded.groupby(loaded.index.date)
    assert (days.size() == 26).all()
    assert set(days.head(1).index.strftime("%H:%M")) == {"09:30"}
    first_utc = days.head(1).index.tz_convert("UTC").strftime("%m-%d %H:%M").tolist()
    assert first_utc == [
        "03-08 14:30",
        "03-11 13:30",
        "03-12 13:30",
        "11-01 13:30",
        "11-04 14:30",
        "11-05 14:30",
    ]


def test_half_day_has_fourteen_bars(
    tmp_data_dir: Path, make_bars: MakeBars, write_store: WriteStore
):
    write_store(make_bars("2024-11-27", "2024-12-02"), tmp_data_dir)
    path = symbol_dir(tmp_data_dir, "SPY") / "2024-11-29.csv"
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 14
    path.write_text(
        "\n".join([*lines, bar_line("13:00", day="2024-11-29", offset="-05:00")]) + "\n"
    )
    with pytest.warns(
        DataQualityWarning, match=rf"{re.escape(str(path))}:16: outside_session"
    ) as record:
        bars = load_bars("SPY", data_dir=tmp_data_dir)
    assert {i.code for i in record[0].message.issues} == {"outside_session"}  # type: ignore[union-attr]
    per_day = bars.groupby(bars.index.date).size()
    assert per_day.tolist() == [26, 14, 26]  # Thanksgiving (11-28) closed
    assert bars.loc["2024-11-29"].index[-1].strftime("%H:%M") == "12:45"


def test_duplicates_across_two_files(tmp_data_dir: Path):
    a = write_text(tmp_data_dir, "2024-03-26.csv", [bar_line("09:30"), bar_line("09:45")])
    b = write_text(tmp_data_dir, "old_dump.csv", [bar_line("09:45"), bar_line("10:00")])
    with pytest.warns(
        DataQualityWarning,
        match=rf"{re.escape(str(b))}:2: duplicate_identical.*{re.escape(str(a))}:3",
    ):
        bars = load_bars("SPY", data_dir=tmp_data_dir, session="extended")
    assert len(bars) == 3
    write_text(tmp_data_dir, "old_dump.csv", [bar_line("09:45", close=100.25), bar_line("10:00")])
    with pytest.raises(
        DataValidationError,
        match=rf"{re.escape(str(b))}:2: duplicate_conflict.*{re.escape(str(a))}:3",
    ):
        load_bars("SPY", data_dir=tmp_data_dir)


# --------------------------------------------------------------------------- check_symbol


def test_check_symbol_reports_facts_and_never_raises(
    tmp_data_dir: Path, make_bars: MakeBars, write_store: WriteStore
):
    bars = make_bars("2024-03-25", "2024-03-28").drop(
        pd.DatetimeIndex([pd.Timestamp("2024-03-26 10:00", tz=NY_TZ)])
    )
    paths = write_store(bars.drop(bars.loc["2024-03-27"].index), tmp_data_dir)
    bad = paths[0]
    bad.write_text(bad.read_text().replace("\n2024-03-25 10:00", "\n2024-03-25 10:07", 1))
    report = check_symbol("SPY", data_dir=tmp_data_dir)
    assert report.files == paths
    assert report.first == pd.Timestamp("2024-03-25 09:30", tz=NY_TZ)
    assert report.last == pd.Timestamp("2024-03-28 15:45", tz=NY_TZ)
    assert (report.n_sessions, report.n_missing_sessions) == (3, 1)
    assert report.n_bars == 3 * 26 - 2
    assert report.n_missing_bars == 2
    assert [(i.code, i.line) for i in report.errors] == [("off_grid", 4)]
    assert {i.code for i in report.warnings} == {"missing_bars", "missing_sessions"}
    missing = check_symbol("QQQ", data_dir=tmp_data_dir)
    assert [i.code for i in missing.errors] == ["no_files"]
    assert missing.n_bars == 0 and missing.first is None


# --------------------------------------------------------------------------- VIX


def _frame(starts: list[str], closes: list[float]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(starts), name="timestamp").tz_localize(NY_TZ)
    data = {c: np.asarray(closes, dtype="float64") for c in OHLCV_COLUMNS}
    return pd.DataFrame(data, index=index.as_unit("ns"))


def test_join_vix_asof_uses_close_times_and_never_a_later_value():
    bars = _frame(
        [
            "2024-03-26 09:30",
            "2024-03-26 09:45",
            "2024-03-26 10:00",
            "2024-03-26 10:15",
            "2024-03-27 09:30",
        ],
        [1, 2, 3, 4, 5],
    )
    vix = _frame(
        ["2024-03-26 09:15", "2024-03-26 09:30", "2024-03-26 10:00", "2024-03-26 15:45"],
        [10, 11, 13, 19],
    )
    before = bars.copy()
    out = join_vix_asof(bars, vix)
    # 09:30 bar closes 09:45 = close of VIX 09:30 bar; 09:45 bar (closes 10:00) still 11:
    # the VIX 10:00 bar closes at 10:15, after it.
    assert out["vix"].tolist() == [11, 11, 13, 13, 19]
    assert out["vix"].dtype == np.float64
    pd.testing.assert_frame_equal(bars, before)
    bar_close = bars.index + pd.Timedelta("15min")
    vix_close = vix.index + pd.Timedelta("15min")
    for t, value in zip(bar_close, out["vix"], strict=True):
        used = vix_close[vix["close"].to_numpy() == value]
        assert (used <= t).all()


def test_join_vix_asof_tolerance_and_no_vix_yet():
    bars = _frame(["2024-03-26 09:30", "2024-03-26 11:00", "2024-03-27 09:30"], [1, 2, 3])
    vix = _frame(["2024-03-26 09:45", "2024-03-26 10:00"], [20, 21])
    out = join_vix_asof(bars, vix, tolerance="1h")
    assert np.isnan(out["vix"].iloc[0])  # no VIX bar had closed by 09:45
    assert out["vix"].iloc[1] == 21  # closed 10:15, exactly 1h before 11:15: still used
    assert np.isnan(out["vix"].iloc[2])  # next morning: older than 1h
    assert np.isnan(join_vix_asof(bars, vix, tolerance="59min")["vix"].iloc[1])
    assert join_vix_asof(bars, vix)["vix"].iloc[2] == 21


def test_join_vix_asof_rejects_bad_inputs():
    bars = _frame(["2024-03-26 09:30"], [1])
    with pytest.raises(ValueError, match="timezone-aware"):
        join_vix_asof(bars.tz_localize(None), bars)
    with pytest.raises(ValueError, match="already has a 'vix'"):
        join_vix_asof(bars.assign(vix=1.0), bars)
    with pytest.raises(ValueError, match="strictly increasing"):
        join_vix_asof(pd.concat([bars, bars]), bars)


def test_load_market_joins_vix_without_zero_volume_warnings(
    tmp_data_dir: Path, make_bars: MakeBars, write_store: WriteStore
):
    spy = make_bars("2024-03-25", "2024-03-27")
    vix = make_bars("2024-03-22", "2024-03-27", seed=9, start_price=15).assign(volume=0.0)
    gap = vix.loc["2024-03-26 10:00":"2024-03-26 11:00"].index
    vix = vix.drop(gap.append(pd.DatetimeIndex([pd.Timestamp("2024-03-25 09:30", tz=NY_TZ)])))
    write_store(spy, tmp_data_dir, "SPY")
    write_store(vix, tmp_data_dir, "VIX")
    with pytest.warns(DataQualityWarning, match="VIX 15m") as record:
        market = load_market("SPY", data_dir=tmp_data_dir, start="2024-03-25")
    codes = {i.code for w in record for i in w.message.issues}  # type: ignore[union-attr]
    assert codes == {"missing_bars"}  # the gap we made, not zero volume
    assert list(market.columns) == [*OHLCV_COLUMNS, "vix"]
    assert market["vix"].dtype == np.float64
    pd.testing.assert_frame_equal(market.drop(columns="vix"), spy, check_freq=False)
    # The first bar (closing 09:45) has no VIX bar of its own day yet: it sees the last
    # close of 03-22, which lies before `start` and must have been loaded anyway.
    assert market["vix"].iloc[0] == vix.loc["2024-03-22 15:45", "close"]
    assert market["vix"].iloc[1] == vix.loc["2024-03-25 09:45", "close"]
    # During the VIX gap the value stays at the last bar closed (09:45 bar, closes 10:00).
    gap = market.loc["2024-03-26 09:45":"2024-03-26 11:00", "vix"]
    assert (gap == vix.loc["2024-03-26 09:45", "close"]).all()
    with pytest.warns(DataQualityWarning):
        stale = load_market("SPY", data_dir=tmp_data_dir, vix_tolerance="30min")
    # Last VIX close before the gap is 10:00; bars closing more than 30 min later get NaN.
    nan_at = stale.index[stale["vix"].isna()].strftime("%m-%d %H:%M").tolist()
    assert nan_at == ["03-25 09:30", "03-26 10:30", "03-26 10:45", "03-26 11:00"]


def test_load_market_without_vix(tmp_data_dir: Path, spy_store: pd.DataFrame):
    vix_dir = symbol_dir(tmp_data_dir, "VIX")
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(vix_dir))}.*--no-vix"):
        load_market("SPY", data_dir=tmp_data_dir)
    market = load_market("SPY", data_dir=tmp_data_dir, include_vix=False)
    assert "vix" not in market.columns
    pd.testing.assert_frame_equal(market, spy_store, check_freq=False)


def test_bar_index_names_the_frame_when_the_index_is_not_tz_aware():
    naive = pd.DataFrame({"close": [1.0]}, index=pd.DatetimeIndex(["2024-01-02 09:30"]))
    with pytest.raises(ValueError, match="vix_bars needs a timezone-aware DatetimeIndex"):
        bar_index(naive, "vix_bars")
    aware = naive.tz_localize("America/New_York")
    assert bar_index(aware) is aware.index
