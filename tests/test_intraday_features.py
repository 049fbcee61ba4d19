import math

import numpy as np
import pandas as pd
import pytest

from backend.config.training_config import FEATURE_GROUPS, FeatureConfig
from backend.data_download.intraday_features import (
    FEATURE_REGISTRY,
    LAYOUT_COLUMNS,
    compute_features,
    ewm_settle_bars,
    feature_names,
    feature_registry,
    feature_specs,
    first_valid_row,
    max_lookback,
    rolling_std,
    rolling_zscore,
    seeded_ewm,
)
from backend.data_download.market_calendar import expected_bar_starts, session_schedule

# No extra EWM warm-up: values appear where the textbook (TA-Lib) puts the first one.
TEXTBOOK = FeatureConfig(ewm_residual=1.0)


def grid(start: str, end: str) -> pd.DatetimeIndex:
    return expected_bar_starts(session_schedule(start, end))


def make_market(
    start: str = "2023-10-30",
    end: str = "2023-12-08",
    seed: int = 0,
    drop: float = 0.0,
    vix_nan: int = 0,
) -> pd.DataFrame:
    """Random walk on the real XNYS 15-minute grid (DST end and a half day in range)."""
    rng = np.random.default_rng(seed)
    index = grid(start, end)
    if drop:
        index = index[rng.random(len(index)) >= drop]
    n = len(index)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.002, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.002, n)))
    volume = rng.integers(0, 50_000, n).astype(np.float64)
    vix = 18.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    vix[:vix_nan] = np.nan
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "vix": vix},
        index=index,
    )


def frame_from_closes(closes, start: str = "2024-03-04", **columns) -> pd.DataFrame:
    """A market frame on the first len(closes) grid bars with flat bars unless given."""
    closes = np.asarray(closes, dtype=np.float64)
    index = grid(start, "2024-04-30")[: len(closes)]
    assert len(index) == len(closes)
    data = {
        "open": columns.get("open", closes),
        "high": columns.get("high", closes),
        "low": columns.get("low", closes),
        "close": closes,
        "volume": columns.get("volume", np.full(len(closes), 1000.0)),
        "vix": columns.get("vix", np.full(len(closes), 20.0)),
    }
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in data.items()}, index=index)


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    return make_market()


@pytest.fixture(scope="module")
def features(market) -> pd.DataFrame:
    return compute_features(market, FeatureConfig())


# --------------------------------------------------------------------------------------
# registry and shape
# --------------------------------------------------------------------------------------


def test_registry_is_complete_and_consistent():
    cfg = FeatureConfig()
    assert list(FEATURE_REGISTRY) == feature_names(cfg)  # default enables every group
    groups = [spec.group for spec in FEATURE_REGISTRY.values()]
    assert set(groups) == set(FEATURE_GROUPS)
    # Columns come grouped, in FEATURE_GROUPS order.
    assert groups == sorted(groups, key=FEATURE_GROUPS.index)
    for name, spec in FEATURE_REGISTRY.items():
        assert spec.name == name
        assert spec.lookback >= 1
        assert spec.doc and len(spec.doc) > 10
        assert spec.needs_vix == (spec.group == "vix")
    assert max_lookback(cfg) == max(s.lookback for s in FEATURE_REGISTRY.values())


def test_expected_features_are_registered():
    expected = {
        "bar": ["bar_open", "bar_high", "bar_low", "bar_close", "bar_volume"],
        "returns": ["ret_1", "ret_4", "ret_13", "ret_26", "ret_78"],
        "range_gap": [
            "bar_range",
            "close_location",
            "overnight_gap",
            "session_return",
            "session_high_dist",
            "session_low_dist",
        ],
        "technical": ["rsi", "atr", "macd", "macd_signal", "macd_hist", "bollinger_b"],
        "volume": ["volume_zscore"],
        "calendar": ["tod_sin", "tod_cos", "dow_sin", "dow_cos", "session_left"],
        "vix": ["vix_level", "vix_change", "vix_trend", "vix_volatility"],
    }
    for group, names in expected.items():
        assert [n for n, s in FEATURE_REGISTRY.items() if s.group == group] == names


