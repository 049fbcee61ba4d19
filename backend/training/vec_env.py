"""N intraday trading envs stepped in one numpy call: an SB3 ``VecEnv``.

:class:`BatchedIntradayVecEnv` behaves exactly like SB3's ``DummyVecEnv`` over ``N``
:class:`~backend.environments.intraday_env.IntradayTradingEnv` instances built from the
same arrays and config (same observations, float32 rewards, dones, ``info`` dicts with
``TimeLimit.truncated`` and ``terminal_observation``, auto-reset, ``seed(s)`` giving env
``i`` the seed ``s + i``; ``tests/test_vec_env.py`` checks it step by step), but:

* the market data and the padded window source exist once, not ``N`` times;
* a step is ~40 numpy operations on ``(N,)`` arrays, whatever ``N`` is, instead of ``N``
  Python ``step()`` calls; observations are gathered with one fancy index per key;
* one policy forward then serves ``N`` env steps (SB3 batches ``predict`` over the envs).

The arithmetic is the single env's, in the same order of floating-point operations (see
the timing convention in :mod:`backend.environments.intraday_env`), so the numbers are
bit-identical. The reward is the ``reward`` section's, as in the single env; rewards with a
batched form (:mod:`backend.environments.batched_rewards`) are computed on arrays, any
other registered reward (or option) runs as ``N`` scalar reward objects
(:attr:`BatchedIntradayVecEnv.reward_vectorised` says which).

Per-episode state lives in the batch, not in env objects: ``get_attr``/``env_method``
reach the shared *template* env (its spaces, config, arrays, ``episode_start_bars``), and
``get_attr("current_bar")`` / ``get_attr("episode_end_bar")`` read the batch state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from backend.data_download.market_arrays import MarketArrays
from backend.environments.actions import actions_to_targets
from backend.environments.batched_rewards import BatchedDSR, MovingMoments, batched_reward
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.environments.rewards import RewardConfigBase

_BATCH_STATE_ATTRS = ("current_bar", "episode_end_bar")
_STEPPING_METHODS = ("reset", "step")


class BatchedIntradayVecEnv(VecEnv):
    """``num_envs`` copies of one intraday env, stepped as arrays (see the module docstring).

    Args:
        arrays: The symbol's bars and normalized features (shared by every env).
        config: Env parameters, as for ``IntradayTradingEnv``.
        bar_range: Bars episodes may trade on, as for ``IntradayTradingEnv``.
        num_envs: Number of envs, >= 1.
        reward: The reward section, as for ``IntradayTradingEnv`` (default: the DSR).

    Raises:
        ValueError: on ``num_envs < 1`` or what ``IntradayTradingEnv`` rejects.
    """

    def __init__(
        self,
        arrays: MarketArrays,
        config: EnvConfig | None = None,
        bar_range: tuple[int, int] | None = None,
        *,
        num_envs: int,
        reward: RewardConfigBase | None = None,
    ) -> None:
        if isinstance(num_envs, bool) or int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs!r}")
        n = int(num_envs)
        template = IntradayTradingEnv(arrays, config, bar_range, reward=reward)
        self.template = template
        """One real env: the shared data, spaces and config (never stepped)."""
        cfg = template.config
        self.config = cfg
        self._cfg_random_start = cfg.random_start
        self._episode_sessions = cfg.episode_sessions
        # ---- shared per-bar arrays (float64, as the scalar env's Python floats).
        self._gap = np.asarray(template._gap, dtype=np.float64)
        self._intraday = np.asarray(template._intraday, dtype=np.float64)
        self._is_last = np.asarray(template._is_last, dtype=bool)
        self._frac_left = np.asarray(template._frac_left, dtype=np.float32)
        self._timestamps = np.asarray(template._timestamps, dtype=np.int64)
        self._sequence = template._sequence
        self._seq_len = template._seq_len
        if self._sequence:
            self._window_src = template._window_src
            self._mask_src = template._mask_src
            self._offsets = np.arange(self._seq_len, dtype=np.int64)
        else:
            self._features = template._features
        self._cost_rate = template._cost_rate
        self._deadband = template._deadband
        self._flatten = template._flatten
        self._reward_scale = template._reward_scale
        self._ruin_level = template._ruin_level
        # ---- the template's reward, N times (on arrays where it has a batched form), and
        # the DSR moments of the info (the reward's own when it is the batched DSR).
        self._reward = batched_reward(template._reward_fn, n)
        self.reward_vectorised: bool = self._reward.vectorised
        """True when the reward runs on arrays, False for one scalar object per env."""
        self._info_moments: MovingMoments | None = (
            None if isinstance(self._reward, BatchedDSR) else MovingMoments(template._dsr.eta, n)
        )
        # ---- per-env state.
        self._t = np.full(n, -1, dtype=np.int64)
        self._end = np.full(n, -1, dtype=np.int64)
        self._position = np.zeros(n)
        self._equity = np.ones(n)
        self._entry = np.zeros(n)
        self._cursor = [0] * n
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._actions = np.zeros((n, 1), dtype=np.float32)
        self._started = False
        super().__init__(n, template.observation_space, template.action_space)

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> VecEnvObs:
        """Reset every env (with the seeds and options set since the last reset)."""
        for i in range(self.num_envs):
            self.reset_infos[i] = self._reset_one(i, self._seeds[i], self._options[i] or None)
        self._reset_seeds()
        self._reset_options()
        self._started = True
        return self._observations(np.arange(self.num_envs))

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions ``(num_envs, 1)`` (or ``(num_envs,)``) for ``step_wait``."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every env once; finished envs are reset (``terminal_observation`` kept).

        Each value is computed with the single env's floating-point operations in its
        order; shared subexpressions are computed once and branches of the scalar code that
        no env takes this step (the deadband, the flatten, ruin) are skipped.
        """
        if not self._started:
            raise RuntimeError("step() called before reset()")
        n = self.num_envs
        raw = np.asarray(self._actions, dtype=np.float64)
        if raw.size != n:
            raise ValueError(f"actions: expected {n} values (one per env), got shape {raw.shape}")
        a = raw.reshape(n)
        if not np.isfinite(a).all():
            bad = int(np.flatnonzero(~np.isfinite(a))[0])
            raise ValueError(f"action of env {bad}: must be finite, got {a[bad]}")
        t1 = self._t + 1
        p_old = self._position
        target = actions_to_targets(a, self.config)
        delta = np.abs(target - p_old)
        kept = delta < self._deadband  # apply_deadband: keep the position, trade nothing
        if kept.any():
            target = np.where(kept, p_old, target)
            delta = np.where(kept, 0.0, delta)  # = |p_old - p_old|
        gap_growth = 1.0 + p_old * self._gap[t1]
        bar_growth = 1.0 + target * self._intraday[t1]
        e0 = self._equity

        e_open = e0 * gap_growth
        cost_open = self._cost_rate * delta * np.maximum(e_open, 0.0)
        e_open -= cost_open
        new_position = (p_old == 0.0) | ((target > 0.0) != (p_old > 0.0))
        entry = np.where(target == 0.0, 0.0, np.where(new_position, e_open, self._entry))

        e1 = e_open * bar_growth
        turnover = delta
        position = target
        cost = cost_open + 0.0
        if self._flatten:
            flat = self._is_last[t1] & (target != 0.0)
            if flat.any():
                cost_close = np.where(
                    flat, self._cost_rate * np.abs(target) * np.maximum(e1, 0.0), 0.0
                )
                e1 = e1 - cost_close
                cost = cost_open + cost_close
                turnover = np.where(flat, turnover + np.abs(target), turnover)
                position = np.where(flat, 0.0, target)
                entry = np.where(flat, 0.0, entry)

        net_return = e1 / e0 - 1.0
        gross_return = gap_growth * bar_growth - 1.0
        trade_cost = cost / e0
        reward = self._reward.step(net_return, trade_cost)
        moments: BatchedDSR | MovingMoments
        if self._info_moments is None:
            moments = cast(BatchedDSR, self._reward)
        else:
            moments = self._info_moments
            moments.update(net_return)
        rewards = (reward * self._reward_scale).astype(np.float32)

        self._t = t1
        self._position = position
        self._equity = e1
        self._entry = entry
        # e1 < ruin covers e1 <= 0 whenever the ruin level is above 0.
        terminated = e1 < self._ruin_level if self._ruin_level > 0.0 else e1 <= 0.0
        truncated = t1 >= self._end
        dones = terminated | truncated

        # Unrealized PnL: 0 when flat, -1 when wiped out, else the clipped ratio.
        open_position = position != 0.0
        ratio = np.divide(e1 - entry, e1, out=np.zeros(n), where=open_position & (e1 > 0.0))
        unrealized = np.minimum(np.maximum(ratio, -1.0), 1.0)
        any_done = bool(dones.any())
        if any_done and terminated.any():
            unrealized[open_position & (e1 <= 0.0)] = -1.0
        obs = self._observations(t1, position, unrealized)

        infos = [
            {
                "equity": equity,
                "position": pos,
                "target": tgt,
                "trade_cost": cst,
                "net_return": net,
                "gross_return": gross,
                "turnover": turn,
                "dsr_A": dsr_a,
                "dsr_B": dsr_b,
                "timestamp": stamp,
                "bar": bar,
                "TimeLimit.truncated": time_limit,
            }
            for (
                equity,
                pos,
                tgt,
                cst,
                net,
                gross,
                turn,
                dsr_a,
                dsr_b,
                stamp,
                bar,
                time_limit,
            ) in zip(
                e1.tolist(),
                position.tolist(),
                target.tolist(),
                trade_cost.tolist(),
                net_return.tolist(),
                gross_return.tolist(),
                turnover.tolist(),
                moments.A.tolist(),
                moments.B.tolist(),
                self._timestamps[t1].tolist(),
                t1.tolist(),
                (truncated & ~terminated).tolist(),
                strict=True,
            )
        ]
        if any_done:
            for i in np.flatnonzero(dones).tolist():
                infos[i]["terminal_observation"] = {
                    key: value[i].copy() for key, value in obs.items()
                }
                self.reset_infos[i] = self._reset_one(i, None, None)
            fresh = self._observations(np.flatnonzero(dones))
            for key, value in obs.items():
                value[dones] = fresh[key]
        return obs, rewards, dones, infos

    def close(self) -> None:
        """Nothing to release."""

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Env ``i`` gets ``seed + i`` at the next ``reset()`` (SB3's convention)."""
        return super().seed(seed)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Per-env batch state for ``current_bar``/``episode_end_bar``, else the template's."""
        idx = list(self._get_indices(indices))
        if attr_name == "current_bar":
            return [int(self._t[i]) for i in idx]
        if attr_name == "episode_end_bar":
            return [int(self._end[i]) for i in idx]
        value = getattr(self.template, attr_name)
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the shared template (it applies to every env).

        Raises:
            ValueError: for a subset of envs (their data is shared) or batch state.
        """
        idx = list(self._get_indices(indices))
        if attr_name in _BATCH_STATE_ATTRS or len(idx) != self.num_envs:
            raise ValueError(
                f"set_attr({attr_name!r}): the batched env shares one template; only "
                "shared attributes can be set, for all envs at once"
            )
        setattr(self.template, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Call a method of the shared template once per index.

        Raises:
            ValueError: for ``reset``/``step``: episodes live in the batch, use the VecEnv
                API.
        """
        if method_name in _STEPPING_METHODS:
            raise ValueError(
                f"env_method({method_name!r}): episodes live in the batch; call the VecEnv's "
                f"{method_name}() instead"
            )
        method = getattr(self.template, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        """No env is wrapped (the batch has no per-env wrappers)."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        """The trading env does not render."""
        return [None for _ in range(self.num_envs)]

    # ------------------------------------------------------------------ internals
    def _rng(self, i: int) -> np.random.Generator:
        rng = self._rngs[i]
        if rng is None:
            rng, _ = seeding.np_random()
            self._rngs[i] = rng
        return rng

    def _reset_one(self, i: int, seed: int | None, options: dict[str, Any] | None) -> dict:
        """``IntradayTradingEnv.reset`` for env ``i``: its start bar, state and info."""
        env = self.template
        if seed is not None:
            self._rngs[i], _ = seeding.np_random(seed)
            self._cursor[i] = 0
        starts = env.episode_start_bars
        if options is not None and options.get("start_bar") is not None:
            start = env._checked_start_bar(options["start_bar"])
        elif self._cfg_random_start:
            start = int(starts[self._rng(i).integers(starts.size)])
        else:
            start = int(starts[self._cursor[i]])
            if self._episode_sessions:
                self._cursor[i] = (self._cursor[i] + self._episode_sessions) % starts.size
        lo, hi = env.bar_range
        last_bar = hi - 1
        if self._episode_sessions:
            last_session = int(env._session_of_bar[start + 1]) + self._episode_sessions - 1
            if last_session < env._session_last.size:
                last_bar = min(last_bar, int(env._session_last[last_session]))
        self._t[i] = start
        self._end[i] = last_bar
        self._position[i] = 0.0
        self._equity[i] = 1.0
        self._entry[i] = 0.0
        self._reward.reset(i)
        if self._info_moments is not None:
            self._info_moments.reset(i)
        return {
            "equity": 1.0,
            "position": 0.0,
            "target": 0.0,
            "trade_cost": 0.0,
            "net_return": 0.0,
            "gross_return": 0.0,
            "turnover": 0.0,
            "dsr_A": 0.0,
            "dsr_B": 0.0,
            "timestamp": int(self._timestamps[start]),
            "bar": start,
        }

    def _observations(
        self,
        rows: np.ndarray,
        position: np.ndarray | None = None,
        unrealized: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Observations of the envs ``rows`` (env indices when position is None).

        With ``position``/``unrealized`` given, ``rows`` are the decision bars of every
        env; without, ``rows`` are env indices just reset (flat, no PnL).
        """
        if position is None or unrealized is None:
            bars = self._t[rows]
            account = np.zeros((bars.size, 3), dtype=np.float32)
        else:
            bars = rows
            account = np.empty((bars.size, 3), dtype=np.float32)
            account[:, 0] = position
            account[:, 1] = unrealized
        account[:, 2] = self._frac_left[bars]
        if self._sequence:
            index = bars[:, None] + self._offsets  # (N, T): rows t-T+1..t of the arrays
            return {
                "window": self._window_src[index],
                "mask": self._mask_src[index],
                "account": account,
            }
        return {"features": self._features[bars], "account": account}

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices


__all__ = ["BatchedIntradayVecEnv"]
