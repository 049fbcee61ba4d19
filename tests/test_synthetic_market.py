"""Synthetic market: determinism, calendar grid, stylised facts, 3x identity, planted signal."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from backend.data_download import csv_store, synthetic_market
from backend.data_download.csv_store import list_csv_files, read_store_csv, session_csv_path
from backend.data_download.market_calendar import expected_bar_starts, session_schedule
from backend.data_download.schema import INDEX_NAME, NY_TZ, OHLCV_COLUMNS
from backend.data_download.synthetic_market import (
    DEFAULT_CONFIG,
    GENERATOR_VERSION,
    MARKER_FILE,
    LeveragedSpec,
    SyntheticMarketConfig,
    UnderlyingSpec,
    ensure_synthetic_dataset,
    generate_synthetic_market,
    theoretical_edge_per_bar,
    write_synthetic_market,
)

SYMBOLS = ("SPY", "QQQ", "IWM", "UPRO", "TQQQ", "TNA", "VIX")
UNDERLYINGS = ("SPY", "QQQ", "IWM")
PAIRS = (("UPRO", "SPY"), ("TQQQ", "QQQ"), ("TNA", "IWM"))
# Six weeks around the 2024-11-03 DST change, Thanksgiving and the 11-29 half day.
SMALL = SyntheticMarketConfig(start="2024-10-21", end="2024-12-06")

pytestmark = pytest.mark.filterwarnings(
    "ignore:Series.values returning an ndarray that drops timezone"  # exchange_calendars
)


@pytest.fixture(scope="module")
def market() -> dict[str, pd.DataFrame]:
    return generate_synthetic_market(DEFAULT_CONFIG)


@pytest.fixture(scope="module")
def signal_market() -> dict[str, pd.DataFrame]:
    return generate_synthetic_market(dataclasses.replace(DEFAULT_CONFIG, signal_strength=0.3))


def ny(ts: str) -> pd.Timestamp:
    return pd.Timestamp(ts, tz=NY_TZ)


def log_returns(frame: pd.DataFrame) -> pd.Series:
    """Bar returns log(close / open); within a session open == previous close."""
    return np.log(frame["close"] / frame["open"])


def sessions_of(frame: pd.DataFrame) -> pd.Index:
    return frame.index.tz_localize(None).normalize()


def within_session_pairs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(r_k, r_{k+1}) for consecutive bars of the same session."""
    r = log_returns(frame).to_numpy()
    day = np.asarray(sessions_of(frame))
    same = day[1:] == day[:-1]
    return r[:-1][same], r[1:][same]


def store_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_synthetic_market(a, SMALL)
    write_synthetic_market(b, SMALL)
    write_synthetic_market(c, dataclasses.replace(SMALL, seed=SMALL.seed + 1))

    first, second, other = store_bytes(a), store_bytes(b), store_bytes(c)
    assert first == second
    assert first.keys() == other.keys()
    csvs = [k for k in first if k.endswith(".csv")]
    assert len(csvs) == 7 * 34
    assert all(first[k] != other[k] for k in csvs)


def test_frames_follow_the_bar_frame_contract(market: dict[str, pd.DataFrame]):
    assert tuple(sorted(market)) == tuple(sorted(SYMBOLS))
    index = market["SPY"].index
    for frame in market.values():
        assert frame.index.equals(index)
        assert list(frame.columns) == list(OHLCV_COLUMNS)
        assert (frame.dtypes == "float64").all()
        assert frame.notna().all().all() and np.isfinite(frame.to_numpy()).all()
    assert index.name == INDEX_NAME and str(index.tz) == NY_TZ
    assert index.is_unique and index.is_monotonic_increasing


def test_generation_is_vectorised_and_fast():
    start = time.perf_counter()
    frames = generate_synthetic_market(DEFAULT_CONFIG)
    elapsed = time.perf_counter() - start
    assert len(frames["SPY"]) == 502 * 26 - 5 * 12  # five 13:00 half days in 2023-2024
    assert elapsed < 5.0, f"generation took {elapsed:.1f}s"


# --------------------------------------------------------------------------- calendar grid


def test_grid_is_the_xnys_regular_session_grid(market: dict[str, pd.DataFrame]):
    index = market["SPY"].index
    expected = expected_bar_starts(session_schedule("2023-01-01", "2024-12-31"))
    assert index.equals(expected)
    per_day = pd.Series(1, index=index).groupby(sessions_of(market["SPY"])).size()
    assert per_day.loc["2024-11-27"] == 26
    assert per_day.loc["2024-11-29"] == 14  # day after Thanksgiving closes 13:00
    assert pd.Timestamp("2024-11-28") not in per_day.index  # Thanksgiving
    assert pd.Timestamp("2024-07-04") not in per_day.index
    assert set(per_day.unique()) == {26, 14}


