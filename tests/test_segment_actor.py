"""The batched evaluation actor plays the same actions as ``model.predict``, bar for bar."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th
from sac_support import TINY_ENCODERS, synthetic_arrays

from backend.config.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.evaluation.rollout import rollout_policy
from backend.models.feature_extractors import encoder_policy_kwargs, uses_sequence_observation
from backend.models.sac import YoopSAC
from backend.models.segment_actor import SegmentActor, supports_segment_actor

ENCODERS = TINY_ENCODERS


@pytest.fixture(scope="module")
def arrays() -> Any:
    return synthetic_arrays(40, seed=5, fit_sessions=20)


def _env(arrays: Any, mode: str, bar_range: tuple[int, int] | None = None) -> IntradayTradingEnv:
    cfg = EnvConfig(
        episode_sessions=0,
        random_start=False,
        use_sequence_encoder=uses_sequence_observation(mode),
        sequence_length=8,
        deadband=0.0,
    )
    return IntradayTradingEnv(arrays, cfg, bar_range)


def _trained(arrays: Any, mode: str) -> YoopSAC:
    model = YoopSAC(
        "MultiInputPolicy",
        _env(arrays, mode),
        batch_size=32,
        learning_starts=100,
        seed=1,
        device="cpu",
        policy_kwargs={**encoder_policy_kwargs(mode, ENCODERS[mode]), "net_arch": [16]},
    )
    model.learn(total_timesteps=160)  # some updates, so the weights are not the init
    return model


@pytest.mark.parametrize("mode", list(ENCODERS))
def test_segment_rollout_equals_the_predict_rollout(arrays: Any, mode: str) -> None:
    th.set_num_threads(1)
    model = _trained(arrays, mode)
    assert supports_segment_actor(model)
    segment = (arrays.n_bars - 26 * 14, arrays.n_bars)  # ~the last 14 sessions: out of sample
    reference = rollout_policy(model, _env(arrays, mode, segment), deterministic=True)
    env = _env(arrays, mode, segment)
    fast = rollout_policy(SegmentActor(model, env), env, deterministic=True)
    assert fast.n_steps == reference.n_steps > 300
    # Batched and single-row kernels may differ in round-off only.
    np.testing.assert_allclose(fast.positions, reference.positions, atol=1e-5)
    np.testing.assert_allclose(fast.net_returns, reference.net_returns, atol=1e-7)
    assert np.abs(reference.positions).max() > 0.0, "the policy must trade for this to test"


def test_segment_actor_refuses_sampling_and_bars_outside_its_segment(arrays: Any) -> None:
    model = _trained(arrays, "lstm")
    env = _env(arrays, "lstm", (arrays.n_bars - 26 * 8, arrays.n_bars))
    actor = SegmentActor(model, env)
    obs, _ = env.reset(options={"start_bar": int(env.episode_start_bars[0])})
    with pytest.raises(ValueError, match="deterministic"):
        actor.predict(obs, deterministic=False)
    other = _env(arrays, "lstm", (26 * 2, 26 * 10))
    obs, _ = other.reset(options={"start_bar": int(other.episode_start_bars[0])})
    stray = SegmentActor(model, env)
    stray._env = other  # a rollout of another segment must not read this one's embeddings
    with pytest.raises(ValueError, match="outside the encoded segment"):
        stray.predict(obs)


def test_market_observations_are_the_envs_observations(arrays: Any) -> None:
    for mode in ("manual", "transformer"):
        env = _env(arrays, mode)
        start = int(env.episode_start_bars[3])
        obs, _ = env.reset(options={"start_bar": start})
        batch = env.market_observations(start, start + 30)
        for i in range(30):
            for key, rows in batch.items():
                np.testing.assert_array_equal(rows[i], obs[key], err_msg=f"{mode} {key} {i}")
            obs, *_ = env.step(np.array([0.3], dtype=np.float32))
        with pytest.raises(ValueError, match="market_observations"):
            env.market_observations(5, 5)
