import json

import numpy as np
import pandas as pd
import pytest

from backend.config.training_config import FeatureConfig
from backend.data_download.intraday_features import compute_features, first_valid_row
from backend.data_download.market_calendar import expected_bar_starts, session_schedule
from backend.data_download.normalizer import (
    FORMAT_VERSION,
    IQR_TO_STD,
    FeatureNormalizer,
    normalizer_filename,
)

NY = "America/New_York"
INDEX = expected_bar_starts(session_schedule("2023-01-03", "2023-12-29"))  # ~6.5k bars


def gaussian_features(n: int = len(INDEX), seed: int = 0) -> pd.DataFrame:
    """Columns with different locations, scales and shapes, on a real bar index."""
    rng = np.random.default_rng(seed)
    index = INDEX[:n]
    return pd.DataFrame(
        {
            "a": rng.normal(3.0, 2.0, n),
            "b": rng.normal(-50.0, 0.01, n),
            "c": rng.standard_t(3, n) * 5.0,  # heavy tails
            "d": rng.uniform(0.0, 100.0, n),
        },
        index=index,
    )


TRAIN_START, TRAIN_END = "2023-02-01", "2023-08-31 15:45"


def train_mask(index: pd.DatetimeIndex) -> np.ndarray:
    lo = pd.Timestamp(TRAIN_START, tz=NY)
    hi = pd.Timestamp(TRAIN_END, tz=NY)
    return np.asarray((index >= lo) & (index <= hi))


# --------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------


def test_zscore_training_batch_has_zero_mean_unit_std():
    feats = gaussian_features()
    norm = FeatureNormalizer("zscore", clip=None).fit(feats, TRAIN_START, TRAIN_END)
    batch = norm.transform(feats)[train_mask(feats.index)].astype(np.float64)
    # On its own fit rows the transform is exact up to float32 rounding (relative 6e-8
    # per value), so 1e-5 is loose for rounding yet tight enough to catch a ddof=1 vs
    # ddof=0 slip (std off by 1/(2N) ~ 1e-4 here).
    np.testing.assert_allclose(batch.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(batch.std(axis=0), 1.0, atol=1e-5)


def test_zscore_on_real_features_with_default_clip():
    rng = np.random.default_rng(1)
    index = INDEX[:3000]
    close = 80.0 * np.exp(np.cumsum(rng.normal(0.0, 0.003, len(index))))
    market = pd.DataFrame(
        {
            "open": close * np.exp(rng.normal(0, 0.001, len(index))),
            "close": close,
            "volume": rng.lognormal(9.0, 0.5, len(index)),
            "vix": 20.0 * np.exp(np.cumsum(rng.normal(0, 0.01, len(index)))),
        },
        index=index,
    )
    market["high"] = market[["open", "close"]].max(axis=1) * 1.001
    market["low"] = market[["open", "close"]].min(axis=1) * 0.999
    feats = compute_features(market, FeatureConfig())
    feats = feats.iloc[first_valid_row(feats) :]
    norm = FeatureNormalizer().fit(feats)
    out = norm.transform(feats).astype(np.float64)
    assert np.isfinite(out).all() and np.abs(out).max() <= 5.0
    # Clipping at 5 sigma touches a handful of rows at most: mean/std barely move, except
    # for columns that are constant on the range (none here: the index spans many days).
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=0.05)
    assert norm.fit_start == feats.index[0].isoformat()
    assert norm.n_rows == len(feats)


def test_robust_median_zero_and_iqr_scale():
    feats = gaussian_features()
    norm = FeatureNormalizer("robust", clip=None).fit(feats, TRAIN_START, TRAIN_END)
    batch = norm.transform(feats)[train_mask(feats.index)].astype(np.float64)
    # Percentiles are affine-equivariant: exact up to float32 rounding.
    np.testing.assert_allclose(np.median(batch, axis=0), 0.0, atol=1e-5)
    q25, q75 = np.percentile(batch, [25, 75], axis=0)
    np.testing.assert_allclose(q75 - q25, IQR_TO_STD, atol=1e-5)


def test_robust_scale_matches_std_on_gaussian_data_and_ignores_outliers():
    rng = np.random.default_rng(5)
    n = 200_000
    index = pd.date_range("2020-01-01", periods=n, freq="15min", tz=NY)
    x = rng.normal(0.0, 3.0, n)
    clean = pd.DataFrame({"x": x}, index=index)
    robust = FeatureNormalizer("robust").fit(clean).stats["x"].scale
    zscore = FeatureNormalizer("zscore").fit(clean).stats["x"].scale
    # The IQR-based sigma has a standard error of ~1.17 sigma / sqrt(n) ~ 0.3% here;
    # 2% is about 8 standard errors.
    assert robust == pytest.approx(3.0, rel=0.02)
    assert robust == pytest.approx(zscore, rel=0.02)
    spiked = x.copy()
    spiked[:200] = 1e4  # 0.1% of the rows: crash-day volume spikes
    spiky = pd.DataFrame({"x": spiked}, index=index)
    assert FeatureNormalizer("robust").fit(spiky).stats["x"].scale == pytest.approx(3.0, rel=0.02)
    assert FeatureNormalizer("zscore").fit(spiky).stats["x"].scale > 100.0


