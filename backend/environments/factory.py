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
offline) of scenario ``market`` (``null`` by default; the keys of
``synthetic_market.MARKET_SCENARIOS``), generated under ``data/synthetic`` (``null``) or
``data/synthetic_<market>`` relative to the working directory when absent or stale, like
the main job; any other ``data_dir`` is a bar store (``Docs/DATA.md``); ``database`` reads
the bars from a bar database instead (``backend.database``: years of validated bars), with
the same market frame as the loader's and the same features.

**Arguments are the schema's.** Every keyword argument is validated by
:class:`IntradayEnvKwargs`, whose data fields are the experiment schema's ``data`` types
and rules (``data_config.DataConfig``) and whose ``features`` / ``env`` / ``reward`` are
the schema's sections: a wrong key or value anywhere is a one-line
:class:`~backend.utils.config_model.ConfigError` naming its path
(``env.sequence_lenght: unknown key (did you mean 'sequence_length'?) ...``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
from pydantic import AfterValidator, BeforeValidator, ValidationError, model_validator

from backend.data_download.data_config import (
    DataDir,
    DateText,
    MarketName,
    Ticker,
    check_date_order,
)
from backend.data_download.dataset import SymbolDataset, bar_range
from backend.data_download.feature_config import FeatureConfig
from backend.database.datasets import load_symbol_dataset
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.environments.rewards import DSRConfig, RewardConfigBase, reward_config_union
from backend.utils.config_model import (
    ConfigError,
    ConfigModel,
    StrictStr,
    format_validation_error,
)

SYNTHETIC_DIR = Path("data") / "synthetic"
"""Where the embedded synthetic market (scenario ``null``) is generated when no store is
given; other scenarios go beside it (:func:`synthetic_market_dir`, also the trainer's rule)."""

DEFAULT_AGENT = "SAC_INTRADAY_DSR"
"""The feature preset used when ``features`` is not given (the trainer's default)."""


@functools.lru_cache(maxsize=4)
def _load_dataset(
    symbol: str, data_dir: str, start: str | None, end: str | None, features: FeatureConfig
) -> SymbolDataset:
    """Loaded and featurized once per process: a vectorized env builds several copies."""
    return SymbolDataset.load(
        symbol, data_dir, features, interval=features.interval, start=start, end=end
    )


@functools.lru_cache(maxsize=4)
def _load_database_dataset(
    symbol: str, database: str, start: str | None, end: str | None, features: FeatureConfig
) -> SymbolDataset:
    """:func:`_load_dataset` from a bar database: its market frame, featurized the same way."""
    return load_symbol_dataset(symbol, features, database=database, start=start, end=end)


def synthetic_market_dir(market: str) -> Path:
    """Where the embedded market of scenario ``market`` is generated (the main job's rule)."""
    return SYNTHETIC_DIR if market == "null" else SYNTHETIC_DIR.parent / f"synthetic_{market}"


def _resolve_data_dir(data_dir: str | None, market: str) -> Path:
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise ValueError(f"data_dir: {root} is not a directory (a bar store, Docs/DATA.md)")
        return root
    # Imported here: generating the market needs scipy, which a store-backed env does not.
    from backend.data_download.synthetic_market import ensure_synthetic_dataset, market_scenario

    return ensure_synthetic_dataset(synthetic_market_dir(market), market_scenario(market))


def _reward_with_default_name(value: Any) -> Any:
    if isinstance(value, Mapping) and "name" not in value:
        return {"name": DSRConfig().name, **value}
    return value


def _one_of(*choices: str) -> Any:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected {' or '.join(map(repr, choices))}, got {value!r}")
        return value

    return AfterValidator(check)


def _default_if_none(factory: Callable[[], Any]) -> Callable[[Any], Any]:
    def default(value: Any) -> Any:
        return factory() if value is None else value

    return default


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


if TYPE_CHECKING:
    RewardField = RewardConfigBase
else:
    RewardField = Annotated[reward_config_union(), BeforeValidator(_reward_with_default_name)]


class IntradayEnvKwargs(ConfigModel):
    """The keyword arguments of :func:`make_intraday_env` (and of ``gym.make``), validated.

    The data fields use the experiment schema's ``data`` types and rules (a symbol is one
    of ``data.symbols``); ``features``, ``env`` and ``reward`` are the schema's sections.
    """

    data_dir: DataDir = None
    """Bar store root; ``None``: the embedded synthetic market of ``market``."""
    database: DataDir = None
    """A bar database folder (``backend.database``, years of validated bars) to read
    instead of a CSV store; excludes ``data_dir`` and ``market``."""
    symbol: Annotated[Ticker, BeforeValidator(_upper)] = "SPY"
    """Ticker to trade (upper-cased)."""
    interval: StrictStr | None = None
    """Bar length, e.g. ``"15m"``; ``None``: ``features.interval``. Given, it replaces
    ``features.interval`` (and is checked there)."""
    start: DateText | None = None
    """First date to load (YYYY-MM-DD); ``None``: the store's first."""
    end: DateText | None = None
    """Last date to load, inclusive; ``None``: the store's last."""
    market: MarketName = "null"
    """Scenario of the embedded synthetic market; only without ``data_dir``."""
    fit_end: DateText | None = None
    """Last session of the fit range; ``None``: the whole range (a training-only env)."""
    segment: Annotated[StrictStr, _one_of("fit", "after_fit")] = "fit"
    """Which sessions episodes trade: ``"fit"`` or ``"after_fit"`` (needs ``fit_end``)."""
    features: FeatureConfig | None = None
    """Feature pipeline (the schema's ``features``); ``None``: the SAC + DSR preset."""
    env: Annotated[EnvConfig, BeforeValidator(_default_if_none(EnvConfig))] = EnvConfig()
    """The schema's ``env`` section: window length ``sequence_length``, costs
    ``cost_bps`` / ``slippage_bps``, episodes, ...; ``None``: ``EnvConfig()``."""
    reward: Annotated[RewardField, BeforeValidator(_default_if_none(DSRConfig))] = DSRConfig()
    """The schema's ``reward`` section (``name`` defaults to ``dsr``); ``None``: the DSR at
    its defaults."""
    normalization: Annotated[StrictStr, _one_of("zscore", "robust")] = "zscore"
    """``FeatureNormalizer`` method."""

    @model_validator(mode="after")
    def _consistent(self) -> IntradayEnvKwargs:
        check_date_order(self.start, self.end)
        if self.segment == "after_fit" and self.fit_end is None:
            raise ValueError(
                "segment='after_fit' needs fit_end (the last session of the fit range)"
            )
        if self.data_dir is not None and self.market != "null":
            raise ValueError(
                f"market {self.market!r} is a scenario of the embedded synthetic market, "
                "used only without data_dir; pass one of the two"
            )
        if self.database is not None and (self.data_dir is not None or self.market != "null"):
            raise ValueError(
                "database: reads bars from the database; do not also pass data_dir or market"
            )
        return self

    def feature_config(self) -> FeatureConfig:
        """``features`` (default: the agent's preset) with ``interval`` applied."""
        config = self.features or FeatureConfig.for_agent(DEFAULT_AGENT)
        if self.interval is not None and self.interval != config.interval:
            try:
                config = config.replace(interval=self.interval)
            except ValidationError as exc:
                raise ConfigError(format_validation_error(exc, model=FeatureConfig)) from None
        return config


def validate_env_kwargs(kwargs: Mapping[str, Any]) -> IntradayEnvKwargs:
    """Validate ``gym.make`` / :func:`make_intraday_env` keyword arguments.

    Raises:
        ConfigError: One line naming each wrong key's path and what was expected.
    """
    try:
        return IntradayEnvKwargs.model_validate(dict(kwargs))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model=IntradayEnvKwargs)) from None


