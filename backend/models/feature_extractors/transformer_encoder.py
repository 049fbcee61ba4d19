"""``transformer`` mode: a small Transformer encoder over the bar window.

Features beyond a stock ``nn.TransformerEncoder``: the env's padding mask as a key mask
that can never leave a softmax row empty; an optional ALiBi distance bias (Press, Smith &
Lewis 2022, "Train Short, Test Long: Attention with Linear Biases Enables Input Length
Extrapolation", ICLR); optional per-layer sliding-window attention (Beltagy et al. 2020,
Longformer); and the attention maps of the last forward pass for inspection.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from pydantic import Field, model_validator
from torch import nn

from backend.models.feature_extractors.base import (
    ACTIVATIONS,
    ObservationDims,
    SequenceEncoderBase,
    masked_mean,
)
from backend.models.feature_extractors.lstm_encoder import SequencePooling
from backend.models.feature_extractors.registry import (
    Activation,
    EncoderConfigBase,
    SizePresets,
    register_encoder,
)
from backend.utils.config_model import PosInt, Probability, StrictBool

PositionalEncoding = Literal["sinusoidal", "learned", "none"]
"""Transformer position signal; ``none`` is only allowed when something else orders bars."""

TemporalDecay = Literal["none", "fixed", "learnable"]
"""ALiBi-style distance penalty on attention scores: off, fixed slopes, or learned slopes."""


class TransformerConfig(EncoderConfigBase):
    """A small Transformer encoder over the window, with masks and attention maps."""

    size_presets: ClassVar[SizePresets] = {
        "tiny": {"embedding_dim": 16, "d_model": 16, "n_heads": 2, "n_layers": 1, "ff_dim": 32},
        "small": {"embedding_dim": 32, "d_model": 32, "n_heads": 4, "n_layers": 2, "ff_dim": 64},
        "base": {},
        "large": {
            "embedding_dim": 128,
            "d_model": 128,
            "n_heads": 8,
            "n_layers": 4,
            "ff_dim": 256,
        },
    }

    name: Literal["transformer"] = "transformer"
    """The Transformer over the bar window (sequence observations)."""

    d_model: PosInt = 64
    """Model width (per-bar token size); must be divisible by ``n_heads``."""

    n_heads: PosInt = 4
    """Attention heads per layer."""

    n_layers: PosInt = 2
    """Encoder layers."""

    ff_dim: PosInt = 128
    """Hidden width of each layer's feed-forward block."""

    dropout: Probability = 0.0
    """Dropout on attention weights, residual branches and the input, in ``[0, 1)``. 0 by
    default for the same reason as ``CNNConfig.dropout``."""

    norm_first: StrictBool = True
    """Pre-layer-norm (True; trains stably without warm-up, Xiong et al. 2020) or the
    original post-layer-norm (False)."""

    activation: Activation = "gelu"
    """Nonlinearity in the feed-forward block."""

    positional_encoding: PositionalEncoding = "sinusoidal"
    """Position signal added to tokens, indexed by bar age (0 = newest), so a window padded
    to any length encodes its real bars the same way. ``none`` requires ``causal`` or a
    ``temporal_decay``: otherwise attention cannot tell the order of bars."""

    temporal_decay: TemporalDecay = "none"
    """ALiBi attention bias ``-m_h * |i - j|`` with a per-head slope ``m_h`` (Press et al.
    2022, "Train Short, Test Long"): nearer bars weigh more. ``fixed`` uses the paper's
    geometric slopes; ``learnable`` starts there and learns positive slopes."""

    local_window: tuple[Annotated[int, Field(strict=True, ge=1)] | None, ...] | None = None
    """Per-layer sliding-window attention (Longformer-style, Beltagy et al. 2020): entry ``w``
    lets query ``i`` see keys with ``|i - j| < w`` (with ``causal``, the last ``w`` bars);
    ``null`` is global. E.g. ``[20, null]``. Length must equal ``n_layers``."""

    causal: StrictBool = False
    """Forbid attention to newer bars within the window. The whole window is in the past of
    the decision, so this is a modelling choice, not a look-ahead guard."""

    pooling: SequencePooling = "last"
    """``last``: the newest bar's token (always real); ``mean``: masked mean over real bars."""

    store_attention: StrictBool = False
    """Compute attention weights explicitly and keep them in ``last_attention`` (slower);
    otherwise use fused ``scaled_dot_product_attention``. Can be toggled at run time."""

    @model_validator(mode="after")
    def _consistent(self) -> TransformerConfig:
        if self.d_model % self.n_heads != 0:
            raise ValueError(
                f"d_model (width) {self.d_model} must be divisible by n_heads {self.n_heads}"
            )
        if self.local_window is not None and len(self.local_window) != self.n_layers:
            raise ValueError(
                f"local_window has {len(self.local_window)} entries but n_layers is "
                f"{self.n_layers}: give one window (or null for global) per layer"
            )
        if self.positional_encoding == "none" and self.temporal_decay == "none" and not self.causal:
            raise ValueError(
                "positional_encoding='none' with temporal_decay='none' and causal=False makes "
                "attention blind to bar order; enable one of them"
            )
        return self


