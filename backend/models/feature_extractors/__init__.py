"""Pluggable SAC observation encoders, one ``*_encoder`` module each.

Each is an SB3 ``BaseFeaturesExtractor`` returning ``embedding_dim + account_dim`` features
and registered with its config by ``@register_encoder`` (:mod:`.registry`); pick one with
``encoder_policy_kwargs(config)``. Importing this package imports every ``*_encoder``
module in it, so a new encoder is its module (plus its tests) and nothing else.
"""

import importlib
import pkgutil

from backend.models.feature_extractors.base import (
    EncoderBase,
    FlatEncoderBase,
    ObservationDims,
    SequenceEncoderBase,
    check_observation_space,
)
from backend.models.feature_extractors.registry import (
    ENCODER_CONFIGS,
    ENCODER_REGISTRY,
    ENCODER_SIZES,
    EncoderConfigBase,
    encoder_config_union,
    encoder_names,
    encoder_policy_kwargs,
    get_encoder_class,
    register_encoder,
    resolve_encoder_config,
    uses_sequence_observation,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module.endswith("_encoder"):
        importlib.import_module(f"{__name__}.{_module}")

from backend.models.feature_extractors.cnn_encoder import CNNConfig, CNNEncoder  # noqa: E402
from backend.models.feature_extractors.lstm_encoder import LSTMConfig, LSTMEncoder  # noqa: E402
from backend.models.feature_extractors.manual_encoder import (  # noqa: E402
    ManualEncoder,
    ManualEncoderConfig,
)
from backend.models.feature_extractors.transformer_encoder import (  # noqa: E402
    TransformerConfig,
    TransformerEncoder,
)

__all__ = [
    "ENCODER_CONFIGS",
    "ENCODER_REGISTRY",
    "ENCODER_SIZES",
    "CNNConfig",
    "CNNEncoder",
    "EncoderBase",
    "EncoderConfigBase",
    "FlatEncoderBase",
    "LSTMConfig",
    "LSTMEncoder",
    "ManualEncoder",
    "ManualEncoderConfig",
    "ObservationDims",
    "SequenceEncoderBase",
    "TransformerConfig",
    "TransformerEncoder",
    "check_observation_space",
    "encoder_config_union",
    "encoder_names",
    "encoder_policy_kwargs",
    "get_encoder_class",
    "register_encoder",
    "resolve_encoder_config",
    "uses_sequence_observation",
]
