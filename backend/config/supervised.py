"""Typed config of the supervised lab (``python -m backend.scripts.run_supervised``).

A sibling of the RL experiment schema: one pydantic model per section, ``extra="forbid"`` so
a misspelt key fails with its name, a docstring per field. Encoder options are the RL
encoders' own config fields (``backend.config.encoder_config``): a size preset picks them and
``encoders.<mode>`` overrides any of them, so a trained trunk is exactly an RL encoder.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.config.search_config import SearchConfig, check_space_paths

TaskName = Literal["direction", "volatility", "regime"]
ModelName = Literal["lstm", "cnn", "transformer"]
SizeName = Literal["tiny", "small", "medium", "large"]

SIZE_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # CPU tests and the default run: seconds per epoch on one core.
    "tiny": {
        "lstm": {"hidden_size": 16, "embedding_dim": 16, "account_dim": 4},
        "cnn": {"channels": 16, "dilations": [1, 2, 4], "embedding_dim": 16, "account_dim": 4},
        "transformer": {
            "d_model": 16,
            "n_heads": 2,
            "n_layers": 2,
            "ff_dim": 32,
            "temporal_decay": "learnable",
            "local_window": [8, None],
            "embedding_dim": 16,
            "account_dim": 4,
        },
    },
    "small": {
        "lstm": {"hidden_size": 32, "embedding_dim": 32, "account_dim": 4},
        "cnn": {"channels": 32, "dilations": [1, 2, 4, 8], "embedding_dim": 32, "account_dim": 4},
        "transformer": {
            "d_model": 32,
            "n_heads": 4,
            "n_layers": 2,
            "ff_dim": 64,
            "temporal_decay": "learnable",
            "local_window": [20, None],
            "embedding_dim": 32,
            "account_dim": 4,
        },
    },
    # The RL encoders' defaults (width 64).
    "medium": {
        "lstm": {"hidden_size": 64, "num_layers": 2, "dropout": 0.1},
        "cnn": {"channels": 64, "dropout": 0.1},
        "transformer": {
            "dropout": 0.1,
            "n_layers": 3,
            "temporal_decay": "learnable",
            "local_window": [20, 50, None],
        },
    },
    # The design documents' large models (GPU): width 128-256, windows 20 / 50 / global.
    "large": {
        "lstm": {"hidden_size": 256, "num_layers": 2, "dropout": 0.2, "embedding_dim": 128},
        "cnn": {
            "channels": 128,
            "dilations": [1, 2, 4, 8, 16],
            "dropout": 0.2,
            "embedding_dim": 128,
        },
        "transformer": {
            "d_model": 128,
            "n_heads": 8,
            "n_layers": 4,
            "ff_dim": 512,
            "dropout": 0.1,
            "temporal_decay": "learnable",
            "local_window": [20, 50, None, None],
            "embedding_dim": 128,
        },
    },
}
"""Encoder field values per size and model; ``encoders.<mode>`` in the config overrides them."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelSection(_Section):
    """How the targets are cut (``backend.supervised.labels``)."""

    horizon: int = Field(default=4, ge=1, le=26)
    """Bars after the decision bar the labels describe (4 = one hour)."""
    vol_window: int = Field(default=26, ge=2)
    """Bars of past returns in the volatility known at ``t`` (scales the sideways band)."""
    sideways_share: float = Field(default=1.0 / 3.0, gt=0.0, lt=1.0)
    """Share of fit-range direction labels inside the sideways band."""
    volatile_quantile: float = Field(default=2.0 / 3.0, gt=0.0, lt=1.0)
    """Fit-range quantile of future volatility above which the regime is ``volatile``."""


class WindowSection(_Section):
    """Walk-forward layout (``backend.training.walk_forward.WalkForwardConfig``)."""

    train_sessions: int = Field(default=120, ge=10)
    """Sessions of fit + gap + validation."""
    test_sessions: int = Field(default=20, ge=1)
    """Sessions of each out-of-sample test range."""
    val_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    """Share of the training range held out for early stopping, calibration and stacking."""
    max_windows: int | None = Field(default=2, ge=1)
    """Keep only the most recent windows; ``None`` keeps all."""


