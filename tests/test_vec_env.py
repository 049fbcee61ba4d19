"""The batched VecEnv is SB3's DummyVecEnv over N single envs, step for step."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from backend.data_download.market_arrays import synthetic_market_arrays
from backend.environments.batched_rewards import (
    BATCHED_REWARDS,
    PerEnvRewards,
    batched_reward,
)
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.environments.rewards import (
    REWARD_CONFIGS,
    CostPenalizedConfig,
    DDRConfig,
    DSRConfig,
    LogReturnConfig,
    RewardConfigBase,
    fit_reward_floor,
    make_reward,
    reward_names,
)
from backend.training.vec_env import BatchedIntradayVecEnv

N_ENVS = 4


@pytest.fixture(scope="module")
def arrays() -> Any:
    return synthetic_market_arrays(n_sessions=12, n_features=5, half_days=(3,), seed=2)


CONFIGS: dict[str, tuple[EnvConfig, RewardConfigBase]] = {
    "flat-dsr": (
        EnvConfig(episode_sessions=1),
        DSRConfig(eta=0.05, warmup_steps=3, eps=1e-6),
    ),
    "window-sequential": (
        EnvConfig(
            use_sequence_encoder=True, sequence_length=6, episode_sessions=2, random_start=False
        ),
        DSRConfig(),
    ),
    "log-longonly-noflatten": (
        EnvConfig(long_only=True, flatten_at_close=False, episode_sessions=2),
        LogReturnConfig(scale=100.0),
    ),
    "cost-ruin": (
        EnvConfig(cost_bps=400.0, ruin_equity=0.97, episode_sessions=3, deadband=0.2),
        CostPenalizedConfig(cost_penalty=2.5),
    ),
    "whole-range": (EnvConfig(episode_sessions=0, max_position=0.5), DSRConfig(scale=10.0)),
    "dsr-bias-corrected": (
        EnvConfig(episode_sessions=1, cost_bps=10.0),
        DSRConfig(eta=0.1, warmup_steps=1, bias_correction=True, eps=1e-7),
    ),
    "ddr-bias-corrected": (
        EnvConfig(episode_sessions=2),
        DDRConfig(eta=0.05, warmup_steps=2, bias_correction=True),
    ),
    "ddr-window": (
        EnvConfig(use_sequence_encoder=True, sequence_length=4, episode_sessions=1),
        DDRConfig(scale=5.0),
    ),
}


def _assert_obs_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _assert_info_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "terminal_observation":
            _assert_obs_equal(a[key], b[key])
        else:
            assert a[key] == b[key], key


def _assert_same_as_single_envs(
    arrays: Any, config: EnvConfig, reward: RewardConfigBase, *, steps: int = 400
) -> tuple[BatchedIntradayVecEnv, int, int]:
    """Step the batch and a DummyVecEnv of single envs with the same actions; all equal."""
    bar_range = (26, arrays.n_bars - 10)
    reference = DummyVecEnv(
        [
            lambda: IntradayTradingEnv(arrays, config, bar_range, reward=reward)
            for _ in range(N_ENVS)
        ]
    )
    batched = BatchedIntradayVecEnv(arrays, config, bar_range, num_envs=N_ENVS, reward=reward)
    assert isinstance(batched, VecEnv)
    assert batched.observation_space == reference.observation_space
    assert batched.action_space == reference.action_space
    assert batched.seed(7) == reference.seed(7)
    _assert_obs_equal(batched.reset(), reference.reset())
    for a, b in zip(batched.reset_infos, reference.reset_infos, strict=True):
        _assert_info_equal(a, b)

    rng = np.random.default_rng(0)
    episodes = ruined = 0
    for step in range(steps):
        actions = rng.uniform(-1.3, 1.3, size=(N_ENVS, 1)).astype(np.float32)
        if step % 7 == 0:
            actions[0] = 0.0  # exact flat, and repeated targets inside the deadband
            actions[1] = actions[2]
        obs_b, rew_b, done_b, info_b = batched.step(actions)
        obs_r, rew_r, done_r, info_r = reference.step(actions)
        _assert_obs_equal(obs_b, obs_r)
        assert rew_b.dtype == rew_r.dtype
        np.testing.assert_array_equal(rew_b, rew_r)
        np.testing.assert_array_equal(done_b, done_r)
        for a, b in zip(info_b, info_r, strict=True):
            _assert_info_equal(a, b)
        episodes += int(done_r.sum())
        ruined += sum(
            bool(d) and not i["TimeLimit.truncated"] for d, i in zip(done_r, info_r, strict=True)
        )
    assert episodes >= N_ENVS, "the comparison must cover auto-resets"
    assert batched.get_attr("current_bar") == reference.get_attr("current_bar")
    return batched, episodes, ruined


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batched_env_equals_dummy_vec_env_of_single_envs(arrays: Any, name: str) -> None:
    config, reward = CONFIGS[name]
    batched, _, ruined = _assert_same_as_single_envs(arrays, config, reward)
    assert batched.reward_vectorised, "the built-in rewards run on arrays"
    if name == "cost-ruin":
        assert ruined > 0, "the ruin config must terminate episodes (not only truncate)"


@pytest.mark.parametrize("name", reward_names())
def test_every_registered_reward_equals_the_single_env(arrays: Any, name: str) -> None:
    """Each reward of the registry, vectorised or per-env objects: the single env's numbers."""
    reward = REWARD_CONFIGS[name]().replace(scale=3.0)
    config = EnvConfig(episode_sessions=1, cost_bps=20.0)
    batched, _, _ = _assert_same_as_single_envs(arrays, config, reward, steps=150)
    assert batched.reward_vectorised == (name in BATCHED_REWARDS)


