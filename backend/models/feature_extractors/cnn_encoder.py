"""``cnn`` mode: a causal, dilated temporal convolution network over the bar window.

Optionally multi-scale (``kernel_sizes``): parallel kernel sizes per block, fused.
"""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from pydantic import field_validator
from torch import nn

from backend.models.feature_extractors.base import (
    ACTIVATIONS,
    ObservationDims,
    SequenceEncoderBase,
    masked_mean,
)
from backend.models.feature_extractors.registry import (
    Activation,
    EncoderConfigBase,
    SizePresets,
    register_encoder,
)
from backend.utils.config_model import PosInt, Probability

CNNPooling = Literal["last_mean", "last", "mean", "max"]
"""How the CNN reduces its (T, C) output to one vector; all respect the padding mask."""


class CNNConfig(EncoderConfigBase):
    """A causal, dilated temporal CNN (TCN, Bai et al. 2018) over the (T, F) window."""

    size_presets: ClassVar[SizePresets] = {
        "tiny": {"embedding_dim": 16, "channels": 16, "dilations": (1, 2, 4)},
        "small": {"embedding_dim": 32, "channels": 32},
        "base": {},
        "large": {"embedding_dim": 128, "channels": 128, "dilations": (1, 2, 4, 8, 16)},
    }

    name: Literal["cnn"] = "cnn"
    """The temporal CNN over the bar window (sequence observations)."""

    channels: PosInt = 64
    """Channels of every convolution (the per-bar width after the input projection)."""

    kernel_size: PosInt = 3
    """Temporal kernel size of each causal convolution (when ``kernel_sizes`` is empty)."""

    kernel_sizes: tuple[PosInt, ...] = ()
    """Multi-scale variant: parallel causal convolutions of these kernel sizes in every
    block (e.g. ``[3, 5, 7]``), their outputs concatenated and fused by a learned 1x1
    projection back to ``channels``, so each block mixes short and longer patterns (the
    design documents' multi-scale CNN). Empty (default): one convolution of
    ``kernel_size``. Replaces ``kernel_size`` when given."""

    multiscale_fusion: Literal["concat", "sum"] = "concat"
    """How the multi-scale branches are fused: ``concat`` then a 1x1 projection (default;
    learns the mix of scales) or a plain ``sum`` (fewer parameters)."""

    dilations: tuple[PosInt, ...] = (1, 2, 4, 8)
    """One residual causal-conv block per entry, with that dilation. The receptive field is
    ``1 + (kernel_size - 1) * sum(dilations)`` bars (31 at defaults)."""

    pooling: CNNPooling = "last_mean"
    """Masked reduction over time. ``last_mean`` (default) concatenates the newest bar's
    output with the masked mean over the window: the freshest bars carry most short-horizon
    information, and mean pooling alone dilutes them by 1/T (a planted one-bar momentum
    signal was not learned with ``mean``; see tests/test_learning.py). ``mean``/``max``
    cover the whole window; ``last`` only sees the receptive field before the newest bar
    (the encoder warns when that is < T)."""

    dropout: Probability = 0.0
    """Dropout after each convolution, in ``[0, 1)``. 0 by default: SAC's critic targets
    are computed in eval mode, so dropout makes the online and target critics disagree."""

    activation: Activation = "gelu"
    """Nonlinearity after each convolution."""

    @field_validator("dilations")
    @classmethod
    def _at_least_one_block(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("dilations must name at least one conv block")
        return value

    @field_validator("kernel_sizes")
    @classmethod
    def _distinct_kernels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"kernel_sizes must not repeat, got {list(value)}")
        return value

    @property
    def branch_kernels(self) -> tuple[int, ...]:
        """Kernel sizes of each block's parallel convolutions (one unless multi-scale)."""
        return self.kernel_sizes or (self.kernel_size,)

    @property
    def receptive_field(self) -> int:
        """Bars (including the current one) that one output time step can see."""
        return 1 + (max(self.branch_kernels) - 1) * sum(self.dilations)


class CausalConvBlock(nn.Module):
    """Pre-norm residual block: ``h + Dropout(act(CausalConv(LayerNorm(h) * valid)))``.

    The conv input is re-masked right before the convolution: padded bars then hold
    exactly the zeros that the conv's own left padding would, so the values in padded
    positions never reach a real bar's output, and a window with ``k`` real bars encodes the
    same whatever its padded length.
    """

    def __init__(
        self, channels: int, kernel_size: int, dilation: int, dropout: float, activation: str
    ) -> None:
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: th.Tensor, keep: th.Tensor) -> th.Tensor:
        """Apply the block to ``h`` ``(B, T, C)`` with float mask ``keep`` ``(B, T, 1)``."""
        y = (self.norm(h) * keep).transpose(1, 2)  # (B, C, T)
        y = self.conv(F.pad(y, (self.left_pad, 0)))  # (B, C, T): output t sees inputs <= t
        y = self.dropout(self.act(y)).transpose(1, 2)  # (B, T, C)
        return (h + y) * keep  # (B, T, C)


