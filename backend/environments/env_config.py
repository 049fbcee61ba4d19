"""Typed, validated parameters of the intraday trading environment: the ``env`` section.

The reward is its own section (:mod:`backend.environments.rewards`), given to the env
beside this config. ``use_sequence_encoder`` follows the encoder in an experiment
(:class:`backend.config.experiment.ExperimentConfig` derives it), so the two cannot disagree.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from backend.utils.config_model import ConfigModel, PosInt, StrictBool

_Bps = Annotated[float, Field(strict=True, ge=0.0, le=1000.0)]


class EnvConfig(ConfigModel):
    """Parameters of :class:`backend.environments.intraday_env.IntradayTradingEnv`.

    Costs are in basis points of traded notional; positions are fractions of equity.
    """

    use_sequence_encoder: Annotated[StrictBool, Field(json_schema_extra={"readOnly": True})] = False
    """Observe a ``(T, F)`` window plus mask instead of the current bar's ``(F,)`` features,
    for recurrent/attention encoders (``Docs/CONTRACTS.md`` "Observation")."""

    sequence_length: PosInt = 64
    """``T``, bars in the window (newest last); 64 bars is about 2.5 regular sessions."""

    long_only: StrictBool = False
    """Map the action ``a`` in ``[-1, 1]`` to the target ``(a + 1) / 2`` in ``[0, 1]``.

    An affine map rather than clipping ``a`` at 0: clipping would send the whole negative
    half of the action space to "flat", so half the policy's outputs would be
    indistinguishable (no gradient through them for SAC's squashed Gaussian), and an
    untrained policy centred on 0 would sit exactly on the kink. The affine map keeps every
    action meaningful and keeps SB3's recommended symmetric ``Box(-1, 1)``."""

    max_position: Annotated[float, Field(strict=True, gt=0.0, le=1.0)] = 1.0
    """Largest absolute position, as a fraction of equity, in ``(0, 1]``; the target is
    ``action * max_position``. Capped at 1 because the observation contract bounds the
    position to ``[-1, 1]``; use a smaller value for leveraged ETFs (TQQQ, UPRO)."""

    deadband: Annotated[float, Field(strict=True, ge=0.0, le=1.0)] = 0.05
    """No trade when ``|target - position|`` is below this: small re-balances cost more in
    commission and slippage than they change exposure, and a noisy policy would otherwise
    churn every bar."""

    cost_bps: _Bps = 1.0
    """Commission per unit traded, in basis points of traded notional."""

    slippage_bps: _Bps = 1.0
    """Assumed adverse fill versus the reference open/close price, in basis points of
    traded notional; charged exactly like ``cost_bps``."""

    flatten_at_close: StrictBool = True
    """Close any position at the close of each session's last bar (market-on-close), paying
    costs, so nothing is held overnight: an intraday agent is not paid for gap risk."""

    episode_sessions: Annotated[int, Field(strict=True, ge=0)] = 1
    """Sessions per episode; ``0`` or ``None`` (stored as 0) run to the end of the bar
    range."""

    random_start: StrictBool = True
    """Start each episode at a session drawn uniformly (``self.np_random``) from the bar
    range. If False, successive resets walk through the sessions in order,
    ``episode_sessions`` at a time, and wrap; a seeded reset restarts the walk."""

    ruin_equity: Annotated[float, Field(strict=True, ge=0.0, lt=1.0)] = 0.5
    """Terminate the episode when equity falls below this fraction of its starting value;
    in ``[0, 1)``. 0 still terminates once equity is exhausted."""

    feature_clip: Annotated[float, Field(strict=True, gt=0.0, allow_inf_nan=False)] = 10.0
    """Observation bound for normalized features: values are clipped into
    ``[-feature_clip, feature_clip]`` once at construction so every observation lies in the
    declared, finite ``Box`` (SB3 and Gymnasium's checkers reject infinite bounds)."""

    @field_validator("episode_sessions", mode="before")
    @classmethod
    def _none_is_zero(cls, value: object) -> object:
        return 0 if value is None else value

    @property
    def cost_rate(self) -> float:
        """Commission plus slippage as a fraction of traded notional."""
        return (self.cost_bps + self.slippage_bps) * 1e-4
