"""Training-only augmentation of the env (roadmap Phase 4), all off by default.

* **Input jitter**: Gaussian noise of std ``input_jitter`` (in normalized feature units)
  added to the features of every training observation.
* **Feature dropout**: each feature column is zeroed (its normalized mean) with probability
  ``feature_dropout``; for a window observation the whole column across the window, so a
  dropped feature is missing, not flickering.
* **Bootstrapped session sampling**: with probability ``resample_probability`` an episode
  starts at a session drawn from one bootstrap resample of the fit sessions (multinomial
  counts drawn once, at construction), otherwise uniformly as the env does. The agent then
  trains on a reweighted sample of its history, like bagging.

Only the training env is wrapped: validation and test always see the clean observations.
The account block (position, unrealized PnL, time left) is never perturbed. Noisy
observations are clipped into the env's declared ``Box`` so SB3's checks still hold. All
randomness comes from one generator seeded at construction, so a seeded run is repeatable.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from backend.environments.intraday_env import IntradayTradingEnv

_FEATURE_KEYS = ("features", "window")


class TrainingAugmentation(
    gym.Wrapper[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray]
):
    """Wrap a training :class:`IntradayTradingEnv` with jitter, dropout and resampling.

    Args:
        env: The training env.
        input_jitter: Std of the additive Gaussian feature noise, >= 0.
        feature_dropout: Probability of zeroing each feature column, in [0, 1).
        resample_probability: Probability that an episode starts from the bootstrap sample.
        seed: Seed of the augmentation's own generator.
    """

    def __init__(
        self,
        env: IntradayTradingEnv,
        *,
        input_jitter: float = 0.0,
        feature_dropout: float = 0.0,
        resample_probability: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(env)
        if input_jitter < 0 or not 0.0 <= feature_dropout < 1.0:
            raise ValueError("input_jitter must be >= 0 and feature_dropout in [0, 1)")
        if not 0.0 <= resample_probability <= 1.0:
            raise ValueError(f"resample_probability must be in [0, 1], got {resample_probability}")
        self.input_jitter = float(input_jitter)
        self.feature_dropout = float(feature_dropout)
        self.resample_probability = float(resample_probability)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        starts = np.asarray(env.episode_start_bars)
        self._bootstrap_starts = starts[self._rng.integers(starts.size, size=starts.size)]
        self._clip = float(env.config.feature_clip)

    def _augment(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.input_jitter == 0.0 and self.feature_dropout == 0.0:
            return obs
        out = dict(obs)
        for key in _FEATURE_KEYS:
            if key not in out:
                continue
            x = out[key].astype(np.float32, copy=True)  # (F,) or (T, F)
            if self.input_jitter > 0.0:
                x += self.input_jitter * self._rng.standard_normal(x.shape).astype(np.float32)
            if self.feature_dropout > 0.0:
                keep = np.greater_equal(self._rng.random(x.shape[-1]), self.feature_dropout)
                x *= keep.astype(np.float32)  # (F,): whole columns dropped
            if key == "window" and "mask" in out:
                x *= np.asarray(out["mask"], dtype=np.float32)[:, None]  # padding stays 0
            np.clip(x, -self._clip, self._clip, out=x)
            out[key] = x
        return out

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset, starting from the bootstrap sample with ``resample_probability``."""
        if self.resample_probability > 0.0 and not (options and "start_bar" in options):
            if self._rng.random() < self.resample_probability:
                start = int(self._bootstrap_starts[self._rng.integers(self._bootstrap_starts.size)])
                options = {**(options or {}), "start_bar": start}
        obs, info = self.env.reset(seed=seed, options=options)
        return self._augment(obs), info

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Step the env and augment the next observation."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._augment(obs), float(reward), terminated, truncated, info
