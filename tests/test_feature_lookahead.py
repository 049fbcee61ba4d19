"""Look-ahead guard: no feature (or normalized feature) at row t may depend on rows > t.

Parametrized over the registry, so a newly registered feature is checked automatically.
Every bar after the cut is replaced by wildly different prices, volumes and VIX values;
everything up to the cut must stay bit-identical.
"""

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from backend.config.training_config import FeatureConfig
from backend.data_download.intraday_features import (
    FEATURE_REGISTRY,
    compute_features,
    first_valid_row,
)
from backend.data_download.market_calendar import expected_bar_starts, session_schedule
from backend.data_download.normalizer import FeatureNormalizer

NY = "America/New_York"
CONFIG = FeatureConfig()


def make_market(seed: int = 21) -> pd.DataFrame:
    """Random walk on the XNYS grid: DST end (Nov 5), a half day (Nov 24), holes."""
    rng = np.random.default_rng(seed)
    index = expected_bar_starts(session_schedule("2023-10-02", "2023-12-08"))
    holes = pd.DatetimeIndex(
        [
            pd.Timestamp("2023-11-08 10:00", tz=NY),  # one missing bar
            *pd.date_range("2023-11-14 09:30", periods=4, freq="15min", tz=NY),  # first hour
            pd.Timestamp("2023-11-29 15:45", tz=NY),  # a session's last bar
        ]
    )
    index = index.difference(holes).rename("timestamp")
    n = len(index)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.002, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.002, n)))
    volume = rng.integers(0, 80_000, n).astype(np.float64)
    volume[rng.random(n) < 0.02] = 0.0
    vix = 16.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    vix[:30] = np.nan  # VIX not known yet at the start
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "vix": vix},
        index=index,
    )


def perturb_after(market: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """Replace every bar after row t with unrelated, valid random bars."""
    rng = np.random.default_rng(seed)
    out = market.copy()
    k = len(market) - t - 1
    if k <= 0:
        return out
    a, b = rng.uniform(1.0, 5_000.0, k), rng.uniform(1.0, 5_000.0, k)
    out.iloc[t + 1 :, out.columns.get_loc("open")] = a
    out.iloc[t + 1 :, out.columns.get_loc("close")] = b
    out.iloc[t + 1 :, out.columns.get_loc("high")] = np.maximum(a, b) * rng.uniform(1, 1.5, k)
    out.iloc[t + 1 :, out.columns.get_loc("low")] = np.minimum(a, b) / rng.uniform(1, 1.5, k)
    out.iloc[t + 1 :, out.columns.get_loc("volume")] = rng.integers(0, 10**9, k).astype(float)
    out.iloc[t + 1 :, out.columns.get_loc("vix")] = rng.uniform(9.0, 85.0, k)
    return out


MARKET = make_market()


def _row(stamp: str) -> int:
    return int(MARKET.index.get_loc(pd.Timestamp(stamp, tz=NY)))


CUTS: dict[str, int] = {
    "in_warmup": 60,
    "session_first_bar_after_dst": _row("2023-11-06 09:30"),
    "session_last_bar_before_half_day": _row("2023-11-22 15:45"),
    "half_day_mid": _row("2023-11-24 11:00"),
    "half_day_last_bar": _row("2023-11-24 12:45"),
    "bar_before_a_hole": _row("2023-11-08 09:45"),
    "first_bar_after_missing_open": _row("2023-11-14 10:30"),
    "second_to_last_row": len(MARKET) - 2,
}


@pytest.fixture(scope="module")
def full() -> pd.DataFrame:
    return compute_features(MARKET, CONFIG)


@pytest.fixture(scope="module")
def perturbed() -> dict[str, pd.DataFrame]:
    return {
        cut: compute_features(perturb_after(MARKET, t, seed=i), CONFIG)
        for i, (cut, t) in enumerate(CUTS.items())
    }


def assert_unchanged_up_to(a: np.ndarray, b: np.ndarray, t: int, what: str) -> None:
    # NaN == NaN here: the warm-up mask must not move either.
    np.testing.assert_array_equal(a[: t + 1], b[: t + 1], err_msg=f"{what} leaks the future")


@pytest.mark.parametrize("cut", list(CUTS))
@pytest.mark.parametrize("name", list(FEATURE_REGISTRY))
def test_feature_ignores_every_bar_after_t(full, perturbed, name, cut):
    t = CUTS[cut]
    assert_unchanged_up_to(
        full[name].to_numpy(), perturbed[cut][name].to_numpy(), t, f"{name} at cut {cut}"
    )


def test_perturbation_is_not_vacuous(full, perturbed):
    # Every feature that reads the bars (all but the calendar ones) must see the change
    # after the cut; otherwise the test above would pass for the wrong reason.
    t = CUTS["session_last_bar_before_half_day"]
    changed = perturbed["session_last_bar_before_half_day"]
    for name, spec in FEATURE_REGISTRY.items():
        after_a, after_b = full[name].to_numpy()[t + 1 :], changed[name].to_numpy()[t + 1 :]
        differs = bool(np.any(after_a != after_b))
        assert differs == (spec.group != "calendar"), name


def test_the_check_catches_a_leaky_feature():
    # A feature built like FinRL's leaks (next bar's close, whole-series z-score) fails.
    t = _row("2023-11-24 11:15")  # not on the hour, so the bfill below reaches ahead
    leaks: dict[str, Callable[[pd.DataFrame], pd.Series]] = {
        "shift(-1)": lambda m: m["close"].shift(-1),
        "bfill": lambda m: m["close"].where(m.index.minute == 0).bfill(),
        "centered": lambda m: m["close"].rolling(5, center=True).mean(),
        "whole_series_zscore": lambda m: (m["close"] - m["close"].mean()) / m["close"].std(),
    }
    changed = perturb_after(MARKET, t, seed=99)
    for label, leak in leaks.items():
        with pytest.raises(AssertionError, match="leaks the future"):
            assert_unchanged_up_to(leak(MARKET).to_numpy(), leak(changed).to_numpy(), t, label)


@pytest.mark.parametrize("cut", list(CUTS))
def test_truncated_frame_gives_the_same_values(full, cut):
    t = CUTS[cut]
    truncated = compute_features(MARKET.iloc[: t + 1], CONFIG)
    pd.testing.assert_frame_equal(truncated, full.iloc[: t + 1], check_exact=True)


@pytest.mark.parametrize("method", ["zscore", "robust"])
@pytest.mark.parametrize("cut", [c for c, t in CUTS.items() if t > 400])
def test_normalized_features_ignore_every_bar_after_t(full, perturbed, cut, method):
    t = CUTS[cut]
    start = full.index[first_valid_row(full.iloc[: t + 1])]
    end = full.index[t - 1]  # the training range ends before t
    fitted = FeatureNormalizer(method=method).fit(full, start, end)
    refit = FeatureNormalizer(method=method).fit(perturbed[cut], start, end)
    assert refit.to_dict() == fitted.to_dict()  # stats never saw the changed bars
    a, b = fitted.transform(full), refit.transform(perturbed[cut])
    assert a.dtype == np.float32
    assert_unchanged_up_to(a, b, t, f"normalized features at cut {cut}")
