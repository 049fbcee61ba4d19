"""Data layer hardening: duplicate columns, bad years/offsets, size guard, converter, check."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend.data_download.csv_store import symbol_dir
from backend.data_download.loader import MAX_CSV_BYTES_ENV, load_bars, load_market
from backend.data_download.resample import resample_bars
from backend.data_download.schema import DataValidationError

MakeBars = Callable[..., pd.DataFrame]
REAL_5M = Path("/work/shared/data/raw/ADMF-PC/SPY_5m.csv")
REAL_15M = Path("/work/shared/data/raw/ADMF-PC/SPY_15m.csv")
HEADER = "timestamp,open,high,low,close,volume"


def store_file(data_dir: Path, text: str, name: str = "2024-10-01.csv") -> Path:
    folder = symbol_dir(data_dir, "SPY", "15m")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def quiet_load(*args: object, **kwargs: object) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_bars(*args, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- validation gaps


def test_duplicated_column_with_different_values_is_ambiguous(tmp_data_dir: Path) -> None:
    path = store_file(
        tmp_data_dir,
        "timestamp,open,high,low,close,volume,close\n"
        "2024-10-01 09:30:00-04:00,1,2,0.5,1.5,100,1.5\n"
        "2024-10-01 09:45:00-04:00,1,2,0.5,1.5,100,1.7\n",
    )
    with pytest.raises(DataValidationError, match=rf"{re.escape(str(path))}:1: ambiguous_column"):
        load_bars("SPY", data_dir=tmp_data_dir)


def test_duplicated_column_with_equal_values_is_accepted(tmp_data_dir: Path) -> None:
    store_file(
        tmp_data_dir,
        "timestamp,open,high,low,close,volume,close\n"
        "2024-10-01 09:30:00-04:00,1,2,0.5,1.5,100,1.5\n",
    )
    assert len(quiet_load("SPY", data_dir=tmp_data_dir)) == 1


@pytest.mark.parametrize(
    ("stamp", "message"),
    [
        ("6024-10-01 09:30:00-04:00", "outside the supported range"),
        ("0001-10-01 09:30:00", "outside the supported range"),
        ("2024-10-01 09:30:00-04: 0", "cannot parse the timestamp"),
        ("2024-10-01 09:30:00-4:00", "cannot parse the timestamp"),
        ("2024-10-01 09:30:00+99:00", "cannot parse the timestamp"),
    ],
)
def test_bad_years_and_offsets_are_file_line_errors(
    tmp_data_dir: Path, stamp: str, message: str
) -> None:
    path = store_file(
        tmp_data_dir,
        f"{HEADER}\n2024-10-01 09:45:00-04:00,1,2,0.5,1.5,100\n{stamp},1,2,0.5,1.5,100\n",
    )
    with pytest.raises(DataValidationError, match=rf"{re.escape(str(path))}:3: bad_timestamp"):
        load_bars("SPY", data_dir=tmp_data_dir)
    try:
        load_bars("SPY", data_dir=tmp_data_dir)
    except DataValidationError as exc:
        assert message in str(exc)


def test_size_guard_refuses_a_huge_sparse_file_without_reading_it(
    tmp_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = store_file(tmp_data_dir, HEADER + "\n")
    with path.open("r+b") as fh:  # 2 GB sparse: no disk, but a naive reader needs 2 GB
        fh.truncate(2 * 1024**3)
    with pytest.raises(DataValidationError, match=r"file_too_large.*YOOPRL_MAX_CSV_BYTES"):
        load_bars("SPY", data_dir=tmp_data_dir)
    path.unlink()
    store_file(tmp_data_dir, HEADER + "\n2024-10-01 09:30:00-04:00,1,2,0.5,1.5,100\n")
    monkeypatch.setenv(MAX_CSV_BYTES_ENV, "20")
    with pytest.raises(DataValidationError, match=r"above the limit of 20 bytes"):
        load_bars("SPY", data_dir=tmp_data_dir, use_cache=False)
    monkeypatch.setenv(MAX_CSV_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=f"{MAX_CSV_BYTES_ENV}: expected a positive number"):
        load_bars("SPY", data_dir=tmp_data_dir, use_cache=False)


def test_missing_vix_names_the_no_vix_flag(
    tmp_data_dir: Path, make_bars: MakeBars, write_store: Callable[..., list[Path]]
) -> None:
    write_store(make_bars("2024-10-01"), tmp_data_dir, "SPY")
    with pytest.raises(FileNotFoundError, match="--no-vix"):
        load_market("SPY", data_dir=tmp_data_dir)


# ----------------------------------------------------------------------- resample


def test_resample_anchors_at_the_open_and_drops_incomplete_groups(make_bars: MakeBars) -> None:
    fine = make_bars("2024-10-01", interval="5m")
    coarse, report = resample_bars(fine, "5m", "15m")
    assert len(coarse) == 26 and coarse.index[0].strftime("%H:%M") == "09:30"
    first = fine.iloc[:3]
    assert coarse.iloc[0]["open"] == first["open"].iloc[0]
    assert coarse.iloc[0]["high"] == first["high"].max()
    assert coarse.iloc[0]["low"] == first["low"].min()
    assert coarse.iloc[0]["close"] == first["close"].iloc[-1]
    assert coarse.iloc[0]["volume"] == first["volume"].sum()
    holed = fine.drop(fine.index[4])  # 09:50 missing: the 09:45 group is incomplete
    dropped, report = resample_bars(holed, "5m", "15m")
    assert report.n_incomplete == 1 and len(dropped) == 25
    assert pd.Timestamp("2024-10-01 09:45", tz="America/New_York") not in dropped.index
    kept, _ = resample_bars(holed, "5m", "15m", incomplete="keep")
    assert len(kept) == 26
    hourly, _ = resample_bars(fine, "5m", "60m")
    assert [t.strftime("%H:%M") for t in hourly.index[:2]] == ["09:30", "10:30"]
    assert len(hourly) == 7  # the last hour is 15:30-16:00, cut at the close
    with pytest.raises(ValueError, match="whole multiple"):
        resample_bars(fine, "15m", "5m")


@pytest.mark.skipif(not REAL_5M.exists(), reason="real SPY 5m file absent")
def test_real_spy_5m_resampled_matches_the_real_15m_file() -> None:
    from backend.data_download.loader import parse_csvs
    from backend.data_download.validation import validate_bars

    fine = validate_bars(parse_csvs([REAL_5M], interval="5m", symbol="SPY"), "5m").bars
    coarse, report = resample_bars(fine, "5m", "15m")
    ref = validate_bars(parse_csvs([REAL_15M], interval="15m", symbol="SPY"), "15m").bars
    common = coarse.index.intersection(ref.index)
    assert len(common) > 6000 and report.n_output > 6000
    np.testing.assert_allclose(coarse.loc[common].to_numpy(), ref.loc[common].to_numpy())


# ----------------------------------------------------------------------- converter


def naive_utc_5m_file(bars: pd.DataFrame, path: Path, lag: str = "4min") -> Path:
    """Vendor export: ``time_utc_naive`` stamped ``lag`` after each bar's start."""
    out = bars.copy()
    stamps = (bars.index + pd.Timedelta(lag)).tz_convert("UTC").tz_localize(None)
    out.insert(0, "time_utc_naive", stamps.strftime("%Y-%m-%d %H:%M:%S"))
    out.insert(1, "time_local", bars.index.strftime("%H:%M"))  # a rival time column
    out.to_csv(path, index=False)
    return path


