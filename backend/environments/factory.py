"""Build a ready :class:`IntradayTradingEnv` from data settings alone: what ``gym.make`` calls.

``gym.make("YoopRL/IntradayTrading-v0")`` (registered when :mod:`backend.environments` is
imported) runs :func:`make_intraday_env`, so the SB3 ecosystem's tools (RL Zoo's trainer
and tuner, ``make_vec_env``) can build the env from its id and a few keyword arguments,
without the caller assembling arrays first. The pipeline is the one the trainer uses::

    bar store --load_market--> features --FeatureNormalizer.fit(fit range)--> MarketArrays
        --> IntradayTradingEnv(arrays, env config, bar range)

**Which range the normalizer is fitted on.** By default (``fit_end=None``) the whole
requested range ``[start, end]`` is the fit range: the normalizer is fitted on it and the
env trades all of it. That env is for *training only*; nothing in it is held out, so do
not score a policy on it. To get an honest evaluation env, pass ``fit_end``: the
normalizer is fitted on the sessions up to and including ``fit_end`` only, and
``segment="fit"`` trades those sessions while ``segment="after_fit"`` trades the sessions
after ``fit_end`` with the same, earlier-fitted statistics (no look-ahead). Features of a
bar use only bars up to it (``intraday_features``), so the bars after ``fit_end`` see
nothing of the fit range's future either way.

**Data.** ``data_dir=None`` uses the embedded synthetic market (the main job's default,
offline), generated under ``data/synthetic`` relative to the working directory when absent
or stale; any other ``data_dir`` is a bar store (``Docs/DATA.md``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import TypeAdapter, ValidationError

from backend.data_download.dataset import SymbolDataset, bar_range
from backend.data_download.feature_config import FeatureConfig
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.environments.rewards import DSRConfig, RewardConfigBase, reward_config_union
from backend.utils.config_model import ConfigError, format_validation_error

SYNTHETIC_DIR = Path("data") / "synthetic"
"""Where the embedded synthetic market is generated when no ``data_dir`` is given."""

DEFAULT_AGENT = "SAC_INTRADAY_DSR"
"""The feature preset used when ``features`` is not given (the trainer's default)."""

Segment = Literal["fit", "after_fit"]


def _feature_config(
    features: FeatureConfig | Mapping[str, Any] | None, interval: str | None
) -> FeatureConfig:
    if features is None:
        config = FeatureConfig.for_agent(DEFAULT_AGENT)
    elif isinstance(features, FeatureConfig):
        config = features
    else:
        config = FeatureConfig.from_dict(features)
    if interval is not None and interval != config.interval:
        config = FeatureConfig.from_dict({**config.to_dict(), "interval": interval})
    return config


def _env_config(env: EnvConfig | Mapping[str, Any] | None) -> EnvConfig:
    if env is None:
        return EnvConfig()
    if isinstance(env, EnvConfig):
        return env
    return EnvConfig.from_dict(env)


@functools.lru_cache(maxsize=4)
def _load_dataset(
    symbol: str, data_dir: str, start: str | None, end: str | None, features: FeatureConfig
) -> SymbolDataset:
    """Loaded and featurized once per process: a vectorized env builds several copies."""
    return SymbolDataset.load(
        symbol, data_dir, features, interval=features.interval, start=start, end=end
    )


def _resolve_data_dir(data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise ValueError(f"data_dir: {root} is not a directory (a bar store, Docs/DATA.md)")
        return root
    # Imported here: generating the market needs scipy, which a store-backed env does not.
    from backend.data_download.synthetic_market import ensure_synthetic_dataset

    return ensure_synthetic_dataset(SYNTHETIC_DIR)


def _reward_config(reward: RewardConfigBase | Mapping[str, Any] | None) -> RewardConfigBase:
    if reward is None:
        return DSRConfig()
    if isinstance(reward, RewardConfigBase):
        return reward
    data = {"name": DSRConfig().name, **reward}
    try:
        config: RewardConfigBase = TypeAdapter(reward_config_union()).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, root="reward")) from None
    return config


