"""Gymnasium's and SB3's environment checkers, with every warning they emit accounted for."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan

from backend.data_download.market_arrays import MarketArrays, synthetic_market_arrays
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.environments.rewards import CostPenalizedConfig, DSRConfig, LogReturnConfig

# The project's id (ENV_ID) builds the env from data (tests/test_env_factory.py checks it);
# these tests feed hand-made arrays with holes and half days, so they register the class
# itself under a test id: gym.make still gives the env a spec and Gymnasium's wrappers.
ARRAYS_ENV_ID = "YoopRLTest/IntradayTradingFromArrays-v0"
if ARRAYS_ENV_ID not in gym.registry:
    gym.register(id=ARRAYS_ENV_ID, entry_point=IntradayTradingEnv)

# SB3 recommends 1-D vectors; the sequence observation's (T, F) window is 2-D on purpose
# (Docs/CONTRACTS.md: the sequence encoders consume it as a time series). This is the one
# warning we expect, and only in sequence mode; any other warning fails the test.
SB3_WINDOW_WARNING = "Your observation window has an unconventional shape"

CONFIGS = {
    "flat-default": EnvConfig(),
    "seq-default": EnvConfig(use_sequence_encoder=True, sequence_length=16),
    "flat-long-only-sequential": EnvConfig(long_only=True, random_start=False, episode_sessions=2),
    "seq-cost-penalized-overnight": EnvConfig(
        use_sequence_encoder=True,
        sequence_length=64,
        flatten_at_close=False,
        episode_sessions=0,
        random_start=False,
    ),
}
REWARDS = {
    "flat-default": DSRConfig(),
    "seq-default": DSRConfig(),
    "flat-long-only-sequential": LogReturnConfig(),
    "seq-cost-penalized-overnight": CostPenalizedConfig(),
}
"""The reward section of each env config above."""


@pytest.fixture(scope="module")
def arrays() -> MarketArrays:
    return synthetic_market_arrays(6, 7, half_days=(2,), missing_bars=[(4, 3)], seed=5)


@contextmanager
def recorded_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


@pytest.mark.parametrize("name", list(CONFIGS))
def test_gymnasium_check_env(arrays: MarketArrays, name: str) -> None:
    # Made through the registry so the env has a spec: that enables Gymnasium's
    # observation-equivalence determinism checks and the close() re-creation check.
    env = gym.make(
        ARRAYS_ENV_ID,
        arrays=arrays,
        config=CONFIGS[name],
        bar_range=(10, arrays.n_bars),
        reward=REWARDS[name],
    )
    with recorded_warnings() as caught:
        gym_check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    env.close()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sb3_check_env(arrays: MarketArrays, name: str) -> None:
    config = CONFIGS[name]
    with recorded_warnings() as caught:
        sb3_check_env(IntradayTradingEnv(arrays, config, reward=REWARDS[name]), warn=True)
    messages = [str(w.message) for w in caught]
    if config.use_sequence_encoder:
        assert len(messages) == 1 and messages[0].startswith(SB3_WINDOW_WARNING)
    else:
        assert messages == []


@pytest.mark.parametrize("name", list(CONFIGS))
def test_passive_checker_over_full_episodes(arrays: MarketArrays, name: str) -> None:
    # gym.make wraps the env in PassiveEnvChecker and OrderEnforcing; several whole episodes
    # through the wrappers must stay silent, and every observation inside the space.
    env = gym.make(ARRAYS_ENV_ID, arrays=arrays, config=CONFIGS[name], reward=REWARDS[name])
    env.action_space.seed(0)
    with recorded_warnings() as caught:
        obs, _ = env.reset(seed=0)
        for _ in range(3 * 26 + 5):
            assert env.observation_space.contains(obs)
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset()
    assert [str(w.message) for w in caught] == []


def test_vec_env_nan_check_and_auto_reset(arrays: MarketArrays) -> None:
    # SB3's VecCheckNan raises on any NaN/inf in observations or rewards; DummyVecEnv
    # auto-resets, so this crosses several episode boundaries, including the half day.
    cfg = EnvConfig(use_sequence_encoder=True, sequence_length=32)
    vec = VecCheckNan(
        DummyVecEnv([lambda: IntradayTradingEnv(arrays, cfg) for _ in range(2)]),
        raise_exception=True,
    )
    vec.seed(3)
    vec.reset()
    rng = np.random.default_rng(0)
    dones = 0
    for _ in range(120):
        _, rewards, done, infos = vec.step(rng.uniform(-1, 1, (2, 1)).astype(np.float32))
        assert np.isfinite(rewards).all()
        dones += int(done.sum())
        for info, d in zip(infos, done, strict=True):
            if d:
                assert info["TimeLimit.truncated"] is True  # episode end, not ruin
                assert "terminal_observation" in info
    assert dones >= 4


@pytest.mark.parametrize("use_seq", [False, True])
def test_sb3_sac_trains_on_both_observation_modes(arrays: MarketArrays, use_seq: bool) -> None:
    # End-to-end compatibility: SAC's MultiInputPolicy builds from the Dict space, collects
    # transitions across episode ends and takes gradient steps without shape/dtype errors.
    import torch
    from stable_baselines3 import SAC

    cfg = EnvConfig(use_sequence_encoder=use_seq, sequence_length=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks; the machine's cores are shared
    try:
        model = SAC(
            "MultiInputPolicy",
            IntradayTradingEnv(arrays, cfg),
            learning_starts=20,
            batch_size=16,
            buffer_size=200,
            policy_kwargs={"net_arch": [16]},
            seed=0,
            device="cpu",
        )
        model.learn(total_timesteps=60)
    finally:
        torch.set_num_threads(threads)
    assert model.replay_buffer is not None and model.replay_buffer.size() == 60
    obs, _ = IntradayTradingEnv(arrays, cfg).reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (1,) and -1.0 <= float(action[0]) <= 1.0
