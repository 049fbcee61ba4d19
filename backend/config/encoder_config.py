"""Typed, validated configs for the pluggable SAC observation encoders.

One frozen dataclass per ``encoder_mode`` (``manual``, ``cnn``, ``lstm``, ``transformer``).
Every config is checked on construction so that a bad YAML value fails when the experiment
is loaded, with a message naming the field, rather than as a shape error deep inside SAC's
first gradient step. ``to_dict``/``from_dict`` round-trip through plain YAML types (tuples
become lists and back), so a resolved config can be saved next to a run's results.

All encoders hand SAC ``features_dim = embedding_dim + account_dim`` features: the
sequence (or flat-feature) embedding concatenated with a small projection of the 3-value
account vector (see ``backend/models/feature_extractors/base.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

Activation = Literal["relu", "gelu", "tanh", "silu"]
"""Activation names shared by every encoder config."""

CNNPooling = Literal["last_mean", "last", "mean", "max"]
"""How the CNN reduces its (T, C) output to one vector; all respect the padding mask."""

SequencePooling = Literal["last", "mean"]
"""How the LSTM/Transformer reduce their (T, D) output: newest bar or masked mean."""

PositionalEncoding = Literal["sinusoidal", "learned", "none"]
"""Transformer position signal; ``none`` is only allowed when something else orders bars."""

TemporalDecay = Literal["none", "fixed", "learnable"]
"""ALiBi-style distance penalty on attention scores: off, fixed slopes, or learned slopes."""

_ConfigT = TypeVar("_ConfigT", bound="EncoderConfigBase")


def _fail(config: object, message: str) -> None:
    raise ValueError(f"{type(config).__name__}: {message}")


def _check_positive_int(config: object, name: str) -> None:
    value = getattr(config, name)
    # bool is an int subclass; True as a layer count is always a YAML typo.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(config, f"{name} must be a positive integer, got {value!r}")


def _check_probability(config: object, name: str) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        _fail(config, f"{name} must be a float in [0, 1), got {value!r}")


def _check_choice(config: object, name: str, choices: Any) -> None:
    value = getattr(config, name)
    allowed = get_args(choices)
    if value not in allowed:
        _fail(config, f"{name} must be one of {allowed}, got {value!r}")


def _freeze_tuple(config: object, name: str) -> None:
    """Store list-valued fields (as YAML gives them) as tuples so configs stay hashable."""
    value = getattr(config, name)
    if isinstance(value, list):
        object.__setattr__(config, name, tuple(value))
    elif not isinstance(value, tuple):
        _fail(config, f"{name} must be a tuple or list, got {type(value).__name__}")


def _to_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_plain(item) for item in value]
    return value


@dataclass(frozen=True, kw_only=True)
class EncoderConfigBase:
    """Fields every encoder shares: the size of what it hands to SAC's actor and critic."""

    embedding_dim: int = 64
    """Size of the encoder's embedding of the features or window, before the account
    projection is appended."""

    account_dim: int = 16
    """Width of the learned projection of the account vector (position, unrealized PnL,
    session fraction left). Projected rather than passed raw because PnL fractions are
    orders of magnitude smaller than the bounded embedding."""

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        """Check invariants; subclasses extend this and call ``super()._validate()``."""
        _check_positive_int(self, "embedding_dim")
        _check_positive_int(self, "account_dim")

    @property
    def features_dim(self) -> int:
        """Number of features the encoder outputs: ``embedding_dim + account_dim``."""
        return self.embedding_dim + self.account_dim

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe representation (tuples become lists)."""
        return {f.name: _to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[_ConfigT], data: Mapping[str, Any]) -> _ConfigT:
        """Build a config from a mapping, rejecting unknown keys (typos must not be ignored).

        Raises:
            ValueError: if ``data`` has a key that is not a field, or a value fails validation.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}; valid: {sorted(names)}")
        return cls(**dict(data))


@dataclass(frozen=True, kw_only=True)
class ManualEncoderConfig(EncoderConfigBase):
    """The baseline: an MLP over the flat engineered features of the current bar."""

    hidden_dims: tuple[int, ...] = (128, 128)
    """Widths of the MLP's hidden layers (may be empty: the head then reads the features)."""

    activation: Activation = "relu"
    """Nonlinearity after each hidden layer."""

    def _validate(self) -> None:
        super()._validate()
        _freeze_tuple(self, "hidden_dims")
        for width in self.hidden_dims:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                _fail(self, f"hidden_dims entries must be positive integers, got {width!r}")
        _check_choice(self, "activation", Activation)