@pytest.mark.parametrize(
    ("day", "offset"),
    [
        ("2024-03-08", "-05:00"),
        ("2024-03-11", "-04:00"),
        ("2024-11-01", "-04:00"),
        ("2024-11-04", "-05:00"),
    ],
)
def test_first_bar_is_0930_new_york_across_dst(
    market: dict[str, pd.DataFrame], day: str, offset: str
):
    bars = market["SPY"].loc[day]
    assert bars.index[0] == ny(f"{day} 09:30") and bars.index[-1] == ny(f"{day} 15:45")
    assert bars.index[0].isoformat().endswith(offset)


def test_written_files_carry_the_offset_and_the_half_day(tmp_path: Path):
    written = write_synthetic_market(tmp_path, SMALL)
    assert sorted(written) == sorted(SYMBOLS)
    half_day = session_csv_path(tmp_path, "SPY", "2024-11-29").read_text().splitlines()
    assert half_day[0] == "timestamp,open,high,low,close,volume"
    assert len(half_day) == 1 + 14
    assert half_day[1].startswith("2024-11-29 09:30:00-05:00,")
    assert half_day[-1].startswith("2024-11-29 12:45:00-05:00,")
    before_dst = session_csv_path(tmp_path, "QQQ", "2024-11-01").read_text().splitlines()
    assert before_dst[1].startswith("2024-11-01 09:30:00-04:00,")
    frames = generate_synthetic_market(SMALL)
    for symbol, paths in written.items():
        back = pd.concat([read_store_csv(p) for p in paths])
        assert back.index.equals(frames[symbol].index)
        np.testing.assert_allclose(back.to_numpy(), frames[symbol].to_numpy(), rtol=1e-9)


# --------------------------------------------------------------------------- bar sanity


def test_ohlc_is_consistent_and_volume_positive_whole(market: dict[str, pd.DataFrame]):
    for symbol, frame in market.items():
        body_low = frame[["open", "close"]].min(axis=1)
        body_high = frame[["open", "close"]].max(axis=1)
        assert (frame["low"] <= body_low).all(), symbol
        assert (frame["high"] >= body_high).all(), symbol
        assert (frame["low"] > 0).all(), symbol
        assert (frame["high"] > frame["low"]).all(), symbol  # a range, not a point
        volume = frame["volume"].to_numpy()
        assert (volume == np.round(volume)).all(), symbol
        if symbol == "VIX":
            assert (volume == 0).all()  # like Yahoo's ^VIX
        else:
            assert (volume >= 1).all(), symbol


def test_bars_are_contiguous_within_a_session_and_gap_overnight(
    market: dict[str, pd.DataFrame],
):
    for symbol in UNDERLYINGS:
        frame = market[symbol]
        day = np.asarray(sessions_of(frame))
        same = day[1:] == day[:-1]
        opens, closes = frame["open"].to_numpy(), frame["close"].to_numpy()
        np.testing.assert_allclose(opens[1:][same], closes[:-1][same], rtol=1e-12)
        gaps = np.log(opens[1:][~same] / closes[:-1][~same])
        assert (np.abs(gaps) > 1e-6).mean() > 0.95, symbol  # sessions open away from the close
        intraday = log_returns(frame).groupby(sessions_of(frame)).sum()
        ratio = np.var(gaps) / (np.var(gaps) + np.var(intraday))
        assert 0.1 < ratio < 0.35, (symbol, ratio)  # configured overnight share: 0.2


def test_levels_and_bar_volatility_are_realistic(market: dict[str, pd.DataFrame]):
    spy = market["SPY"]["close"]
    assert 380 < spy.min() and spy.max() < 650
    assert spy.iloc[0] == pytest.approx(470, rel=0.03)
    bar_vol = log_returns(market["SPY"]).groupby(sessions_of(market["SPY"])).std()
    assert 0.001 < bar_vol.median() < 0.003  # 0.1 % - 0.3 % per 15 minutes
    vix = market["VIX"]["close"]
    assert 8 < vix.min() and vix.max() < 60 and 12 < vix.mean() < 22
    correlations = pd.DataFrame({s: log_returns(market[s]) for s in UNDERLYINGS}).corr()
    assert correlations.loc["SPY", "QQQ"] == pytest.approx(0.97 * 0.92, abs=0.05)
    assert correlations.loc["SPY", "IWM"] == pytest.approx(0.97 * 0.85, abs=0.05)


