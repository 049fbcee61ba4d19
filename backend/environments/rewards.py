"""Per-step rewards for the trading environment, behind one small interface.

Every reward consumes the step's *net* return ``R_t`` (after trading costs, as a fraction
of the equity at the previous decision) and the step's trading cost, and returns a float.
They are stateful only where the definition needs it (the Differential Sharpe Ratio keeps
moving moments), and :meth:`RewardFunction.reset` is called at every episode start so that
a seeded reset reproduces the same rewards.

The Differential Sharpe Ratio (DSR) follows Moody & Saffell, "Reinforcement learning for
trading" (NIPS 1998) and "Learning to trade via direct reinforcement" (IEEE TNN 2001),
eqs. (14)-(16) of the latter::

    A_t = A_{t-1} + eta * (R_t   - A_{t-1})          # first moment
    B_t = B_{t-1} + eta * (R_t^2 - B_{t-1})          # second moment
    D_t = (B_{t-1} dA_t - 1/2 A_{t-1} dB_t) / (B_{t-1} - A_{t-1}^2)^(3/2)
    dA_t = R_t - A_{t-1},  dB_t = R_t^2 - B_{t-1}

``D_t`` is the first-order sensitivity of the exponentially weighted Sharpe ratio to the
newest return, so summing it over time climbs the Sharpe ratio, not the raw PnL. With the
moments at zero it reduces to ``R_t / sqrt(B_{t-1})``: a volatility-scaled return.

Why the exact DSR gives no reason to size (issue 9), and what the options change:

* **Scale blindness.** Scaling every return by ``k`` scales the numerator by ``k**3`` and
  the denominator by ``k**3``: ``D_t`` is identical at position 1.0 and 0.5, because the
  Sharpe ratio is. Only the variance floor breaks the tie. ``floor_vol`` (the floor set
  from the asset's own bar volatility on the fit range, ``DSRConfig.floor_vol``) makes the
  reward grow with the cube of the position while the strategy's volatility is below
  ``floor_vol`` times the asset's (the numerator scales as ``k**3`` over a fixed
  denominator), and Sharpe-like above it: with floor 1.0 a strategy that holds 50% earns
  an eighth of the reward of the same strategy at full size, not the same.
* **Warm-up and short episodes.** The moments start at 0 every episode, so after ``n``
  steps the exponential averages carry only ``1 - (1 - eta)**n`` of their weight.
  ``bias_correction`` divides both by that weight (as Adam does, Kingma & Ba 2015, sec. 3),
  so the estimates are unbiased from the second step on and a warm-up of 1-2 steps is
  enough instead of 20.

The Downside Deviation Ratio (:class:`DownsideDeviationRatio`, ``name: ddr``) is the same
construction with the downside deviation in the denominator (Moody & Saffell 2001,
eqs. (19)-(20)).

Rewards are registered with :func:`register_reward`, which pairs a reward class with its
config model (a pydantic model whose ``name`` is the registry key); the experiment's
``reward`` section is the discriminated union of every registered config
(:func:`reward_config_union`), so a new reward is one class + one config here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import Field

from backend.utils.config_model import ConfigModel, NonNegInt, PosFloat, StrictBool

__all__ = [
    "REWARDS",
    "REWARD_CONFIGS",
    "CostPenalizedConfig",
    "CostPenalizedReturnReward",
    "DDRConfig",
    "DSRConfig",
    "DifferentialSharpeRatio",
    "DownsideDeviationRatio",
    "LogReturnConfig",
    "LogReturnReward",
    "RewardConfigBase",
    "RewardFunction",
    "fit_reward_floor",
    "make_reward",
    "register_reward",
    "reward_config_union",
    "reward_names",
]


class RewardConfigBase(ConfigModel):
    """Fields every reward shares; subclasses add ``name: Literal[...]`` and their own."""

    name: str
    """Registry key of the reward (the discriminator of the ``reward`` section)."""

    scale: PosFloat = 1.0
    """Multiplier applied to the reward after it is computed (e.g. 100 for raw returns,
    which are ~1e-3 per bar and would otherwise be drowned by value-function noise)."""


REWARDS: dict[str, type[RewardFunction]] = {}
"""Reward name to class; filled by :func:`register_reward`."""

REWARD_CONFIGS: dict[str, type[RewardConfigBase]] = {}
"""Reward name to its config model; filled by :func:`register_reward`."""

_RewardT = TypeVar("_RewardT", bound="type[RewardFunction]")


def register_reward(config_class: type[RewardConfigBase]) -> Callable[[_RewardT], _RewardT]:
    """Class decorator: register a reward class under its config's ``name`` default.

    Raises:
        ValueError: if the name is taken or the config has no literal ``name`` default.
    """
    name = config_class.model_fields["name"].default
    if not isinstance(name, str) or not name:
        raise ValueError(f"{config_class.__name__} needs a name: Literal[...] = '...' field")

    def decorate(cls: _RewardT) -> _RewardT:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is registered twice")
        cls.name = name
        cls.config_class = config_class
        REWARDS[name] = cls
        REWARD_CONFIGS[name] = config_class
        return cls

    return decorate


def reward_names() -> tuple[str, ...]:
    """Registered reward names, in registration order."""
    return tuple(REWARDS)


def reward_config_union() -> Any:
    """``Annotated[Union[...configs], Field(discriminator="name")]`` over the registry."""
    configs = tuple(REWARD_CONFIGS.values())
    union: Any = configs[0] if len(configs) == 1 else _union(configs)
    return Annotated[union, Field(discriminator="name")]


def _union(types: tuple[type, ...]) -> Any:
    from typing import Union

    return Union[types]  # noqa: UP007  (built from a runtime tuple)


class _MovingMomentConfig(RewardConfigBase):
    """Fields of the rewards built on Moody & Saffell's moving moments (DSR, DDR)."""

    eta: Annotated[float, Field(strict=True, gt=0.0, lt=1.0)] = 0.01
    """Adaptation rate of the moving moments, in ``(0, 1)``; memory is about ``1 / eta``
    steps."""
    warmup_steps: NonNegInt = 10
    """Steps at the start of an episode during which the moments are updated but the
    reward is 0, because the variance estimate is built from too few returns to divide by."""
    eps: PosFloat = 1e-8
    """Variance floor of the denominator, in squared per-bar return (1e-8 = a 1 bp
    standard deviation): below it the Sharpe estimate is meaningless and would explode.
    Replaced by the fitted floor when :attr:`floor_vol` > 0."""
    bias_correction: StrictBool = False
    """Divide the moving moments by their weight ``1 - (1 - eta)**n`` (Adam's bias
    correction) so the first steps of an episode are not on a drifting scale and a warm-up
    of 1-2 steps suffices. ``false`` keeps the exact Moody-Saffell recursion."""
    floor_vol: Annotated[float, Field(strict=True, ge=0.0, le=10.0)] = 0.0
    """If > 0, training replaces ``eps`` by ``(floor_vol * sigma)**2``, ``sigma`` the
    asset's per-bar open-to-close return std on the fit range only
    (:func:`fit_reward_floor`; the fitted value is saved with the model). The reward then
    grows with the position until the strategy is ``floor_vol`` times as volatile as the
    asset: a reason to size (module docstring). 0 keeps ``eps`` as given."""


