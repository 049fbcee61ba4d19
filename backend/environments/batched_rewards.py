"""Rewards of ``N`` independent episodes computed on arrays, for batched envs.

A batched env (``backend.training.vec_env.BatchedIntradayVecEnv``) steps ``N`` episodes in
one call; calling ``N`` scalar :class:`~backend.environments.rewards.RewardFunction`
objects per step would cost more than the rest of the step. A :class:`BatchedReward`
reproduces one scalar reward class on ``(N,)`` arrays with the same floating-point
operations in the same order, so its rewards are bit-identical to ``N`` scalar objects
(``tests/test_vec_env.py`` checks every registered reward).

Which form a batched env uses is decided by :func:`batched_reward`: the registered batched
form of the reward's class if it reproduces every attribute of the scalar object, otherwise
:class:`PerEnvRewards` (``N`` copies of the scalar object, exact by construction). So a
reward, or a new option of a reward, without a batched form is still correct, only slower;
:attr:`BatchedReward.vectorised` says which path was taken.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import ClassVar, TypeVar, cast

import numpy as np
from typing_extensions import Self

from backend.environments.rewards import (
    CostPenalizedReturnReward,
    DifferentialSharpeRatio,
    DownsideDeviationRatio,
    LogReturnReward,
    RewardFunction,
)

__all__ = [
    "BATCHED_REWARDS",
    "BatchedCostPenalizedReturn",
    "BatchedDDR",
    "BatchedDSR",
    "BatchedLogReturn",
    "BatchedReward",
    "MovingMoments",
    "PerEnvRewards",
    "batched_reward",
    "register_batched_reward",
]

_MIN_WEALTH_RATIO = 1e-12  # as rewards.LogReturnReward


class BatchedReward(ABC):
    """``N`` independent copies of one reward, stepped on ``(N,)`` float64 arrays."""

    vectorised: ClassVar[bool] = True
    """False only for :class:`PerEnvRewards` (one scalar object per env)."""

    scalar_class: ClassVar[type[RewardFunction]]
    """The scalar reward this form reproduces."""

    attributes: ClassVar[frozenset[str]]
    """Every instance attribute (parameters and state) of :attr:`scalar_class` that this
    form reproduces; a scalar object with any other attribute (an option added later) is
    not reproduced, and :func:`batched_reward` falls back to :class:`PerEnvRewards`."""

    @classmethod
    @abstractmethod
    def from_scalar(cls, reward: RewardFunction, n: int) -> BatchedReward:
        """The batch of ``n`` envs with ``reward``'s parameters.

        ``reward`` is an instance of :attr:`scalar_class` whose attributes are all in
        :attr:`attributes`.
        """

    @abstractmethod
    def reset(self, i: int) -> None:
        """Forget the state of env ``i`` (its episode starts)."""

    @abstractmethod
    def step(self, net_return: np.ndarray, trade_cost: np.ndarray) -> np.ndarray:
        """Rewards of one step of every env (before the reward's ``scale``)."""


BATCHED_REWARDS: dict[str, type[BatchedReward]] = {}
"""Reward name (the scalar reward's registry key) to its batched form."""

_BatchedT = TypeVar("_BatchedT", bound=type[BatchedReward])


def register_batched_reward(cls: _BatchedT) -> _BatchedT:
    """Class decorator: register ``cls`` as the batched form of ``cls.scalar_class``.

    Raises:
        ValueError: if that reward already has a batched form.
    """
    name = cls.scalar_class.name
    if name in BATCHED_REWARDS:
        raise ValueError(f"reward {name!r} has two batched forms")
    BATCHED_REWARDS[name] = cls
    return cls


def _reproduces(cls: type[BatchedReward], reward: RewardFunction) -> bool:
    return type(reward) is cls.scalar_class and set(vars(reward)) <= cls.attributes


def batched_reward(reward: RewardFunction, n: int) -> BatchedReward:
    """``n`` copies of ``reward`` (a freshly built, reset scalar reward) as one batch.

    The registered batched form when it reproduces ``reward`` (same class, no attribute it
    does not know), else :class:`PerEnvRewards`.
    """
    cls = BATCHED_REWARDS.get(reward.name)
    if cls is not None and _reproduces(cls, reward):
        return cls.from_scalar(reward, n)
    return PerEnvRewards.from_scalar(reward, n)


class PerEnvRewards(BatchedReward):
    """Fallback: one deep copy of the scalar reward per env, called in a Python loop."""

    vectorised: ClassVar[bool] = False
    scalar_class = RewardFunction
    attributes = frozenset()

    def __init__(self, reward: RewardFunction, n: int) -> None:
        self.rewards = [copy.deepcopy(reward) for _ in range(n)]

    @classmethod
    def from_scalar(cls, reward: RewardFunction, n: int) -> PerEnvRewards:
        """``n`` deep copies of ``reward``."""
        return cls(reward, n)

    def reset(self, i: int) -> None:
        """Reset env ``i``'s reward object."""
        self.rewards[i].reset()

    def step(self, net_return: np.ndarray, trade_cost: np.ndarray) -> np.ndarray:
        """Each env's object steps on its own return and cost."""
        return np.array(
            [
                obj.step(r, c)
                for obj, r, c in zip(
                    self.rewards, net_return.tolist(), trade_cost.tolist(), strict=True
                )
            ],
            dtype=np.float64,
        )


class MovingMoments:
    """The DSR's moving moments ``A``, ``B`` of ``N`` envs (the env's ``dsr_A``/``dsr_B`` info).

    The same update as :class:`~backend.environments.rewards.DifferentialSharpeRatio`
    (``A + eta * (R - A)``), for the info of envs whose reward is not the DSR.
    """

    def __init__(self, eta: float, n: int) -> None:
        self.eta = float(eta)
        self.A = np.zeros(n)
        self.B = np.zeros(n)

    def reset(self, i: int) -> None:
        """Zero env ``i``'s moments."""
        self.A[i] = 0.0
        self.B[i] = 0.0

    def update(self, net_return: np.ndarray) -> None:
        """Move both moments towards this step's return (and its square)."""
        r = net_return
        a_prev, b_prev = self.A, self.B
        self.A = a_prev + self.eta * (r - a_prev)
        self.B = b_prev + self.eta * (r * r - b_prev)


class _BatchedMovingMoments(BatchedReward):
    """Moody & Saffell's moving moments of ``N`` envs, as ``rewards._MovingMomentReward``.

    ``A``/``B`` are the raw (uncorrected) moments, which the env's info reports.
    """

    attributes = frozenset({"eta", "warmup_steps", "eps", "bias_correction", "A", "B", "n"})

    def __init__(
        self, eta: float, warmup_steps: int, eps: float, bias_correction: bool, n: int
    ) -> None:
        self.eta = float(eta)
        self.warmup_steps = int(warmup_steps)
        self.eps = float(eps)
        self.bias_correction = bool(bias_correction)
        self.A = np.zeros(n)
        self.B = np.zeros(n)
        self.n = np.zeros(n, dtype=np.int64)

    @classmethod
    def from_scalar(cls, reward: RewardFunction, n: int) -> Self:
        """The batch of ``n`` envs with ``reward``'s parameters (the four above)."""
        m = cast(DifferentialSharpeRatio | DownsideDeviationRatio, reward)
        return cls(m.eta, m.warmup_steps, m.eps, m.bias_correction, n)

    def reset(self, i: int) -> None:
        """Zero env ``i``'s moments and step count."""
        self.A[i] = 0.0
        self.B[i] = 0.0
        self.n[i] = 0

    def _estimates(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)`` before this step's update, divided by their weight if bias-corrected."""
        if not self.bias_correction:
            return self.A, self.B
        started = self.n > 0
        weight = np.where(started, 1.0 - (1.0 - self.eta) ** self.n, 1.0)
        return self.A / weight, self.B / weight

    def _update(self, r: np.ndarray, second: np.ndarray) -> None:
        self.A = self.A + self.eta * (r - self.A)
        self.B = self.B + self.eta * (second - self.B)
        self.n = self.n + 1

    def _after_warmup(self, value: np.ndarray) -> np.ndarray:
        return np.where(self.n <= self.warmup_steps, 0.0, value)


@register_batched_reward
class BatchedDSR(_BatchedMovingMoments):
    """:class:`~backend.environments.rewards.DifferentialSharpeRatio` on arrays."""

    scalar_class = DifferentialSharpeRatio

    def step(self, net_return: np.ndarray, trade_cost: np.ndarray) -> np.ndarray:
        """``DifferentialSharpeRatio.step`` on arrays, same operation order."""
        r = net_return
        r2 = r * r
        a_prev, b_prev = self._estimates()
        d_a = r - a_prev
        d_b = r2 - b_prev
        # The scalar ``if variance < eps: variance = eps`` (NaN stays NaN either way).
        variance = np.maximum(b_prev - a_prev * a_prev, self.eps)
        dsr = (b_prev * d_a - 0.5 * a_prev * d_b) / (variance * np.sqrt(variance))
        self._update(r, r2)
        return self._after_warmup(dsr)


@register_batched_reward
class BatchedDDR(_BatchedMovingMoments):
    """:class:`~backend.environments.rewards.DownsideDeviationRatio` on arrays."""

    scalar_class = DownsideDeviationRatio

    def step(self, net_return: np.ndarray, trade_cost: np.ndarray) -> np.ndarray:
        """``DownsideDeviationRatio.step`` on arrays, same operation order."""
        r = net_return
        a_prev, dd2_prev = self._estimates()
        dd2 = np.maximum(dd2_prev, self.eps)
        dd = np.sqrt(dd2)
        gain = (r - 0.5 * a_prev) / dd
        loss = (dd2 * (r - 0.5 * a_prev) - 0.5 * a_prev * r * r) / (dd2 * dd)
        ddr = np.where(r > 0.0, gain, loss)
        self._update(r, np.minimum(r, 0.0) ** 2)
        return self._after_warmup(ddr)


@register_batched_reward
class BatchedLogReturn(BatchedReward):
    """:class:`~backend.environments.rewards.LogReturnReward` on arrays."""

    scalar_class = LogReturnReward
    attributes = frozenset()

    @classmethod
    def from_scalar(cls, reward: RewardFunction, n: int) -> BatchedLogReturn:
        """Stateless: the batch size is not needed."""
        return cls()

    def reset(self, i: int) -> None:
        """Stateless: nothing to reset."""

    def step(self, net_return: np.ndarray, trade_cost: np.ndarray) -> np.ndarray:
        """``log(max(1 + R, 1e-12))``."""
        return np.log(np.maximum(1.0 + net_return, _MIN_WEALTH_RATIO))


@register_batched_reward
class BatchedCostPenalizedReturn(BatchedReward):
    """:class:`~backend.environments.rewards.CostPenalizedReturnReward` on arrays."""

    scalar_class = CostPenalizedReturnReward
    attributes = frozenset({"penalty"})

    def __init__(self, penalty: float) -> None:
        self.penalty = float(penalty)

    @classmethod
    def from_scalar(cls, reward: RewardFunction, n: int) -> BatchedCostPenalizedReturn:
        """The batch with ``reward``'s penalty."""
        return cls(cast(CostPenalizedReturnReward, reward).penalty)

    def reset(self, i: int) -> None:
        """Stateless: nothing to reset."""

    def step(self, net_return: np.ndarray, trade_cost: np.ndarray) -> np.ndarray:
        """``R - penalty * cost``."""
        return net_return - self.penalty * trade_cost