def test_lookbacks_follow_the_config_parameters():
    cfg = FeatureConfig(return_horizons=(3, 1), bollinger_window=7, rsi_period=5, ewm_residual=1.0)
    reg = feature_registry(cfg)
    assert [n for n in reg if n.startswith("ret_")] == ["ret_3", "ret_1"]
    assert reg["ret_3"].lookback == 4
    assert reg["bollinger_b"].lookback == 7
    assert reg["rsi"].lookback == 6  # 5 diffs need 6 closes
    assert reg["macd"].lookback == 26 and reg["macd_signal"].lookback == 26 + 9 - 1
    assert reg["overnight_gap"].lookback == 27 and reg["session_return"].lookback == 26
    # The EWM warm-up grows as the tolerated seed residual shrinks.
    settle = ewm_settle_bars(1 / 14, 1e-3)
    assert (13 / 14) ** settle < 1e-3 <= (13 / 14) ** (settle - 1)
    assert feature_registry(FeatureConfig())["rsi"].lookback == 15 + settle


def test_output_shape_dtype_and_order(market, features):
    cfg = FeatureConfig()
    assert list(features.columns) == feature_names(cfg)
    assert features.index.equals(market.index)
    assert (features.dtypes == np.float64).all()
    assert not np.isinf(features.to_numpy()).any()


def test_custom_order_and_group_switches_change_columns(market):
    base = FeatureConfig(return_horizons=(26, 1))
    cols = list(compute_features(market, base).columns)
    assert cols.index("ret_26") < cols.index("ret_1")
    for group in FEATURE_GROUPS:
        cfg = FeatureConfig(return_horizons=(26, 1), **{f"use_{group}": False})
        out = compute_features(market, cfg)
        dropped = [s.name for s in feature_specs(base) if s.group == group]
        assert dropped, group
        assert list(out.columns) == [c for c in cols if c not in dropped]
        # Switching a group off leaves the other features untouched.
        pd.testing.assert_frame_equal(out, compute_features(market, base)[out.columns])


def test_vix_off_does_not_need_the_vix_column(market):
    cfg = FeatureConfig(use_vix=False)
    out = compute_features(market.drop(columns="vix"), cfg)
    assert not any(c.startswith("vix") for c in out.columns)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['vix'\] \(or set use_vix=False\)"):
        compute_features(market.drop(columns="vix"), FeatureConfig())


# --------------------------------------------------------------------------------------
# declared lookbacks are honest
# --------------------------------------------------------------------------------------

FRAME_STARTS = {
    "session_open": ("2023-10-30", 0),
    "mid_session": ("2023-10-30", 11),
    "half_day_first": ("2023-11-24", 0),  # the frame starts on a 14-bar day
}


@pytest.mark.parametrize("start", list(FRAME_STARTS))
@pytest.mark.parametrize("name", list(FEATURE_REGISTRY))
def test_values_are_nan_during_warmup_and_finite_after(name, start):
    first_day, skip = FRAME_STARTS[start]
    m = make_market(first_day, "2024-01-31", seed=3).iloc[skip:]
    spec = FEATURE_REGISTRY[name]
    values = compute_features(m, FeatureConfig())[name].to_numpy()
    assert np.isnan(values[: spec.lookback - 1]).all()
    assert np.isfinite(values[spec.lookback - 1 :]).all()


WINDOWED = [n for n, s in FEATURE_REGISTRY.items() if s.windowed]


@pytest.mark.parametrize("name", WINDOWED)
def test_windowed_values_ignore_rows_older_than_the_lookback(market, features, name):
    lookback = FEATURE_REGISTRY[name].lookback
    rng = np.random.default_rng(7)
    for t in (200, 333, 519, len(market) - 1):
        cut = t - lookback + 1  # rows [cut, t] form the window of row t
        changed = market.copy()
        changed.iloc[:cut, :4] = rng.uniform(1.0, 1e4, size=(cut, 4))
        changed.iloc[:cut, 4] = rng.integers(0, 10**7, size=cut)
        changed.iloc[:cut, 5] = rng.uniform(5.0, 90.0, size=cut)
        out = compute_features(changed, FeatureConfig())[name].to_numpy()
        # Every row from t on has its whole window in [cut, ...]: bit-identical.
        np.testing.assert_array_equal(out[t:], features[name].to_numpy()[t:])


