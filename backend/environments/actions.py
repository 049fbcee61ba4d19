"""The one action -> target-position mapping, shared by the env and the live trader.

Backtest and paper/live trading must turn the same policy output into the same order; two
copies of this arithmetic drifted before (issue 11), so both import it from here.
"""

from __future__ import annotations

import math

import numpy as np

from backend.environments.env_config import EnvConfig


def action_to_target(action: object, config: EnvConfig) -> float:
    """Map a policy action in ``[-1, 1]`` to a target position (fraction of equity).

    The action is clipped to ``[-1, 1]``; with ``long_only`` it is mapped affinely to
    ``[0, 1]``; the result is scaled by ``max_position``.

    Raises:
        ValueError: If the action is not a single finite number.
    """
    arr = np.asarray(action)
    try:
        a = float(arr.item())
    except ValueError:
        raise ValueError(f"action: expected a single value, got shape {arr.shape}") from None
    if not math.isfinite(a):
        raise ValueError(f"action: must be finite, got {a}")
    a = -1.0 if a < -1.0 else (1.0 if a > 1.0 else a)
    if config.long_only:
        a = 0.5 * (a + 1.0)
    return a * config.max_position


def apply_deadband(target: float, position: float, deadband: float) -> float:
    """``position`` when the change to ``target`` is smaller than ``deadband``, else ``target``.

    A move inside the deadband is not traded at all (no cost, the position is kept), also
    when the target is flat.
    """
    return position if abs(target - position) < deadband else target


def actions_to_targets(actions: np.ndarray, config: EnvConfig) -> np.ndarray:
    """:func:`action_to_target` on a ``(N,)`` float64 array of finite actions, same arithmetic.

    For batched envs; the caller checks the shape and finiteness (it names the env).
    """
    a = np.minimum(np.maximum(actions, -1.0), 1.0)
    if config.long_only:
        a = 0.5 * (a + 1.0)
    return a * config.max_position
