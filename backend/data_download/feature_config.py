"""Which features are computed and with which parameters: the ``features`` section.

Lives beside the feature registry (:mod:`backend.data_download.intraday_features`), which
is the only reader of these fields; the experiment schema (:mod:`backend.config.experiment`)
embeds it as its ``features`` section.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar

from pydantic import Field, field_validator, model_validator

from backend.data_download.schema import INTERVALS
from backend.utils.config_model import ConfigModel, PosFloat, PosInt, StrictBool, StrictStr

__all__ = [
    "FEATURE_GROUPS",
    "FEATURE_PRESETS",
    "REGULAR_SESSION_MINUTES",
    "FeatureConfig",
]

FEATURE_GROUPS: tuple[str, ...] = (
    "bar",
    "returns",
    "range_gap",
    "technical",
    "volume",
    "calendar",
    "vix",
)
"""Feature groups in the order their columns appear in the feature frame."""

REGULAR_SESSION_MINUTES = 390
"""Length of a full NYSE regular session (09:30-16:00), which bounds session memory."""

_StdWindow = Annotated[int, Field(strict=True, ge=2)]
"""A rolling standard-deviation window: over one value the std is always 0."""


class FeatureConfig(ConfigModel):
    """Which features are computed and with which parameters.

    Windows and horizons are counted in bars (rows of the market frame), not in clock
    time, so a missing bar shortens nothing but the calendar features stay exact.
    """

    use_bar: StrictBool = True
    """Normalised OHLCV of each bar (the sequence encoder's raw view of the tape)."""
    use_returns: StrictBool = True
    """Multi-horizon log returns of the close."""
    use_range_gap: StrictBool = True
    """Bar range, close location, overnight gap and session-anchored distances."""
    use_technical: StrictBool = True
    """RSI, ATR, MACD and Bollinger %b."""
    use_volume: StrictBool = True
    """Rolling z-score of log volume."""
    use_calendar: StrictBool = True
    """Time of day, day of week and the fraction of the session left."""
    use_vix: StrictBool = True
    """VIX level, change, trend and volatility; needs the market frame's ``vix`` column
    (``--no-vix`` on the main job sets this to false for data without a VIX series)."""

    interval: StrictStr = "15m"
    """Bar interval of the market frame (one of ``schema.INTERVALS``); sets the calendar
    grid and the session length."""
    return_horizons: tuple[PosInt, ...] = (1, 4, 13, 26, 78)
    """Horizons (bars) of the log-return features: 15 min, 1 h, half a day, 1 and 3 days."""
    bar_volume_window: PosInt = 26
    """Bars in the rolling mean that the bar's log volume is measured against (one day)."""
    volume_zscore_window: _StdWindow = 78
    """Bars in the rolling window of the log-volume z-score (three days); >= 2."""
    rsi_period: PosInt = 14
    """Wilder RSI period."""
    atr_period: PosInt = 14
    """Wilder ATR period."""
    macd_fast: PosInt = 12
    """Span of the fast EMA of the MACD line; must be smaller than ``macd_slow``."""
    macd_slow: PosInt = 26
    """Span of the slow EMA of the MACD line."""
    macd_signal: PosInt = 9
    """Span of the EMA of the MACD line that forms the signal line."""
    bollinger_window: _StdWindow = 20
    """Bars in the Bollinger moving average and standard deviation; >= 2."""
    bollinger_k: PosFloat = 2.0
    """Width of the Bollinger bands in standard deviations."""
    vix_trend_window: PosInt = 78
    """Bars in the moving average that ``vix_trend`` compares the VIX with (three days)."""
    vix_volatility_window: _StdWindow = 26
    """Bars of VIX log changes in the rolling std ``vix_volatility`` (one day); >= 2."""
    ewm_residual: Annotated[float, Field(strict=True, gt=0.0, le=1.0)] = 1e-3
    """EWM-based features stay NaN until their seed's weight has decayed below this, in
    ``(0, 1]``. An exponential average remembers its starting point forever; masking the
    values while the seed still weighs more than ``ewm_residual`` makes a feature nearly
    independent of where the data happen to begin, so a live loop that computes on
    ``max_lookback`` bars of history sees the values the model was trained on. ``1.0``
    disables the extra warm-up (textbook first values, as TA-Lib reports them)."""

    _WINDOW_FIELDS: ClassVar[tuple[str, ...]] = (
        "bar_volume_window",
        "volume_zscore_window",
        "rsi_period",
        "atr_period",
        "macd_fast",
        "macd_slow",
        "macd_signal",
        "bollinger_window",
        "vix_trend_window",
        "vix_volatility_window",
    )

    @field_validator("interval")
    @classmethod
    def _known_interval(cls, value: str) -> str:
        if value not in INTERVALS:
            raise ValueError(f"interval must be one of {sorted(INTERVALS)}, got {value!r}")
        return value

    @field_validator("return_horizons")
    @classmethod
    def _distinct_horizons(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"return_horizons has duplicates: {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeatureConfig:
        if not any(getattr(self, f"use_{g}") for g in FEATURE_GROUPS):
            raise ValueError(
                "at least one feature group must be enabled; all of "
                f"{[f'use_{g}' for g in FEATURE_GROUPS]} are False"
            )
        if self.use_returns and not self.return_horizons:
            raise ValueError("return_horizons is empty but use_returns is True")
        if self.macd_fast >= self.macd_slow:
            raise ValueError(
                f"macd_fast ({self.macd_fast}) must be smaller than macd_slow ({self.macd_slow})"
            )
        return self

    @property
    def enabled_groups(self) -> tuple[str, ...]:
        """Enabled groups in column order."""
        return tuple(g for g in FEATURE_GROUPS if getattr(self, f"use_{g}"))

    @property
    def session_bars(self) -> int:
        """Bars in a full regular session at this interval (26 for 15-minute bars).

        Session-anchored features (gap, return since the open) remember at most this many
        rows, so it is part of their declared lookback.
        """
        minutes = INTERVALS[self.interval].total_seconds() / 60.0
        return math.ceil(REGULAR_SESSION_MINUTES / minutes)

    @classmethod
    def for_agent(cls, agent: str) -> FeatureConfig:
        """The feature preset an agent was designed and tuned with.

        Raises:
            ValueError: if the agent has no preset; the message lists those that do.
        """
        key = agent.strip().upper()
        try:
            return FEATURE_PRESETS[key]
        except KeyError:
            raise ValueError(
                f"no feature preset for agent {agent!r}; known agents: {sorted(FEATURE_PRESETS)}"
            ) from None


FEATURE_PRESETS: dict[str, FeatureConfig] = {
    # Every group on, VIX included: the DSR reward is volatility-scaled, so the regime
    # context (VIX level/trend) and the session clock are what the policy conditions on.
    "SAC_INTRADAY_DSR": FeatureConfig(),
}
"""Feature preset per agent name (upper case)."""
