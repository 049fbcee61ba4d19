"""Supervised labels: definitions, no look-ahead, thresholds from the fit range only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.config.training_config import FeatureConfig
from backend.data_download.dataset import SymbolDataset
from backend.data_download.synthetic_market import (
    DEFAULT_UNDERLYINGS,
    SyntheticMarketConfig,
    generate_synthetic_market,
)
from backend.supervised.labels import (
    NO_LABEL,
    TASKS,
    LabelConfig,
    fit_thresholds,
    last_realized,
    make_labels,
    raw_targets,
)
from backend.supervised.oracle import bayes_direction_accuracy, bayes_sign_accuracy
from backend.supervised.samples import observation_windows

H = 4
CONFIG = LabelConfig(horizon=H, vol_window=10)


def _bars(n_sessions: int = 30, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sid = np.repeat(np.arange(n_sessions), 26)
    r = rng.normal(0.0, 0.002, sid.size)
    close = 100.0 * np.exp(np.cumsum(r))
    open_ = close * np.exp(rng.normal(0.0, 0.001, sid.size))
    return close, open_, sid


def _labels(close: np.ndarray, open_: np.ndarray, sid: np.ndarray, fit: slice) -> dict:
    raw = raw_targets(close, open_, sid, CONFIG)
    thresholds = fit_thresholds(raw, np.arange(close.size)[fit], CONFIG)
    labels = make_labels(raw, thresholds)
    return {"raw": raw, "thresholds": thresholds, "labels": labels}


def test_labels_use_only_the_horizon_inside_the_session() -> None:
    close, open_, sid = _bars()
    out = _labels(close, open_, sid, slice(0, 500))
    labels = out["labels"]
    last_bars = np.flatnonzero(np.r_[sid[1:] != sid[:-1], True])
    for offset in range(H):  # the last h bars of each session have no complete horizon
        assert (labels.direction[last_bars - offset] == NO_LABEL).all()
    # A labelled direction is the sign of the h-bar move beyond the vol-scaled band.
    t = int(np.flatnonzero(labels.direction == 2)[0])
    assert close[t + H] > close[t]
    t = int(np.flatnonzero(labels.direction == 0)[0])
    assert close[t + H] < close[t]


@pytest.mark.parametrize("t", [200, 333, 517])
def test_perturbing_bars_after_t_plus_h_leaves_labels_at_t_unchanged(t: int) -> None:
    close, open_, sid = _bars()
    base = _labels(close, open_, sid, slice(0, 150))
    rng = np.random.default_rng(9)
    c2, o2 = close.copy(), open_.copy()
    c2[t + H + 1 :] *= np.exp(rng.normal(0.0, 0.05, c2.size - t - H - 1))
    o2[t + H + 1 :] *= np.exp(rng.normal(0.0, 0.05, o2.size - t - H - 1))
    # Thresholds stay those of the (unchanged) fit range, so only the raw targets can move.
    raw = raw_targets(c2, o2, sid, CONFIG)
    again = make_labels(raw, base["thresholds"])
    for task in TASKS:
        np.testing.assert_array_equal(again.task(task)[: t + 1], base["labels"].task(task)[: t + 1])
    np.testing.assert_array_equal(again.intensity[: t + 1], base["labels"].intensity[: t + 1])
    # ... and the perturbation is large enough to change later labels (the test can fail).
    assert (again.direction[t + H + 1 :] != base["labels"].direction[t + H + 1 :]).any()


def test_thresholds_depend_on_the_fit_range_only() -> None:
    close, open_, sid = _bars()
    fit = slice(0, 260)  # ten sessions
    base = _labels(close, open_, sid, fit)["thresholds"]
    c2 = close.copy()
    c2[260 + H :] *= 1.5 ** np.sin(np.arange(c2.size - 260 - H))  # wild, after the fit range
    assert _labels(c2, open_, sid, fit)["thresholds"] == base
    c3 = close.copy()
    c3[100:120] *= np.exp(np.linspace(0, 0.05, 20))  # inside the fit range: must change
    assert _labels(c3, open_, sid, fit)["thresholds"] != base


def test_persistence_is_the_last_label_whose_horizon_has_closed() -> None:
    labels = np.array([0, 1, 2, NO_LABEL, 1, 0, 2, 2, NO_LABEL, NO_LABEL, 1])
    got = last_realized(labels, 2)
    #         t:   0   1   2  3  4  5          6  7  8  9  10
    expected = [-1, -1, 0, 1, 2, 2, 1, 0, 2, 2, 2]
    np.testing.assert_array_equal(got, expected)
    # Known at t: perturbing labels after t - h never changes persistence at t.
    close, open_, sid = _bars()
    base = _labels(close, open_, sid, slice(0, 300))["labels"]
    t = 400
    c2 = close.copy()
    c2[t + 1 :] *= 1.1
    again = make_labels(
        raw_targets(c2, open_, sid, CONFIG), _labels(close, open_, sid, slice(0, 300))["thresholds"]
    )
    for task in TASKS:
        np.testing.assert_array_equal(
            last_realized(again.task(task), H)[: t + 1], last_realized(base.task(task), H)[: t + 1]
        )


def _spy(seed: int = 5):
    config = SyntheticMarketConfig(
        underlyings=DEFAULT_UNDERLYINGS[:1], leveraged=(), n_sessions=40, end=None, seed=seed
    )
    frames = generate_synthetic_market(config)
    market = frames["SPY"].copy()
    market["vix"] = frames["VIX"]["close"]
    return market


def test_perturbing_bars_in_the_horizon_leaves_observations_at_t_unchanged() -> None:
    market = _spy()
    features = FeatureConfig.for_agent("SAC_INTRADAY_DSR")
    ds = SymbolDataset.from_market("SPY", market, features)
    first, last = ds.ready_sessions[0], ds.ready_sessions[10]
    norm = ds.fit_normalizer(first, last)
    arrays = ds.arrays(norm)
    t = arrays.n_bars - 60
    shifted = market.copy()
    cut = ds.warmup_rows + t  # market row of array row t
    rows = shifted.index[cut + 1 : cut + 1 + H]
    for col in ("open", "high", "low", "close"):
        shifted.loc[rows, col] *= 1.3
    shifted.loc[rows, "volume"] *= 7.0
    shifted.loc[rows, "vix"] *= 2.0
    ds2 = SymbolDataset.from_market("SPY", shifted, features)
    arrays2 = ds2.arrays(ds2.fit_normalizer(first, last))
    w1, m1 = observation_windows(arrays.features, np.array([t]), 16, 10.0)
    w2, m2 = observation_windows(arrays2.features, np.array([t]), 16, 10.0)
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(arrays.features[: t + 1], arrays2.features[: t + 1])
    assert not np.array_equal(
        arrays.features[t + 1 : t + 1 + H], arrays2.features[t + 1 : t + 1 + H]
    )


def test_observation_windows_equal_the_envs() -> None:
    from backend.config.env_config import EnvConfig
    from backend.environments.intraday_env import IntradayTradingEnv

    market = _spy()
    ds = SymbolDataset.from_market("SPY", market, FeatureConfig.for_agent("SAC_INTRADAY_DSR"))
    arrays = ds.arrays(ds.fit_normalizer(ds.ready_sessions[0], ds.ready_sessions[5]))
    env = IntradayTradingEnv(
        arrays, EnvConfig(use_sequence_encoder=True, sequence_length=16, feature_clip=3.0)
    )
    rows = np.array([0, 5, 40, arrays.n_bars - 1])
    window, mask = observation_windows(arrays.features, rows, 16, 3.0)
    for i, t in enumerate(rows):
        obs = env._observation(int(t), 0.0, 0.0)
        np.testing.assert_array_equal(window[i], obs["window"])
        np.testing.assert_array_equal(mask[i], obs["mask"])


def test_label_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="horizon: must be >= 1"):
        LabelConfig(horizon=0)
    with pytest.raises(ValueError, match="sideways_share"):
        LabelConfig(sideways_share=1.0)
    close, open_, sid = _bars(2)
    raw = raw_targets(close, open_, sid, CONFIG)
    with pytest.raises(ValueError, match="need >= 30"):
        fit_thresholds(raw, np.arange(20), CONFIG)


def test_bayes_accuracy_matches_a_simulated_ar1_oracle() -> None:
    phi, share = 0.3, 1.0 / 3.0
    assert bayes_direction_accuracy(0.0, H, share) == pytest.approx(1.0 / 3.0, abs=1e-6)
    assert bayes_sign_accuracy(0.0, H, share) == pytest.approx(0.5, abs=1e-6)
    rng = np.random.default_rng(0)
    n = 400_000
    z = np.empty((n, H + 1))
    z[:, 0] = rng.standard_normal(n)
    for j in range(1, H + 1):
        z[:, j] = phi * z[:, j - 1] + math.sqrt(1 - phi**2) * rng.standard_normal(n)
    s = z[:, 1:].sum(axis=1)
    band = np.quantile(np.abs(s), share)
    label = np.where(s > band, 2, np.where(s < -band, 0, 1))
    # The Bayes rule given z_t: most probable class under N(a z_t, s^2), by simulation bins.
    bins = np.digitize(z[:, 0], np.linspace(-4, 4, 161))
    best = np.zeros(n, dtype=int)
    for b in np.unique(bins):
        sel = bins == b
        best[sel] = np.bincount(label[sel], minlength=3).argmax()
    simulated = float((best == label).mean())
    assert simulated == pytest.approx(bayes_direction_accuracy(phi, H, share), abs=0.005)
    trend = label != 1
    sign_sim = float((np.sign(z[trend, 0]) == np.sign(s[trend])).mean())
    assert sign_sim == pytest.approx(bayes_sign_accuracy(phi, H, share), abs=0.005)