def test_ewm_features_are_flagged_as_unwindowed():
    assert {n for n, s in FEATURE_REGISTRY.items() if not s.windowed} == {
        "rsi",
        "atr",
        "macd",
        "macd_signal",
        "macd_hist",
    }


def test_ewm_seed_residual_bounds_dependence_on_the_data_start():
    # Starting the data a week later changes an EWM feature at the end of its warm-up by
    # no more than the seed residual times the spread of the inputs.
    m = make_market("2023-10-02", "2023-12-29", seed=5)
    cfg = FeatureConfig()
    full = compute_features(m, cfg)
    later = compute_features(m.iloc[130:], cfg)
    for name in ("rsi", "atr", "macd", "macd_signal", "macd_hist"):
        spec = FEATURE_REGISTRY[name]
        row = 130 + spec.lookback - 1
        a, b = full[name].iloc[row:], later[name].iloc[spec.lookback - 1 :]
        scale = float(full[name].abs().max())
        assert np.max(np.abs(a.to_numpy() - b.to_numpy())) <= 2e-3 * scale, name


# --------------------------------------------------------------------------------------
# hand-computed values
# --------------------------------------------------------------------------------------


def test_returns_and_bar_features_by_hand():
    closes = [100.0, 101.0, 99.0, 102.0, 103.5]
    opens = [100.0, 100.5, 101.0, 99.5, 102.0]
    highs = [100.5, 101.5, 101.0, 102.5, 104.0]
    lows = [99.5, 100.0, 98.5, 99.0, 101.5]
    m = frame_from_closes(closes, open=opens, high=highs, low=lows)
    cfg = FeatureConfig(return_horizons=(1, 2, 4), use_technical=False, use_vix=False)
    f = compute_features(m, cfg)
    assert f["ret_1"].iloc[3] == pytest.approx(math.log(102.0 / 99.0), abs=1e-15)
    assert f["ret_2"].iloc[4] == pytest.approx(math.log(103.5 / 99.0), abs=1e-15)
    assert f["ret_4"].iloc[4] == pytest.approx(math.log(103.5 / 100.0), abs=1e-15)
    assert np.isnan(f["ret_4"].iloc[3])
    assert f["bar_open"].iloc[2] == pytest.approx(math.log(101.0 / 101.0), abs=1e-15)
    assert f["bar_high"].iloc[3] == pytest.approx(math.log(102.5 / 99.0), abs=1e-15)
    assert f["bar_low"].iloc[1] == pytest.approx(math.log(100.0 / 100.0), abs=1e-15)
    assert f["bar_close"].iloc[4] == pytest.approx(math.log(103.5 / 102.0), abs=1e-15)
    assert f["bar_range"].iloc[2] == pytest.approx(math.log(101.0 / 98.5), abs=1e-15)
    # CLV = ((C-L) - (H-C)) / (H-L): bar 3 = ((102-99) - (102.5-102)) / 3.5
    assert f["close_location"].iloc[3] == pytest.approx(2.5 / 3.5, abs=1e-15)
    # Session-anchored features are masked for a session's length by compute_features
    # (their declared lookback); the raw functions show the values on this tiny frame.
    raw = {n: FEATURE_REGISTRY[n].fn(m, cfg).to_numpy() for n in FEATURE_REGISTRY}
    assert raw["session_return"][4] == pytest.approx(math.log(103.5 / 100.0), abs=1e-15)
    assert raw["session_return"][0] == pytest.approx(0.0, abs=1e-15)
    assert raw["session_high_dist"][4] == pytest.approx(math.log(103.5 / 104.0), abs=1e-15)
    assert raw["session_high_dist"][2] == pytest.approx(math.log(99.0 / 101.5), abs=1e-15)
    assert raw["session_low_dist"][2] == pytest.approx(math.log(99.0 / 98.5), abs=1e-15)
    assert raw["session_low_dist"][4] == pytest.approx(math.log(103.5 / 98.5), abs=1e-15)
    assert np.isnan(raw["overnight_gap"]).all()  # first session of the frame
    assert np.isnan(f["session_return"].to_numpy()).all()