def test_converter_resamples_a_lagged_naive_utc_5m_file(
    tmp_path: Path,
    tmp_data_dir: Path,
    make_bars: MakeBars,
    load_script: Callable[[str], object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    convert = load_script("convert_newdata_intraday")
    fine = make_bars("2024-10-01", "2024-10-02", interval="5m")
    src = naive_utc_5m_file(fine, tmp_path / "export.csv")
    base = [str(src), "--data-dir", str(tmp_data_dir), "--input-interval", "5m"]
    # A non-ticker file name is never taken as the symbol.
    with pytest.raises(SystemExit) as exit_info:
        convert.main(base)  # type: ignore[attr-defined]
    assert exit_info.value.code == 2
    assert "cannot tell the symbol from 'export.csv'" in capsys.readouterr().err
    argv = [*base, "--symbol", "SPY", "--time-column", "time_utc_naive"]
    argv += ["--stamp-offset", "-4min"]
    assert convert.main(argv) == 0  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert "anchored at the session open" in out and "0 incomplete group(s)" in out
    bars = quiet_load("SPY", data_dir=tmp_data_dir)
    expected, _ = resample_bars(fine, "5m", "15m")
    assert len(bars) == 52 and bars.index.equals(expected.index)
    np.testing.assert_allclose(bars.to_numpy(), expected.to_numpy())
    # Without the offset the stamps are off the 5m grid: errors, nothing else written.
    other = tmp_path / "data2"
    bad = [str(src), "--data-dir", str(other), "--input-interval", "5m", "--symbol", "SPY"]
    assert convert.main([*bad, "--time-column", "time_utc_naive"]) == 1  # type: ignore[attr-defined]
    assert "off_grid" in capsys.readouterr().out or not (other / "intraday").exists()
    with pytest.raises(SystemExit):
        convert.main([*argv[:-2], "--stamp-offset", "-6min"])  # type: ignore[attr-defined]
    assert "must be shorter than the input interval" in capsys.readouterr().err


@pytest.mark.skipif(not REAL_5M.exists(), reason="real SPY 5m file absent")
def test_converter_on_the_real_spy_5m_file(
    tmp_data_dir: Path, load_script: Callable[[str], object], capsys: pytest.CaptureFixture[str]
) -> None:
    convert = load_script("convert_newdata_intraday")
    argv = [str(REAL_5M), "--data-dir", str(tmp_data_dir), "--input-interval", "5m"]
    code = convert.main(argv)  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert "symbol SPY taken from the file name" in out
    assert code == 0, out[-2000:]
    bars = quiet_load("SPY", data_dir=tmp_data_dir)
    assert len(bars) > 6000 and bars.index[0] == pd.Timestamp("2024-03-26 09:30", tz="US/Eastern")


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("prices.csv", None),
        ("bars_5m.csv", None),
        ("export.csv", None),
        ("spy.csv", None),  # lower-case bare stem: could be anything
        ("SPY.csv", "SPY"),
        ("spy-15min.csv", "SPY"),
        ("SPY 5m.csv", "SPY"),
    ],
)
def test_symbol_is_never_guessed_from_a_non_ticker_name(
    name: str, symbol: str | None, load_script: Callable[[str], object]
) -> None:
    convert = load_script("convert_newdata_intraday")
    assert convert.infer_symbol(name) == symbol  # type: ignore[attr-defined]


# ------------------------------------------------------------------ dataset check


def test_dataset_check_fails_on_zero_bars_and_writes_nothing(
    tmp_data_dir: Path,
    make_bars: MakeBars,
    write_store: Callable[..., list[Path]],
    load_script: Callable[[str], object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    check = load_script("tmp_dataset_check")
    store_file(tmp_data_dir, HEADER + "\n")  # header only
    assert check.main(["--data-dir", str(tmp_data_dir), "--symbols", "SPY"]) == 1  # type: ignore[attr-defined]
    assert "no bars" in capsys.readouterr().out
    write_store(make_bars("2024-10-01"), tmp_data_dir, "QQQ")
    before = sorted(str(p) for p in tmp_data_dir.rglob("*"))
    assert check.main(["--data-dir", str(tmp_data_dir), "--symbols", "QQQ"]) == 0  # type: ignore[attr-defined]
    assert sorted(str(p) for p in tmp_data_dir.rglob("*")) == before  # nothing written
    assert check.main(["--data-dir", str(tmp_data_dir), "--symbols", "QQQ", "--use-cache"]) == 0  # type: ignore[attr-defined]
    assert (tmp_data_dir / ".cache").exists()
    assert os.listdir(tmp_data_dir / ".cache")