@pytest.mark.parametrize("name", ["dsr", "ddr"])
def test_fitted_reward_floor_equals_the_single_env(arrays: Any, name: str) -> None:
    """``floor_vol`` as training applies it (the fitted ``eps``), with the bias correction."""
    section = REWARD_CONFIGS[name](floor_vol=2.0, bias_correction=True, warmup_steps=1)
    lo, hi = 26, arrays.n_bars // 2
    reward = fit_reward_floor(section, arrays.open[lo:hi], arrays.close[lo:hi])
    assert reward.eps != section.eps  # type: ignore[attr-defined]
    batched, _, _ = _assert_same_as_single_envs(
        arrays, EnvConfig(episode_sessions=1), reward, steps=150
    )
    assert batched.reward_vectorised


def test_batched_forms_are_used_only_where_they_reproduce_the_reward() -> None:
    """A reward object with an attribute its batched form does not know (an option added
    later) runs as per-env copies, which are exact by construction."""
    for name in BATCHED_REWARDS:
        scalar = make_reward(REWARD_CONFIGS[name]())
        assert batched_reward(scalar, 3).vectorised, name
    dsr = make_reward(DSRConfig())
    dsr.new_option = 0.5  # type: ignore[attr-defined]
    fallback = batched_reward(dsr, 3)
    assert isinstance(fallback, PerEnvRewards)
    assert all(obj.new_option == 0.5 for obj in fallback.rewards)  # type: ignore[attr-defined]
    assert len({id(obj) for obj in fallback.rewards}) == 3, "one object per env"


def test_actions_are_validated(arrays: Any) -> None:
    env = BatchedIntradayVecEnv(arrays, EnvConfig(), num_envs=2)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(np.zeros((2, 1), dtype=np.float32))
    env.reset()
    with pytest.raises(ValueError, match="expected 2 values"):
        env.step(np.zeros((3, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="action of env 1: must be finite"):
        env.step(np.array([[0.0], [np.nan]], dtype=np.float32))
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        BatchedIntradayVecEnv(arrays, EnvConfig(), num_envs=0)
    with pytest.raises(ValueError, match="call the VecEnv's reset"):
        env.env_method("reset")
    assert env.get_attr("bar_range") == [env.template.bar_range] * 2
    assert env.env_is_wrapped(IntradayTradingEnv) == [False, False]  # type: ignore[arg-type]


def test_sac_learns_on_the_batched_env(arrays: Any) -> None:
    """SB3 accepts it: one policy forward per batch of env steps, the buffer fills per env."""
    th.set_num_threads(1)
    env = BatchedIntradayVecEnv(arrays, EnvConfig(episode_sessions=1), num_envs=N_ENVS)
    model = SAC(
        "MultiInputPolicy",
        env,
        learning_starts=40,
        batch_size=16,
        buffer_size=1_000,
        policy_kwargs={"net_arch": [8]},
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=200)
    assert model.num_timesteps == 200
    assert model.replay_buffer.size() == 200 // N_ENVS  # type: ignore[union-attr]
    assert model.replay_buffer.n_envs == N_ENVS  # type: ignore[union-attr]