def test_rsi_by_hand():
    # period 3; diffs +1, -0.5, +1, +0.5, -1
    # row 3: gain 2/3, loss 1/6 -> 80; row 4: gain 11/18, loss 2/18 -> 1100/13;
    # row 5: gain (22/18)/3 = 11/27, loss (4/18 + 1)/3 = 11/27 -> 50.
    m = frame_from_closes([10.0, 11.0, 10.5, 11.5, 12.0, 11.0])
    cfg = FeatureConfig(rsi_period=3, ewm_residual=1.0)
    rsi = compute_features(m, cfg)["rsi"].to_numpy()
    assert np.isnan(rsi[:3]).all()
    np.testing.assert_allclose(rsi[3:], [80.0, 1100.0 / 13.0, 50.0], rtol=0, atol=1e-12)


def test_rsi_edge_cases_flat_and_monotone():
    cfg = FeatureConfig(rsi_period=3, ewm_residual=1.0)
    flat = compute_features(frame_from_closes([5.0] * 8), cfg)["rsi"].to_numpy()
    np.testing.assert_array_equal(flat[3:], 50.0)
    up = compute_features(frame_from_closes(np.arange(1.0, 9.0)), cfg)["rsi"].to_numpy()
    np.testing.assert_array_equal(up[3:], 100.0)


def _wilder_reference(x: list[float], n: int) -> list[float]:
    """Wilder's smoothing as written in New Concepts (1978): SMA seed, then recursion."""
    out = [math.nan] * len(x)
    avg = sum(x[:n]) / n
    out[n - 1] = avg
    for i in range(n, len(x)):
        avg = (avg * (n - 1) + x[i]) / n
        out[i] = avg
    return out


def test_rsi_and_atr_match_a_loop_reference_on_a_random_walk(market):
    cfg = TEXTBOOK
    f = compute_features(market, cfg)
    close = market["close"].tolist()
    high, low = market["high"].tolist(), market["low"].tolist()
    gains = [max(close[i] - close[i - 1], 0.0) for i in range(1, len(close))]
    losses = [max(close[i - 1] - close[i], 0.0) for i in range(1, len(close))]
    ag, al = _wilder_reference(gains, 14), _wilder_reference(losses, 14)
    rsi_ref = [math.nan] + [100.0 - 100.0 / (1.0 + g / lo) for g, lo in zip(ag, al, strict=True)]
    np.testing.assert_allclose(f["rsi"].to_numpy(), rsi_ref, rtol=1e-10, equal_nan=True)
    tr = [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
        for i in range(1, len(close))
    ]
    atr_ref = [math.nan, *_wilder_reference(tr, 14)]
    np.testing.assert_allclose(
        f["atr"].to_numpy(), np.array(atr_ref) / market["close"].to_numpy(), rtol=1e-10
    )


def test_atr_by_hand():
    # period 2. TR1 = max(1.5, |11.5-10|, |10-10|) = 1.5; TR2 = max(1.0, |12-11|, |11-11|) = 1
    # (gap up: H - C_prev); TR3 = max(0.5, |10.5-12|, |10-12|) = 2.
    # ATR: row 2 = (1.5 + 1) / 2 = 1.25; row 3 = (1.25 * 1 + 2) / 2 = 1.625.
    closes = [10.0, 11.0, 12.0, 10.2]
    m = frame_from_closes(
        closes, high=[10.0, 11.5, 12.0, 10.5], low=[10.0, 10.0, 11.0, 10.0], open=closes
    )
    atr = compute_features(m, FeatureConfig(atr_period=2, ewm_residual=1.0))["atr"].to_numpy()
    assert np.isnan(atr[:2]).all()
    np.testing.assert_allclose(atr[2:], [1.25 / 12.0, 1.625 / 10.2], rtol=0, atol=1e-15)