def alibi_slopes(n_heads: int) -> list[float]:
    """Per-head ALiBi slopes: the geometric sequence of Press et al. (2022), section 3.

    For ``n`` a power of two the slopes are ``2^(-8/n), 2^(-16/n), ..., 2^(-8)``; otherwise
    the slopes of the closest smaller power of two are topped up with every other slope of
    the next power of two, as in the paper's reference code.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be >= 1, got {n_heads}")

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return power_of_two(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


def sinusoidal_encoding(window: int, d_model: int) -> th.Tensor:
    """Sinusoidal encoding (Vaswani et al. 2017) of bar *age* -> ``(T, D)`` in window order.

    Row ``i`` encodes age ``T - 1 - i`` (0 = the newest bar, which is last), so the newest
    bars get the same code whatever the window length or padding.
    """
    age = th.arange(window - 1, -1, -1, dtype=th.float32).unsqueeze(1)  # (T, 1)
    freq = th.exp(th.arange(0, d_model, 2, dtype=th.float32) * (-math.log(10000.0) / d_model))
    angles = age * freq  # (T, ceil(D / 2))
    encoding = th.zeros(window, d_model)
    encoding[:, 0::2] = th.sin(angles)
    encoding[:, 1::2] = th.cos(angles[:, : d_model // 2])
    return encoding  # (T, D)


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention taking an additive score bias ``(B|1, H|1, T, T)``.

    Uses fused ``scaled_dot_product_attention`` unless ``need_weights``; then it computes
    the same softmax explicitly and returns the weights (before dropout).
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(
        self, x: th.Tensor, bias: th.Tensor, need_weights: bool
    ) -> tuple[th.Tensor, th.Tensor | None]:
        """Attend ``x`` ``(B, T, D)`` -> ``((B, T, D), weights (B, H, T, T) or None)``."""
        batch, steps, width = x.shape
        q, k, v = (
            part.view(batch, steps, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
            for part in self.qkv(x).split(width, dim=-1)
        )
        dropout = self.dropout if self.training else 0.0
        weights: th.Tensor | None = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim) + bias  # (B, H, T, T)
            weights = scores.softmax(dim=-1)  # (B, H, T, T)
            attended = F.dropout(weights, dropout, self.training) @ v  # (B, H, T, Dh)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
        merged = attended.transpose(1, 2).reshape(batch, steps, width)  # (B, T, D)
        return self.out(merged), weights


class EncoderLayer(nn.Module):
    """Transformer encoder layer with pre- or post-layer-norm residuals."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.norm_first = config.norm_first
        self.attn = MaskedSelfAttention(config.d_model, config.n_heads, config.dropout)
        self.norm1 = nn.LayerNorm(config.d_model)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.ff = nn.Sequential(
            nn.Linear(config.d_model, config.ff_dim),
            ACTIVATIONS[config.activation](),
            nn.Dropout(config.dropout),
            nn.Linear(config.ff_dim, config.d_model),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: th.Tensor, bias: th.Tensor, need_weights: bool
    ) -> tuple[th.Tensor, th.Tensor | None]:
        """``x`` ``(B, T, D)`` -> ``((B, T, D), attention weights or None)``."""
        if self.norm_first:
            attended, weights = self.attn(self.norm1(x), bias, need_weights)
            x = x + self.dropout(attended)
            x = x + self.dropout(self.ff(self.norm2(x)))
        else:
            attended, weights = self.attn(x, bias, need_weights)
            x = self.norm1(x + self.dropout(attended))
            x = self.norm2(x + self.dropout(self.ff(x)))
        return x, weights  # (B, T, D)