# --------------------------------------------------------------------------- stylised facts


def _by_bar_of_full_days(frame: pd.DataFrame, values: pd.Series) -> pd.Series:
    day = sessions_of(frame)
    size = pd.Series(1, index=frame.index).groupby(day).transform("size").to_numpy()
    k = pd.Series(1, index=frame.index).groupby(day).cumcount().to_numpy()
    full = size == 26
    return values[full].groupby(k[full]).mean()


def test_intraday_u_shape_in_volatility_and_volume(market: dict[str, pd.DataFrame]):
    spy = market["SPY"]
    abs_ret = _by_bar_of_full_days(spy, log_returns(spy).abs())
    volume = _by_bar_of_full_days(spy, spy["volume"])
    for profile in (abs_ret, volume):
        midday = profile.iloc[10:16].mean()
        assert profile.iloc[0] > 1.3 * midday
        assert profile.iloc[25] > 1.2 * midday
        assert profile.iloc[12] < profile.iloc[1] and profile.iloc[12] < profile.iloc[24]


def test_volatility_regimes_cluster(market: dict[str, pd.DataFrame]):
    def daily_vol_autocorr(frame: pd.DataFrame) -> float:
        return float(log_returns(frame).groupby(sessions_of(frame)).std().autocorr())

    assert daily_vol_autocorr(market["SPY"]) > 0.35
    no_regimes = dataclasses.replace(
        DEFAULT_CONFIG,
        stressed_vol_ratio=1.0,
        daily_vol_jitter=0.0,
        leveraged=(),
        include_vix=False,
    )
    assert abs(daily_vol_autocorr(generate_synthetic_market(no_regimes)["SPY"])) < 0.2


def test_vix_moves_against_spy_and_with_its_volatility(market: dict[str, pd.DataFrame]):
    spy, vix = market["SPY"], market["VIX"]
    bar_corr = np.corrcoef(log_returns(spy), np.log(vix["close"] / vix["open"]))[0, 1]
    assert bar_corr < -0.5
    day = sessions_of(spy)
    daily = (
        pd.DataFrame(
            {
                "spy": np.log(spy["close"].groupby(day).last()),
                "vix": np.log(vix["close"].groupby(day).last()),
            }
        )
        .diff()
        .dropna()
    )
    assert daily["spy"].corr(daily["vix"]) < -0.5
    realized = log_returns(spy).groupby(day).std()
    assert vix["close"].groupby(day).mean().corr(realized) > 0.3  # level tied to the regime
    level = np.log(vix["close"].groupby(day).last())
    slope = np.polyfit(level.iloc[:-1], level.iloc[1:], 1)[0]
    assert slope < 0.97  # mean-reverting, not a random walk


# --------------------------------------------------------------------------- leveraged ETFs


def _check_daily_reset(
    frames: dict[str, pd.DataFrame], config: SyntheticMarketConfig, rtol: float
) -> None:
    specs = {lev.symbol: lev for lev in config.leveraged}
    starts = {u.symbol: u.start_price for u in config.underlyings}
    for lev_symbol, under_symbol in PAIRS:
        spec = specs[lev_symbol]
        lev, under = frames[lev_symbol], frames[under_symbol]
        day = sessions_of(under)
        last_close_u = under["close"].groupby(day).last()
        last_close_l = lev["close"].groupby(day).last()
        prev_u = last_close_u.shift(1).fillna(starts[under_symbol]).reindex(day).to_numpy()
        prev_l = last_close_l.shift(1).fillna(spec.start_price).reindex(day).to_numpy()
        fee = spec.expense_ratio / 252
        for column in ("open", "high", "low", "close"):
            lhs = lev[column].to_numpy() / prev_l - 1.0
            rhs = 3.0 * (under[column].to_numpy() / prev_u - 1.0) - fee
            np.testing.assert_allclose(lhs, rhs, rtol=0, atol=rtol, err_msg=lev_symbol)


def test_leveraged_etfs_are_3x_daily_reset(market: dict[str, pd.DataFrame]):
    _check_daily_reset(market, DEFAULT_CONFIG, rtol=1e-12)
    # Daily reset compounds: over months, 3x ETF != 3x the underlying's total return.
    spy, upro = market["SPY"]["close"], market["UPRO"]["close"]
    three_x_total = 3 * (spy.iloc[-1] / 470.0 - 1)
    assert abs((upro.iloc[-1] / 60.0 - 1) - three_x_total) > 0.05