class TrainingSection(_Section):
    """Optimisation of the multi-task model (``backend.supervised.trainer``)."""

    epochs: int = Field(default=12, ge=1)
    """Upper bound on epochs; early stopping usually ends sooner."""
    batch_size: int = Field(default=128, ge=1)
    """Samples per micro-batch."""
    grad_accum_steps: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step (effective batch = batch_size x this)."""
    learning_rate: float = Field(default=2e-3, gt=0.0)
    """Peak AdamW learning rate, reached after the warm-up."""
    encoder_weight_decay: float = Field(default=1e-4, ge=0.0)
    """AdamW weight decay of the trunk (encoder) parameters."""
    head_weight_decay: float = Field(default=0.0, ge=0.0)
    """AdamW weight decay of the task heads."""
    warmup_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of optimizer steps with a linear warm-up; cosine decay to 0 after it."""
    patience: int = Field(default=3, ge=1)
    """Epochs without a lower validation loss before stopping (best weights restored)."""
    loss: Literal["ce", "focal"] = "ce"
    """Classification loss: cross-entropy or focal loss (Lin et al. 2017)."""
    focal_gamma: float = Field(default=2.0, ge=0.0)
    """Focusing parameter of the focal loss."""
    class_weights: bool = True
    """Weight classes by inverse fit-range frequency (against imbalance)."""
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Cross-entropy label smoothing (0 = off)."""
    head_dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout before the task heads; also what Monte Carlo dropout samples."""
    intensity_weight: float = Field(default=0.5, ge=0.0)
    """Weight of the volatility-intensity regression (MSE) in the total loss."""
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU, where it would only be slower)."""
    device: str = "cpu"
    """Torch device (``cpu``, ``cuda``, ``auto``)."""
    torch_threads: int = Field(default=1, ge=1)
    """Intra-op CPU threads (the CI box has 2 cores shared by everything)."""
    tensorboard: bool = True
    """Write losses per epoch under ``<output>/tensorboard``."""


class ConfidenceSection(_Section):
    """Confidence estimates and calibration metrics (``backend.supervised.confidence``)."""

    mc_passes: int = Field(default=10, ge=2)
    """Monte Carlo dropout passes (predictive entropy and variance)."""
    ece_bins: int = Field(default=15, ge=2)
    """Equal-width confidence bins of the expected calibration error."""


class BaselineSection(_Section):
    """The sklearn baselines on the manual (flat) features."""

    hgb_max_iter: int = Field(default=50, ge=1)
    """Boosting iterations of ``HistGradientBoostingClassifier``."""
    hgb_learning_rate: float = Field(default=0.05, gt=0.0)
    """Learning rate of the gradient-boosted baseline."""
    logreg_c: float = Field(default=1.0, gt=0.0)
    """Inverse L2 strength of the logistic regression."""


class SupervisedConfig(_Section):
    """One supervised-lab run: tasks, models, windows, training, confidence, baselines."""

    tasks: tuple[TaskName, ...] = ("direction", "volatility", "regime")
    """Tasks to train and report (one head each; volatility adds the intensity output)."""
    models: tuple[ModelName, ...] = ("lstm", "cnn", "transformer")
    """Encoders used as trunks (the RL agent's classes)."""
    ensemble: bool = True
    """Also build the average, validation-weighted and stacked ensembles of the models."""
    size: SizeName = "tiny"
    """Encoder size preset (``SIZE_PRESETS``): tiny for CPU, large for a GPU."""
    sequence_length: int = Field(default=16, ge=2)
    """``T``: bars per observation window (the env's ``sequence_length``)."""
    feature_clip: float = Field(default=10.0, gt=0.0)
    """Clip of normalized features, as the env's ``feature_clip``."""
    latency_repeats: int = Field(default=200, ge=10)
    """Single-observation predictions timed per model (p50 / p99)."""
    latency_budget_ms: float = Field(default=100.0, gt=0.0)
    """Latency budget of one prediction (the design documents' 100 ms)."""
    encoders: dict[ModelName, dict[str, Any]] = Field(default_factory=dict)
    """Per model, encoder config fields over the size preset (``TransformerConfig`` etc.),
    e.g. ``{cnn: {kernel_sizes: [3, 5, 7]}}`` for the multi-scale CNN."""
    instrument_embedding: bool = True
    """When several symbols are pooled into one model (``--symbols SPY,QQQ``), give the
    trunk each bar's symbol id through a learned instrument embedding (the encoder fields
    ``instruments`` / ``instrument_dim``; saved with the encoder config in the bundle).
    A single symbol never gets one."""
    labels: LabelSection = LabelSection()
    """Label definitions."""
    walk_forward: WindowSection = WindowSection()
    """Window layout."""
    training: TrainingSection = TrainingSection()
    """Optimisation."""
    confidence: ConfidenceSection = ConfidenceSection()
    """Confidence estimation."""
    baselines: BaselineSection = BaselineSection()
    """Baseline models."""
    search: SearchConfig = SearchConfig()
    """Hyperparameter search space over this config's paths (``python -m
    backend.scripts.tune --track supervised``); the objective is the first model's mean
    validation accuracy of ``direction`` on inner windows before the first test range."""

    @model_validator(mode="after")
    def _check(self) -> SupervisedConfig:
        check_space_paths(self, self.search.space)
        if not self.tasks:
            raise ValueError("tasks: give at least one task")
        if not self.models:
            raise ValueError("models: give at least one model")
        if len(set(self.tasks)) != len(self.tasks) or len(set(self.models)) != len(self.models):
            raise ValueError("tasks/models: names must not repeat")
        if "direction" not in self.tasks:
            raise ValueError("tasks: 'direction' is required (the trading view uses it)")
        return self

    def encoder_fields(self, model: str) -> dict[str, Any]:
        """Encoder config fields of ``model``: size preset, then ``encoders.<model>``."""
        overrides = {str(k): v for k, v in self.encoders.items()}.get(model, {})
        return {**SIZE_PRESETS[self.size][model], **overrides}


SHORT = SupervisedConfig()
"""``--mode short``: the default run, minutes on 2 CPU cores."""
LONG = SupervisedConfig(
    size="medium",
    sequence_length=64,
    walk_forward=WindowSection(train_sessions=250, test_sessions=20, max_windows=None),
    training=TrainingSection(epochs=40, patience=5, learning_rate=1e-3),
    confidence=ConfidenceSection(mc_passes=30),
    baselines=BaselineSection(hgb_max_iter=300),
)
"""``--mode long``: every window, RL-default encoder widths, T=64."""
MODES: dict[str, SupervisedConfig] = {"short": SHORT, "long": LONG}