class WindowTransformer(nn.Module):
    """Input projection + position code, encoder layers, pooling -> ``(B, D)``.

    Masking rules, which make the output independent of the values in padded positions
    and keep every softmax row non-empty (so no NaN, even with sliding windows):

    * a query may attend to key ``j`` only if ``j`` is real, inside the layer's window and
      (if causal) not newer;
    * every query may always attend to itself. A real query's own key is real, so this
      adds nothing for it; a padded query whose allowed keys are all padding gets itself.
    * padded tokens are reset to zero after every layer and never pooled.

    Attributes:
        store_attention: When True, ``forward`` keeps the attention weights.
        last_attention: Per layer, the weights ``(B, H, T, T)`` of the last forward (empty
            unless ``store_attention``); rows of padded queries are zeroed.
        last_valid: The boolean mask ``(B, T)`` that went with ``last_attention``.
    """

    # Buffers, declared for type checkers (register_buffer hides their type).
    distance: th.Tensor  # (T, T) |i - j|
    allowed: th.Tensor  # (L, T, T) bool: band and causal structure per layer
    diagonal: th.Tensor  # (T, T) bool
    sinusoid: th.Tensor  # (T, D), only with sinusoidal positions
    decay_fixed: th.Tensor  # (H,), only with temporal_decay="fixed"
    decay_raw: nn.Parameter  # (H,), only with temporal_decay="learnable"

    def __init__(self, dims: ObservationDims, config: TransformerConfig) -> None:
        super().__init__()
        steps, width = dims.window, config.d_model
        self.pooling = config.pooling
        self.store_attention = config.store_attention
        self.last_attention: list[th.Tensor] = []
        self.last_valid: th.Tensor | None = None
        self.input_proj = nn.Linear(dims.n_features, width)
        self.position_kind = config.positional_encoding
        self.positional: nn.Parameter | None = None
        if config.positional_encoding == "learned":
            self.positional = nn.Parameter(th.randn(steps, width) * 0.02)  # (T, D)
        elif config.positional_encoding == "sinusoidal":
            self.register_buffer("sinusoid", sinusoidal_encoding(steps, width), persistent=False)
        self.input_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(width) if config.norm_first else nn.Identity()

        index = th.arange(steps)
        offset = index.unsqueeze(1) - index.unsqueeze(0)  # (T, T): query i minus key j
        self.register_buffer("distance", offset.abs().float(), persistent=False)  # (T, T)
        windows = config.local_window or (None,) * config.n_layers
        allowed = []
        for local in windows:
            layer_allowed = th.ones(steps, steps, dtype=th.bool)  # (T, T)
            if local is not None:
                layer_allowed &= offset.abs() < local
            if config.causal:
                layer_allowed &= offset >= 0
            allowed.append(layer_allowed)
        self.register_buffer("allowed", th.stack(allowed), persistent=False)  # (L, T, T)
        self.register_buffer("diagonal", th.eye(steps, dtype=th.bool), persistent=False)

        self.decay = config.temporal_decay
        slopes = th.tensor(alibi_slopes(config.n_heads))  # (H,)
        if self.decay == "learnable":
            # Softplus keeps slopes positive (always a decay); start at the ALiBi values.
            self.decay_raw = nn.Parameter(th.log(th.expm1(slopes)))
        elif self.decay == "fixed":
            self.register_buffer("decay_fixed", slopes, persistent=False)

    def decay_slopes(self) -> th.Tensor | None:
        """Current per-head ALiBi slopes ``(H,)``, or None without temporal decay."""
        if self.decay == "learnable":
            return F.softplus(self.decay_raw)
        if self.decay == "fixed":
            return self.decay_fixed
        return None

    def _bias(self, layer: int, valid: th.Tensor, dtype: th.dtype) -> th.Tensor:
        """Additive score bias for one layer -> ``(B, H|1, T, T)``: 0 / ALiBi or -inf."""
        allowed = self.allowed[layer] & valid.unsqueeze(1)  # (B, T, T): key must be real
        allowed = (allowed | self.diagonal).unsqueeze(1)  # (B, 1, T, T): self always allowed
        slopes = self.decay_slopes()
        base = th.zeros((), dtype=dtype, device=valid.device)
        if slopes is not None:
            base = -slopes.to(dtype).view(1, -1, 1, 1) * self.distance.to(dtype)  # (1, H, T, T)
        blocked = th.full((), float("-inf"), dtype=dtype, device=valid.device)
        return th.where(allowed, base, blocked)  # (B, H|1, T, T)

    def forward(self, window: th.Tensor, valid: th.Tensor) -> th.Tensor:
        """Encode ``window`` ``(B, T, F)`` with boolean ``valid`` ``(B, T)`` -> ``(B, D)``."""
        keep = valid.to(window.dtype).unsqueeze(-1)  # (B, T, 1)
        x = self.input_proj(window)  # (B, T, D)
        if self.positional is not None:
            x = x + self.positional  # (B, T, D)
        elif self.position_kind == "sinusoidal":
            x = x + self.sinusoid  # (B, T, D)
        x = self.input_dropout(x) * keep  # (B, T, D)
        maps: list[th.Tensor] = []
        for index, layer in enumerate(self.layers):
            bias = self._bias(index, valid, x.dtype)
            x, weights = layer(x, bias, self.store_attention)
            x = x * keep  # (B, T, D): padded tokens carry nothing forward
            if weights is not None:
                maps.append((weights * keep.unsqueeze(1)).detach())  # (B, H, T, T)
        self.last_attention = maps
        self.last_valid = valid.detach() if maps else None
        x = self.final_norm(x)  # (B, T, D)
        if self.pooling == "last":
            return x[:, -1]  # (B, D): the newest bar is always real
        return masked_mean(x, valid)  # (B, D)