class DSRConfig(_MovingMomentConfig):
    """Moody & Saffell's Differential Sharpe Ratio (:class:`DifferentialSharpeRatio`).

    At ``bias_correction: false, floor_vol: 0`` it is the exact Moody-Saffell DSR.
    """

    name: Literal["dsr"] = "dsr"
    """The Differential Sharpe Ratio."""


class DDRConfig(_MovingMomentConfig):
    """Moody & Saffell's differential Downside Deviation Ratio (:class:`DownsideDeviationRatio`).

    ``eps`` floors the squared downside deviation instead of the variance.
    """

    name: Literal["ddr"] = "ddr"
    """The differential Downside Deviation Ratio."""


class LogReturnConfig(RewardConfigBase):
    """``log(1 + R_t)`` (:class:`LogReturnReward`); no parameters but ``scale``."""

    name: Literal["log_return"] = "log_return"
    """The log return of equity."""


class CostPenalizedConfig(RewardConfigBase):
    """``R_t - cost_penalty * cost_t`` (:class:`CostPenalizedReturnReward`)."""

    name: Literal["cost_penalized"] = "cost_penalized"
    """The net return with trading costs counted extra."""
    cost_penalty: Annotated[float, Field(strict=True, ge=0.0, allow_inf_nan=False)] = 1.0
    """Extra weight on the step's trading cost (costs already reduce the net return; this
    over-weights them to discourage churn)."""


