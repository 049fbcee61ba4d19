"""The experiment schema: one typed config that the trainer, the main job and bundles share.

::

    ExperimentConfig
    ├── preset, modes, stochastic_eval,     run fields of the main job
    │   pretrained_variants
    ├── data          DataConfig            store, symbols, dates, synthetic market scenario
    ├── walk_forward  WalkForwardConfig     window layout, purge gap, seed replicates
    ├── features      FeatureConfig         feature groups and their parameters
    ├── env           EnvConfig             costs, episodes, window length T
    ├── reward        one of REWARD_CONFIGS (``name``: dsr | ddr | log_return | cost_penalized)
    ├── training      TrainingSettings      SAC hyper-parameters, seed, device, logging
    ├── encoder       one of ENCODER_CONFIGS (``name``: manual | cnn | lstm | transformer)
    ├── registry      RegistryConfig        model registry root and promotion gates
    └── search        SearchConfig          hyperparameter search space (backend.scripts.tune)

``encoder`` and ``reward`` are discriminated unions built from the registries
(``@register_encoder``, ``@register_reward``), so every option of every encoder and reward
is a YAML key, and a new one becomes a valid ``name`` by being registered.

Resolution (:func:`resolve_experiment`), lowest precedence first: schema defaults, the
preset (``backend.config.presets``), the config file, command-line flags. Sections merge
key by key; an ``encoder``/``reward`` section that names another ``name`` replaces the one
below it (the encoder's ``size`` carries over), and a ``walk_forward`` layer that sets
``test_sessions`` without ``windows`` drops the ``windows`` count set below it. The result
is validated once; any problem becomes one line naming its path
(``encoder.local_window[1]: ...``) in a :class:`~backend.utils.config_model.ConfigError`.

Derived, never contradicted: ``env.use_sequence_encoder`` follows the encoder, and
``walk_forward.gap_bars`` defaults to the longest feature lookback plus the reward horizon
(a smaller value is an error: the purge rule holds for library callers too).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml
from pydantic import ValidationError, field_validator, model_validator

from backend.config.presets import get_preset
from backend.config.search_config import SearchConfig, check_space_paths
from backend.config.training_config import TrainingSettings
from backend.config.walk_forward_config import WalkForwardConfig
from backend.data_download.data_config import DataConfig
from backend.data_download.feature_config import FEATURE_PRESETS, FeatureConfig
from backend.data_download.intraday_features import max_lookback
from backend.environments.env_config import EnvConfig
from backend.environments.rewards import (
    REWARD_CONFIGS,
    DSRConfig,
    RewardConfigBase,
    reward_config_union,
)
from backend.models.feature_extractors import (
    ENCODER_CONFIGS,
    EncoderConfigBase,
    TransformerConfig,
    encoder_config_union,
    encoder_names,
    uses_sequence_observation,
)
from backend.models.pretrained import PretrainedUse
from backend.models.registry_config import RegistryConfig
from backend.utils.config_model import (
    ConfigError,
    ConfigModel,
    StrictBool,
    StrictStr,
    format_validation_error,
    load_mapping,
)

__all__ = [
    "AGENT",
    "REWARD_HORIZON_BARS",
    "TRAINING_ENV_DEFAULTS",
    "TRAINING_REWARD_DEFAULTS",
    "DataConfig",
    "EncoderConfig",
    "ExperimentConfig",
    "RewardConfig",
    "dump_yaml",
    "load_experiment",
    "merge_layers",
    "required_gap_bars",
    "resolve_experiment",
]

AGENT = "SAC_INTRADAY_DSR"
"""Agent name: the feature preset, saved file names."""

REWARD_HORIZON_BARS = 1
"""Bars a reward looks ahead of its decision (the next bar's return)."""

TRAINING_ENV_DEFAULTS = EnvConfig(episode_sessions=5)
"""The ``env`` section's defaults where they differ from :class:`EnvConfig`'s.

The env resets the Differential Sharpe Ratio's moments at every episode start; with
one-session episodes (26 steps) the moments never settle. Five sessions (130 steps) with
the faster ``eta`` of :data:`TRAINING_REWARD_DEFAULTS` let them (see
``backend/training/train.py``)."""

TRAINING_REWARD_DEFAULTS = DSRConfig(eta=0.05, warmup_steps=20)
"""The ``reward`` section's default: the DSR with memory ~20 bars and a 20-step warm-up
(weight 0.64 after the warm-up, > 0.99 after 100 steps)."""

if TYPE_CHECKING:
    EncoderConfig = EncoderConfigBase
    RewardConfig = RewardConfigBase
    EncoderName = str
else:
    EncoderName = Literal[encoder_names()]
    """A registered encoder name."""
    EncoderConfig = encoder_config_union()
    """Any registered encoder config, chosen by its ``name``."""
    RewardConfig = reward_config_union()
    """Any registered reward config, chosen by its ``name``."""


def required_gap_bars(features: FeatureConfig) -> int:
    """The purge rule: bars a gap must span so no bar informs both sides of it."""
    return max_lookback(features) + REWARD_HORIZON_BARS


class ExperimentConfig(ConfigModel):
    """One run, fully specified: what the trainer, the main job and a bundle record."""

    preset: StrictStr | None = None
    """Name of the run preset the config was resolved from (``short``/``long``/
    ``production``/...); recorded for the report. :func:`resolve_experiment` applies it."""
    modes: tuple[EncoderName, ...] = encoder_names()
    """Encoders the main job trains and compares on the same windows, in report order
    (``manual``, the reference, first). The trainer trains ``encoder`` alone."""
    stochastic_eval: StrictBool = False
    """Sample test actions (seeded per job) instead of taking the mean action."""
    pretrained_variants: tuple[PretrainedUse, ...] = ()
    """Ground-truth comparison only (issue 13): also train every sequence encoder of
    ``modes`` on a trunk pretrained per window on its fit range (``training.pretrained``
    with ``pretrain``), once per use listed (``frozen``, ``finetune``); the table gains rows
    ``<mode>+pretrained(<use>)``, tested with the other rows as one family, and a test of
    each against the same encoder from scratch. Empty by default: the rows add minutes
    to a run already over its budget (``Docs/WALK_FORWARD.md``)."""
    data: DataConfig = DataConfig()
    """Which bars to read."""
    walk_forward: WalkForwardConfig = WalkForwardConfig()
    """How the main job cuts rolling windows; ``gap_bars`` is derived by default."""
    features: FeatureConfig = FEATURE_PRESETS[AGENT]
    """Feature groups and parameters (the agent's preset by default)."""
    env: EnvConfig = TRAINING_ENV_DEFAULTS
    """Costs, episodes and the window length ``sequence_length``; ``use_sequence_encoder``
    is derived from ``encoder``. Keys given merge over the training defaults
    (``episode_sessions: 5``)."""
    reward: RewardConfig = TRAINING_REWARD_DEFAULTS
    """The per-step reward, chosen by ``name``; a ``dsr`` section merges over the training
    defaults (``eta: 0.05, warmup_steps: 20``)."""
    training: TrainingSettings = TrainingSettings()
    """SAC hyper-parameters, seed, device and logging."""
    encoder: EncoderConfig = TransformerConfig()
    """The observation encoder, chosen by ``name``, with every option of that encoder. In
    the main job it configures the mode it names; the other modes use their defaults at the
    same ``size``."""
    registry: RegistryConfig = RegistryConfig()
    """Where ``python -m backend.models.registry`` keeps versioned bundles, and the gates a
    model must pass to be promoted to the live trader (``backend/models/registry_config.py``)."""
    search: SearchConfig = SearchConfig()
    """Hyperparameter search space over this schema's paths, read by ``python -m
    backend.scripts.tune``; ``search.tuning_trials`` (written by the tuner) is counted by the
    main job's deflated Sharpe ratio."""

    @field_validator("env", mode="before")
    @classmethod
    def _env_over_training_defaults(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {**TRAINING_ENV_DEFAULTS.model_dump(exclude_unset=True), **value}
        return value

    @field_validator("reward", mode="before")
    @classmethod
    def _reward_over_training_defaults(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            name = value.get("name", TRAINING_REWARD_DEFAULTS.name)
            if name == TRAINING_REWARD_DEFAULTS.name:
                return {**TRAINING_REWARD_DEFAULTS.model_dump(), **value}
        return value

    @field_validator("encoder", mode="before")
    @classmethod
    def _encoder_name_defaults(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and "name" not in value:
            return {"name": TransformerConfig.model_fields["name"].default, **value}
        return value

    @field_validator("modes")
    @classmethod
    def _registered_modes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = encoder_names()
        bad = [m for m in value if m not in known]
        if bad or not value:
            raise ValueError(f"unknown or no encoder(s) {bad}; expected some of {list(known)}")
        if len(set(value)) != len(value):
            raise ValueError(f"modes has duplicates: {list(value)}")
        # Canonical order: manual is the reference column of every report.
        return tuple(m for m in known if m in value)

    @field_validator("pretrained_variants")
    @classmethod
    def _distinct_variants(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"pretrained_variants has duplicates: {list(value)}")
        # Canonical order (frozen before finetune): the table does not depend on the typing.
        return tuple(u for u in get_args(PretrainedUse) if u in value)

    @model_validator(mode="after")
    def _derived_fields(self) -> ExperimentConfig:
        sequence = uses_sequence_observation(self.encoder.name)
        if self.env.use_sequence_encoder != sequence:
            if "use_sequence_encoder" in self.env.model_fields_set:
                raise ValueError(
                    f"env.use_sequence_encoder={self.env.use_sequence_encoder} disagrees with "
                    f"encoder.name={self.encoder.name!r} (needs {sequence}); drop it, it is "
                    "derived from the encoder"
                )
            object.__setattr__(
                self, "env", self.env.model_copy(update={"use_sequence_encoder": sequence})
            )
        check_space_paths(self, self.search.space)
        needed = required_gap_bars(self.features)
        gap = self.walk_forward.gap_bars
        if gap is None:
            wf = self.walk_forward.model_copy(update={"gap_bars": needed})
            object.__setattr__(self, "walk_forward", wf)
        elif gap < needed:
            raise ValueError(
                f"walk_forward.gap_bars={gap} is below the purge rule: the longest feature "
                f"lookback ({needed - REWARD_HORIZON_BARS} bars) plus the reward horizon "
                f"({REWARD_HORIZON_BARS}) = {needed}; raise it or leave it null (derived)"
            )
        return self

    def encoder_for(self, mode: str) -> EncoderConfigBase:
        """The encoder config mode ``mode`` trains with in the main job.

        ``encoder`` itself when it names ``mode``; otherwise ``mode``'s defaults at the
        same ``size``.
        """
        if mode == self.encoder.name:
            return self.encoder
        config_class = ENCODER_CONFIGS[mode]
        return config_class.model_validate({"name": mode, "size": self.encoder.size})

    def for_mode(self, mode: str) -> ExperimentConfig:
        """This experiment with :meth:`encoder_for` ``(mode)`` as its encoder."""
        encoder = self.encoder_for(mode)
        env = self.env.model_copy(
            update={"use_sequence_encoder": uses_sequence_observation(encoder.name)}
        )
        return self.model_copy(update={"encoder": encoder, "env": env, "modes": (mode,)})

    def to_yaml(self) -> str:
        """The config as YAML, every field written (``model_dump(mode="json")``)."""
        return dump_yaml(self.model_dump(mode="json"))


# ---------------------------------------------------------------------------------------
# Resolution: defaults < preset < file < flags
# ---------------------------------------------------------------------------------------

_UNION_SECTIONS: dict[str, tuple[str, ...]] = {"encoder": ("size",), "reward": ()}
"""Sections selected by ``name``, and the keys that carry over when the name changes."""


def _merge(base: Mapping[str, Any], over: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            if not path and key in _UNION_SECTIONS:
                if "name" in value and "name" in below and value["name"] != below["name"]:
                    below = {k: v for k, v in below.items() if k in _UNION_SECTIONS[key]}
            if not path and key == "walk_forward" and "test_sessions" in value:
                if "windows" not in value:
                    # An explicit test length beats a window count set below it (a preset).
                    below = {k: v for k, v in below.items() if k != "windows"}
            out[key] = _merge(below, value, f"{path}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge_layers(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge partial experiment dicts, later ones winning (see the module docstring)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged = _merge(merged, layer)
    return merged


def _check_sections(data: Mapping[str, Any], where: str) -> None:
    fields = ExperimentConfig.model_fields
    for key, value in data.items():
        if key not in fields:
            continue  # validation names it with the list of valid keys
        annotation = fields[key].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, ConfigModel)
        if (
            (is_section or key in _UNION_SECTIONS)
            and value is not None
            and not isinstance(value, Mapping)
        ):
            raise ConfigError(f"{where}{key}: expected a mapping of fields, got {value!r}")


def resolve_experiment(
    preset: str | None = None,
    file: str | Path | Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    default_preset: str | None = None,
) -> ExperimentConfig:
    """The experiment from a preset, a config file and flag overrides.

    Args:
        preset: Preset name; ``None`` uses the file's ``preset`` key, else
            ``default_preset``, else none (schema defaults only).
        file: A YAML/JSON path or an already parsed mapping (e.g. a bundle's
            ``config.yaml``), partial or complete.
        overrides: Partial experiment dict from command-line flags (highest precedence).
        default_preset: Preset applied when neither ``preset`` nor the file names one.

    Raises:
        ConfigError: one line per problem, each naming its path (prefixed by the file).
        OSError: the file cannot be read.
    """
    where = ""
    if isinstance(file, (str, Path)):
        where = f"{file}: "
        data = load_mapping(file)
    else:
        data = dict(file or {})
    _check_sections(data, where)
    name = preset or data.get("preset") or default_preset
    preset_layer: Mapping[str, Any] = {}
    if name is not None:
        if not isinstance(name, str):
            raise ConfigError(f"{where}preset: expected a preset name, got {name!r}")
        try:
            preset_layer = {**get_preset(name).overrides, "preset": name}
        except ValueError as exc:
            raise ConfigError(f"{where}preset: {exc}") from None
    merged = merge_layers(preset_layer, data, overrides)
    if name is not None:
        merged["preset"] = name
    try:
        return ExperimentConfig.model_validate(merged)
    except ValidationError as exc:
        message = format_validation_error(exc, model=ExperimentConfig)
        raise ConfigError(f"{where}{message}") from None


def load_experiment(path: str | Path) -> ExperimentConfig:
    """A complete experiment file (e.g. a bundle's ``config.yaml``).

    No preset is applied beyond the one the file names.

    Raises:
        ConfigError: as :func:`resolve_experiment`.
    """
    return resolve_experiment(file=path)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML for a config dict: keys in schema order, short lists inline."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None)


def encoder_choices() -> Sequence[str]:
    """Encoder names for CLI choices (the registry's)."""
    return encoder_names()


def reward_choices() -> Sequence[str]:
    """Reward names for CLI choices (the registry's)."""
    return tuple(REWARD_CONFIGS)
