"""``lstm`` mode: an LSTM over the real bars of the window, oldest to newest."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch as th
from gymnasium import spaces
from pydantic import model_validator
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from backend.models.feature_extractors.base import (
    ObservationDims,
    SequenceEncoderBase,
    masked_mean,
)
from backend.models.feature_extractors.registry import (
    EncoderConfigBase,
    SizePresets,
    register_encoder,
)
from backend.utils.config_model import PosInt, Probability

SequencePooling = Literal["last", "mean"]
"""How the LSTM/Transformer reduce their (T, D) output: newest bar or masked mean."""


class LSTMConfig(EncoderConfigBase):
    """An LSTM run oldest to newest over the real (unpadded) bars of the window."""

    size_presets: ClassVar[SizePresets] = {
        "tiny": {"embedding_dim": 16, "hidden_size": 16},
        "small": {"embedding_dim": 32, "hidden_size": 32},
        "base": {},
        "large": {"embedding_dim": 128, "hidden_size": 128, "num_layers": 2},
    }

    name: Literal["lstm"] = "lstm"
    """The LSTM over the bar window (sequence observations)."""

    hidden_size: PosInt = 64
    """LSTM hidden state size (projected to ``embedding_dim`` afterwards)."""

    num_layers: PosInt = 1
    """Stacked LSTM layers."""

    dropout: Probability = 0.0
    """Dropout between stacked LSTM layers, in ``[0, 1)``; needs ``num_layers > 1`` (torch
    ignores it otherwise, so asking for it there is a config error)."""

    pooling: SequencePooling = "last"
    """``last``: the state after the newest bar; ``mean``: masked mean of all real steps."""

    @model_validator(mode="after")
    def _dropout_needs_layers(self) -> LSTMConfig:
        if self.dropout > 0.0 and self.num_layers == 1:
            raise ValueError("dropout acts between LSTM layers and needs num_layers > 1")
        return self


class PackedLSTM(nn.Module):
    """LSTM that skips left padding exactly, by left-aligning and packing each row.

    Taking the last output of a left-padded window is not enough: the padded steps run
    first and leave a state that depends on how many there were. Instead each row is rolled
    so its ``L`` real bars come first and the sequence is packed with length ``L``; the
    output is the state after the newest real bar (or the mean over the ``L`` real steps),
    identical to running the LSTM on the real bars alone.
    """

    def __init__(self, n_features: int, config: LSTMConfig) -> None:
        super().__init__()
        self.pooling = config.pooling
        self.lstm = nn.LSTM(
            input_size=n_features,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout,
            batch_first=True,
        )

    def forward(self, window: th.Tensor, valid: th.Tensor) -> th.Tensor:
        """Encode ``window`` ``(B, T, F)`` with boolean ``valid`` ``(B, T)`` -> ``(B, H)``.

        Raises:
            ValueError: if a mask row is not padding-then-real (the contract's layout), since
                packing would then read padded bars as real ones.
        """
        batch, steps, n_features = window.shape
        lengths = valid.sum(dim=1)  # (B,)
        positions = th.arange(steps, device=window.device)  # (T,)
        expected = positions.unsqueeze(0) >= (steps - lengths).unsqueeze(1)  # (B, T)
        if not th.equal(valid, expected) or bool((lengths == 0).any()):
            raise ValueError(
                "LSTM encoder needs each mask row to be 0.0 (padding) at the oldest end and "
                "1.0 from the first real bar to the newest (last), with at least one real bar"
            )
        # Roll each row left by its padding length: real bars first, padding after.
        source = (positions.unsqueeze(0) + (steps - lengths).unsqueeze(1)) % steps  # (B, T)
        aligned = window.gather(1, source.unsqueeze(-1).expand(batch, steps, n_features))
        packed = pack_padded_sequence(
            aligned, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        output, (h_n, _) = self.lstm(packed)  # h_n: (layers, B, H), at each row's own end
        if self.pooling == "last":
            return h_n[-1]  # (B, H)
        padded, _ = pad_packed_sequence(output, batch_first=True, total_length=steps)
        real_first = positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        return masked_mean(padded, real_first)  # (B, H)


@register_encoder(LSTMConfig)
class LSTMEncoder(SequenceEncoderBase):
    """LSTM (Hochreiter & Schmidhuber 1997) over the window's real bars -> embedding.

    Requires sequence-mode observations whose mask is padding-then-real, as the env
    contract specifies. Packing needs the lengths on the CPU: one device sync per forward on
    GPU, the price of exact padding semantics.

    Parameter count at defaults (F=30, T=64, account 3): 28,928 (body 24,576, head 4,288,
    account projection 64); ``features_dim`` = 64 + 16 = 80.
    """

    def __init__(self, observation_space: spaces.Dict, config: LSTMConfig | None = None) -> None:
        super().__init__(observation_space, config)

    def _build_body(self, dims: ObservationDims, config: EncoderConfigBase) -> nn.Module:
        assert isinstance(config, LSTMConfig)
        return PackedLSTM(dims.n_features, config)