class RewardFunction(ABC):
    """A per-step reward computed from the step's net return and trading cost."""

    name: ClassVar[str]
    """Registry key (the ``name`` of its config); set by :func:`register_reward`."""

    config_class: ClassVar[type[RewardConfigBase]]
    """The config model this reward is built from; set by :func:`register_reward`."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: Any) -> RewardFunction:
        """Build the reward from its config (an instance of :attr:`config_class`)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget all state; called at every episode start."""

    @abstractmethod
    def step(self, net_return: float, trade_cost: float = 0.0) -> float:
        """Reward for one step.

        Args:
            net_return: ``R_t``, the step's return after costs, as a fraction of the equity
                at the previous decision.
            trade_cost: The step's commission plus slippage, same units (already included
                in ``net_return``).
        """

    @property
    def state(self) -> dict[str, float]:
        """Internal state worth logging in ``info``; empty for stateless rewards."""
        return {}


_M = TypeVar("_M", bound="_MovingMomentReward")


class _MovingMomentReward(RewardFunction):
    """Shared machinery of the DSR and DDR: eta, warm-up, floor, optional bias correction."""

    def __init__(
        self,
        eta: float = 0.01,
        warmup_steps: int = 10,
        eps: float = 1e-8,
        *,
        bias_correction: bool = False,
    ) -> None:
        if not 0.0 < eta < 1.0:
            raise ValueError(f"eta: must be in (0, 1), got {eta}")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps: must be >= 0, got {warmup_steps}")
        if not eps > 0.0:
            raise ValueError(f"eps: must be > 0, got {eps}")
        self.eta = float(eta)
        self.warmup_steps = int(warmup_steps)
        self.eps = float(eps)
        self.bias_correction = bool(bias_correction)
        self.A = 0.0
        self.B = 0.0
        self.n = 0

    @classmethod
    def from_config(cls: type[_M], config: _MovingMomentConfig) -> _M:
        """Build from ``eta``, ``warmup_steps``, ``eps`` and ``bias_correction``.

        ``floor_vol`` is not read here: :func:`fit_reward_floor` turns it into ``eps``
        on the fit range before the env is built.
        """
        return cls(
            config.eta, config.warmup_steps, config.eps, bias_correction=config.bias_correction
        )

    def reset(self) -> None:
        """Zero the moments and the step counter."""
        self.A = 0.0
        self.B = 0.0
        self.n = 0

    def _estimates(self) -> tuple[float, float]:
        """``(A, B)`` before this step's update, divided by their weight if bias-corrected."""
        if self.bias_correction and self.n > 0:
            weight = 1.0 - (1.0 - self.eta) ** self.n
            return self.A / weight, self.B / weight
        return self.A, self.B

    def _update(self, r: float, second: float) -> None:
        self.A += self.eta * (r - self.A)
        self.B += self.eta * (second - self.B)
        self.n += 1

    @property
    def state(self) -> dict[str, float]:
        """``{"A": A_t, "B": B_t, "n": steps seen}`` after the latest update (uncorrected)."""
        return {"A": self.A, "B": self.B, "n": float(self.n)}


