"""Compatibility re-export: encoder configs live in their encoder modules.

Each encoder's config model is defined beside its extractor
(``backend/models/feature_extractors/<name>_encoder.py``) and registered with it by
``@register_encoder``; import them from :mod:`backend.models.feature_extractors`.
"""

from backend.models.feature_extractors import (
    CNNConfig,
    EncoderConfigBase,
    LSTMConfig,
    ManualEncoderConfig,
    TransformerConfig,
)
from backend.models.feature_extractors.registry import Activation

__all__ = [
    "Activation",
    "CNNConfig",
    "EncoderConfigBase",
    "LSTMConfig",
    "ManualEncoderConfig",
    "TransformerConfig",
]
