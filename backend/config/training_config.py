"""SAC training settings (the ``training`` section) and re-exports of the other sections.

The experiment schema is :class:`backend.config.experiment.ExperimentConfig`; its sections
live beside what they configure (features in ``data_download``, env and rewards in
``environments``, encoders in ``models.feature_extractors``). This module keeps the SAC
settings and re-exports the feature config for the modules that import it from here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from backend.data_download.feature_config import (
    FEATURE_GROUPS,
    FEATURE_PRESETS,
    REGULAR_SESSION_MINUTES,
    FeatureConfig,
)
from backend.models.pretrained import PretrainedUse
from backend.models.sac import SharedEncoderLoss
from backend.utils.config_model import (
    ConfigModel,
    NonNegFloat,
    NonNegInt,
    PosFloat,
    PosInt,
    StrictBool,
    StrictStr,
)

__all__ = [
    "CheckpointChoice",
    "FEATURE_GROUPS",
    "FEATURE_PRESETS",
    "REGULAR_SESSION_MINUTES",
    "FeatureConfig",
    "PretrainedEncoderSettings",
    "SharedEncoderLoss",
    "TrainingSettings",
]

CheckpointChoice = Literal["best", "last"]
"""Which weights a training run keeps (see :attr:`TrainingSettings.checkpoint`)."""


class PretrainedEncoderSettings(ConfigModel):
    """A supervised-lab trunk as the SAC encoder (issue 13): frozen or fine-tuned.

    The trunk comes from a bundle (``bundle``) or is pretrained per walk-forward window on
    that window's fit range only (``pretrain``, the main job's ``--pretrain``). A bundle
    whose encoder, feature names or order, window length, clip or normalizer differ from
    the job's, or whose fit / validation sessions overlap the window's validation or test
    range, is refused with every difference listed.
    """

    bundle: StrictStr | None = None
    """Folder of a supervised-lab bundle (``<lab run>/bundles/<mode>``); the main job's
    ``--pretrained-encoder``. None: no pretrained encoder (unless ``pretrain``)."""
    pretrain: StrictBool = False
    """Pretrain a trunk per window with the supervised lab on the window's fit range (split
    into an inner fit and validation part), then train SAC on it; the main job's
    ``--pretrain``. Exclusive with ``bundle``."""
    use: PretrainedUse = "frozen"
    """``frozen``: the trunk's weights stay fixed, its embeddings are computed once per
    dataset (batched, on the training device) and SAC trains on them, so a transformer
    costs about what ``manual`` costs; ``finetune``: SAC trains the trunk further with
    :attr:`learning_rate` and :attr:`weight_decay`."""
    learning_rate: PosFloat | None = None
    """Learning rate of the trunk when fine-tuned; None: the SAC ``learning_rate``."""
    weight_decay: NonNegFloat = 0.0
    """Decoupled (AdamW) weight decay of the trunk when fine-tuned (replaces
    ``encoder_weight_decay`` for it)."""
    pretrain_epochs: PosInt = 12
    """With ``pretrain``: upper bound on the lab's epochs (early-stopped on the inner
    validation part)."""
    pretrain_val_fraction: Annotated[float, Field(strict=True, gt=0.0, lt=0.5)] = 0.2
    """With ``pretrain``: share of the fit range's sessions held out (at its end) to
    early-stop the pretraining; the normalizer is the fit range's, as the RL job's."""

    @model_validator(mode="after")
    def _one_source(self) -> PretrainedEncoderSettings:
        if self.bundle is not None and self.pretrain:
            raise ValueError("give either bundle or pretrain, not both")
        return self

    @property
    def enabled(self) -> bool:
        """Whether a pretrained trunk is used."""
        return self.bundle is not None or self.pretrain


class TrainingSettings(ConfigModel):
    """How one SAC agent is trained: encoder, optimisation, evaluation and logging.

    The encoder is its own section (``encoder``, a registered encoder config), and so are
    the env (costs, episode length, window length) and the reward: this section is SAC.
    """

    net_arch: tuple[PosInt, ...] = (256, 256)
    """Hidden widths of the actor and critic MLP heads (SB3's SAC default)."""

    total_timesteps: PosInt = 200_000
    """Environment steps to train for (early stopping may end sooner)."""
    learning_rate: PosFloat = 3e-4
    """Learning rate of the actor, critic and entropy-coefficient optimisers."""
    batch_size: PosInt = 256
    """Transitions per gradient step (split into :attr:`gradient_accumulation_steps`)."""
    buffer_size: PosInt = 100_000
    """Replay buffer capacity in transitions. SB3 stores observation and next observation
    uncompressed: with 64-bar windows of ~32 features that is ~16 KB per transition, so
    100k transitions take ~1.6 GB of RAM."""
    learning_starts: NonNegInt = 1_000
    """Random-action steps collected before the first gradient step."""
    gamma: Annotated[float, Field(strict=True, ge=0.0, le=1.0)] = 0.99
    """Discount factor (a horizon of about 100 bars, four sessions)."""
    tau: Annotated[float, Field(strict=True, gt=0.0, le=1.0)] = 0.005
    """Polyak coefficient of the target critic update."""
    train_freq: PosInt = 1
    """Environment steps between training phases."""
    gradient_steps: PosInt = 1
    """Gradient steps per training phase, per env (multiplied by :attr:`n_envs`)."""
    n_envs: PosInt = 1
    """Training envs stepped together (``backend.training.vec_env.BatchedIntradayVecEnv``):
    one policy forward picks ``n_envs`` actions. ``total_timesteps``, ``learning_starts``
    and ``eval_every_steps`` stay counted in transitions, and a training phase comes every
    ``train_freq`` steps of all the envs with ``gradient_steps * n_envs`` updates, so the
    updates per transition are unchanged; each env starts its own episodes. The numbers
    are those of ``n_envs`` single envs for every reward (rewards without an array form run
    as one scalar object per env, slower). Does not combine with the augmentation options,
    which wrap one env."""
    gradient_accumulation_steps: PosInt = 1
    """Micro-batches per gradient step; must divide :attr:`batch_size`. Each micro-batch's
    loss is scaled by ``1/k`` and the gradients summed before one optimiser step, which is
    the same update as one full batch with ``k`` times less activation memory."""
    use_amp: StrictBool = True
    """Mixed precision (autocast + GradScaler) when training on CUDA; ignored (plain FP32)
    on CPU, so the same config runs everywhere."""
    encoder_weight_decay: NonNegFloat = 0.0
    """Decoupled (AdamW) weight decay on the features-extractor parameters only; the actor
    and critic heads and the entropy coefficient are never decayed."""
    share_features_extractor: StrictBool = False
    """One encoder for actor and critic instead of one each (half the encoder compute)."""
    shared_encoder_loss: SharedEncoderLoss = "critic"
    """With a shared encoder, the loss that trains it: ``critic`` (SAC-AE, Yarats et al.
    2019; DrQ, Kostrikov et al. 2020: the TD loss shapes the representation, the actor sees
    detached features) or ``actor`` (SB3's built-in behaviour, critic gradients blocked)."""

    eval_every_steps: PosInt = 10_000
    """Environment steps between validation evaluations."""
    early_stop_window: PosInt = 5
    """Evaluations in a row without a new best validation Sharpe before training stops."""
    early_stop_smoothing: PosInt = 1
    """Evaluations averaged into the early-stopping criterion (mean of the last N
    validation Sharpes); > 1 stops one lucky evaluation on a short validation range from
    choosing the checkpoint (issue 9)."""
    early_stop_min_delta: NonNegFloat = 0.0
    """Improvement of the (smoothed) annualized validation Sharpe needed to count as a new
    best; a fraction of the validation Sharpe's standard error (reported in each job's
    ``val_sharpe_se``) is a sensible value."""
    checkpoint: CheckpointChoice = "best"
    """Which weights a training run keeps: ``best`` (the best smoothed validation
    evaluation, restored at the end) or ``last`` (where training ended)."""
    input_jitter: NonNegFloat = 0.0
    """Augmentation (off at 0): std of Gaussian noise added to the normalized features of
    every training observation, never at validation or test
    (:mod:`backend.training.augmentation`)."""
    feature_dropout: Annotated[float, Field(strict=True, ge=0.0, lt=1.0)] = 0.0
    """Augmentation (off at 0): probability that each feature column of a training
    observation is zeroed (its normalized mean), in ``[0, 1)``."""
    resample_probability: Annotated[float, Field(strict=True, ge=0.0, le=1.0)] = 0.0
    """Augmentation (off at 0): probability that a training episode starts at a session
    drawn from one bootstrap resample of the fit sessions (drawn once per training run)
    instead of uniformly; in ``[0, 1]``."""
    seed: NonNegInt = 0
    """Seed of SB3 (torch, numpy, the env's ``np_random``); the main job's run seed, from
    which every (window, encoder) job derives its own (``walk_forward_runner.derive_seed``)."""
    torch_threads: NonNegInt = 1
    """CPU threads for torch (``torch.set_num_threads``); 0 keeps torch's default. 1 by
    default: these networks are small, and on a 2-core machine torch's intra-op threads
    made a 32x256 linear layer ~40x slower under load (benchmarks/README.md)."""
    device: Annotated[str, Field(strict=True, min_length=1)] = "auto"
    """Torch device: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:n]``."""
    tensorboard_log: StrictStr | None = "backend/models/sac/tensorboard"
    """TensorBoard log root (one sub-folder per run); ``None`` disables TensorBoard."""
    pretrained: PretrainedEncoderSettings = PretrainedEncoderSettings()
    """A supervised-lab trunk as the encoder, frozen or fine-tuned (off by default)."""

    @model_validator(mode="after")
    def _micro_batches_divide(self) -> TrainingSettings:
        if self.batch_size % self.gradient_accumulation_steps != 0:
            raise ValueError(
                f"gradient_accumulation_steps {self.gradient_accumulation_steps} "
                f"must divide batch_size {self.batch_size} (equal micro-batches)"
            )
        return self

    @model_validator(mode="after")
    def _batched_envs_without_augmentation(self) -> TrainingSettings:
        augmented = [
            name
            for name in ("input_jitter", "feature_dropout", "resample_probability")
            if getattr(self, name)
        ]
        if self.n_envs > 1 and augmented:
            raise ValueError(
                f"n_envs {self.n_envs} does not combine with augmentation ({', '.join(augmented)}):"
                " the augmentation wraps one env; set n_envs: 1 or turn the augmentation off"
            )
        return self
