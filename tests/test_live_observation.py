"""The observation built live for bar t equals the env's observation for bar t."""

from __future__ import annotations

import numpy as np
import pytest

from backend.config.env_config import EnvConfig
from backend.config.training_config import FeatureConfig
from backend.data_download.dataset import SymbolDataset
from backend.data_download.loader import join_vix_asof
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)
from backend.environments.intraday_env import IntradayTradingEnv
from backend.execution.feeds import bars_from_frame
from backend.execution.observation_builder import ObservationBuilder


@pytest.fixture(scope="module")
def dataset() -> SymbolDataset:
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=11, seed=7)
    )
    market = join_vix_asof(frames["SPY"], frames["VIX"])
    return SymbolDataset.from_market("SPY", market, FeatureConfig())  # full default features


@pytest.mark.parametrize("sequence", [False, True], ids=["flat", "sequence"])
@pytest.mark.parametrize("history_bars", [0, None], ids=["unbounded", "rolling"])
def test_live_observation_equals_env_observation(
    dataset: SymbolDataset, sequence: bool, history_bars: int | None
) -> None:
    normalizer = dataset.fit_normalizer(dataset.sessions[0], dataset.sessions[-1])
    arrays = dataset.arrays(normalizer)
    config = EnvConfig(use_sequence_encoder=sequence, sequence_length=8, episode_sessions=0)
    env = IntradayTradingEnv(arrays, config)
    env.reset(seed=0, options={"start_bar": 0})
    builder = ObservationBuilder(dataset.feature_config, normalizer, config, history_bars)
    warmup = dataset.warmup_rows
    checked = 0
    for i, bar in enumerate(bars_from_frame(dataset.market)):
        assert builder.add_bar(bar.timestamp, bar.as_dict())
        t = i - warmup  # the env's row of this bar (warm-up rows are dropped there)
        if t < arrays.n_bars - 60:  # the last 60 bars: enough, and fast
            continue
        expected = env._observation(t, 0.25, -0.01)  # the env's own layout for bar t
        live = builder.observation(0.25, -0.01, float(expected["account"][2]))
        assert set(live) == set(expected)
        for key in expected:
            assert live[key].dtype == np.float32 and live[key].shape == expected[key].shape
            if history_bars == 0:
                np.testing.assert_array_equal(live[key], expected[key], err_msg=key)
            else:  # EWM seeds below FeatureConfig.ewm_residual
                np.testing.assert_allclose(live[key], expected[key], atol=1e-4, err_msg=key)
        assert env.observation_space.contains(live)
        checked += 1
    assert checked == 60


def test_builder_rejects_duplicates_and_short_history(dataset: SymbolDataset) -> None:
    normalizer = dataset.fit_normalizer(dataset.sessions[0], dataset.sessions[-1])
    builder = ObservationBuilder(dataset.feature_config, normalizer, EnvConfig())
    bars = bars_from_frame(dataset.market.iloc[:30])
    for bar in bars:
        builder.add_bar(bar.timestamp, bar.as_dict())
    assert not builder.add_bar(bars[5].timestamp, bars[5].as_dict())
    assert not builder.ready
    with pytest.raises(RuntimeError, match="need 155"):
        builder.observation(0.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="history_bars"):
        ObservationBuilder(dataset.feature_config, normalizer, EnvConfig(), history_bars=10)
