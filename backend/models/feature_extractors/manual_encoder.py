"""``manual`` mode: the baseline MLP over the flat engineered features of the current bar."""

from __future__ import annotations

from typing import ClassVar, Literal

from gymnasium import spaces
from torch import nn

from backend.models.feature_extractors.base import ACTIVATIONS, FlatEncoderBase, ObservationDims
from backend.models.feature_extractors.registry import (
    Activation,
    EncoderConfigBase,
    SizePresets,
    register_encoder,
)
from backend.utils.config_model import PosInt


class ManualEncoderConfig(EncoderConfigBase):
    """The baseline: an MLP over the flat engineered features of the current bar."""

    size_presets: ClassVar[SizePresets] = {
        "tiny": {"embedding_dim": 16, "hidden_dims": (32, 32)},
        "small": {"embedding_dim": 32, "hidden_dims": (64, 64)},
        "base": {},
        "large": {"embedding_dim": 128, "hidden_dims": (256, 256)},
    }

    name: Literal["manual"] = "manual"
    """The MLP baseline on the current bar's features (flat observations)."""

    hidden_dims: tuple[PosInt, ...] = (128, 128)
    """Widths of the MLP's hidden layers (may be empty: the head then reads the features)."""

    activation: Activation = "relu"
    """Nonlinearity after each hidden layer."""


@register_encoder(ManualEncoderConfig)
class ManualEncoder(FlatEncoderBase):
    """MLP over ``features`` ``(B, F)`` plus the shared embedding head and account projection.

    It is the reference the sequence encoders must beat: everything it knows about the past
    is what the feature engineering put into the current bar. Requires flat-mode
    observations (``use_sequence_encoder=False``).

    Parameter count at defaults (F=30, account 3): 28,928 (body 20,480, head 8,384,
    account projection 64); ``features_dim`` = 64 + 16 = 80.
    """

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
