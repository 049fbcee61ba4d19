"""``encoder_mode`` name -> encoder class, and the SAC ``policy_kwargs`` for a mode.

Switching encoders is one config value::

    model = SAC("MultiInputPolicy", env, policy_kwargs=encoder_policy_kwargs("lstm", cfg))

The env must emit the matching observation layout (``uses_sequence_observation``).

Parameters per extractor at default configs, F=30 features, T=64 bars (checked by
``tests/test_feature_extractors.py::test_parameter_counts_at_defaults``); every mode
outputs ``features_dim = 64 + 16 = 80``. Under SB3 SAC's default
``share_features_extractor=False`` the policy holds three copies (actor, critic, critic
target), two of them trained.

=============  =======  =====  ========  =======  ======================================
mode           body     head   account   total    body
=============  =======  =====  ========  =======  ======================================
manual         20,480   8,384  64        28,928   MLP 30-128-128
cnn            52,032   8,384  64        60,480   4 residual causal convs, 64 ch, k=3
lstm           24,576   4,288  64        28,928   1-layer LSTM, hidden 64
transformer    69,056   4,288  64        73,408   2 layers, 4 heads, width 64, ff 128
=============  =======  =====  ========  =======  ======================================

``positional_encoding='learned'`` adds T x 64 = 4,096; ``temporal_decay='learnable'`` adds 4.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.config.encoder_config import EncoderConfigBase
from backend.models.feature_extractors.base import EncoderBase
from backend.models.feature_extractors.cnn_encoder import CNNEncoder
from backend.models.feature_extractors.lstm_encoder import LSTMEncoder
from backend.models.feature_extractors.manual_encoder import ManualEncoder
from backend.models.feature_extractors.transformer_encoder import TransformerEncoder

ENCODER_REGISTRY: dict[str, type[EncoderBase]] = {
    "manual": ManualEncoder,
    "cnn": CNNEncoder,
    "lstm": LSTMEncoder,
    "transformer": TransformerEncoder,
}
"""Every ``encoder_mode``; each class's ``config_class`` names the config it takes."""


def get_encoder_class(mode: str) -> type[EncoderBase]:
    """The encoder class for ``mode``.

    Raises:
        ValueError: for an unknown mode, listing the known ones.
    """
    try:
        return ENCODER_REGISTRY[mode]
    except KeyError:
        raise ValueError(
            f"unknown encoder_mode {mode!r}; choose one of {sorted(ENCODER_REGISTRY)}"
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
        return config_class()
    if isinstance(config, Mapping):
        return config_class.from_dict(config)
    if not isinstance(config, config_class):
        raise TypeError(
            f"encoder_mode {mode!r} takes a {config_class.__name__}, got {type(config).__name__}"
        )
    return config


def encoder_policy_kwargs(
    mode: str, config: EncoderConfigBase | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``policy_kwargs`` that make SAC's ``MultiInputPolicy`` use this encoder.

    Only the extractor entries are returned; merge ``net_arch`` or
    ``share_features_extractor`` in as needed (SB3's SAC default, False, gives the actor,
    critic and critic target a copy each; True trains the shared one by the actor loss only).

    Args:
        mode: One of ``ENCODER_REGISTRY``.
        config: The mode's config, a mapping of its fields (e.g. from YAML), or None for
            defaults.

    Returns:
        ``{"features_extractor_class": cls, "features_extractor_kwargs": {"config": cfg}}``.
    """
    return {
        "features_extractor_class": get_encoder_class(mode),
        "features_extractor_kwargs": {"config": resolve_encoder_config(mode, config)},
    }
