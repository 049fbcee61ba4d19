"""Pluggable SAC observation encoders: ``manual``, ``cnn``, ``lstm``, ``transformer``.

Each is an SB3 ``BaseFeaturesExtractor`` returning ``embedding_dim + account_dim`` features;
pick one with ``encoder_policy_kwargs(mode, config)``.
"""

from backend.models.feature_extractors.base import (
    EncoderBase,
    FlatEncoderBase,
    ObservationDims,
    SequenceEncoderBase,
    check_observation_space,
)
from backend.models.feature_extractors.cnn_encoder import CNNEncoder
from backend.models.feature_extractors.lstm_encoder import LSTMEncoder
from backend.models.feature_extractors.manual_encoder import ManualEncoder
from backend.models.feature_extractors.registry import (
    ENCODER_REGISTRY,
    encoder_policy_kwargs,
    get_encoder_class,
    resolve_encoder_config,
    uses_sequence_observation,
)
from backend.models.feature_extractors.transformer_encoder import TransformerEncoder

__all__ = [
    "ENCODER_REGISTRY",
    "CNNEncoder",
    "EncoderBase",
    "FlatEncoderBase",
    "LSTMEncoder",
    "ManualEncoder",
    "ObservationDims",
    "SequenceEncoderBase",
    "TransformerEncoder",
    "check_observation_space",
    "encoder_policy_kwargs",
    "get_encoder_class",
    "resolve_encoder_config",
    "uses_sequence_observation",
]
