"""End to end: store -> features -> normalizer -> arrays -> env, with no look-ahead anywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backend.config.env_config import EnvConfig
from backend.config.training_config import FeatureConfig
from backend.data_download.dataset import SymbolDataset, bar_range
from backend.data_download.loader import join_vix_asof
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
    write_synthetic_market,
)
from backend.environments.intraday_env import IntradayTradingEnv

FEATURES = FeatureConfig.for_agent("SAC_INTRADAY_DSR")
N_SESSIONS = 30


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=N_SESSIONS, seed=3)
    )
    return join_vix_asof(frames["SPY"], frames["VIX"])


def _perturb_after(market: pd.DataFrame, t: int, seed: int = 99) -> pd.DataFrame:
    """Replace every bar after row t with wildly different but valid bars."""
    rng = np.random.default_rng(seed)
    out = market.copy()
    n = len(out) - (t + 1)
    close = out["close"].iloc[t] * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.01, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, n))
    rows = out.index[t + 1 :]
    out.loc[rows, "open"] = open_
    out.loc[rows, "high"] = high
    out.loc[rows, "low"] = low
    out.loc[rows, "close"] = close
    out.loc[rows, "volume"] = rng.uniform(0, 5e6, n)
    out.loc[rows, "vix"] = rng.uniform(10, 80, n)
    return out


def _cut_points(market: pd.DataFrame) -> list[int]:
    """A session's first bar, a mid-session bar and a session's last bar, past warm-up."""
    days = market.index.normalize()
    last_of_day = np.flatnonzero(days[1:] != days[:-1])
    first_of_day = last_of_day + 1
    return [int(first_of_day[15]), int(first_of_day[16] + 7), int(last_of_day[20])]


@pytest.mark.parametrize("cut", range(3))
def test_features_and_normalized_values_ignore_the_future(market, cut):
    t = _cut_points(market)[cut]
    base = SymbolDataset.from_market("SPY", market, FEATURES)
    moved = SymbolDataset.from_market("SPY", _perturb_after(market, t), FEATURES)
    np.testing.assert_array_equal(
        base.features.iloc[: t + 1].to_numpy(), moved.features.iloc[: t + 1].to_numpy()
    )
    fit_first, fit_last = base.sessions[0], base.sessions[12]  # fit range ends before t
    norm_a = base.fit_normalizer(fit_first, fit_last)
    norm_b = moved.fit_normalizer(fit_first, fit_last)
    assert norm_a.to_dict() == norm_b.to_dict()
    past = base.features.iloc[: t + 1]
    np.testing.assert_array_equal(norm_a.transform(past), norm_b.transform(past))


@pytest.mark.parametrize("sequence", [False, True])
@pytest.mark.parametrize("cut", range(3))
def test_env_observations_ignore_the_future(market, cut, sequence):
    """Same actions on both versions: every observation up to the decision at t is equal."""
    t = _cut_points(market)[cut]
    decision_ts = market.index[t].value
    env_cfg = EnvConfig(use_sequence_encoder=sequence, sequence_length=32, episode_sessions=0)
    observations = []
    for frame in (market, _perturb_after(market, t)):
        ds = SymbolDataset.from_market("SPY", frame, FEATURES)
        norm = ds.fit_normalizer(ds.sessions[0], ds.sessions[12])
        arrays = ds.arrays(norm)
        lo, hi = bar_range(arrays, *ds.session_bounds(ds.sessions[13], ds.sessions[-1]))
        env = IntradayTradingEnv(arrays, env_cfg, bar_range=(lo, hi))
        obs, info = env.reset(seed=0, options={"start_bar": env.episode_start_bars[0]})
        seen = []
        rng = np.random.default_rng(5)
        while arrays.timestamps[env.current_bar] <= decision_ts:
            seen.append((int(arrays.timestamps[env.current_bar]), obs))
            obs, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
            assert not (terminated or truncated)
        observations.append(seen)
    base, moved = observations
    assert len(base) == len(moved) > 26
    assert base[-1][0] == decision_ts
    for (ts_a, obs_a), (ts_b, obs_b) in zip(base, moved, strict=True):
        assert ts_a == ts_b
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=f"{key} at {ts_a}")


def test_perturbation_is_visible_after_t(market):
    """Guard against a vacuous test: the perturbation does change the features after t."""
    t = _cut_points(market)[1]
    base = SymbolDataset.from_market("SPY", market, FEATURES)
    moved = SymbolDataset.from_market("SPY", _perturb_after(market, t), FEATURES)
    diff = np.abs(base.features.iloc[t + 1 :].to_numpy() - moved.features.iloc[t + 1 :].to_numpy())
    assert np.nanmax(diff) > 0.1


def test_load_from_store_matches_in_memory(tmp_path, market):
    cfg = SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=N_SESSIONS, seed=3)
    write_synthetic_market(tmp_path, cfg)
    loaded = SymbolDataset.load("SPY", tmp_path, FEATURES)
    in_memory = SymbolDataset.from_market("SPY", market, FEATURES)
    pd.testing.assert_index_equal(loaded.market.index, in_memory.market.index)
    np.testing.assert_allclose(
        loaded.features.to_numpy(), in_memory.features.to_numpy(), atol=1e-5, equal_nan=True
    )
    assert len(loaded.sessions) == N_SESSIONS
    assert (loaded.bars_per_session > 0).all()


def test_empty_range_is_a_clear_error(tmp_path):
    cfg = SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=5, seed=3)
    write_synthetic_market(tmp_path, cfg)
    with pytest.raises(ValueError, match=r"SPY: no bars in .* between 2030-01-01"):
        SymbolDataset.load("SPY", tmp_path, FEATURES, start="2030-01-01", end="2030-02-01")


def test_ready_sessions_start_after_the_warm_up(market):
    ds = SymbolDataset.from_market("SPY", market, FEATURES)
    ready = ds.ready_sessions
    first_ready_row = int(np.flatnonzero(ds.layout["session"].to_numpy() == ready[0])[0])
    assert first_ready_row >= ds.warmup_rows
    assert np.isfinite(ds.features.iloc[first_ready_row:].to_numpy()).all()
    # the session before the first ready one still had warm-up rows
    assert ds.sessions[ds.sessions < ready[0]].size >= 1
    assert len(ready) + (ds.sessions < ready[0]).sum() == len(ds.sessions)
