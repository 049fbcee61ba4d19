"""``manual`` mode: the baseline MLP over the flat engineered features of the current bar."""

from __future__ import annotations

from typing import ClassVar

from gymnasium import spaces
from torch import nn

from backend.config.encoder_config import EncoderConfigBase, ManualEncoderConfig
from backend.models.feature_extractors.base import ACTIVATIONS, FlatEncoderBase, ObservationDims


class ManualEncoder(FlatEncoderBase):
    """MLP over ``features`` ``(B, F)`` plus the shared embedding head and account projection.

    It is the reference the sequence encoders must beat: everything it knows about the past
    is what the feature engineering put into the current bar. Requires flat-mode
    observations (``use_sequence_encoder=False``).

    Parameter count at defaults (F=30, account 3): 28,928 (body 20,480, head 8,384,
    account projection 64); ``features_dim`` = 64 + 16 = 80.
    """

    config_class: ClassVar[type[EncoderConfigBase]] = ManualEncoderConfig

    def __init__(
        self, observation_space: spaces.Dict, config: ManualEncoderConfig | None = None
    ) -> None:
        super().__init__(observation_space, config)

    def _build_body(self, dims: ObservationDims, config: EncoderConfigBase) -> nn.Module:
        assert isinstance(config, ManualEncoderConfig)
        layers: list[nn.Module] = []
        width = dims.n_features
        for hidden in config.hidden_dims:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[config.activation]()]
            width = hidden
        # Empty hidden_dims: identity body; the head then is a linear map of the features.
        return nn.Sequential(*layers)