@dataclass(frozen=True, kw_only=True)
class CNNConfig(EncoderConfigBase):
    """A causal, dilated temporal CNN (TCN, Bai et al. 2018) over the (T, F) window."""

    channels: int = 64
    """Channels of every convolution (the per-bar width after the input projection)."""

    kernel_size: int = 3
    """Temporal kernel size of each causal convolution."""

    dilations: tuple[int, ...] = (1, 2, 4, 8)
    """One residual causal-conv block per entry, with that dilation. The receptive field is
    ``1 + (kernel_size - 1) * sum(dilations)`` bars (31 at defaults)."""

    pooling: CNNPooling = "last_mean"
    """Masked reduction over time. ``last_mean`` (default) concatenates the newest bar's
    output with the masked mean over the window: the freshest bars carry most short-horizon
    information, and mean pooling alone dilutes them by 1/T (a planted one-bar momentum
    signal was not learned with ``mean``; see tests/test_learning.py). ``mean``/``max``
    cover the whole window; ``last`` only sees the receptive field before the newest bar
    (the encoder warns when that is < T)."""

    dropout: float = 0.0
    """Dropout after each convolution. 0 by default: SAC's critic targets are computed in
    eval mode, so dropout makes the online and target critics disagree."""

    activation: Activation = "gelu"
    """Nonlinearity after each convolution."""

    def _validate(self) -> None:
        super()._validate()
        _check_positive_int(self, "channels")
        _check_positive_int(self, "kernel_size")
        _freeze_tuple(self, "dilations")
        if not self.dilations:
            _fail(self, "dilations must name at least one conv block")
        for dilation in self.dilations:
            if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
                _fail(self, f"dilations entries must be positive integers, got {dilation!r}")
        _check_choice(self, "pooling", CNNPooling)
        _check_probability(self, "dropout")
        _check_choice(self, "activation", Activation)

    @property
    def receptive_field(self) -> int:
        """Bars (including the current one) that one output time step can see."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)


@dataclass(frozen=True, kw_only=True)
class LSTMConfig(EncoderConfigBase):
    """An LSTM run oldest to newest over the real (unpadded) bars of the window."""

    hidden_size: int = 64
    """LSTM hidden state size (projected to ``embedding_dim`` afterwards)."""

    num_layers: int = 1
    """Stacked LSTM layers."""

    dropout: float = 0.0
    """Dropout between stacked LSTM layers; needs ``num_layers > 1`` (torch ignores it
    otherwise, so asking for it there is a config error)."""

    pooling: SequencePooling = "last"
    """``last``: the state after the newest bar; ``mean``: masked mean of all real steps."""

    def _validate(self) -> None:
        super()._validate()
        _check_positive_int(self, "hidden_size")
        _check_positive_int(self, "num_layers")
        _check_probability(self, "dropout")
        if self.dropout > 0.0 and self.num_layers == 1:
            _fail(self, "dropout acts between LSTM layers and needs num_layers > 1")
        _check_choice(self, "pooling", SequencePooling)


@dataclass(frozen=True, kw_only=True)
class TransformerConfig(EncoderConfigBase):
    """A small Transformer encoder over the window, with masks and attention maps."""

    d_model: int = 64
    """Model width (per-bar token size); must be divisible by ``n_heads``."""

    n_heads: int = 4
    """Attention heads per layer."""

    n_layers: int = 2
    """Encoder layers."""

    ff_dim: int = 128
    """Hidden width of each layer's feed-forward block."""

    dropout: float = 0.0
    """Dropout on attention weights, residual branches and the input. 0 by default for the
    same reason as ``CNNConfig.dropout``."""

    norm_first: bool = True
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

    local_window: tuple[int | None, ...] | None = None
    """Per-layer sliding-window attention (Longformer-style, Beltagy et al. 2020): entry ``w``
    lets query ``i`` see keys with ``|i - j| < w`` (with ``causal``, the last ``w`` bars);
    ``None`` is global. E.g. ``(20, None)``. Length must equal ``n_layers``."""

    causal: bool = False
    """Forbid attention to newer bars within the window. The whole window is in the past of
    the decision, so this is a modelling choice, not a look-ahead guard."""

    pooling: SequencePooling = "last"
    """``last``: the newest bar's token (always real); ``mean``: masked mean over real bars."""

    store_attention: bool = False
    """Compute attention weights explicitly and keep them in ``last_attention`` (slower);
    otherwise use fused ``scaled_dot_product_attention``. Can be toggled at run time."""

    def _validate(self) -> None:
        super()._validate()
        for name in ("d_model", "n_heads", "n_layers", "ff_dim"):
            _check_positive_int(self, name)
        if self.d_model % self.n_heads != 0:
            _fail(
                self,
                f"d_model (width) {self.d_model} must be divisible by n_heads {self.n_heads}",
            )
        _check_probability(self, "dropout")
        _check_choice(self, "activation", Activation)
        _check_choice(self, "positional_encoding", PositionalEncoding)
        _check_choice(self, "temporal_decay", TemporalDecay)
        _check_choice(self, "pooling", SequencePooling)
        if self.local_window is not None:
            _freeze_tuple(self, "local_window")
            if len(self.local_window) != self.n_layers:
                _fail(
                    self,
                    f"local_window has {len(self.local_window)} entries but n_layers is "
                    f"{self.n_layers}: give one window (or None for global) per layer",
                )
            for width in self.local_window:
                if width is not None and (
                    isinstance(width, bool) or not isinstance(width, int) or width < 1
                ):
                    _fail(self, f"local_window entries must be None or >= 1, got {width!r}")
        if self.positional_encoding == "none" and self.temporal_decay == "none" and not self.causal:
            _fail(
                self,
                "positional_encoding='none' with temporal_decay='none' and causal=False makes "
                "attention blind to bar order; enable one of them",
            )


EncoderConfig = ManualEncoderConfig | CNNConfig | LSTMConfig | TransformerConfig
"""Any encoder config; ``encoder_mode`` selects which."""