@register_reward(DSRConfig)
class DifferentialSharpeRatio(_MovingMomentReward):
    """Moody & Saffell's Differential Sharpe Ratio with a warm-up and a variance floor.

    Warm-up: the moments start at ``A_0 = B_0 = 0``, so for the first few steps the
    variance estimate ``B - A^2`` is built from one or two returns and ``D_t`` is noise with
    a huge scale. For the first ``warmup_steps`` calls the moments are updated as usual but
    the reward is 0. With ``bias_correction`` the estimates are divided by their weight
    ``1 - (1 - eta)**n`` (Adam's correction), which removes the scale drift of the first
    ``~1/eta`` steps; a warm-up of 1-2 steps then suffices.

    Variance floor: the denominator uses ``max(B_{t-1} - A_{t-1}^2, eps) ** 1.5``. The raw
    estimate is exactly 0 at the start and whenever the agent has only been flat (all
    ``R = 0``), and is tiny for tiny positions; without a floor ``D_t`` divides by ~0. With
    the floor active the numerator (which carries a factor ``B_{t-1}``) is also small, so
    the reward fades out with the cube of the position. ``eps`` is in squared return units:
    1e-8 is a 1 bp per-bar standard deviation. Set from the asset's own volatility
    (``DSRConfig.floor_vol``, fitted on the fit range) it is what gives the agent a reason
    to size (module docstring).

    With ``bias_correction=False`` this is the exact Moody-Saffell DSR (eq. (16) of the
    2001 paper) and stays selectable.

    Args:
        eta: Adaptation rate of the moving moments, in ``(0, 1)``.
        warmup_steps: Number of initial steps that return 0 while the moments are updated.
        eps: Variance floor of the denominator, > 0.
        bias_correction: Divide the moments by ``1 - (1 - eta)**n`` before using them.
    """

    def step(self, net_return: float, trade_cost: float = 0.0) -> float:
        """Update the moments with ``R_t`` and return ``D_t`` (0 during warm-up).

        ``D_t`` uses the moments *before* this update (``A_{t-1}``, ``B_{t-1}``), as in the
        definition; ``trade_cost`` is ignored because it is already inside ``net_return``.
        """
        r = float(net_return)
        a_prev, b_prev = self._estimates()
        d_a = r - a_prev
        d_b = r * r - b_prev
        variance = b_prev - a_prev * a_prev
        if variance < self.eps:
            variance = self.eps
        dsr = (b_prev * d_a - 0.5 * a_prev * d_b) / (variance * math.sqrt(variance))
        self._update(r, r * r)
        return 0.0 if self.n <= self.warmup_steps else dsr


@register_reward(DDRConfig)
class DownsideDeviationRatio(_MovingMomentReward):
    """Moody & Saffell's differential Downside Deviation Ratio (2001, eqs. (19)-(20)).

    The Sharpe ratio penalises upside volatility as much as losses; the DDR divides the
    mean return by the downside deviation only. With ``A`` the moving mean of ``R`` and
    ``DD^2`` the moving mean of ``min(R, 0)^2`` (``B`` here), both with rate ``eta``::

        D_t = (R_t - A_{t-1} / 2) / DD_{t-1}                                   R_t > 0
        D_t = (DD_{t-1}^2 (R_t - A_{t-1} / 2) - A_{t-1} R_t^2 / 2) / DD_{t-1}^3  R_t <= 0

    A gain always earns its size over the downside deviation; a loss is also charged
    through the growth of ``DD``. ``DD_{t-1}^2`` is floored at ``eps`` and the warm-up and
    bias correction work as in :class:`DifferentialSharpeRatio`.

    Args:
        eta: Adaptation rate of the moving moments, in ``(0, 1)``.
        warmup_steps: Number of initial steps that return 0 while the moments are updated.
        eps: Floor of ``DD^2``, > 0.
        bias_correction: Divide the moments by ``1 - (1 - eta)**n`` before using them.
    """

    def step(self, net_return: float, trade_cost: float = 0.0) -> float:
        """Update ``A`` and ``DD^2`` with ``R_t`` and return the differential DDR."""
        r = float(net_return)
        a_prev, dd2_prev = self._estimates()
        dd2 = max(dd2_prev, self.eps)
        dd = math.sqrt(dd2)
        if r > 0.0:
            ddr = (r - 0.5 * a_prev) / dd
        else:
            ddr = (dd2 * (r - 0.5 * a_prev) - 0.5 * a_prev * r * r) / (dd2 * dd)
        self._update(r, min(r, 0.0) ** 2)
        return 0.0 if self.n <= self.warmup_steps else ddr