@register_encoder(TransformerConfig)
class TransformerEncoder(SequenceEncoderBase):
    """Small Transformer encoder over the ``(T, F)`` window -> embedding.

    Defaults: 2 layers, 4 heads, width 64, sinusoidal positions, pre-LN, newest-token
    pooling, no temporal decay, global attention.

    Set ``store_attention = True`` (or the config field) to keep per-layer attention maps
    in ``last_attention`` and read ``attention_entropy()``. Under SAC each of the actor,
    critic and critic target owns a separate copy of this extractor (SB3's SAC default
    ``share_features_extractor=False``); the actor's is ``model.actor.features_extractor``.
    Requires sequence-mode observations.

    Parameter count at defaults (F=30, T=64, account 3): 73,408 (body 69,056, head 4,288,
    account projection 64); ``positional_encoding='learned'`` adds 4,096 (T x d_model),
    ``temporal_decay='learnable'`` adds 4 (one slope per head). ``features_dim`` = 80.
    """

    def __init__(
        self, observation_space: spaces.Dict, config: TransformerConfig | None = None
    ) -> None:
        super().__init__(observation_space, config)

    def _build_body(self, dims: ObservationDims, config: EncoderConfigBase) -> nn.Module:
        assert isinstance(config, TransformerConfig)
        return WindowTransformer(dims, config)

    @property
    def transformer(self) -> WindowTransformer:
        """The body, typed."""
        assert isinstance(self.body, WindowTransformer)
        return self.body

    @property
    def store_attention(self) -> bool:
        """Whether forward passes keep their attention maps (slower explicit softmax)."""
        return self.transformer.store_attention

    @store_attention.setter
    def store_attention(self, value: bool) -> None:
        self.transformer.store_attention = bool(value)

    @property
    def last_attention(self) -> list[th.Tensor]:
        """Per layer, attention weights ``(B, H, T, T)`` of the last forward pass.

        Row ``i`` is query bar ``i``'s distribution over key bars; rows of padded queries
        and columns of padded keys are zero. Empty if the last forward did not store maps.
        """
        return self.transformer.last_attention

    def attention_entropy(self, layer: int | None = None) -> float:
        """Mean attention entropy in nats over real query rows, heads and batch.

        Lies in ``[0, log T]``: 0 when each query attends to a single bar, ``log(n)`` when
        uniform over ``n`` keys. A collapse toward 0 or a stall at the uniform value are
        the usual signs of attention that learned nothing.

        Args:
            layer: Layer index, or None for the mean over layers.

        Raises:
            RuntimeError: if the last forward pass did not store attention maps.
        """
        maps, valid = self.transformer.last_attention, self.transformer.last_valid
        if not maps or valid is None:
            raise RuntimeError(
                "no attention maps stored: set store_attention = True and run a forward pass"
            )
        chosen = maps if layer is None else [maps[layer]]
        query_weight = valid.to(maps[0].dtype).unsqueeze(1)  # (B, 1, T)
        n_rows = query_weight.sum() * maps[0].shape[1]
        entropies = []
        for weights in chosen:
            row_entropy = -th.special.xlogy(weights, weights).sum(dim=-1)  # (B, H, T)
            entropies.append((row_entropy * query_weight).sum() / n_rows)
        return float(th.stack(entropies).mean())