def test_macd_by_hand():
    # fast 2 (alpha 2/3), slow 3 (alpha 1/2), signal 2, SMA-seeded (TA-Lib convention).
    # fast: r1 11, r2 11, r3 37/3, r4 121/9; slow: r2 11, r3 12, r4 13
    # line: r2 0, r3 1/3, r4 4/9; signal: r3 (0 + 1/3)/2 = 1/6, r4 1/6 + 2/3 (4/9 - 1/6) = 19/54
    closes = [10.0, 12.0, 11.0, 13.0, 14.0]
    m = frame_from_closes(closes)
    cfg = FeatureConfig(macd_fast=2, macd_slow=3, macd_signal=2, ewm_residual=1.0)
    f = compute_features(m, cfg)
    c = np.array(closes)
    np.testing.assert_allclose(
        f["macd"].to_numpy()[2:], np.array([0.0, 1 / 3, 4 / 9]) / c[2:], rtol=0, atol=1e-15
    )
    np.testing.assert_allclose(
        f["macd_signal"].to_numpy()[3:], np.array([1 / 6, 19 / 54]) / c[3:], rtol=0, atol=1e-15
    )
    np.testing.assert_allclose(
        f["macd_hist"].to_numpy()[3:], np.array([1 / 6, 5 / 54]) / c[3:], rtol=0, atol=1e-15
    )
    assert np.isnan(f["macd"].to_numpy()[:2]).all()
    assert np.isnan(f["macd_signal"].to_numpy()[:3]).all()


def test_bollinger_b_by_hand():
    cfg = FeatureConfig(bollinger_window=3, bollinger_k=2.0)
    f = compute_features(frame_from_closes([1.0, 2.0, 3.0, 3.0, 3.0, 3.0]), cfg)
    b = f["bollinger_b"].to_numpy()
    # window (1, 2, 3): mean 2, population sd sqrt(2/3); %b = 0.5 + 1 / (4 sd)
    assert b[2] == pytest.approx(0.5 + 1.0 / (4.0 * math.sqrt(2.0 / 3.0)), abs=1e-14)
    # window (2, 3, 3): mean 8/3, sd sqrt(2)/3
    assert b[3] == pytest.approx(0.5 + (1.0 / 3.0) / (4.0 * math.sqrt(2.0) / 3.0), abs=1e-14)
    assert b[5] == 0.5  # flat window: on the middle band, not 0/0


def test_overnight_gap_is_set_at_the_open_and_carried_through_the_session():
    index = grid("2024-03-04", "2024-03-06")  # three full sessions
    n = len(index)
    m = make_market("2024-03-04", "2024-03-06", seed=11)
    assert len(m) == n == 78
    f = compute_features(m, FeatureConfig(use_vix=False))
    gap = f["overnight_gap"].to_numpy()
    assert np.isnan(gap[:26]).all()  # first session of the frame: previous close unknown
    for first in (26, 52):
        expected = math.log(m["open"].iloc[first] / m["close"].iloc[first - 1])
        np.testing.assert_array_equal(gap[first : first + 26], expected)
        assert f["bar_open"].iloc[first] == expected
    # Missing first bar of the third session: the first present bar stands in for it.
    holed = m.drop(index=m.index[52])
    g2 = compute_features(holed, FeatureConfig(use_vix=False))["overnight_gap"].to_numpy()
    expected = math.log(holed["open"].iloc[52] / holed["close"].iloc[51])
    np.testing.assert_array_equal(g2[52:], expected)


