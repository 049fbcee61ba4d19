"""Typed, validated parameters of the intraday trading environment.

One frozen dataclass, one docstring per field, invariants asserted on construction (the
nanoGPT ``GPTConfig`` / CleanRL ``Args`` habit): a bad YAML value fails when the experiment
is loaded, not 40 minutes into training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

RewardName = Literal["dsr", "ddr", "log_return", "cost_penalized"]
REWARD_NAMES: tuple[str, ...] = get_args(RewardName)
"""Valid values of :attr:`EnvConfig.reward`; ``rewards.REWARDS`` has one class per name."""


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    # bool is an int subclass; `episode_sessions: true` in YAML is a bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")


def _check_float(
    name: str,
    value: object,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    ok = (
        math.isfinite(v)
        and (v > low if low_open else v >= low)
        and (v < high if high_open else v <= high)
    )
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name}: must be in {lo}{low}, {high}{hi}, got {value!r}")


@dataclass(frozen=True)
class EnvConfig:
    """Parameters of :class:`backend.environments.intraday_env.IntradayTradingEnv`.

    Costs are in basis points of traded notional; positions are fractions of equity.
    """

    use_sequence_encoder: bool = False
    """Observe a ``(T, F)`` window plus mask instead of the current bar's ``(F,)`` features,
    for recurrent/attention encoders (``Docs/CONTRACTS.md`` "Observation")."""

    sequence_length: int = 64
    """``T``, bars in the window (newest last); 64 bars is about 2.5 regular sessions."""

    long_only: bool = False
    """Map the action ``a`` in ``[-1, 1]`` to the target ``(a + 1) / 2`` in ``[0, 1]``.

    An affine map rather than clipping ``a`` at 0: clipping would send the whole negative
    half of the action space to "flat", so half the policy's outputs would be
    indistinguishable (no gradient through them for SAC's squashed Gaussian), and an
    untrained policy centred on 0 would sit exactly on the kink. The affine map keeps every
    action meaningful and keeps SB3's recommended symmetric ``Box(-1, 1)``."""

    max_position: float = 1.0
    """Largest absolute position, as a fraction of equity, in ``(0, 1]``; the target is
    ``action * max_position``. Capped at 1 because the observation contract bounds the
    position to ``[-1, 1]``; use a smaller value for leveraged ETFs (TQQQ, UPRO)."""

    deadband: float = 0.05
    """No trade when ``|target - position|`` is below this: small re-balances cost more in
    commission and slippage than they change exposure, and a noisy policy would otherwise
    churn every bar."""

    cost_bps: float = 1.0
    """Commission per unit traded, in basis points of traded notional."""

    slippage_bps: float = 1.0
    """Assumed adverse fill versus the reference open/close price, in basis points of
    traded notional; charged exactly like ``cost_bps``."""

    flatten_at_close: bool = True
    """Close any position at the close of each session's last bar (market-on-close), paying
    costs, so nothing is held overnight: an intraday agent is not paid for gap risk."""

    episode_sessions: int | None = 1
    """Sessions per episode; ``0`` or ``None`` (stored as 0) run to the end of the bar
    range."""

    random_start: bool = True
    """Start each episode at a session drawn uniformly (``self.np_random``) from the bar
    range. If False, successive resets walk through the sessions in order,
    ``episode_sessions`` at a time, and wrap; a seeded reset restarts the walk."""

    reward: RewardName = "dsr"
    """Reward function name, a key of ``backend.environments.rewards.REWARDS``."""

    reward_scale: float = 1.0
    """Multiplier applied to the reward after it is computed (e.g. 100 for raw returns,
    which are ~1e-3 per bar and would otherwise be drowned by value-function noise)."""

    dsr_eta: float = 0.01
    """Adaptation rate of the Differential Sharpe Ratio's moving moments, in ``(0, 1)``
    (Moody & Saffell 1998); memory is about ``1 / eta`` steps."""

    dsr_warmup_steps: int = 10
    """Steps at the start of an episode during which the DSR moments are updated but the
    reward is 0, because the variance estimate is built from too few returns to divide by."""

    dsr_eps: float = 1e-8
    """Variance floor of the DSR denominator, in squared per-bar return (1e-8 = a 1 bp
    standard deviation): below it the Sharpe estimate is meaningless and would explode."""

    dsr_bias_correction: bool = False
    """Divide the DSR/DDR moving moments by their weight ``1 - (1 - eta)**n`` (Adam's bias
    correction), so the first steps of an episode are not on a drifting scale and the
    warm-up can be 1-2 steps. False is the exact Moody-Saffell DSR."""

    dsr_floor_vol: float = 0.0
    """If > 0, training sets ``dsr_eps`` to ``(dsr_floor_vol * sigma)**2``, ``sigma`` the
    asset's per-bar return std on the fit range: the reward then grows with the position
    until the strategy is that volatile (a reason to size, ``rewards`` module docstring).
    0 keeps ``dsr_eps`` as given."""

    cost_penalty: float = 1.0
    """For ``reward="cost_penalized"``: extra weight on the step's trading cost,
    ``reward = net_return - cost_penalty * trade_cost`` (costs already reduce the net
    return; this over-weights them to discourage churn)."""

    ruin_equity: float = 0.5
    """Terminate the episode when equity falls below this fraction of its starting value;
    in ``[0, 1)``. 0 still terminates once equity is exhausted."""

    feature_clip: float = 10.0
    """Observation bound for normalized features: values are clipped into
    ``[-feature_clip, feature_clip]`` once at construction so every observation lies in the
    declared, finite ``Box`` (SB3 and Gymnasium's checkers reject infinite bounds)."""

    def __post_init__(self) -> None:
        if self.episode_sessions is None:
            object.__setattr__(self, "episode_sessions", 0)
        for name in (
            "use_sequence_encoder",
            "long_only",
            "flatten_at_close",
            "random_start",
            "dsr_bias_correction",
        ):
            _check_bool(name, getattr(self, name))
        _check_int("sequence_length", self.sequence_length, 1)
        _check_int("episode_sessions", self.episode_sessions, 0)
        _check_int("dsr_warmup_steps", self.dsr_warmup_steps, 0)
        _check_float("max_position", self.max_position, 0.0, 1.0, low_open=True)
        _check_float("deadband", self.deadband, 0.0, 1.0)
        _check_float("cost_bps", self.cost_bps, 0.0, 1000.0)
        _check_float("slippage_bps", self.slippage_bps, 0.0, 1000.0)
        _check_float("reward_scale", self.reward_scale, 0.0, low_open=True)
        _check_float("dsr_eta", self.dsr_eta, 0.0, 1.0, low_open=True, high_open=True)
        _check_float("dsr_eps", self.dsr_eps, 0.0, low_open=True)
        _check_float("dsr_floor_vol", self.dsr_floor_vol, 0.0, 10.0)
        _check_float("cost_penalty", self.cost_penalty, 0.0)
        _check_float("ruin_equity", self.ruin_equity, 0.0, 1.0, high_open=True)
        _check_float("feature_clip", self.feature_clip, 0.0, low_open=True)
        if self.reward not in REWARD_NAMES:
            raise ValueError(f"reward: must be one of {list(REWARD_NAMES)}, got {self.reward!r}")

    @property
    def cost_rate(self) -> float:
        """Commission plus slippage as a fraction of traded notional."""
        return (self.cost_bps + self.slippage_bps) * 1e-4

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{field: value}`` for YAML/JSON (saved next to a run's results)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvConfig:
        """Build from a mapping, rejecting unknown keys (a typo must not silently default).

        Raises:
            ValueError: On unknown keys or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"EnvConfig: unknown keys {unknown}; valid keys: {sorted(known)}")
        return cls(**dict(data))