def test_statistics_come_from_the_training_range_only():
    feats = gaussian_features()
    inside = train_mask(feats.index)
    for method in ("zscore", "robust"):
        base = FeatureNormalizer(method).fit(feats, TRAIN_START, TRAIN_END).to_dict()
        outside = feats.copy()
        outside.loc[~inside] = 1e6  # rows before and after the range
        assert FeatureNormalizer(method).fit(outside, TRAIN_START, TRAIN_END).to_dict() == base
        changed = feats.copy()
        rows = np.flatnonzero(inside)[[0, len(np.flatnonzero(inside)) // 2, -1]]
        changed.iloc[rows] = changed.iloc[rows] + 1e6  # first, middle, last row in range
        other = FeatureNormalizer(method).fit(changed, TRAIN_START, TRAIN_END).to_dict()
        for name in feats.columns:
            assert other["stats"][name] != base["stats"][name], (method, name)


def test_fit_range_is_inclusive_and_recorded():
    feats = gaussian_features()
    norm = FeatureNormalizer().fit(feats, TRAIN_START, TRAIN_END)
    inside = feats.index[train_mask(feats.index)]
    assert norm.n_rows == len(inside)
    assert norm.fit_start == "2023-02-01T09:30:00-05:00"
    assert norm.fit_end == "2023-08-31T15:45:00-04:00"  # inclusive end, EDT offset kept
    assert norm.feature_names == ["a", "b", "c", "d"]
    assert norm.method == "zscore" and norm.clip == 5.0
    # Naive bounds are New York time; aware ones in another zone are converted.
    utc = FeatureNormalizer().fit(
        feats, pd.Timestamp("2023-02-01 14:30", tz="UTC"), pd.Timestamp(TRAIN_END, tz=NY)
    )
    assert utc.to_dict() == norm.to_dict()
    whole = FeatureNormalizer().fit(feats)
    assert whole.n_rows == len(feats) and whole.fit_start == feats.index[0].isoformat()


def test_nan_rows_are_skipped_per_feature_and_stay_nan():
    feats = gaussian_features()
    feats.iloc[:100, 0] = np.nan  # warm-up of one column only
    norm = FeatureNormalizer().fit(feats)
    assert norm.stats["a"].count == len(feats) - 100
    assert norm.stats["b"].count == len(feats)
    expected_mean = feats["a"].iloc[100:].mean()
    assert norm.stats["a"].center == pytest.approx(expected_mean, rel=1e-12)
    out = norm.transform(feats)
    assert np.isnan(out[:100, 0]).all()
    assert np.isfinite(out[:, 1:]).all() and np.isfinite(out[100:, 0]).all()


def test_constant_column_maps_to_zero_not_inf():
    feats = gaussian_features(500)
    feats["flat"] = 7.25
    for method in ("zscore", "robust"):
        norm = FeatureNormalizer(method).fit(feats)
        assert norm.stats["flat"].scale == 1.0 and norm.stats["flat"].constant
        out = norm.transform(feats)
        np.testing.assert_array_equal(out[:, -1], 0.0)
        assert not norm.stats["a"].constant


def test_clipping():
    feats = gaussian_features(2000)
    feats.iloc[10, 0] = 1e3
    feats.iloc[11, 0] = -1e3
    clipped = FeatureNormalizer(clip=3.0).fit(feats).transform(feats)
    assert clipped[10, 0] == 3.0 and clipped[11, 0] == -3.0
    assert np.abs(clipped).max() <= 3.0
    raw = FeatureNormalizer(clip=None).fit(feats).transform(feats)
    assert raw[10, 0] > 10.0 and raw[11, 0] < -10.0
    inner = np.abs(raw) < 3.0
    np.testing.assert_array_equal(clipped[inner], raw[inner])  # only the tails move
    default = FeatureNormalizer().fit(feats).transform(feats)
    assert default[10, 0] == 5.0


# --------------------------------------------------------------------------------------
# transform API
# --------------------------------------------------------------------------------------


def test_transform_checks_columns_by_name():
    feats = gaussian_features(300)
    norm = FeatureNormalizer().fit(feats)
    with pytest.raises(ValueError, match=r"missing \['c'\], unexpected \['e'\]"):
        norm.transform(feats.rename(columns={"c": "e"}))
    with pytest.raises(ValueError, match=r"missing \['d'\], unexpected \[\]"):
        norm.transform(feats.drop(columns="d"))
    with pytest.raises(ValueError, match=r"unexpected \['z'\]"):
        norm.transform(feats.assign(z=1.0))
    # Same names in another order: matched by name, output in the fitted order.
    shuffled = feats[["d", "b", "a", "c"]]
    np.testing.assert_array_equal(norm.transform(shuffled), norm.transform(feats))


def test_transform_array_matches_transform():
    feats = gaussian_features(300)
    norm = FeatureNormalizer("robust").fit(feats)
    table = norm.transform(feats)
    rows = feats.to_numpy()
    np.testing.assert_array_equal(norm.transform_array(rows), table)
    np.testing.assert_array_equal(norm.transform_array(rows[-1]), table[-1])
    assert norm.transform_array(rows[-1]).dtype == np.float32
    with pytest.raises(ValueError, match=r"expected shape \(4,\) or \(n, 4\), got \(3,\)"):
        norm.transform_array(rows[-1, :3])
    bad = rows[:2].copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"inf in features \['c'\]"):
        norm.transform_array(bad)


def test_unfitted_normalizer_refuses_to_transform():
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureNormalizer().transform(gaussian_features(10))
    with pytest.raises(RuntimeError, match="not fitted"):
        FeatureNormalizer().save("unused.json")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "minmax"}, r"method must be one of \['zscore', 'robust'\]"),
        ({"clip": 0.0}, r"clip must be a positive number or None"),
        ({"clip": float("inf")}, r"clip must be a positive number or None"),
        ({"eps": -1.0}, r"eps must be finite and >= 0"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureNormalizer(**kwargs)


def test_fit_errors():
    feats = gaussian_features(300)
    with pytest.raises(ValueError, match=r"no rows in the fit range"):
        FeatureNormalizer().fit(feats, "2030-01-01", "2030-12-31")
    with pytest.raises(ValueError, match=r"end .* is before start"):
        FeatureNormalizer().fit(feats, "2023-03-01", "2023-02-01")
    holed = feats.copy()
    holed["a"] = np.nan
    with pytest.raises(ValueError, match=r"no non-NaN value in the fit range: \['a'\]"):
        FeatureNormalizer().fit(holed)
    inf = feats.copy()
    inf.iloc[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"inf in the fit range: \['b'\]"):
        FeatureNormalizer().fit(inf)
    with pytest.raises(ValueError, match=r"timezone-aware"):
        FeatureNormalizer().fit(feats.tz_localize(None))


# --------------------------------------------------------------------------------------
# persistence
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["zscore", "robust"])
@pytest.mark.parametrize("clip", [5.0, None])
def test_json_round_trip_is_bit_identical(tmp_path, method, clip):
    feats = gaussian_features()
    feats.iloc[:50, 2] = np.nan
    norm = FeatureNormalizer(method, clip=clip).fit(feats, TRAIN_START, TRAIN_END)
    path = norm.save(tmp_path / "models" / normalizer_filename("tna", "SAC_INTRADAY_DSR"))
    assert path.name == "normalizer_TNA_SAC_INTRADAY_DSR.json"
    assert not list(path.parent.glob("*.tmp"))
    data = json.loads(path.read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert data["feature_names"] == ["a", "b", "c", "d"]
    assert data["fit_start"] == norm.fit_start and data["fit_end"] == norm.fit_end
    loaded = FeatureNormalizer.load(path)
    assert loaded.to_dict() == norm.to_dict()
    a, b = norm.transform(feats), loaded.transform(feats)
    assert a.tobytes() == b.tobytes()  # bit-identical, NaN payloads included
    assert repr(loaded) == repr(norm)


def test_normalizer_filename():
    assert normalizer_filename("TNA", "SAC_INTRADAY_DSR") == "normalizer_TNA_SAC_INTRADAY_DSR.json"
    with pytest.raises(ValueError, match="symbol must be a non-empty name"):
        normalizer_filename("", "SAC")
    with pytest.raises(ValueError, match="agent must be a non-empty name"):
        normalizer_filename("TNA", "../etc")


def _saved(tmp_path) -> tuple[dict, object]:
    norm = FeatureNormalizer().fit(gaussian_features(300))
    path = norm.save(tmp_path / "n.json")
    return json.loads(path.read_text()), path


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(format_version=99), r"unsupported normalizer format_version 99"),
        (lambda d: d.pop("stats"), r"lacks field\(s\) \['stats'\]"),
        (lambda d: d["stats"]["a"].update(scale=0.0), r"feature 'a' must be finite with scale"),
        (lambda d: d["stats"].pop("b"), r"stats must hold exactly one entry per feature"),
        (lambda d: d["stats"]["c"].pop("center"), r"bad stats for feature 'c'"),
        (lambda d: d.update(feature_names=["a", "a", "c", "d"]), r"feature_names has duplicates"),
        (lambda d: d.update(method="minmax"), r"method must be one of"),
        (lambda d: d.update(fit_start="yesterday-ish"), r"fit_start is not an ISO timestamp"),
    ],
)
def test_load_validates(tmp_path, mutate, match):
    data, path = _saved(tmp_path)
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        FeatureNormalizer.load(path)


def test_load_rejects_broken_json(tmp_path):
    path = tmp_path / "n.json"
    path.write_text('{"format_version": 1, ')
    with pytest.raises(ValueError, match="not valid JSON"):
        FeatureNormalizer.load(path)
