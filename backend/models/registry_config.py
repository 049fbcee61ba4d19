"""The ``registry`` section of the experiment schema: registry root and promotion gates.

Where the model registry lives, and the gates a model must pass before the live trader may
load it.

It lives beside the registry (``backend/models/registry.py``), which reads it from any
experiment YAML with this model alone (the schema in ``backend.config`` sits above the
models layer and imports it from here).

Two tracks, each with its own gates because their evidence differs:

* ``rl``: SAC bundles of the main job; the evidence is the run's ``metrics.json`` ``tests``
  (paired stationary-bootstrap tests of the pooled walk-forward test sessions, Holm-adjusted
  over the run's family) and each job's ``result.json`` (predict latency).
* ``supervised``: lab bundles; the evidence is the lab's ``metrics.json`` (per-task tests
  against the best baseline chosen on validation, Holm-adjusted; calibration ECE; latency).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from backend.utils.config_model import ConfigModel, PosFloat, StrictBool, StrictStr

__all__ = [
    "RL_BASELINES",
    "RLGates",
    "RegistryConfig",
    "SupervisedGates",
    "TRACKS",
]

TRACKS: tuple[str, ...] = ("rl", "supervised")
"""The two kinds of bundle the registry holds."""

RL_BASELINES: tuple[str, ...] = ("flat", "buy_and_hold")
"""Baselines the main job tests every encoder against (``session_inference.build_pairs``)."""

_Alpha = Annotated[float, Field(strict=True, gt=0.0, lt=1.0)]
_NonNegFloat = Annotated[float, Field(strict=True, ge=0.0, allow_inf_nan=False)]


class RLGates(ConfigModel):
    """Promotion gates of an RL (SAC) bundle, read from its walk-forward run's evidence."""

    must_beat: tuple[Literal["flat", "buy_and_hold"], ...] = ("flat", "buy_and_hold")
    """Baselines the model's mode must beat on the pooled test sessions: estimate > 0 and
    Holm-adjusted p < ``alpha`` in the run's ``tests`` (empty: no such gate)."""
    metric: Literal["sharpe", "mean_return"] = "sharpe"
    """The tested statistic: annualized Sharpe of session returns, or mean session return."""
    alpha: _Alpha = 0.05
    """Holm-adjusted p-value a beat must stay below (the run's family-wise level)."""
    max_p99_latency_ms: PosFloat | None = 100.0
    """Largest 99th-percentile ``predict`` latency on the test range, ms (``null``: off)."""
    max_size_mb: PosFloat | None = 50.0
    """Largest bundle size on disk, MB (10^6 bytes; ``null``: off)."""
    no_test_overlap: StrictBool = True
    """Refuse a bundle whose training data (fit, validation, any pretraining range) overlap
    a test range it is judged on, or evidence whose windows train on their own test."""

    @field_validator("must_beat")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"must_beat has duplicates: {list(value)}")
        return value


class SupervisedGates(ConfigModel):
    """Promotion gates of a supervised lab bundle, read from the lab run's evidence."""

    task: StrictStr = "direction"
    """The task whose forecasts are judged (``direction`` is always trained)."""
    beat_best_baseline: StrictBool = True
    """Require a per-session accuracy gain over the best baseline (chosen on validation)
    with Holm-adjusted p < ``alpha``."""
    alpha: _Alpha = 0.05
    """Holm-adjusted p-value the gain must stay below."""
    max_ece: _NonNegFloat | None = 0.05
    """Largest expected calibration error of the calibrated test forecasts (``null``: off)."""
    max_p99_latency_ms: PosFloat | None = 100.0
    """Largest 99th-percentile forward latency, ms (``null``: off)."""
    max_size_mb: PosFloat | None = 50.0
    """Largest bundle size on disk, MB (10^6 bytes; ``null``: off)."""
    no_test_overlap: StrictBool = True
    """Refuse a bundle whose fit/validation ranges overlap a test range it is judged on."""


class RegistryConfig(ConfigModel):
    """Where the model registry lives and what a promotion must prove."""

    root: StrictStr = "models"
    """Registry folder: ``registry.json`` (versions, promoted pointers), ``events.jsonl``
    (append-only log of registrations, promotions, refusals, rollbacks) and ``bundles/``
    (a copy of every registered bundle). Relative paths are from the working directory;
    the default ``models/`` is git-ignored."""
    rl: RLGates = RLGates()
    """Gates of SAC bundles."""
    supervised: SupervisedGates = SupervisedGates()
    """Gates of supervised lab bundles."""

    @field_validator("root")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("root: expected a folder path, got an empty string")
        return value
