"""Gymnasium environment for trading one ETF on 15-minute bars.

Timing
======
The agent decides at the **close** of bar ``t``, when everything about bar ``t`` (its
features, its close) is known and nothing about ``t+1`` is. Its action is the *target*
position; the order fills at the **open** of bar ``t+1``::

      bar t                                bar t+1
      open[t] ......... close[t] ~~gap~~ open[t+1] ................. close[t+1]
                           |                 |                          |
         observe features[t], account        |                          |
         act: target p_t                     |                          |
                                             fill p_{t-1} -> p_t        |
                                             cost c*|p_t - p_{t-1}|*E   |
         p_{t-1} earns open[t+1]/close[t]-1  |                          |
         (includes the overnight gap)        p_t earns close[t+1]/open[t+1]-1
                                                                        |
                                   last bar of session & flatten_at_close:
                                   market-on-close p_t -> 0, cost c*|p_t|*E
                                                                        |
                                             reward from the step's net return,
                                             next observation (features[t+1])

with ``c = (cost_bps + slippage_bps) * 1e-4`` and ``E`` the equity at the moment of the
fill. Positions are fractions of equity held at a constant weight over each interval, so
equity compounds as::

    E_open  = E_t * (1 + p_{t-1} * gap) - c * |p_t - p_{t-1}| * E_t * (1 + p_{t-1} * gap)
    E_{t+1} = E_open * (1 + p_t * intraday)    [- c * |p_t| * that, if flattened]
    R_{t+1} = E_{t+1} / E_t - 1                (net return; gross = same without costs)

A missing bar in the data is simply skipped: the gap from ``close[t]`` to the next present
open carries the missing bar's move and is earned by the old position.

Flatten at close
----------------
With ``flatten_at_close`` the position is closed at the close of the *data's* last bar of
each session (``MarketArrays.is_last_bar_of_session``, i.e. the last bar anyone could trade
at, which is 12:45 on a 13:00 half day), paying costs, so nothing is carried overnight. The
decision at that close fills at the next session's opening bar, which is why episodes
start there (below).

Episodes
--------
An episode covers ``episode_sessions`` whole sessions (0 = to the end of ``bar_range``). It
starts at the close of the bar *before* the first session's opening bar (the previous
session's last close, which is past data even when it lies before ``bar_range``), so the
first order is a market-on-open order and every bar of the episode's sessions can be
traded. All returns an episode earns come from bars inside ``bar_range``; no bar at or
after ``bar_range[1]`` is ever observed. ``truncated`` is set when the episode's last bar
(or the range's) is reached; ``terminated`` when equity falls below ``ruin_equity`` of its
starting value.

Observation (``Docs/CONTRACTS.md``)
-----------------------------------
Flat: ``{"features": (F,), "account": (3,)}``; sequence: ``{"window": (T, F), "mask": (T,),
"account": (3,)}`` with feature rows ``t-T+1..t`` newest last, rows before the first bar of
the arrays zero with mask 0. ``account = (position, unrealized PnL / equity, fraction of the
session left)``; the unrealized PnL is the equity gained since the current position was
opened from flat or flipped (costs of later adjustments included), clipped to ``[-1, 1]``;
the session fraction comes from the calendar (``bars_in_session``), as it would live.

Performance: everything is precomputed in ``__init__``; ``step()`` does scalar arithmetic
on Python floats plus one slice copy per observation array (the observation must own its
memory: replay buffers keep it). No pandas is imported here.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from backend.data_download.market_arrays import MarketArrays
from backend.environments.actions import action_to_target, apply_deadband
from backend.environments.env_config import EnvConfig
from backend.environments.rewards import (
    DifferentialSharpeRatio,
    DSRConfig,
    RewardConfigBase,
    make_reward,
)

ENV_ID = "YoopRL/IntradayTrading-v0"
"""Gymnasium id, registered by :func:`register_env` when :mod:`backend.environments` is
imported."""

INFO_KEYS: tuple[str, ...] = (
    "equity",
    "position",
    "target",
    "trade_cost",
    "net_return",
    "gross_return",
    "turnover",
    "dsr_A",
    "dsr_B",
    "timestamp",
    "bar",
)
"""Keys of the ``info`` dict returned by ``reset()`` and ``step()``."""

_INITIAL_EQUITY = 1.0


class IntradayTradingEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Trade one symbol's 15-minute bars with a continuous target position.

    See the module docstring for the timing convention, episodes and observation layout.

    Args:
        arrays: The symbol's validated bars and normalized features.
        config: Environment parameters; defaults to ``EnvConfig()``.
        bar_range: Half-open ``(start, stop)`` bar indices that episodes may trade on (the
            train/validation/test segment); ``None`` means all bars. Bars before ``start``
            may still appear in observations, as the past.
        reward: The reward section (a registered reward config,
            :mod:`backend.environments.rewards`); defaults to the DSR at its defaults.

    Raises:
        ValueError: If ``bar_range`` is invalid or contains no session an episode can
            start at.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # no rendering: a trading env logs info

    def __init__(
        self,
        arrays: MarketArrays,
        config: EnvConfig | None = None,
        bar_range: tuple[int, int] | None = None,
        reward: RewardConfigBase | None = None,
    ) -> None:
        super().__init__()
        self.arrays = arrays
        self.config = config if config is not None else EnvConfig()
        self.reward_config: RewardConfigBase = reward if reward is not None else DSRConfig()

        cfg = self.config
        n = arrays.n_bars
        lo, hi = (0, n) if bar_range is None else (int(bar_range[0]), int(bar_range[1]))
        if not 0 <= lo < hi <= n:
            raise ValueError(f"bar_range: need 0 <= start < stop <= {n}, got {bar_range}")
        if hi - lo < 2:
            raise ValueError(f"bar_range: {bar_range} leaves no step to take (needs >= 2 bars)")
        self.bar_range: tuple[int, int] = (lo, hi)

        # ---- per-bar scalars for step(), as Python lists: list indexing and float math
        # are several times faster than numpy scalar access in a per-step Python loop.
        open_, close = arrays.open, arrays.close
        gap = np.zeros(n, dtype=np.float64)
        gap[1:] = open_[1:] / close[:-1] - 1.0  # earned by the position held into bar t
        intraday = close / open_ - 1.0  # earned by the position filled at open[t]
        bars = arrays.bars_in_session
        frac_left = ((bars - 1 - arrays.bar_in_session) / bars).astype(np.float32)
        self._gap: list[float] = gap.tolist()
        self._intraday: list[float] = intraday.tolist()
        self._is_last: list[bool] = arrays.is_last_bar_of_session.tolist()
        self._frac_left: list[float] = frac_left.tolist()
        self._timestamps: list[int] = arrays.timestamps.tolist()

        # ---- observation sources, clipped once into the declared bounds.
        clip = np.float32(cfg.feature_clip)
        features = np.clip(arrays.features, -clip, clip)
        self.clipped_fraction: float = float(np.mean(features != arrays.features))
        """Share of feature values clipped to ``±feature_clip`` (a normalizer health check)."""
        n_feat = arrays.n_features
        self._seq_len = cfg.sequence_length
        if cfg.use_sequence_encoder:
            # Pre-pad with T-1 zero rows so the window of bar t is the plain slice
            # padded[t : t+T] (rows t-T+1..t of the arrays), no branching in step().
            pad = self._seq_len - 1
            self._window_src = np.zeros((n + pad, n_feat), dtype=np.float32)
            self._window_src[pad:] = features
            self._mask_src = np.zeros(n + pad, dtype=np.float32)
            self._mask_src[pad:] = 1.0
            self._features = self._window_src[pad:]
        else:
            self._features = np.ascontiguousarray(features, dtype=np.float32)

        feature_box = spaces.Box(-clip, clip, shape=(n_feat,), dtype=np.float32)
        account_box = spaces.Box(
            low=np.array([-1.0, -1.0, 0.0], dtype=np.float32),
            high=np.array([1.0, 1.0, 1.0], dtype=np.float32),
            dtype=np.float32,
        )
        # Gymnasium types Dict as Space[dict[str, Space]] (upstream quirk), not as the space
        # of the dicts of arrays it samples; the cast states what the observations are.
        obs_space: spaces.Dict
        if cfg.use_sequence_encoder:
            obs_space = spaces.Dict(
                {
                    "window": spaces.Box(
                        -clip, clip, shape=(self._seq_len, n_feat), dtype=np.float32
                    ),
                    "mask": spaces.Box(0.0, 1.0, shape=(self._seq_len,), dtype=np.float32),
                    "account": account_box,
                }
            )
        else:
            obs_space = spaces.Dict({"features": feature_box, "account": account_box})
        self.observation_space = cast("spaces.Space[dict[str, np.ndarray]]", obs_space)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

        # ---- sessions and episode starts.
        starts = arrays.session_starts()
        self._session_last: np.ndarray = np.r_[starts[1:] - 1, n - 1].astype(np.int64)
        self._session_of_bar: np.ndarray = (
            np.searchsorted(starts, np.arange(n), side="right") - 1
        ).astype(np.int64)
        eligible = starts[(starts >= lo) & (starts <= hi - 1)]
        decision = np.maximum(eligible - 1, 0)  # previous close; bar 0 has none
        self.episode_start_bars: np.ndarray = decision[decision < hi - 1].astype(np.int64)
        """Decision bars at which episodes may start, one per eligible session, in order."""
        self.episode_start_bars.flags.writeable = False
        if self.episode_start_bars.size == 0:
            raise ValueError(
                f"bar_range: {self.bar_range} contains no session start with a bar to trade"
            )

        # ---- cost and reward machinery (config scalars cached as attributes for step()).
        self._cost_rate = cfg.cost_rate
        self._deadband = cfg.deadband
        self._flatten = cfg.flatten_at_close
        self._reward_scale = self.reward_config.scale
        self._sequence = cfg.use_sequence_encoder
        self._ruin_level = cfg.ruin_equity * _INITIAL_EQUITY
        self._reward_fn = make_reward(self.reward_config)
        # The DSR moments go into `info` for every reward, as a running risk-adjusted
        # performance gauge; reuse the reward's own tracker when it is the DSR.
        self._dsr = (
            self._reward_fn
            if isinstance(self._reward_fn, DifferentialSharpeRatio)
            else DifferentialSharpeRatio()
        )

        # ---- episode state (set by reset()).
        self._cursor = 0
        self._t = -1
        self._end = -1
        self._position = 0.0
        self._equity = _INITIAL_EQUITY
        self._entry_equity = 0.0
        self._done = True

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode.

        Args:
            seed: Seeds ``self.np_random`` (random starts) and restarts the sequential walk.
            options: ``{"start_bar": i}`` starts at decision bar ``i`` instead (deterministic
                evaluation); ``i`` must lie in ``[max(bar_range[0] - 1, 0), bar_range[1] - 2]``
                and the episode ends ``episode_sessions`` sessions after bar ``i + 1``'s.

        Returns:
            The observation at the close of the start bar and the ``info`` dict.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._cursor = 0
        starts = self.episode_start_bars
        if options is not None and options.get("start_bar") is not None:
            start = self._checked_start_bar(options["start_bar"])
        elif self.config.random_start:
            start = int(starts[self.np_random.integers(starts.size)])
        else:
            start = int(starts[self._cursor])
            if self.config.episode_sessions:
                self._cursor = (self._cursor + self.config.episode_sessions) % starts.size

        lo, hi = self.bar_range
        last_bar = hi - 1
        if self.config.episode_sessions:
            last_session = int(self._session_of_bar[start + 1]) + self.config.episode_sessions - 1
            if last_session < self._session_last.size:
                last_bar = min(last_bar, int(self._session_last[last_session]))
        self._t = start
        self._end = last_bar
        self._position = 0.0
        self._equity = _INITIAL_EQUITY
        self._entry_equity = 0.0
        self._done = False
        self._reward_fn.reset()
        if self._dsr is not self._reward_fn:
            self._dsr.reset()
        info = {
            "equity": self._equity,
            "position": 0.0,
            "target": 0.0,
            "trade_cost": 0.0,
            "net_return": 0.0,
            "gross_return": 0.0,
            "turnover": 0.0,
            "dsr_A": self._dsr.A,
            "dsr_B": self._dsr.B,
            "timestamp": self._timestamps[start],
            "bar": start,
        }
        return self._observation(start, 0.0, 0.0), info

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Fill the target at the next open, mark to the next close, return the reward.

        Args:
            action: Shape ``(1,)`` (any size-1 array), in ``[-1, 1]``; values outside are
                clipped, as SB3 already does for PPO.

        Raises:
            RuntimeError: If called before ``reset()`` or after the episode ended.
            ValueError: If the action is not a single finite number.
        """
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        t1 = self._t + 1
        p_old = self._position
        target = apply_deadband(self._action_to_target(action), p_old, self._deadband)
        delta = abs(target - p_old)
        gap = self._gap[t1]
        intraday = self._intraday[t1]
        e0 = self._equity

        # Open of t+1: the old position earns the gap, then the fill pays costs.
        e_open = e0 * (1.0 + p_old * gap)
        cost_open = self._cost_rate * delta * max(e_open, 0.0)
        e_open -= cost_open
        if target == 0.0:
            self._entry_equity = 0.0
        elif p_old == 0.0 or (target > 0.0) != (p_old > 0.0):
            self._entry_equity = e_open  # a new position: its PnL is measured from here

        # Close of t+1: the new position earns the bar, then the optional MOC flatten.
        e1 = e_open * (1.0 + target * intraday)
        cost_close = 0.0
        position = target
        turnover = delta
        if self._flatten and self._is_last[t1] and target != 0.0:
            cost_close = self._cost_rate * abs(target) * max(e1, 0.0)
            e1 -= cost_close
            turnover += abs(target)
            position = 0.0
            self._entry_equity = 0.0

        net_return = e1 / e0 - 1.0
        gross_return = (1.0 + p_old * gap) * (1.0 + target * intraday) - 1.0
        trade_cost = (cost_open + cost_close) / e0
        reward = self._reward_fn.step(net_return, trade_cost) * self._reward_scale
        if self._dsr is not self._reward_fn:
            self._dsr.step(net_return, trade_cost)

        self._t = t1
        self._position = position
        self._equity = e1
        terminated = e1 < self._ruin_level or e1 <= 0.0
        truncated = t1 >= self._end
        self._done = terminated or truncated

        if position == 0.0 or e1 <= 0.0:
            unrealized = 0.0 if position == 0.0 else -1.0
        else:
            unrealized = min(max((e1 - self._entry_equity) / e1, -1.0), 1.0)
        info = {
            "equity": e1,
            "position": position,
            "target": target,
            "trade_cost": trade_cost,
            "net_return": net_return,
            "gross_return": gross_return,
            "turnover": turnover,
            "dsr_A": self._dsr.A,
            "dsr_B": self._dsr.B,
            "timestamp": self._timestamps[t1],
            "bar": t1,
        }
        return self._observation(t1, position, unrealized), reward, terminated, truncated, info

    # ------------------------------------------------------------------ helpers
    def _observation(self, t: int, position: float, unrealized: float) -> dict[str, np.ndarray]:
        """Observation at the close of bar ``t``; every array is a fresh copy it owns."""
        account = np.array([position, unrealized, self._frac_left[t]], dtype=np.float32)
        if self._sequence:
            stop = t + self._seq_len
            return {
                "window": self._window_src[t:stop].copy(),  # (T, F), newest last
                "mask": self._mask_src[t:stop].copy(),  # (T,)
                "account": account,
            }
        return {"features": self._features[t].copy(), "account": account}

    def market_observations(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """The market part of the observations at decision bars ``start .. stop-1``.

        Row ``i`` is what :meth:`step`/:meth:`reset` put in the observation at bar
        ``start + i`` (everything but ``account``, which depends on the episode): lets a
        deterministic evaluation encode a whole segment in batches
        (:class:`backend.models.segment_actor.SegmentActor`). Read-only views, no copies.

        Raises:
            ValueError: if ``start .. stop`` is not a non-empty range of bars.
        """
        n = len(self._timestamps)
        if not 0 <= start < stop <= n:
            raise ValueError(
                f"market_observations: need 0 <= start < stop <= {n}, got {start}, {stop}"
            )
        if not self._sequence:
            return {"features": self._features[start:stop]}
        idx = np.arange(start, stop)[:, None] + np.arange(self._seq_len)[None, :]  # (B, T)
        return {"window": self._window_src[idx], "mask": self._mask_src[idx]}

    def _action_to_target(self, action: np.ndarray) -> float:
        """Map an action to a target position (shared with the live trader)."""
        return action_to_target(action, self.config)

    def _checked_start_bar(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"options['start_bar']: expected an int, got {value!r}")
        lo, hi = self.bar_range
        first = max(lo - 1, 0)
        if not first <= int(value) <= hi - 2:
            raise ValueError(
                f"options['start_bar']: {value} outside [{first}, {hi - 2}] for bar_range "
                f"{self.bar_range} (the start bar is a decision bar; the next bar is traded)"
            )
        return int(value)

    @property
    def current_bar(self) -> int:
        """Decision bar of the latest observation (-1 before the first reset)."""
        return self._t

    @property
    def episode_end_bar(self) -> int:
        """Last bar of the current episode (its step sets ``truncated``)."""
        return self._end


def register_env() -> None:
    """Register :data:`ENV_ID` with Gymnasium (idempotent).

    Importing :mod:`backend.environments` calls this (Gymnasium's convention for env
    packages, so ``gym.make("backend.environments:YoopRL/IntradayTrading-v0")`` and RL
    Zoo's ``--gym-packages backend.environments`` work). The entry point is
    :func:`backend.environments.factory.make_intraday_env`, named as a string so that
    registering imports nothing heavy: ``gym.make(ENV_ID, **kwargs)`` loads the data.
    """
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="backend.environments.factory:make_intraday_env")