class MultiScaleCausalConvBlock(nn.Module):
    """Pre-norm residual block with parallel causal convolutions of several kernel sizes.

    ``h + Dropout(act(fuse([CausalConv_k(LayerNorm(h) * valid) for k in kernels])))``;
    ``fuse`` is a 1x1 projection of the concatenated branches (``concat``) or their sum.
    Masking as :class:`CausalConvBlock`, so padding never reaches a real bar.
    """

    def __init__(
        self,
        channels: int,
        kernel_sizes: tuple[int, ...],
        dilation: int,
        dropout: float,
        activation: str,
        fusion: str,
    ) -> None:
        super().__init__()
        self.left_pads = [(k - 1) * dilation for k in kernel_sizes]
        self.norm = nn.LayerNorm(channels)
        self.branches = nn.ModuleList(
            nn.Conv1d(channels, channels, k, dilation=dilation) for k in kernel_sizes
        )
        self.fuse: nn.Module | None = (
            nn.Conv1d(channels * len(kernel_sizes), channels, 1) if fusion == "concat" else None
        )
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: th.Tensor, keep: th.Tensor) -> th.Tensor:
        """Apply the block to ``h`` ``(B, T, C)`` with float mask ``keep`` ``(B, T, 1)``."""
        y = (self.norm(h) * keep).transpose(1, 2)  # (B, C, T)
        outs = [
            conv(F.pad(y, (pad, 0)))
            for conv, pad in zip(self.branches, self.left_pads, strict=True)
        ]
        if self.fuse is not None:
            y = self.fuse(th.cat(outs, dim=1))  # (B, K*C, T) -> (B, C, T)
        else:
            y = th.stack(outs).sum(dim=0)  # (B, C, T)
        y = self.dropout(self.act(y)).transpose(1, 2)  # (B, T, C)
        return (h + y) * keep  # (B, T, C)


class TemporalCNN(nn.Module):
    """Per-bar input projection, residual causal dilated convs, masked pooling -> ``(B, C)``.

    ``last_mean`` pooling gives ``(B, 2C)``.
    """

    def __init__(self, n_features: int, config: CNNConfig) -> None:
        super().__init__()
        self.pooling = config.pooling
        self.input_proj = nn.Linear(n_features, config.channels)
        blocks: list[nn.Module] = []
        for d in config.dilations:
            if config.kernel_sizes:
                blocks.append(
                    MultiScaleCausalConvBlock(
                        config.channels,
                        config.kernel_sizes,
                        d,
                        config.dropout,
                        config.activation,
                        config.multiscale_fusion,
                    )
                )
            else:
                blocks.append(
                    CausalConvBlock(
                        config.channels, config.kernel_size, d, config.dropout, config.activation
                    )
                )
        self.blocks = nn.ModuleList(blocks)
        self.out_norm = nn.LayerNorm(config.channels)

    def forward(self, window: th.Tensor, valid: th.Tensor) -> th.Tensor:
        """Encode ``window`` ``(B, T, F)`` with boolean ``valid`` ``(B, T)`` -> ``(B, C)``."""
        keep = valid.to(window.dtype).unsqueeze(-1)  # (B, T, 1)
        h = self.input_proj(window * keep) * keep  # (B, T, C)
        for block in self.blocks:
            h = block(h, keep)  # (B, T, C)
        h = self.out_norm(h)  # (B, T, C)
        if self.pooling == "last":
            return h[:, -1]  # (B, C): the newest bar is always real
        if self.pooling == "last_mean":
            return th.cat([h[:, -1], masked_mean(h, valid)], dim=-1)  # (B, 2C)
        if self.pooling == "max":
            pooled = h.masked_fill(~valid.unsqueeze(-1), float("-inf")).amax(dim=1)  # (B, C)
            # A row without real bars (outside the contract) pools to 0 rather than -inf.
            return th.where(valid.any(dim=1, keepdim=True), pooled, th.zeros_like(pooled))
        return masked_mean(h, valid)  # (B, C)


@register_encoder(CNNConfig)
class CNNEncoder(SequenceEncoderBase):
    """1D temporal CNN (TCN; Bai, Kolter & Koltun 2018) over the ``(T, F)`` window.

    Convolutions are causal (left-padded), so each time step summarises the bars up to it;
    dilations ``(1, 2, 4, 8)`` grow the receptive field to 31 bars in four blocks. Pooling
    respects the mask. LayerNorm per time step rather than BatchNorm: batch statistics
    would mix padding into real bars and behave differently in SAC's eval-mode target
    network. ``kernel_sizes`` (e.g. ``[3, 5, 7]``) makes it the multi-scale variant: each
    block runs parallel causal convolutions of those sizes and fuses them
    (:class:`MultiScaleCausalConvBlock`). Requires sequence-mode observations.

    Parameter count at defaults (F=30, T=64, account 3): 60,480 (body 52,032, head 8,384,
    account projection 64); ``features_dim`` = 64 + 16 = 80.
    """

    def __init__(self, observation_space: spaces.Dict, config: CNNConfig | None = None) -> None:
        super().__init__(observation_space, config)

    def _build_body(self, dims: ObservationDims, config: EncoderConfigBase) -> nn.Module:
        assert isinstance(config, CNNConfig)
        if config.pooling == "last" and config.receptive_field < dims.window:
            warnings.warn(
                f"CNN pooling='last' sees only its receptive field of {config.receptive_field} "
                f"bars, but the window has {dims.window}: the oldest "
                f"{dims.window - config.receptive_field} bars cannot affect the output. Use "
                "pooling='mean'/'max' or larger dilations.",
                UserWarning,
                stacklevel=4,
            )
        return TemporalCNN(dims.n_features, config)
