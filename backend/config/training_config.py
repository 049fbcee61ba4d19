"""Typed run configuration: what features an agent sees (and, later, how it trains).

Every run parameter lives in a frozen dataclass with a docstring per field, and invariants
are checked on construction so a bad YAML fails at load time rather than an hour into
training (CleanRL ``Args``, nanoGPT ``GPTConfig``). The generic helpers at the bottom
(:func:`config_to_dict`, :func:`config_from_dict`, :func:`save_config`,
:func:`load_config`) work for any dataclass in this module, so settings added later get
strict dict/YAML/JSON round-trips for free.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

import yaml

from backend.config.encoder_config import (
    CNNConfig,
    EncoderConfig,
    EncoderConfigBase,
    LSTMConfig,
    ManualEncoderConfig,
    TransformerConfig,
)
from backend.data_download.schema import INTERVALS
from backend.utils.atomic_io import write_text_atomic

__all__ = [
    "FEATURE_GROUPS",
    "FEATURE_PRESETS",
    "CNNConfig",
    "EncoderConfig",
    "EncoderConfigBase",
    "EncoderMode",
    "FeatureConfig",
    "LSTMConfig",
    "REGULAR_SESSION_MINUTES",
    "ManualEncoderConfig",
    "SharedEncoderLoss",
    "TrainingSettings",
    "TransformerConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]

FEATURE_GROUPS: tuple[str, ...] = (
    "bar",
    "returns",
    "range_gap",
    "technical",
    "volume",
    "calendar",
    "vix",
)
"""Feature groups in the order their columns appear in the feature frame."""

REGULAR_SESSION_MINUTES = 390
"""Length of a full NYSE regular session (09:30-16:00), which bounds session memory."""

_YAML_SUFFIXES = (".yaml", ".yml")
_JSON_SUFFIXES = (".json",)


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Which features are computed and with which parameters.

    Windows and horizons are counted in bars (rows of the market frame), not in clock
    time, so a missing bar shortens nothing but the calendar features stay exact.
    """

    use_bar: bool = True
    """Normalised OHLCV of each bar (the sequence encoder's raw view of the tape)."""
    use_returns: bool = True
    """Multi-horizon log returns of the close."""
    use_range_gap: bool = True
    """Bar range, close location, overnight gap and session-anchored distances."""
    use_technical: bool = True
    """RSI, ATR, MACD and Bollinger %b."""
    use_volume: bool = True
    """Rolling z-score of log volume."""
    use_calendar: bool = True
    """Time of day, day of week and the fraction of the session left."""
    use_vix: bool = True
    """VIX level, change, trend and volatility; needs the market frame's ``vix`` column."""

    interval: str = "15m"
    """Bar interval of the market frame; sets the calendar grid and the session length."""
    return_horizons: tuple[int, ...] = (1, 4, 13, 26, 78)
    """Horizons (bars) of the log-return features: 15 min, 1 h, half a day, 1 and 3 days."""
    bar_volume_window: int = 26
    """Bars in the rolling mean that the bar's log volume is measured against (one day)."""
    volume_zscore_window: int = 78
    """Bars in the rolling window of the log-volume z-score (three days)."""
    rsi_period: int = 14
    """Wilder RSI period."""
    atr_period: int = 14
    """Wilder ATR period."""
    macd_fast: int = 12
    """Span of the fast EMA of the MACD line."""
    macd_slow: int = 26
    """Span of the slow EMA of the MACD line."""
    macd_signal: int = 9
    """Span of the EMA of the MACD line that forms the signal line."""
    bollinger_window: int = 20
    """Bars in the Bollinger moving average and standard deviation."""
    bollinger_k: float = 2.0
    """Width of the Bollinger bands in standard deviations."""
    vix_trend_window: int = 78
    """Bars in the moving average that ``vix_trend`` compares the VIX with (three days)."""
    vix_volatility_window: int = 26
    """Bars of VIX log changes in the rolling std ``vix_volatility`` (one day)."""
    ewm_residual: float = 1e-3
    """EWM-based features stay NaN until their seed's weight has decayed below this.

    An exponential average remembers its starting point forever; masking the values while
    the seed still weighs more than ``ewm_residual`` makes a feature nearly independent of
    where the data happen to begin, so a live loop that computes on ``max_lookback`` bars
    of history sees the values the model was trained on. ``1.0`` disables the extra
    warm-up (textbook first values, as TA-Lib reports them).
    """

    _WINDOW_FIELDS: ClassVar[tuple[str, ...]] = (
        "bar_volume_window",
        "volume_zscore_window",
        "rsi_period",
        "atr_period",
        "macd_fast",
        "macd_slow",
        "macd_signal",
        "bollinger_window",
        "vix_trend_window",
        "vix_volatility_window",
    )

    def __post_init__(self) -> None:
        # Lists from YAML or callers become tuples so the config stays hashable and frozen.
        if isinstance(self.return_horizons, list):
            object.__setattr__(self, "return_horizons", tuple(self.return_horizons))
        for group in FEATURE_GROUPS:
            value = getattr(self, f"use_{group}")
            if not isinstance(value, bool):
                raise TypeError(f"use_{group} must be a bool, got {value!r}")
        if not any(getattr(self, f"use_{g}") for g in FEATURE_GROUPS):
            raise ValueError(
                "at least one feature group must be enabled; all of "
                f"{[f'use_{g}' for g in FEATURE_GROUPS]} are False"
            )
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be one of {sorted(INTERVALS)}, got {self.interval!r}")
        for name in self._WINDOW_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("volume_zscore_window", "bollinger_window", "vix_volatility_window"):
            # A standard deviation over one value is always 0: the feature would be constant.
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2 (it is a standard deviation window)")
        if not isinstance(self.return_horizons, tuple):
            raise TypeError(
                f"return_horizons must be a tuple of ints, got {type(self.return_horizons)}"
            )
        if self.use_returns and not self.return_horizons:
            raise ValueError("return_horizons is empty but use_returns is True")
        for h in self.return_horizons:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"return_horizons must hold positive integers, got {h!r}")
        if len(set(self.return_horizons)) != len(self.return_horizons):
            raise ValueError(f"return_horizons has duplicates: {self.return_horizons}")
        if self.macd_fast >= self.macd_slow:
            raise ValueError(
                f"macd_fast ({self.macd_fast}) must be smaller than macd_slow ({self.macd_slow})"
            )
        if not (isinstance(self.bollinger_k, (int, float)) and self.bollinger_k > 0):
            raise ValueError(f"bollinger_k must be > 0, got {self.bollinger_k!r}")
        if not (
            isinstance(self.ewm_residual, (int, float))
            and math.isfinite(self.ewm_residual)
            and 0.0 < self.ewm_residual <= 1.0
        ):
            raise ValueError(f"ewm_residual must be in (0, 1], got {self.ewm_residual!r}")

    @property
    def enabled_groups(self) -> tuple[str, ...]:
        """Enabled groups in column order."""
        return tuple(g for g in FEATURE_GROUPS if getattr(self, f"use_{g}"))

    @property
    def session_bars(self) -> int:
        """Bars in a full regular session at this interval (26 for 15-minute bars).

        Session-anchored features (gap, return since the open) remember at most this many
        rows, so it is part of their declared lookback.
        """
        minutes = INTERVALS[self.interval].total_seconds() / 60.0
        return math.ceil(REGULAR_SESSION_MINUTES / minutes)

    @classmethod
    def for_agent(cls, agent: str) -> FeatureConfig:
        """The feature preset an agent was designed and tuned with.

        Raises:
            ValueError: if the agent has no preset; the message lists those that do.
        """
        key = agent.strip().upper()
        try:
            return FEATURE_PRESETS[key]
        except KeyError:
            raise ValueError(
                f"no feature preset for agent {agent!r}; known agents: {sorted(FEATURE_PRESETS)}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for YAML/JSON and run reports."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        """Build from a dict; unknown keys and wrongly typed values raise, naming the key."""
        return config_from_dict(cls, data)

    def save(self, path: str | Path) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (``.json``), chosen by extension."""
        return save_config(self, path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureConfig:
        """Read a file written by :meth:`save` (or by hand)."""
        return load_config(cls, path)


FEATURE_PRESETS: dict[str, FeatureConfig] = {
    # Every group on, VIX included: the DSR reward is volatility-scaled, so the regime
    # context (VIX level/trend) and the session clock are what the policy conditions on.
    "SAC_INTRADAY_DSR": FeatureConfig(),
}
"""Feature preset per agent name (upper case)."""


# ---------------------------------------------------------------------------------------
# Generic dataclass <-> dict <-> file helpers
# ---------------------------------------------------------------------------------------

ConfigT = TypeVar("ConfigT")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass, nested dataclasses included, tuples as lists.

    Lists rather than tuples keep ``yaml.safe_dump`` output free of Python tags.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return {f.name: _to_plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


def config_from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
    """Build the dataclass ``cls`` from a plain dict, strictly.

    Unknown keys raise (a typo such as ``rsi_perod`` would otherwise silently fall back to
    the default), values are checked against the field annotations (``bool`` is not
    accepted for ``int``, lists become tuples, ints are accepted for floats) and the
    dataclass's own ``__post_init__`` validation runs last.

    Raises:
        ValueError: on unknown keys.
        TypeError: on a value whose type does not fit its field.
    """
    return _from_dict(cls, data, path=cls.__name__)


def _from_dict(cls: type[ConfigT], data: Mapping[str, Any], path: str) -> ConfigT:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise TypeError(f"{path}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {sorted(map(str, unknown))}; valid keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(value, hints[name], f"{path}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``hint``, converting lists to tuples."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError(f"{path}: {value!r} fits none of {hint}: {'; '.join(errors)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise TypeError(f"{path}: expected {len(args)} items, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_coerce(v, a, f"{path}[{i}]") for i, (a, v) in pairs)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        return _from_dict(hint, value, path)
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{path}: expected a bool, got {type(value).__name__} {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{path}: expected an int, got {type(value).__name__} {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{path}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if isinstance(hint, type):
        if not isinstance(value, hint):
            raise TypeError(f"{path}: expected {hint.__name__}, got {type(value).__name__}")
        return value
    raise TypeError(f"{path}: unsupported annotation {hint!r}")


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _YAML_SUFFIXES:
        return "yaml"
    if suffix in _JSON_SUFFIXES:
        return "json"
    raise ValueError(
        f"cannot tell the format of {str(path)!r} from its extension; "
        f"use one of {list(_YAML_SUFFIXES + _JSON_SUFFIXES)}"
    )


def save_config(config: Any, path: str | Path) -> Path:
    """Write a config dataclass as YAML or JSON (by extension), atomically.

    Written through a temporary file and ``os.replace`` so an interrupted run never leaves
    a half-written config next to its results.
    """
    target = Path(path)
    fmt = _format_of(target)
    data = config_to_dict(config)
    if fmt == "yaml":
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    else:
        text = json.dumps(data, indent=2) + "\n"
    return write_text_atomic(target, text)


def load_config(cls: type[ConfigT], path: str | Path) -> ConfigT:
    """Read a YAML or JSON config (by extension) into ``cls`` via :func:`config_from_dict`.

    YAML is read with ``safe_load``: a config file can never construct arbitrary objects.
    """
    source = Path(path)
    fmt = _format_of(source)
    text = source.read_text(encoding="utf-8")
    data = yaml.safe_load(text) if fmt == "yaml" else json.loads(text)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise ValueError(f"{source}: expected a mapping at the top level, got {kind}")
    return config_from_dict(cls, data)


# ---------------------------------------------------------------------------------------
# SAC training settings
# ---------------------------------------------------------------------------------------

EncoderMode = Literal["manual", "cnn", "lstm", "transformer"]
"""Names of the pluggable encoders (``backend.models.feature_extractors.ENCODER_REGISTRY``)."""

SharedEncoderLoss = Literal["critic", "actor"]
"""Which loss trains a shared encoder (see :attr:`TrainingSettings.shared_encoder_loss`)."""

CheckpointChoice = Literal["best", "last"]
"""Which weights a training run keeps (see :attr:`TrainingSettings.checkpoint`)."""


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TrainingSettings: {name} must be a positive integer, got {value!r}")


def _number_in(
    name: str, value: object, low: float, high: float, *, low_open: bool, high_open: bool
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(
            f"TrainingSettings: {name} must be in {lo}{low}, {high}{hi}, got {value!r}"
        )


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """How one SAC agent is trained: encoder, optimisation, evaluation and logging.

    Environment parameters (costs, reward, episode length) live in ``EnvConfig``; the
    pipeline (``backend/training/train.py``) sets the env's observation layout from
    :attr:`encoder_mode` and :attr:`sequence_length` so the two cannot disagree.
    """

    encoder_mode: EncoderMode = "transformer"
    """Observation encoder: ``manual`` (MLP on the current bar) or a sequence encoder."""
    sequence_length: int = 64
    """Bars in the sequence encoders' window (about 2.5 sessions); unused by ``manual``."""
    embedding_dim: int = 64
    """Size of every encoder's embedding (before the account projection is appended)."""
    manual_hidden_dims: tuple[int, ...] = (128, 128)
    """Hidden widths of the ``manual`` encoder's MLP."""
    transformer_hidden_dim: int = 64
    """Transformer width ``d_model``; must be divisible by :attr:`transformer_num_heads`."""
    transformer_num_layers: int = 2
    """Transformer encoder layers."""
    transformer_num_heads: int = 4
    """Attention heads per Transformer layer."""
    cnn_channels: int = 64
    """Channels of the CNN encoder's convolutions."""
    cnn_dilations: tuple[int, ...] = (1, 2, 4, 8)
    """One residual causal-conv block per entry, with that dilation."""
    lstm_hidden_size: int = 64
    """Hidden state size of the LSTM encoder."""
    lstm_num_layers: int = 1
    """Stacked LSTM layers."""
    dropout: float = 0.0
    """Encoder dropout, in ``[0, 1)``. 0 by default: SAC computes critic targets with the
    target network in eval mode, so dropout makes online and target critics disagree."""
    net_arch: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and critic MLP heads (SB3's SAC default)."""

    total_timesteps: int = 200_000
    """Environment steps to train for (early stopping may end sooner)."""
    learning_rate: float = 3e-4
    """Learning rate of the actor, critic and entropy-coefficient optimisers."""
    batch_size: int = 256
    """Transitions per gradient step (split into :attr:`gradient_accumulation_steps`)."""
    buffer_size: int = 100_000
    """Replay buffer capacity in transitions. SB3 stores observation and next observation
    uncompressed: with 64-bar windows of ~32 features that is ~16 KB per transition, so
    100k transitions take ~1.6 GB of RAM."""
    learning_starts: int = 1_000
    """Random-action steps collected before the first gradient step."""
    gamma: float = 0.99
    """Discount factor (a horizon of about 100 bars, four sessions)."""
    tau: float = 0.005
    """Polyak coefficient of the target critic update."""
    train_freq: int = 1
    """Environment steps between training phases."""
    gradient_steps: int = 1
    """Gradient steps per training phase."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per gradient step; must divide :attr:`batch_size`. Each micro-batch's
    loss is scaled by ``1/k`` and the gradients summed before one optimiser step, which is
    the same update as one full batch with ``k`` times less activation memory."""
    use_amp: bool = True
    """Mixed precision (autocast + GradScaler) when training on CUDA; ignored (plain FP32)
    on CPU, so the same config runs everywhere."""
    encoder_weight_decay: float = 0.0
    """Decoupled (AdamW) weight decay on the features-extractor parameters only; the actor
    and critic heads and the entropy coefficient are never decayed."""
    share_features_extractor: bool = False
    """One encoder for actor and critic instead of one each (half the encoder compute)."""
    shared_encoder_loss: SharedEncoderLoss = "critic"
    """With a shared encoder, the loss that trains it: ``critic`` (SAC-AE, Yarats et al.
    2019; DrQ, Kostrikov et al. 2020: the TD loss shapes the representation, the actor sees
    detached features) or ``actor`` (SB3's built-in behaviour, critic gradients blocked)."""

    eval_every_steps: int = 10_000
    """Environment steps between validation evaluations."""
    early_stop_window: int = 5
    """Evaluations in a row without a new best validation Sharpe before training stops."""
    early_stop_smoothing: int = 1
    """Evaluations averaged into the early-stopping criterion (mean of the last N validation
    Sharpes); > 1 stops one lucky evaluation on a short validation range from choosing the
    checkpoint (issue 9)."""
    early_stop_min_delta: float = 0.0
    """Improvement of the (smoothed) validation Sharpe, annualized, needed to count as a new
    best; >= 0. A fraction of the validation Sharpe's standard error is a sensible value."""
    checkpoint: CheckpointChoice = "best"
    """Which weights the job keeps: ``best`` (the best smoothed validation evaluation) or
    ``last`` (where training ended)."""
    input_jitter: float = 0.0
    """Augmentation (off at 0): std of Gaussian noise added to the normalized features of
    every training observation (never at validation or test)."""
    feature_dropout: float = 0.0
    """Augmentation (off at 0): probability that each feature column of a training
    observation is zeroed (its normalized mean), in [0, 1)."""
    resample_probability: float = 0.0
    """Augmentation (off at 0): probability that a training episode starts at a session
    drawn from a bootstrap resample of the fit sessions (drawn once per training run)
    instead of uniformly; in [0, 1]."""
    seed: int = 0
    """Seed of SB3 (torch, numpy, the env's ``np_random``)."""
    torch_threads: int = 1
    """CPU threads for torch (``torch.set_num_threads``); 0 keeps torch's default. 1 by
    default: these networks are small, and on a 2-core machine torch's intra-op threads
    made a 32x256 linear layer ~40x slower under load (benchmarks/README.md)."""
    device: str = "auto"
    """Torch device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:n]``."""
    tensorboard_log: str | None = "backend/models/sac/tensorboard"
    """TensorBoard log root (one sub-folder per run); ``None`` disables TensorBoard."""

    def __post_init__(self) -> None:
        for name in ("manual_hidden_dims", "net_arch", "cnn_dilations"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        modes = typing.get_args(EncoderMode)
        if self.encoder_mode not in modes:
            raise ValueError(
                f"TrainingSettings: encoder_mode must be one of {list(modes)}, "
                f"got {self.encoder_mode!r}"
            )
        losses = typing.get_args(SharedEncoderLoss)
        if self.shared_encoder_loss not in losses:
            raise ValueError(
                f"TrainingSettings: shared_encoder_loss must be one of {list(losses)}, "
                f"got {self.shared_encoder_loss!r}"
            )
        for name in (
            "sequence_length",
            "embedding_dim",
            "transformer_hidden_dim",
            "transformer_num_layers",
            "transformer_num_heads",
            "cnn_channels",
            "lstm_hidden_size",
            "lstm_num_layers",
            "total_timesteps",
            "batch_size",
            "buffer_size",
            "train_freq",
            "gradient_steps",
            "gradient_accumulation_steps",
            "eval_every_steps",
            "early_stop_window",
            "early_stop_smoothing",
        ):
            _positive_int(name, getattr(self, name))
        if self.checkpoint not in typing.get_args(CheckpointChoice):
            raise ValueError(
                f"TrainingSettings: checkpoint must be one of "
                f"{list(typing.get_args(CheckpointChoice))}, got {self.checkpoint!r}"
            )
        _number_in(
            "early_stop_min_delta",
            self.early_stop_min_delta,
            0.0,
            math.inf,
            low_open=False,
            high_open=True,
        )
        _number_in("input_jitter", self.input_jitter, 0.0, math.inf, low_open=False, high_open=True)
        _number_in(
            "feature_dropout", self.feature_dropout, 0.0, 1.0, low_open=False, high_open=True
        )
        _number_in(
            "resample_probability",
            self.resample_probability,
            0.0,
            1.0,
            low_open=False,
            high_open=False,
        )
        threads = self.torch_threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(
                f"TrainingSettings: torch_threads must be an int >= 0, got {threads!r}"
            )
        starts = self.learning_starts
        if isinstance(starts, bool) or not isinstance(starts, int) or starts < 0:
            raise ValueError(
                f"TrainingSettings: learning_starts must be an int >= 0, got {starts!r}"
            )
        for name in ("manual_hidden_dims", "net_arch", "cnn_dilations"):
            widths = getattr(self, name)
            if not isinstance(widths, tuple) or any(
                isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths
            ):
                raise ValueError(
                    f"TrainingSettings: {name} must be a tuple of positive integers, got {widths!r}"
                )
        if self.transformer_hidden_dim % self.transformer_num_heads != 0:
            raise ValueError(
                f"TrainingSettings: transformer_hidden_dim (width) {self.transformer_hidden_dim} "
                f"must be divisible by transformer_num_heads {self.transformer_num_heads}"
            )
        if self.batch_size % self.gradient_accumulation_steps != 0:
            raise ValueError(
                f"TrainingSettings: gradient_accumulation_steps {self.gradient_accumulation_steps} "
                f"must divide batch_size {self.batch_size} (equal micro-batches)"
            )
        _number_in("dropout", self.dropout, 0.0, 1.0, low_open=False, high_open=True)
        _number_in(
            "learning_rate", self.learning_rate, 0.0, math.inf, low_open=True, high_open=True
        )
        _number_in("gamma", self.gamma, 0.0, 1.0, low_open=False, high_open=False)
        _number_in("tau", self.tau, 0.0, 1.0, low_open=True, high_open=False)
        _number_in(
            "encoder_weight_decay",
            self.encoder_weight_decay,
            0.0,
            math.inf,
            low_open=False,
            high_open=True,
        )
        for name in ("use_amp", "share_features_extractor"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"TrainingSettings: {name} must be a bool, got {getattr(self, name)!r}"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainingSettings: seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(
                f"TrainingSettings: device must be a non-empty string, got {self.device!r}"
            )

    def encoder_config(self) -> EncoderConfigBase:
        """The encoder config of :attr:`encoder_mode`, built from these settings.

        ``transformer_*`` map onto :class:`TransformerConfig` (``d_model``, ``n_layers``,
        ``n_heads``); the feed-forward width is twice the model width, as at its defaults.
        """
        common: dict[str, Any] = {"embedding_dim": self.embedding_dim}
        if self.encoder_mode == "manual":
            return ManualEncoderConfig(hidden_dims=self.manual_hidden_dims, **common)
        if self.encoder_mode == "cnn":
            return CNNConfig(
                channels=self.cnn_channels,
                dilations=self.cnn_dilations,
                dropout=self.dropout,
                **common,
            )
        if self.encoder_mode == "lstm":
            return LSTMConfig(
                hidden_size=self.lstm_hidden_size,
                num_layers=self.lstm_num_layers,
                dropout=self.dropout,
                **common,
            )
        return TransformerConfig(
            d_model=self.transformer_hidden_dim,
            n_layers=self.transformer_num_layers,
            n_heads=self.transformer_num_heads,
            ff_dim=2 * self.transformer_hidden_dim,
            dropout=self.dropout,
            **common,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for YAML/JSON and run reports."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingSettings:
        """Build from a dict; unknown keys and wrongly typed values raise, naming the key."""
        return config_from_dict(cls, data)

    def save(self, path: str | Path) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (``.json``), chosen by extension."""
        return save_config(self, path)

    @classmethod
    def load(cls, path: str | Path) -> TrainingSettings:
        """Read a file written by :meth:`save` (or by hand)."""
        return load_config(cls, path)