# Smallest wealth ratio fed to the log: a wipe-out (R <= -1, possible for a short through a
# >100% jump) gets a large finite penalty, log(1e-12) ~ -27.6, instead of -inf/NaN, which
# would poison a replay buffer.
_MIN_WEALTH_RATIO = 1e-12


@register_reward(LogReturnConfig)
class LogReturnReward(RewardFunction):
    """``log(1 + R_t)``: additive over time, so the episode return is the log wealth growth."""

    @classmethod
    def from_config(cls, config: LogReturnConfig) -> LogReturnReward:
        """No parameters; the config is accepted for a uniform registry interface."""
        return cls()

    def reset(self) -> None:
        """Stateless: nothing to reset."""

    def step(self, net_return: float, trade_cost: float = 0.0) -> float:
        """``log(max(1 + R_t, 1e-12))``."""
        return math.log(max(1.0 + float(net_return), _MIN_WEALTH_RATIO))


@register_reward(CostPenalizedConfig)
class CostPenalizedReturnReward(RewardFunction):
    """``R_t - penalty * cost_t``: the net return with trading costs counted extra.

    Costs are already inside ``R_t``; the penalty over-weights them, a common way to stop a
    policy from churning on noise the backtest cost model understates.

    Args:
        penalty: Extra weight on the step's trading cost, >= 0 (0 gives the plain return).
    """

    def __init__(self, penalty: float = 1.0) -> None:
        if not penalty >= 0.0:
            raise ValueError(f"penalty: must be >= 0, got {penalty}")
        self.penalty = float(penalty)

    @classmethod
    def from_config(cls, config: CostPenalizedConfig) -> CostPenalizedReturnReward:
        """Build from ``cost_penalty``."""
        return cls(config.cost_penalty)

    def reset(self) -> None:
        """Stateless: nothing to reset."""

    def step(self, net_return: float, trade_cost: float = 0.0) -> float:
        """``R_t - penalty * trade_cost``."""
        return float(net_return) - self.penalty * float(trade_cost)


def make_reward(config: RewardConfigBase | None = None) -> RewardFunction:
    """Instantiate the reward that ``config`` names (``None``: the DSR at its defaults).

    Raises:
        KeyError: If the name is not registered (the schema already validates it).
    """
    config = DSRConfig() if config is None else config
    try:
        cls = REWARDS[config.name]
    except KeyError:
        raise KeyError(
            f"unknown reward {config.name!r}; expected one of {sorted(REWARDS)}"
        ) from None
    return cls.from_config(config)


_R = TypeVar("_R", bound=RewardConfigBase)


def fit_reward_floor(config: _R, open_: np.ndarray, close: np.ndarray) -> _R:
    """``config`` with ``eps`` fitted to the asset's bar volatility when ``floor_vol`` > 0.

    ``sigma`` is the std of the open-to-close bar returns given, which must be the fit
    range's bars only (no look-ahead: validation and test never inform it); the fitted
    floor travels with the model in its reward config, so validation and test use the same
    number. Other rewards, and ``floor_vol == 0``, come back unchanged.
    """
    floor_vol = getattr(config, "floor_vol", 0.0)
    if not floor_vol:
        return config
    returns = np.asarray(close, dtype=float) / np.asarray(open_, dtype=float) - 1.0
    sigma = float(np.std(returns)) if returns.size else 0.0
    eps = max((floor_vol * sigma) ** 2, 1e-12)
    return config.model_copy(update={"eps": eps})
