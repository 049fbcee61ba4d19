"""Run a trained policy once through an env segment and keep every step's accounting.

Validation (early stopping), out-of-sample tests and the reports all need the same loop;
keeping it here means they all score a policy identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from backend.environments.intraday_env import IntradayTradingEnv

PolicyState = tuple[np.ndarray, ...] | None
"""A recurrent policy's hidden state as SB3 passes it around (None for feed-forward ones)."""


class Policy(Protocol):
    """Anything with SB3's ``predict`` signature (``BaseAlgorithm.predict``)."""

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: PolicyState = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, PolicyState]:
        """Return the action for one observation."""
        ...


@dataclass(frozen=True)
class RolloutResult:
    """Per-step record of one pass over a segment (all arrays have one entry per step)."""

    timestamps: np.ndarray
    """int64 ns UTC of the bar whose close ends the step."""
    net_returns: np.ndarray
    """Step return of equity after costs."""
    gross_returns: np.ndarray
    """Step return before costs."""
    positions: np.ndarray
    """Position held at the end of the step (after any flatten at the close)."""
    turnover: np.ndarray
    """|change of position| traded during the step."""
    trade_costs: np.ndarray
    """Costs paid during the step, as a fraction of equity."""
    equity: np.ndarray
    """Equity at the end of the step, starting from 1."""

    @property
    def n_steps(self) -> int:
        """Number of steps taken."""
        return int(self.net_returns.size)

    @property
    def total_return(self) -> float:
        """Compounded net return over the segment."""
        return float(self.equity[-1] - 1.0) if self.n_steps else 0.0


def rollout_policy(
    policy: Policy,
    env: IntradayTradingEnv,
    *,
    deterministic: bool = True,
    start_bar: int | None = None,
    seed: int | None = None,
) -> RolloutResult:
    """Play ``policy`` from ``start_bar`` (default: the segment's first start) to the end.

    Use an env built with ``episode_sessions=0`` and ``random_start=False`` to cover a
    whole segment in one episode. ``deterministic=False`` samples actions (the
    ``--stochastic-eval`` option); ``seed`` then makes the sampling repeatable.
    """
    start = int(env.episode_start_bars[0]) if start_bar is None else int(start_bar)
    obs, _ = env.reset(seed=seed, options={"start_bar": start})
    keys = (
        "timestamp",
        "net_return",
        "gross_return",
        "position",
        "turnover",
        "trade_cost",
        "equity",
    )
    columns: dict[str, list[float]] = {k: [] for k in keys}
    done = False
    while not done:
        action, _ = policy.predict(obs, deterministic=deterministic)
        obs, _, terminated, truncated, info = env.step(action)
        for key in keys:
            columns[key].append(info[key])
        done = terminated or truncated
    return RolloutResult(
        timestamps=np.asarray(columns["timestamp"], dtype=np.int64),
        net_returns=np.asarray(columns["net_return"], dtype=np.float64),
        gross_returns=np.asarray(columns["gross_return"], dtype=np.float64),
        positions=np.asarray(columns["position"], dtype=np.float64),
        turnover=np.asarray(columns["turnover"], dtype=np.float64),
        trade_costs=np.asarray(columns["trade_cost"], dtype=np.float64),
        equity=np.asarray(columns["equity"], dtype=np.float64),
    )