def test_leveraged_identity_survives_the_csv_round_trip(tmp_path: Path):
    written = write_synthetic_market(tmp_path, SMALL)
    frames = {s: pd.concat([read_store_csv(p) for p in paths]) for s, paths in written.items()}
    _check_daily_reset(frames, SMALL, rtol=1e-8)


def test_negative_leverage_maps_high_to_low():
    inverse = dataclasses.replace(
        SMALL,
        leveraged=(LeveragedSpec("SPXU", "SPY", -3.0, 0.009, 30.0, 1e6),),
        include_vix=False,
    )
    frames = generate_synthetic_market(inverse)
    spxu, spy = frames["SPXU"], frames["SPY"]
    assert (spxu["low"] <= spxu[["open", "close"]].min(axis=1)).all()
    assert (spxu["high"] >= spxu[["open", "close"]].max(axis=1)).all()
    assert np.corrcoef(log_returns(spxu), log_returns(spy))[0, 1] < -0.99


# --------------------------------------------------------------------------- planted signal


def test_no_predictability_at_signal_strength_zero(market: dict[str, pd.DataFrame]):
    for symbol in (*UNDERLYINGS, "UPRO"):
        prev, nxt = within_session_pairs(market[symbol])
        n = len(prev)
        assert n > 12_000
        autocorr = np.corrcoef(prev, nxt)[0, 1]
        assert abs(autocorr) < 4 / math.sqrt(n), (symbol, autocorr)
        # The planted statistic: following the last bar's sign earns nothing.
        follow = np.sign(prev) * nxt
        t_stat = follow.mean() / (follow.std() / math.sqrt(n))
        assert abs(t_stat) < 4, (symbol, t_stat)
    # Martingale: no drift overall nor at any time of day (simple returns, t-stats).
    spy = market["SPY"]
    simple = spy["close"] / spy["open"] - 1.0
    by_bar_mean = _by_bar_of_full_days(spy, simple)
    by_bar_se = _by_bar_of_full_days(spy, simple**2).pow(0.5) / math.sqrt(500)
    assert (by_bar_mean.abs() / by_bar_se).max() < 4
    assert abs(simple.mean()) / (simple.std() / math.sqrt(len(simple))) < 4
    assert theoretical_edge_per_bar(DEFAULT_CONFIG).edge_per_bar == 0.0


def test_planted_momentum_is_visible_and_matches_theory(
    signal_market: dict[str, pd.DataFrame],
):
    config = dataclasses.replace(DEFAULT_CONFIG, signal_strength=0.3)
    for symbol in (*UNDERLYINGS, "UPRO", "TQQQ", "TNA"):
        prev, nxt = within_session_pairs(signal_market[symbol])
        assert np.corrcoef(prev, nxt)[0, 1] > 0.25, symbol
        edge = theoretical_edge_per_bar(config, symbol)
        measured = np.mean(np.sign(prev) * nxt) / np.std(log_returns(signal_market[symbol]))
        assert measured == pytest.approx(edge.edge_to_vol, abs=0.03), symbol
    spy, upro = theoretical_edge_per_bar(config, "SPY"), theoretical_edge_per_bar(config, "UPRO")
    assert upro.edge_per_bar == pytest.approx(3 * spy.edge_per_bar)
    assert upro.edge_to_vol == pytest.approx(spy.edge_to_vol)
    assert spy.flip_probability == pytest.approx(0.5 - math.asin(0.3) / math.pi)
    assert spy.breakeven_round_trip_cost > 4e-4  # clears 2-4 bp round-trip costs
    with pytest.raises(ValueError, match="not a tradable symbol"):
        theoretical_edge_per_bar(config, "VIX")


def test_overnight_gap_is_not_predictable_from_the_last_bar(
    signal_market: dict[str, pd.DataFrame],
):
    spy = signal_market["SPY"]
    day = np.asarray(sessions_of(spy))
    new_day = np.r_[False, day[1:] != day[:-1]]
    last_ret = log_returns(spy).to_numpy()[np.r_[new_day[1:], False]]
    gaps = np.log(
        spy["open"].to_numpy()[new_day] / spy["close"].to_numpy()[np.r_[new_day[1:], False]]
    )
    assert abs(np.corrcoef(last_ret, gaps)[0, 1]) < 4 / math.sqrt(len(gaps))


# --------------------------------------------------------------------------- the store