def make_intraday_env(
    *,
    data_dir: str | Path | None = None,
    symbol: str = "SPY",
    interval: str | None = None,
    start: str | None = None,
    end: str | None = None,
    fit_end: str | None = None,
    segment: Segment = "fit",
    features: FeatureConfig | Mapping[str, Any] | None = None,
    env: EnvConfig | Mapping[str, Any] | None = None,
    reward: RewardConfigBase | Mapping[str, Any] | None = None,
    normalization: Literal["zscore", "robust"] = "zscore",
) -> IntradayTradingEnv:
    """Load one symbol's bars, featurize, normalize on the fit range and build the env.

    Args:
        data_dir: Bar store root; ``None``: the embedded synthetic market (see the module
            docstring).
        symbol: Ticker to trade.
        interval: Bar length, e.g. ``"15m"``; ``None``: ``features.interval`` (default
            ``"15m"``). Given, it replaces ``features.interval``.
        start: First date to load (YYYY-MM-DD); ``None``: the store's first.
        end: Last date to load, inclusive; ``None``: the store's last.
        fit_end: Last session (YYYY-MM-DD) of the fit range; ``None``: the whole loaded
            range is the fit range (a training-only env).
        segment: Which sessions episodes trade: ``"fit"`` (up to ``fit_end``) or
            ``"after_fit"`` (after it; needs ``fit_end``).
        features: Feature pipeline settings (a ``FeatureConfig`` or its fields as a
            mapping); ``None``: the SAC + DSR agent's preset.
        env: Environment settings (an ``EnvConfig`` or its fields: window length
            ``sequence_length`` / ``use_sequence_encoder``, ``cost_bps``, ``slippage_bps``,
            ...); ``None``: ``EnvConfig()``. The experiment schema's ``env`` section.
        reward: The reward (a registered reward config or its fields, ``name`` defaulting
            to ``dsr``: ``{"name": "log_return", "scale": 100}``); ``None``: the DSR at its
            defaults. The experiment schema's ``reward`` section.
        normalization: ``FeatureNormalizer`` method.

    Returns:
        The env, trading the chosen segment.

    Raises:
        ValueError: on an unknown field, a bad value or a range without sessions, naming
            the argument.
    """
    feature_config = _feature_config(features, interval)
    env_config = _env_config(env)
    reward_config = _reward_config(reward)
    if segment not in ("fit", "after_fit"):
        raise ValueError(f"segment: expected 'fit' or 'after_fit', got {segment!r}")
    if segment == "after_fit" and fit_end is None:
        raise ValueError("segment='after_fit' needs fit_end (the last session of the fit range)")
    root = _resolve_data_dir(data_dir)
    dataset = _load_dataset(symbol.upper(), str(root.resolve()), start, end, feature_config)
    sessions = dataset.ready_sessions
    if len(sessions) == 0:
        raise ValueError(
            f"{dataset.symbol}: no session past the feature warm-up between "
            f"{start or 'the first bar'} and {end or 'the last bar'} in {root}"
        )
    if fit_end is None:
        fit_sessions = sessions
    else:
        fit_sessions = sessions[sessions <= pd.Timestamp(fit_end)]
        if len(fit_sessions) == 0:
            raise ValueError(
                f"fit_end: {fit_end} is before the first usable session {sessions[0].date()}"
            )
    normalizer = dataset.fit_normalizer(fit_sessions[0], fit_sessions[-1], method=normalization)
    arrays = dataset.arrays(normalizer)
    if segment == "fit":
        first, last = fit_sessions[0], fit_sessions[-1]
    else:
        later = sessions[sessions > fit_sessions[-1]]
        if len(later) == 0:
            raise ValueError(f"fit_end: no session after {fit_end} to trade (segment='after_fit')")
        first, last = later[0], later[-1]
    return IntradayTradingEnv(
        arrays,
        env_config,
        bar_range(arrays, *dataset.session_bounds(first, last)),
        reward=reward_config,
    )
