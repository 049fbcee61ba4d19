"""Encoder registry: ``@register_encoder`` pairs an encoder's config model and its class.

The registry is the only source of encoder names: the experiment schema's ``encoder``
section is the discriminated union of the registered configs (on ``name``), and the CLI
choices, report mode lists and test parametrizations read :func:`encoder_names`. A new
encoder is one module in this package (its config, decorated with its class) plus its
tests; the package ``__init__`` imports every ``*_encoder`` module it finds::

    class GRUConfig(EncoderConfigBase):
        name: Literal["gru"] = "gru"
        size_presets: ClassVar[SizePresets] = {"tiny": {...}, "small": {...}, ...}
        hidden_size: PosInt = 64
        \"\"\"GRU hidden size.\"\"\"

    @register_encoder(GRUConfig)
    class GRUEncoder(SequenceEncoderBase): ...

Switching encoders is one config value::

    model = SAC("MultiInputPolicy", env, policy_kwargs=encoder_policy_kwargs("lstm", cfg))

Parameters per extractor at default configs, F=32 features (the default pipeline), T=64
bars; every mode outputs ``features_dim = 64 + 16 = 80``. Under SB3 SAC's default
``share_features_extractor=False`` the policy holds three copies (actor, critic, critic
target), two of them trained. (``tests/test_feature_extractors.py::
test_parameter_counts_at_defaults`` checks the counts at F=30 that the encoder classes'
docstrings quote.)

=============  =======  =====  ========  =======  ======================================
mode           body     head   account   total    body
=============  =======  =====  ========  =======  ======================================
manual         20,736   8,384  64        29,184   MLP 32-128-128
cnn            52,160   8,384  64        60,608   4 residual causal convs, 64 ch, k=3
lstm           25,088   4,288  64        29,440   1-layer LSTM, hidden 64
transformer    69,184   4,288  64        73,536   2 layers, 4 heads, width 64, ff 128
=============  =======  =====  ========  =======  ======================================

``positional_encoding='learned'`` adds T x 64 = 4,096; ``temporal_decay='learnable'`` adds 4.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar, Union

from pydantic import Field

from backend.models.feature_extractors.base import (
    ENCODER_SIZES,
    Activation,
    EncoderBase,
    EncoderConfigBase,
    EncoderSize,
    SizePresets,
)

__all__ = [
    "ENCODER_CONFIGS",
    "ENCODER_REGISTRY",
    "ENCODER_SIZES",
    "Activation",
    "EncoderConfigBase",
    "EncoderSize",
    "SizePresets",
    "encoder_config_union",
    "encoder_names",
    "encoder_policy_kwargs",
    "get_encoder_class",
    "register_encoder",
    "resolve_encoder_config",
    "uses_sequence_observation",
]

ENCODER_REGISTRY: dict[str, type[EncoderBase]] = {}
"""Encoder name to extractor class; filled by :func:`register_encoder`."""

ENCODER_CONFIGS: dict[str, type[EncoderConfigBase]] = {}
"""Encoder name to config model; filled by :func:`register_encoder`."""

_EncoderT = TypeVar("_EncoderT", bound="type[EncoderBase]")

_CANONICAL_ORDER = ("manual", "cnn", "lstm", "transformer")
"""Report order of the built-in encoders (``manual``, the reference, first); encoders
registered later follow in registration order."""


def register_encoder(config_class: type[EncoderConfigBase]) -> Callable[[_EncoderT], _EncoderT]:
    """Class decorator: register an extractor class with its config model.

    The name is the default of the config's ``name: Literal[...]`` field; the class gets
    ``config_class`` set.

    Raises:
        ValueError: if the name is taken, missing, or a size preset is missing or names
            a field the config does not have.
    """
    name = config_class.model_fields["name"].default
    if not isinstance(name, str) or not name:
        raise ValueError(f"{config_class.__name__} needs a name: Literal[...] = '...' field")
    missing = [s for s in ENCODER_SIZES if s not in config_class.size_presets]
    if missing:
        raise ValueError(f"{config_class.__name__}.size_presets lacks size(s) {missing}")
    for size, values in config_class.size_presets.items():
        unknown = sorted(set(values) - set(config_class.model_fields))
        if unknown:
            raise ValueError(f"{config_class.__name__}.size_presets[{size!r}]: unknown {unknown}")

    def decorate(cls: _EncoderT) -> _EncoderT:
        if name in ENCODER_REGISTRY:
            raise ValueError(f"encoder {name!r} is registered twice")
        cls.config_class = config_class
        ENCODER_REGISTRY[name] = cls
        ENCODER_CONFIGS[name] = config_class
        return cls

    return decorate


def encoder_names() -> tuple[str, ...]:
    """Registered encoder names: the built-ins in report order, then any others."""
    known = [n for n in _CANONICAL_ORDER if n in ENCODER_REGISTRY]
    return (*known, *(n for n in ENCODER_REGISTRY if n not in _CANONICAL_ORDER))


def encoder_config_union() -> Any:
    """``Annotated[Union[...configs], Field(discriminator="name")]`` over the registry."""
    configs = tuple(ENCODER_CONFIGS[n] for n in encoder_names())
    union: Any = configs[0] if len(configs) == 1 else Union[configs]  # noqa: UP007
    return Annotated[union, Field(discriminator="name")]


def get_encoder_class(mode: str) -> type[EncoderBase]:
    """The encoder class for ``mode``.

    Raises:
        ValueError: for an unknown mode, listing the known ones.
    """
    try:
        return ENCODER_REGISTRY[mode]
    except KeyError:
        raise ValueError(
            f"unknown encoder {mode!r}; choose one of {list(encoder_names())}"
        ) from None


def uses_sequence_observation(mode: str) -> bool:
    """Whether ``mode`` needs the env's sequence observations (``use_sequence_encoder``)."""
    return get_encoder_class(mode).observation_kind == "sequence"


def resolve_encoder_config(
    mode: str, config: EncoderConfigBase | Mapping[str, Any] | None = None
) -> EncoderConfigBase:
    """Coerce ``config`` to the config class of ``mode`` (defaults when None).

    Raises:
        ValueError: for an unknown mode or invalid/unknown config fields.
        TypeError: if ``config`` is another mode's config.
    """
    config_class = get_encoder_class(mode).config_class
    if config is None:
        return config_class.model_validate({})
    if isinstance(config, Mapping):
        return config_class.from_dict({"name": mode, **config})
    if not isinstance(config, config_class):
        raise TypeError(
            f"encoder {mode!r} takes a {config_class.__name__}, got {type(config).__name__}"
        )
    return config


def encoder_policy_kwargs(
    mode: str | EncoderConfigBase, config: EncoderConfigBase | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``policy_kwargs`` that make SAC's ``MultiInputPolicy`` use this encoder.

    Only the extractor entries are returned; merge ``net_arch`` or
    ``share_features_extractor`` in as needed.

    Args:
        mode: One of :func:`encoder_names`, or an encoder config (its ``name`` is the mode).
        config: The mode's config, a mapping of its fields (e.g. from YAML), or None for
            defaults; must be None when ``mode`` is a config.

    Returns:
        ``{"features_extractor_class": cls, "features_extractor_kwargs": {"config": cfg}}``.
    """
    if isinstance(mode, EncoderConfigBase):
        name, config = mode.name, mode
    else:
        name = mode
    return {
        "features_extractor_class": get_encoder_class(name),
        "features_extractor_kwargs": {"config": resolve_encoder_config(name, config)},
    }