def test_time_of_day_on_a_half_day_and_across_dst():
    m = make_market("2023-11-02", "2023-11-27", seed=2)
    f = compute_features(m, FeatureConfig())
    ts = lambda s: pd.Timestamp(s, tz="America/New_York")  # noqa: E731

    # DST ended on 2023-11-05: 09:30 EDT and 09:30 EST are both phase 0, 15:45 is 25/26.
    for day in ("2023-11-03", "2023-11-06"):
        row = f.loc[ts(f"{day} 09:30")]
        assert (row["tod_sin"], row["tod_cos"]) == (0.0, 1.0)
        assert row["session_left"] == pytest.approx(25 / 26, abs=1e-15)
        last = f.loc[ts(f"{day} 15:45")]
        assert last["tod_sin"] == pytest.approx(math.sin(2 * math.pi * 25 / 26), abs=1e-15)
        assert last["tod_cos"] == pytest.approx(math.cos(2 * math.pi * 25 / 26), abs=1e-15)
        assert last["session_left"] == 0.0
    # The UTC hour differs across the change, the features do not.
    assert (
        ts("2023-11-03 09:30").tz_convert("UTC").hour
        != ts("2023-11-06 09:30").tz_convert("UTC").hour
    )

    # 2023-11-24 closes at 13:00: 14 bars, the 12:45 bar is the last one.
    half = f.loc[ts("2023-11-24 09:30") : ts("2023-11-24 12:45")]
    assert len(half) == 14
    np.testing.assert_allclose(half["tod_sin"], np.sin(2 * np.pi * np.arange(14) / 14), atol=1e-15)
    np.testing.assert_allclose(half["tod_cos"], np.cos(2 * np.pi * np.arange(14) / 14), atol=1e-15)
    np.testing.assert_allclose(half["session_left"], (13 - np.arange(14)) / 14, atol=1e-15)
    assert half["session_left"].iloc[-1] == 0.0

    # Day of week: Friday = 4, Monday = 0.
    fri, mon = f.loc[ts("2023-11-24 10:00")], f.loc[ts("2023-11-27 10:00")]
    assert fri["dow_sin"] == pytest.approx(math.sin(2 * math.pi * 4 / 5), abs=1e-15)
    assert fri["dow_cos"] == pytest.approx(math.cos(2 * math.pi * 4 / 5), abs=1e-15)
    assert (mon["dow_sin"], mon["dow_cos"]) == (0.0, 1.0)


def test_zero_volume_is_finite_and_flat_volume_scores_zero():
    closes = 100.0 + np.sin(np.arange(120.0))
    volume = np.zeros(120)
    volume[60:] = 5000.0
    volume[100] = 0.0  # one empty bar inside a busy stretch
    m = frame_from_closes(closes, volume=volume)
    f = compute_features(m, FeatureConfig(bar_volume_window=10, volume_zscore_window=10))
    vz, bv = f["volume_zscore"].to_numpy(), f["bar_volume"].to_numpy()
    assert np.isfinite(vz[9:]).all() and np.isfinite(bv[9:]).all()
    np.testing.assert_array_equal(vz[9:60], 0.0)  # all-zero window: 0, not 0/0
    np.testing.assert_array_equal(bv[9:60], 0.0)
    np.testing.assert_array_equal(vz[69:100], 0.0)  # constant busy window
    assert vz[100] == pytest.approx(-3.0, abs=1e-12)  # one outlier in 10: -(sqrt(10-1))
    assert bv[100] == pytest.approx(-0.9 * math.log1p(5000.0), abs=1e-12)


def test_nan_vix_at_the_start():
    m = make_market(vix_nan=40, seed=4)
    cfg = FeatureConfig()
    f = compute_features(m, cfg)
    w_trend, w_vol = cfg.vix_trend_window, cfg.vix_volatility_window
    first_finite = {
        "vix_level": 40,
        "vix_change": 41,
        "vix_trend": 40 + w_trend - 1,
        "vix_volatility": 41 + w_vol - 1,
    }
    for name, row in first_finite.items():
        values = f[name].to_numpy()
        assert np.isnan(values[:row]).all(), name
        assert np.isfinite(values[row:]).all(), name
    # Other groups do not care.
    other = [c for c in f.columns if not c.startswith("vix")]
    pd.testing.assert_frame_equal(
        f[other], compute_features(make_market(seed=4), cfg)[other], check_exact=True
    )
    assert first_valid_row(f) == max(max_lookback(cfg) - 1, first_finite["vix_trend"])