def make_intraday_env(**kwargs: Any) -> IntradayTradingEnv:
    """Load one symbol's bars, featurize, normalize on the fit range and build the env.

    Args:
        **kwargs: The fields of :class:`IntradayEnvKwargs` (the experiment schema's types
            and sections), validated; nothing else is accepted:

    Keyword Args:
        data_dir: Bar store root; ``None``: the embedded synthetic market of ``market``
            (see the module docstring).
        symbol: Ticker to trade.
        market: Scenario of the embedded synthetic market (``null``, or another key of
            ``MARKET_SCENARIOS``); an error together with ``data_dir``.
        database: A bar database folder to read instead of a CSV store.
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
        ConfigError: An unknown key or a bad value anywhere, one line naming its path.
        ValueError: A missing ``data_dir`` or a range without sessions, naming the argument.
    """
    args = validate_env_kwargs(kwargs)
    feature_config = args.feature_config()
    start, end, fit_end = args.start, args.end, args.fit_end
    if args.database is not None:
        root = Path(args.database)
        dataset = _load_database_dataset(
            args.symbol, str(root.resolve()), start, end, feature_config
        )
    else:
        root = _resolve_data_dir(args.data_dir, args.market)
        dataset = _load_dataset(args.symbol, str(root.resolve()), start, end, feature_config)
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
    normalizer = dataset.fit_normalizer(
        fit_sessions[0], fit_sessions[-1], method=args.normalization
    )
    arrays = dataset.arrays(normalizer)
    if args.segment == "fit":
        first, last = fit_sessions[0], fit_sessions[-1]
    else:
        later = sessions[sessions > fit_sessions[-1]]
        if len(later) == 0:
            raise ValueError(f"fit_end: no session after {fit_end} to trade (segment='after_fit')")
        first, last = later[0], later[-1]
    return IntradayTradingEnv(
        arrays,
        args.env,
        bar_range(arrays, *dataset.session_bounds(first, last)),
        reward=args.reward,
    )
