"""Convert and load the real vendor files in ../shared/data (skipped when absent).

Each source has its own quirks (see ../shared/data/README.md); the facts asserted here come
from the market calendar and from reading the raw files independently with plain pandas.
The files are read in place and never copied into the repository.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend.data_download.loader import DataQualityWarning, load_bars, load_market
from backend.data_download.market_calendar import session_schedule
from backend.data_download.schema import NY_TZ

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import convert_newdata_intraday as convert  # noqa: E402
import tmp_dataset_check as check  # noqa: E402

sys.path.pop(0)


def run(main: object, argv: Sequence[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))  # type: ignore[operator]
    return code, out.getvalue()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quiet_load(*args: object, **kwargs: object) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return load_bars(*args, **kwargs)  # type: ignore[arg-type]


def bars_per_day(bars: pd.DataFrame) -> pd.Series:
    return bars.groupby(bars.index.date).size()


def expected_per_day(bars: pd.DataFrame) -> pd.Series:
    """Regular bars per session from the calendar: 26, or 14 on a 13:00 half day."""
    sched = session_schedule(bars.index[0], bars.index[-1])
    n = ((sched["close"] - sched["open"]) / pd.Timedelta("15min")).astype(int)
    return pd.Series(n.to_numpy(), index=sched.index.date)


class Converted:
    """A conversion run: its store, exit code, printed report and input digests."""

    def __init__(self, inputs: list[Path], data_dir: Path, *flags: str) -> None:
        self.inputs, self.data_dir = inputs, data_dir
        self.before = {p: digest(p) for p in inputs}
        argv = [*map(str, inputs), "--data-dir", str(data_dir), *flags]
        self.code, self.out = run(convert.main, argv)


@pytest.fixture(scope="module")
def admf(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    raw = shared_data / "raw" / "ADMF-PC" / "SPY_15m.csv"
    return Converted([raw], tmp_path_factory.mktemp("admf") / "data")


@pytest.fixture(scope="module")
def eqker(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    raw = [shared_data / "raw" / "eqker" / f"{s}_15min.csv" for s in ("SPY", "VIX")]
    return Converted(raw, tmp_path_factory.mktemp("eqker") / "data", "--stamp", "end")


@pytest.fixture(scope="module")
def pickstocks(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    raw = shared_data / "raw" / "PickStocksAGI" / "SPY_15min.csv"
    data_dir = tmp_path_factory.mktemp("pick") / "data"
    return Converted([raw], data_dir, "--stamp", "end", "--extended-hours")


@pytest.fixture(scope="module")
def orb(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    raw = shared_data / "raw" / "ORB" / "SPY_15m.csv"
    return Converted([raw], tmp_path_factory.mktemp("orb") / "data", "--extended-hours")


# --------------------------------------------------------------------------- ADMF-PC


def test_admf_utc_bar_start_converts_to_regular_sessions(admf: Converted):
    assert admf.code == 0, admf.out
    raw = admf.inputs[0]
    # The 16:00 bar of every day (first on line 28) and the extended bars of the last days.
    assert f"WARNING {raw}:28: outside_session [timestamp=2024-03-26 16:00:00-04:00]" in admf.out
    bars = quiet_load("SPY", data_dir=admf.data_dir)
    per_day = bars_per_day(bars)
    expected = expected_per_day(bars)
    # Every session is there; all complete except the file's last day, cut at 15:15.
    assert list(per_day.index) == list(expected.index)
    incomplete = per_day[per_day != expected]
    assert incomplete.to_dict() == {pd.Timestamp("2025-04-02").date(): 24}
    for day in ("2024-07-03", "2024-11-29", "2024-12-24"):
        assert per_day[pd.Timestamp(day).date()] == 14
        assert bars.loc[day].index[-1].strftime("%H:%M") == "12:45"
    assert set(per_day) == {26, 14, 24}


def test_admf_values_and_dst_match_the_raw_file(admf: Converted):
    bars = quiet_load("SPY", data_dir=admf.data_dir)
    raw = pd.read_csv(admf.inputs[0])
    stamps = pd.to_datetime(raw.pop("timestamp"), utc=True).dt.tz_convert(NY_TZ)
    raw.index = pd.DatetimeIndex(stamps).as_unit("ns")
    pd.testing.assert_frame_equal(
        bars, raw.loc[bars.index].astype("float64"), check_names=False, check_freq=False
    )
    assert bars.iloc[0].tolist() == [521.23, 521.44, 520.83, 521.155, 3137299.0]
    firsts = bars.groupby(bars.index.date).head(1).index
    assert set(firsts.strftime("%H:%M")) == {"09:30"}
    utc = pd.Series(firsts.tz_convert("UTC").strftime("%H:%M"), index=firsts.date)
    assert utc[pd.Timestamp("2024-11-01").date()] == "13:30"  # EDT
    assert utc[pd.Timestamp("2024-11-04").date()] == "14:30"  # EST after 3 Nov
    assert utc[pd.Timestamp("2025-03-07").date()] == "14:30"
    assert utc[pd.Timestamp("2025-03-10").date()] == "13:30"  # EDT after 9 Mar


def test_admf_consolidated_file_loads_directly_with_extended_hours(admf: Converted, tmp_path: Path):
    folder = tmp_path / "data" / "intraday" / "SPY" / "15m"
    folder.mkdir(parents=True)
    (folder / "SPY_15m.csv").symlink_to(admf.inputs[0])  # read in place, not copied
    regular = quiet_load("SPY", data_dir=tmp_path / "data")
    pd.testing.assert_frame_equal(regular, quiet_load("SPY", data_dir=admf.data_dir))
    extended = quiet_load("SPY", data_dir=tmp_path / "data", session="extended")
    per_day = bars_per_day(extended)
    assert per_day[pd.Timestamp("2025-03-27").date()] == 64  # 04:00-19:45
    assert extended.loc["2025-03-27"].index[0].strftime("%H:%M") == "04:00"
    assert per_day[pd.Timestamp("2024-03-26").date()] == 27  # 09:30-16:00 only
    assert admf.before == {p: digest(p) for p in admf.inputs}


# --------------------------------------------------------------------------- eqker


def test_eqker_descending_bar_end_files(eqker: Converted):
    assert eqker.code == 0, eqker.out
    assert eqker.out.count("descending time order") == 2
    assert "zero_volume" not in eqker.out  # VIX has volume 0 everywhere, by nature
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        spy = load_bars("SPY", data_dir=eqker.data_dir)
        vix = load_bars("VIX", data_dir=eqker.data_dir)
    for bars in (spy, vix):
        assert len(bars) == 780
        assert (bars_per_day(bars) == 26).all() and len(bars_per_day(bars)) == 30
    # Last raw line is "2019-01-04 09:45:00,247.58,248.69,247.1701,248.44,11766526":
    # a bar END stamp, so the bar starts at 09:30.
    assert spy.index[0] == pd.Timestamp("2019-01-04 09:30", tz=NY_TZ)
    assert spy.iloc[0].tolist() == [247.58, 248.69, 247.1701, 248.44, 11766526.0]
    assert (vix["volume"] == 0).all()
    assert eqker.before == {p: digest(p) for p in eqker.inputs}


def test_eqker_vix_asof_join_never_uses_a_later_bar(eqker: Converted):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        market = load_market("SPY", data_dir=eqker.data_dir, start="2019-01-07")
    raw_vix = pd.read_csv(eqker.inputs[1])
    closes_at = pd.DatetimeIndex(pd.to_datetime(raw_vix["datetime"])).tz_localize(NY_TZ)
    vix_close = pd.Series(raw_vix["close"].to_numpy(), index=closes_at).sort_index()
    bar_close = market.index + pd.Timedelta("15min")
    # Both files share timestamps: each bar gets the VIX bar that closes with it, exactly.
    np.testing.assert_array_equal(market["vix"].to_numpy(), vix_close.loc[bar_close].to_numpy())
    # And never the value of a later VIX bar: shifting VIX one bar earlier changes values.
    later = vix_close.shift(-1).loc[bar_close].to_numpy()
    assert (market["vix"].to_numpy() != later).mean() > 0.9
    assert market.index[0] == pd.Timestamp("2019-01-07 09:30", tz=NY_TZ)


def test_eqker_conversion_is_idempotent_and_check_passes(eqker: Converted):
    code, out = run(
        convert.main, [str(eqker.inputs[1]), "--data-dir", str(eqker.data_dir), "--stamp", "end"]
    )
    assert code == 0
    assert "wrote 0 session file(s); 30 already identical; 0 skipped" in out
    code, out = run(check.main, ["--data-dir", str(eqker.data_dir)])
    assert code == 0, out
    assert "first 2019-01-04 09:30 EST   last 2019-02-15 15:45 EST" in out
    assert "bars 780   sessions 30   missing bars 0" in out


# --------------------------------------------------------------------------- PickStocksAGI


def test_pickstocks_stray_2015_bars_are_dropped(pickstocks: Converted):
    assert pickstocks.code == 0, pickstocks.out
    raw = pickstocks.inputs[0]
    assert (
        f"WARNING {raw}:7865: outside_session [timestamp=2021-09-01 20:00:00-04:00]: 8 row(s)"
        in pickstocks.out
    )
    assert f"WARNING {raw}:11675: zero_volume [volume=0]: 2 row(s)" in pickstocks.out
    extended = quiet_load("SPY", data_dir=pickstocks.data_dir, session="extended")
    assert len(extended) == 31693 - 8
    local = extended.index.strftime("%H:%M")
    assert local.min() == "04:00" and local.max() == "19:45"
    assert extended.index[0] == pd.Timestamp("2021-03-10 04:00", tz=NY_TZ)


def test_pickstocks_regular_sessions_and_half_days(pickstocks: Converted):
    bars = quiet_load("SPY", data_dir=pickstocks.data_dir)
    per_day = bars_per_day(bars)
    assert (per_day == expected_per_day(bars).loc[per_day.index]).all()
    assert per_day[pd.Timestamp("2021-11-26").date()] == 14
    assert per_day[pd.Timestamp("2022-11-25").date()] == 14
    assert (per_day == 26).sum() == len(per_day) - 2
    firsts = bars.groupby(bars.index.date).head(1).index
    assert set(firsts.strftime("%H:%M")) == {"09:30"}  # including DST switch weeks
    assert {t.utcoffset() for t in firsts} == {pd.Timedelta(hours=-4), pd.Timedelta(hours=-5)}


# --------------------------------------------------------------------------- ORB


def test_orb_yahoo_file_with_symbol_column(orb: Converted):
    assert orb.code == 0, orb.out
    assert "symbol_mismatch" not in orb.out
    assert "zero_volume" in orb.out
    # Yahoo has no 09:15 bar, and on the 3 July half day nothing after 16:45.
    assert orb.out.count("1 of 64 bars missing (09:15)") == 59
    assert "session 2025-07-03: 13 of 64 bars missing (09:15, 17:00, 17:15" in orb.out
    extended = quiet_load("SPY", data_dir=orb.data_dir, session="extended")
    assert len(extended) == 3768
    bars = quiet_load("SPY", data_dir=orb.data_dir)
    per_day = bars_per_day(bars)
    assert per_day[pd.Timestamp("2025-07-03").date()] == 14
    assert (per_day.drop(pd.Timestamp("2025-07-03").date()) == 26).all()
    assert bars.index[0] == pd.Timestamp("2025-06-04 09:30", tz=NY_TZ)
    raw = pd.read_csv(orb.inputs[0], index_col="Datetime")
    # The store keeps 10 significant digits (csv_store); Yahoo's 596.9600219726562 is a
    # float32 artefact, so equal to that precision.
    assert bars.iloc[0]["open"] == pytest.approx(
        raw.loc["2025-06-04 13:30:00+00:00", "Open"], rel=1e-9
    )
