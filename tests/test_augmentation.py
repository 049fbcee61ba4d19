"""Training-only augmentation: off is the plain env, jitter/dropout touch features only,
bootstrapped session starts come from one seeded resample, and everything is repeatable."""

from __future__ import annotations

import numpy as np
import pytest

from backend.data_download.market_arrays import MarketArrays, synthetic_market_arrays
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.training.augmentation import TrainingAugmentation


@pytest.fixture(scope="module")
def arrays() -> MarketArrays:
    return synthetic_market_arrays(12, 5, seed=4)


def _env(arrays: MarketArrays, **config: object) -> IntradayTradingEnv:
    return IntradayTradingEnv(arrays, EnvConfig(episode_sessions=1, **config))  # type: ignore[arg-type]


def _episode(env, actions: np.ndarray, seed: int = 0) -> tuple[list, list]:
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(np.array([a], dtype=np.float32))
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return observations, rewards


ACTIONS = np.tile([0.8, -0.5, 0.0, 1.0], 10)


def test_all_off_is_the_plain_env(arrays):
    plain_obs, plain_rewards = _episode(_env(arrays), ACTIONS)
    wrapped_obs, wrapped_rewards = _episode(TrainingAugmentation(_env(arrays)), ACTIONS)
    assert wrapped_rewards == plain_rewards
    for a, b in zip(plain_obs, wrapped_obs, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_jitter_perturbs_features_only_never_the_account_or_the_rewards(arrays):
    plain_obs, plain_rewards = _episode(_env(arrays), ACTIONS)
    env = TrainingAugmentation(_env(arrays), input_jitter=0.5, seed=1)
    noisy_obs, noisy_rewards = _episode(env, ACTIONS)
    assert noisy_rewards == plain_rewards  # the market and the accounting are untouched
    diffs = []
    for a, b in zip(plain_obs, noisy_obs, strict=True):
        np.testing.assert_array_equal(a["account"], b["account"])
        diffs.append(b["features"] - a["features"])
        assert np.all(np.abs(b["features"]) <= EnvConfig().feature_clip)
    noise = np.concatenate(diffs)
    assert 0.4 < float(np.std(noise)) < 0.6  # the requested std (clipping is rare here)


def test_dropout_zeroes_whole_columns_of_a_window(arrays):
    env = TrainingAugmentation(
        _env(arrays, use_sequence_encoder=True, sequence_length=8), feature_dropout=0.5, seed=2
    )
    plain = _env(arrays, use_sequence_encoder=True, sequence_length=8)
    dropped_any = False
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        ref, _ = plain.reset(seed=seed)
        window, ref_window = obs["window"], ref["window"]
        zero_cols = np.all(window == 0.0, axis=0) & ~np.all(ref_window == 0.0, axis=0)
        kept = ~np.all(window == 0.0, axis=0)
        # A column is either dropped over the whole window or left exactly as it was.
        np.testing.assert_array_equal(window[:, kept], ref_window[:, kept])
        dropped_any |= bool(zero_cols.any())
    assert dropped_any


def test_resampled_starts_come_from_one_seeded_bootstrap_sample(arrays):
    def starts(seed: int) -> list[int]:
        env = TrainingAugmentation(_env(arrays), resample_probability=1.0, seed=seed)
        out = []
        for i in range(30):
            env.reset(seed=i)
            out.append(int(env.unwrapped._t))  # the episode's first decision bar
        return out

    base = _env(arrays)
    first = starts(5)
    assert first == starts(5)  # repeatable for a seed
    assert set(first) <= set(int(s) for s in base.episode_start_bars)
    # Bootstrap: a multiset draw of the sessions, so some sessions are never drawn.
    wrapped = TrainingAugmentation(_env(arrays), resample_probability=1.0, seed=5)
    support = set(int(s) for s in wrapped._bootstrap_starts)
    assert set(first) <= support < set(int(s) for s in base.episode_start_bars)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_jitter": -0.1}, "input_jitter must be >= 0"),
        ({"feature_dropout": 1.0}, r"feature_dropout in \[0, 1\)"),
        ({"resample_probability": 1.5}, r"resample_probability must be in \[0, 1\]"),
    ],
)
def test_bad_settings_are_refused(arrays, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingAugmentation(_env(arrays), **kwargs)