def test_gaps_and_extreme_moves_create_no_inf_or_nan_after_warmup():
    m = make_market(seed=9, drop=0.15)  # 15% of the bars missing, whole stretches too
    m = m.drop(index=m.index[300:360])
    m.iloc[400, :4] = [m["close"].iloc[399] * 3.0] * 4  # a flat bar far away (H == L)
    m.iloc[401:420, :4] = 1e-3  # a crash to almost nothing, then flat
    m.iloc[420:430, 4] = 0.0
    f = compute_features(m, FeatureConfig())
    values = f.to_numpy()
    assert not np.isinf(values).any()
    start = first_valid_row(f)
    assert start == max_lookback(FeatureConfig()) - 1
    assert np.isfinite(values[start:]).all()
    assert f["close_location"].iloc[400] == 0.0
    assert (f["session_high_dist"].dropna() <= 0).all()
    assert (f["session_low_dist"].dropna() >= 0).all()
    assert f["rsi"].dropna().between(0, 100).all()
    assert f["close_location"].dropna().between(-1, 1).all()


def test_feature_functions_work_standalone_and_agree_with_compute_features(market, features):
    cfg = FeatureConfig()
    plain = market.copy()
    assert not set(LAYOUT_COLUMNS) & set(plain.columns)
    for name, spec in FEATURE_REGISTRY.items():
        raw = spec.fn(plain, cfg).to_numpy()
        valid = slice(spec.lookback - 1, None)
        np.testing.assert_array_equal(raw[valid], features[name].to_numpy()[valid], err_msg=name)


# --------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------


def test_rolling_primitives():
    x = np.array([1.0, 2.0, 4.0, 4.0, 4.0, np.nan, 3.0, 5.0])
    sd = rolling_std(x, 3)
    assert np.isnan(sd[:2]).all()
    assert sd[2] == pytest.approx(np.std([1.0, 2.0, 4.0]), abs=1e-15)
    assert sd[4] == 0.0  # exactly
    assert np.isnan(sd[5:]).all() and np.isnan(rolling_std(x, 3)[7])  # NaN in the window
    z = rolling_zscore(np.full(10, 0.1), 4)
    np.testing.assert_array_equal(z[3:], 0.0)  # 0.1 * 3 / 3 != 0.1, yet exactly 0
    assert np.isnan(rolling_std(np.ones(2), 3)).all()


def test_seeded_ewm_skips_leading_nans():
    x = np.array([np.nan, np.nan, 1.0, 3.0, 5.0, 7.0])
    y = seeded_ewm(x, 0.5, 2)
    assert np.isnan(y[:3]).all()
    np.testing.assert_allclose(y[3:], [2.0, 3.5, 5.25])
    assert np.isnan(seeded_ewm(np.full(3, np.nan), 0.5, 2)).all()
    assert np.isnan(seeded_ewm(np.ones(3), 0.5, 4)).all()


# --------------------------------------------------------------------------------------
# input validation and first_valid_row
# --------------------------------------------------------------------------------------


def test_rejects_bad_market_frames(market):
    cfg = FeatureConfig()
    bad = market.copy()
    bad.iloc[10, 3] = 0.0
    with pytest.raises(ValueError, match=r"close must be finite and > 0; 1 bad value"):
        compute_features(bad, cfg)
    bad = market.copy()
    bad.iloc[5, 4] = -1.0
    with pytest.raises(ValueError, match=r"volume must be finite and >= 0"):
        compute_features(bad, cfg)
    bad = market.copy()
    bad.iloc[50, 5] = -2.0
    with pytest.raises(ValueError, match=r"vix must be NaN or finite and > 0"):
        compute_features(bad, cfg)
    with pytest.raises(ValueError, match=r"timezone-aware"):
        compute_features(market.tz_localize(None), cfg)
    with pytest.raises(ValueError, match=r"strictly increasing"):
        compute_features(market.iloc[::-1], cfg)
    premarket = market.copy()
    premarket.index = premarket.index.where(
        np.arange(len(market)) != 30, market.index[30].replace(hour=4)
    ).rename("timestamp")
    premarket = premarket.sort_index()
    with pytest.raises(ValueError, match=r"1 bar\(s\) lie outside the regular XNYS sessions"):
        compute_features(premarket, cfg)


def test_first_valid_row(features):
    assert first_valid_row(features) == max_lookback(FeatureConfig()) - 1
    holed = features.copy()
    holed.iloc[400, 3] = np.nan
    with pytest.raises(ValueError, match=r"feature 'bar_close' is not finite at 2023-"):
        first_valid_row(holed)
    assert first_valid_row(features.iloc[:10]) == 10
