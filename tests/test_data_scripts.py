"""The dataset check and conversion scripts, called through ``main(argv)``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from backend.data_download.csv_store import symbol_dir
from backend.data_download.loader import DataQualityWarning, load_bars
from backend.data_download.schema import NY_TZ

ROOT = Path(__file__).resolve().parents[1]
MakeBars = Callable[..., pd.DataFrame]
WriteStore = Callable[..., list[Path]]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"_yooprl_script_{name}", ROOT / "scripts" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


check = _script("tmp_dataset_check")
convert = _script("convert_newdata_intraday")


def consolidated(
    bars: pd.DataFrame,
    path: Path,
    *,
    stamp: str = "start",
    utc: bool = True,
    columns: str = "yahoo",
) -> Path:
    """Write bars like a vendor would: one file, vendor column names."""
    out = bars.copy()
    index = out.index + (pd.Timedelta("15min") if stamp == "end" else pd.Timedelta(0))
    if utc:
        out.index = index.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S+00:00")
    else:
        out.index = index.tz_convert(NY_TZ).strftime("%Y-%m-%d %H:%M:%S")
    if columns == "yahoo":
        out.columns = ["Open", "High", "Low", "Close", "Volume"]
        out["Symbol"] = path.name.split("_")[0]
        out.to_csv(path, index_label="Datetime")
    else:
        out.to_csv(path, index_label="time")
    return path


# --------------------------------------------------------------------------- dataset check


def test_check_prints_facts_and_exits_zero_for_a_clean_store(
    tmp_data_dir: Path, make_bars: MakeBars, write_store: WriteStore, capsys: pytest.CaptureFixture
):
    write_store(make_bars("2024-03-25", "2024-03-26"), tmp_data_dir, "SPY")
    write_store(make_bars("2024-03-26").assign(volume=0.0), tmp_data_dir, "VIX")
    assert check.main(["--data-dir", str(tmp_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "== SPY 15m (regular session): ok; 2 file(s)" in out
    assert "first 2024-03-25 09:30 EDT   last 2024-03-26 15:45 EDT" in out
    assert "bars 52   sessions 2   missing bars 0" in out
    assert "== VIX 15m (regular session): ok" in out  # zero volume is normal for VIX
    assert "checked 2 symbol(s): no errors" in out


def test_check_reports_every_problem_with_file_and_line(
    tmp_data_dir: Path, make_bars: MakeBars, write_store: WriteStore, capsys: pytest.CaptureFixture
):
    paths = write_store(make_bars("2024-03-25", "2024-03-26"), tmp_data_dir, "SPY")
    text = paths[1].read_text().splitlines()
    text[3] = text[3].rsplit(",", 1)[0] + ",-5"  # line 4: negative volume
    del text[10]  # a missing bar
    paths[1].write_text("\n".join(text) + "\n")
    write_store(make_bars("2024-03-26"), tmp_data_dir, "QQQ")
    assert check.main(["--data-dir", str(tmp_data_dir), "--symbols", "spy"]) == 1
    out = capsys.readouterr().out
    assert f"ERROR {paths[1]}:4: negative_volume [volume=-5]" in out
    assert "missing_bars" in out and "2 of 26 bars missing" in out
    assert "QQQ" not in out
    assert "errors in SPY" in out


def test_check_warnings_only_exit_zero_and_extended_hours(
    tmp_data_dir: Path, make_bars: MakeBars, write_store: WriteStore, capsys: pytest.CaptureFixture
):
    write_store(make_bars("2024-03-26", extended_hours=True), tmp_data_dir, "SPY")
    assert check.main(["--data-dir", str(tmp_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "outside_session" in out and "38 row(s)" in out
    assert check.main(["--data-dir", str(tmp_data_dir), "--extended-hours"]) == 0
    out = capsys.readouterr().out
    assert "(extended session): ok" in out and "bars 64" in out


def test_check_with_nothing_to_check_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert check.main(["--data-dir", str(tmp_path)]) == 2
    assert "nothing to check" in capsys.readouterr().out


def test_check_unknown_symbol_is_an_error(tmp_data_dir: Path, capsys: pytest.CaptureFixture):
    assert check.main(["--data-dir", str(tmp_data_dir), "--symbols", "ZZZ"]) == 1
    assert "no_files" in capsys.readouterr().out


def test_scripts_run_from_the_command_line(tmp_data_dir: Path):
    done = subprocess.run(
        [sys.executable, "scripts/convert_newdata_intraday.py", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "--stamp {start,end}" in done.stdout
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "tmp_dataset_check.py"),
            "--data-dir",
            str(tmp_data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2 and "nothing to check" in done.stdout, done.stderr


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize(
    ("name", "symbol"),
    [
        ("SPY_15m.csv", "SPY"),
        ("spy_15min.csv", "SPY"),
        ("QQQ.csv", "QQQ"),
        ("BRK.B_15m.csv", "BRK.B"),
        ("^VIX_15min.csv", "VIX"),
        ("15m_data.csv", None),
    ],
)
def test_infer_symbol(name: str, symbol: str | None):
    assert convert.infer_symbol(name) == symbol


def test_convert_yahoo_style_utc_file_into_sessions(
    tmp_path: Path, tmp_data_dir: Path, make_bars: MakeBars, capsys: pytest.CaptureFixture
):
    bars = make_bars("2024-03-08", "2024-03-11", extended_hours=True)  # over the DST switch
    src = consolidated(bars, tmp_path / "SPY_15m.csv")
    before = src.read_bytes()
    assert convert.main([str(src), "--data-dir", str(tmp_data_dir)]) == 0
    assert src.read_bytes() == before
    folder = symbol_dir(tmp_data_dir, "SPY")
    assert sorted(p.name for p in folder.iterdir()) == ["2024-03-08.csv", "2024-03-11.csv"]
    lines = (folder / "2024-03-11.csv").read_text().splitlines()
    assert lines[0] == "timestamp,open,high,low,close,volume"
    assert lines[1].startswith("2024-03-11 09:30:00-04:00,")
    assert len(lines) == 27
    assert (
        (folder / "2024-03-08.csv")
        .read_text()
        .splitlines()[1]
        .startswith("2024-03-08 09:30:00-05:00,")
    )
    out = capsys.readouterr().out
    assert "outside_session" in out and "wrote 2 session file(s)" in out
    regular = bars.loc[
        bars.index.strftime("%H:%M").isin(
            pd.date_range("09:30", "15:45", freq="15min").strftime("%H:%M")
        )
    ]
    pd.testing.assert_frame_equal(
        load_bars("SPY", data_dir=tmp_data_dir), regular, check_freq=False
    )


def test_convert_extended_hours_naive_bar_end_stamps(
    tmp_path: Path, tmp_data_dir: Path, make_bars: MakeBars
):
    bars = make_bars("2024-11-29", extended_hours=True)  # half day, extended to 20:00
    src = consolidated(
        bars.iloc[::-1], tmp_path / "IWM_15min.csv", stamp="end", utc=False, columns="plain"
    )
    argv = [str(src), "--data-dir", str(tmp_data_dir), "--stamp", "end", "--extended-hours"]
    assert convert.main(argv) == 0
    loaded = load_bars("IWM", data_dir=tmp_data_dir, session="extended")
    pd.testing.assert_frame_equal(loaded, bars, check_freq=False)
    assert loaded.index[0] == pd.Timestamp("2024-11-29 04:00", tz=NY_TZ)


def test_convert_naive_utc_with_source_tz(tmp_path: Path, tmp_data_dir: Path, make_bars: MakeBars):
    bars = make_bars("2024-03-26")
    src = tmp_path / "prices.csv"
    out = bars.copy()
    out.index = out.index.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S")
    out.to_csv(src, index_label="date")
    argv = [str(src), "--symbol", "tna", "--data-dir", str(tmp_data_dir), "--source-tz", "UTC"]
    assert convert.main(argv) == 0
    pd.testing.assert_frame_equal(load_bars("TNA", data_dir=tmp_data_dir), bars, check_freq=False)


def test_convert_is_idempotent_and_refuses_to_overwrite_different_bars(
    tmp_path: Path, tmp_data_dir: Path, make_bars: MakeBars, capsys: pytest.CaptureFixture
):
    bars = make_bars("2024-03-25", "2024-03-26")
    src = consolidated(bars, tmp_path / "SPY_15m.csv")
    argv = [str(src), "--data-dir", str(tmp_data_dir)]
    assert convert.main(argv) == 0
    folder = symbol_dir(tmp_data_dir, "SPY")
    written = {p: p.read_bytes() for p in folder.iterdir()}
    mtimes = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    capsys.readouterr()
    assert convert.main(argv) == 0
    assert "0 session file(s); 2 already identical; 0 skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes

    changed = bars.copy()
    changed.loc["2024-03-26 10:00", "close"] = changed.loc["2024-03-26 10:00", "high"]
    consolidated(changed, src)
    assert convert.main(argv) == 1
    out = capsys.readouterr().out
    assert "1 skipped" in out and "--overwrite" in out and "2024-03-26.csv" in out
    assert {p: p.read_bytes() for p in folder.iterdir()} == written

    assert convert.main([*argv, "--overwrite"]) == 0
    assert (
        load_bars("SPY", data_dir=tmp_data_dir).loc["2024-03-26 10:00", "close"]
        == (changed.loc["2024-03-26 10:00", "close"])
    )


def test_convert_refuses_inputs_with_errors_unless_asked(
    tmp_path: Path, tmp_data_dir: Path, make_bars: MakeBars, capsys: pytest.CaptureFixture
):
    src = consolidated(make_bars("2024-03-25", "2024-03-26"), tmp_path / "SPY_15m.csv")
    lines = src.read_text().splitlines()
    lines[5] = lines[5].replace("+00:00,", "+00:00,-", 1)  # line 6: negative open
    src.write_text("\n".join(lines) + "\n")
    argv = [str(src), "--data-dir", str(tmp_data_dir)]
    assert convert.main(argv) == 1
    out = capsys.readouterr().out
    assert f"ERROR {src}:6: non_positive_price [open=-" in out
    assert "nothing written" in out
    assert not symbol_dir(tmp_data_dir, "SPY").exists()
    assert convert.main([*argv, "--drop-bad-rows"]) == 0
    assert f"ERROR {src}:6: non_positive_price" in capsys.readouterr().out  # still reported
    with pytest.warns(DataQualityWarning, match="missing_bars"):
        assert len(load_bars("SPY", data_dir=tmp_data_dir)) == 51


def test_convert_reports_symbol_column_mismatch(
    tmp_path: Path, tmp_data_dir: Path, make_bars: MakeBars, capsys: pytest.CaptureFixture
):
    src = consolidated(make_bars("2024-03-26"), tmp_path / "QQQ_15m.csv")
    assert convert.main([str(src), "--symbol", "SPY", "--data-dir", str(tmp_data_dir)]) == 1
    assert f"{src}:2: symbol_mismatch [Symbol=QQQ]" in capsys.readouterr().out


def test_convert_bad_arguments_exit_two(tmp_path: Path):
    src = tmp_path / "15m.csv"
    src.write_text("timestamp,open,high,low,close,volume\n")
    for argv in (
        [str(src)],
        [str(tmp_path / "missing.csv")],
        [str(src), "--symbol", "X", "--source-tz", "Mars/Base"],
        [str(src), "--symbol", "../SPY"],
    ):
        with pytest.raises(SystemExit) as info:
            convert.main(argv)
        assert info.value.code == 2