def test_ensure_synthetic_dataset_is_idempotent_and_cheap(tmp_path: Path):
    root = ensure_synthetic_dataset(tmp_path / "synthetic", SMALL)
    marker = json.loads((root / MARKER_FILE).read_text())
    assert marker["generator_version"] == GENERATOR_VERSION
    assert marker["config"] == SMALL.to_dict() and marker["sessions"] == 34
    assert marker["complete"] is True
    assert all(len(list_csv_files(root, s)) == 34 for s in SYMBOLS)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}

    start = time.perf_counter()
    assert ensure_synthetic_dataset(root, SMALL) == root
    assert time.perf_counter() - start < 0.5

    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps


def test_ensure_regenerates_on_config_change_or_missing_files(tmp_path: Path):
    root = ensure_synthetic_dataset(tmp_path, SMALL)
    spy_file = session_csv_path(root, "SPY", "2024-11-29")
    original = spy_file.read_bytes()

    spy_file.unlink()
    ensure_synthetic_dataset(root, SMALL)
    assert spy_file.read_bytes() == original  # missing session restored

    shorter = dataclasses.replace(SMALL, end=None, n_sessions=10, seed=3)
    ensure_synthetic_dataset(root, shorter)
    assert all(len(list_csv_files(root, s)) == 10 for s in SYMBOLS)  # no stale sessions
    assert not spy_file.exists()
    assert json.loads((root / MARKER_FILE).read_text())["config"]["seed"] == 3


def test_an_interrupted_write_is_redone_not_mistaken_for_real_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    real_writer = synthetic_market.write_sessions_bulk
    calls = {"n": 0}

    def crash_on_third_symbol(*args: Any, **kwargs: Any) -> list[Path]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user hit Ctrl-C mid-way
        return real_writer(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(synthetic_market, "write_sessions_bulk", crash_on_third_symbol)
        with pytest.raises(KeyboardInterrupt):
            ensure_synthetic_dataset(tmp_path / "a", SMALL)
    assert json.loads((tmp_path / "a" / MARKER_FILE).read_text())["complete"] is False

    ensure_synthetic_dataset(tmp_path / "a", SMALL)  # redone, not refused as "real data"
    write_synthetic_market(tmp_path / "b", SMALL)
    assert store_bytes(tmp_path / "a") == store_bytes(tmp_path / "b")


def test_never_overwrites_a_folder_with_unmarked_bar_files(tmp_path: Path):
    real = tmp_path / "intraday" / "SPY" / "15m" / "2024-11-26.csv"
    real.parent.mkdir(parents=True)
    real.write_text("timestamp,open,high,low,close,volume\n")
    with pytest.raises(FileExistsError, match="may be real data"):
        ensure_synthetic_dataset(tmp_path, SMALL)
    assert real.read_text() == "timestamp,open,high,low,close,volume\n"


def test_bulk_writer_matches_write_sessions_byte_for_byte(tmp_path: Path):
    frame = generate_synthetic_market(SMALL)["TQQQ"].copy()
    frame.iloc[5, 1] = np.nan  # the slow writer leaves NaN cells empty; so must the fast one
    slow = csv_store.write_sessions(frame, tmp_path / "slow", "TQQQ")
    fast = csv_store.write_sessions_bulk(frame, tmp_path / "fast", "TQQQ", durable=False)
    assert [p.name for p in slow] == [p.name for p in fast]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(slow, fast, strict=True))
    with pytest.raises(ValueError, match="sorted"):
        csv_store.write_sessions_bulk(frame.iloc[::-1], tmp_path / "x", "TQQQ")


# --------------------------------------------------------------------------- config


def test_n_sessions_mode_counts_sessions():
    config = SyntheticMarketConfig(start="2024-11-25", end=None, n_sessions=5)
    spy = generate_synthetic_market(config)["SPY"]
    days = sorted(set(sessions_of(spy).strftime("%Y-%m-%d")))
    assert days == ["2024-11-25", "2024-11-26", "2024-11-27", "2024-11-29", "2024-12-02"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_sessions": 10}, "exactly one of end and n_sessions"),
        ({"signal_strength": 1.0}, "signal_strength"),
        ({"vix_return_correlation": 0.5}, "VIX moves against SPY"),
        ({"p_calm_to_stressed": 0.0}, "p_calm_to_stressed"),
        ({"end": "2022-01-01"}, "before start"),
        (
            {"leveraged": (LeveragedSpec("SSO", "DIA", 2.0, 0.009, 50.0, 1e6),)},
            "unknown underlying",
        ),
        ({"underlyings": (UnderlyingSpec("SPY", 0.16, 1.2, 470.0, 1e6),)}, "factor_loading"),
    ],
)
def test_config_rejects_invalid_values(changes: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(DEFAULT_CONFIG, **changes)
