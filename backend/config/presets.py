"""Run presets: named, registered partial experiment configs (``--mode`` / ``preset:``).

A preset is a partial :class:`~backend.config.experiment.ExperimentConfig` dict; resolving
an experiment deep-merges, lowest first: the schema defaults, the preset, the config file,
the command-line flags (:func:`backend.config.experiment.resolve_experiment`). Register a
new one with :func:`register_preset`; ``--mode`` choices come from :data:`PRESETS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "PRESETS",
    "RunPreset",
    "get_preset",
    "get_sac_intraday_dsr_preset",
    "preset_names",
    "register_preset",
]


@dataclass(frozen=True)
class RunPreset:
    """A named run budget: the experiment fields it sets, and one line for ``--help``."""

    name: str
    """Registry key (``--mode NAME``, ``preset: NAME``)."""
    description: str
    """One line for ``--help`` and the report."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Partial experiment dict (sections of fields) merged over the schema defaults."""


PRESETS: dict[str, RunPreset] = {}
"""Preset name to preset; filled by :func:`register_preset`."""


def register_preset(preset: RunPreset) -> RunPreset:
    """Add ``preset`` to :data:`PRESETS` and return it.

    Raises:
        ValueError: if the name is taken.
    """
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is registered twice")
    PRESETS[preset.name] = preset
    return preset


def preset_names() -> tuple[str, ...]:
    """Registered preset names, in registration order."""
    return tuple(PRESETS)


def get_preset(name: str) -> RunPreset:
    """The preset called ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {list(PRESETS)}") from None


SHORT = register_preset(
    RunPreset(
        name="short",
        description="1 window tiling the range (test = all after 150 training sessions), "
        "tiny shared encoders (T=16, width 16), 10k steps: minutes on 2 CPU cores",
        overrides=MappingProxyType(
            {
                # One window whose test range is everything after the first 150 training
                # sessions (~340 sessions of the default data: a Sharpe standard error of
                # ~0.9 instead of ~5 for 10 sessions), 30 of them held out for validation
                # (SE ~2.9). Speed from fewer, longer windows, never from dropping history.
                "walk_forward": {"train_sessions": 150, "val_fraction": 0.2, "windows": 1},
                # Small encoders so that a sequence mode trains at tens of steps per second
                # on one CPU thread (benchmarks/README.md: T=64, width 64 costs 0.14-0.78 s
                # per SAC step).
                "env": {"sequence_length": 16},
                "encoder": {"size": "tiny"},
                "training": {
                    "net_arch": [64, 64],
                    # One critic-trained encoder for actor and critic: 1.6-2.1x faster
                    # (benchmarks/README.md).
                    "share_features_extractor": True,
                    "shared_encoder_loss": "critic",
                    "total_timesteps": 10_000,
                    "learning_starts": 500,
                    "learning_rate": 1e-3,
                    "batch_size": 64,
                    "buffer_size": 10_000,
                    "train_freq": 2,
                    "eval_every_steps": 1_000,
                    "early_stop_window": 4,
                    # Mean of the last 2 validation Sharpes: one lucky evaluation on a
                    # 30-session holdout does not pick the checkpoint (issue 9).
                    "early_stop_smoothing": 2,
                    # TensorBoard stays on (the TrainingSettings default): the runner writes
                    # it under <output>/tensorboard; its cost is measured by
                    # benchmarks/bench_tensorboard.py.
                },
            }
        ),
    )
)

LONG = register_preset(
    RunPreset(
        name="long",
        description="every window, a year of training and monthly tests, schema defaults "
        "(T=64, width 64, 200k steps): GPU-only in practice (a CPU transformer update ~0.6 s)",
        overrides=MappingProxyType(
            {"walk_forward": {"train_sessions": 250, "test_sessions": 20}},
        ),
    )
)

PRODUCTION = register_preset(
    RunPreset(
        name="production",
        description="the agent to deploy: the long budget with the manual encoder only "
        "(the roadmap keeps manual until a transformer beats it out of sample)",
        overrides=MappingProxyType(
            {
                "walk_forward": {"train_sessions": 250, "test_sessions": 20},
                "modes": ["manual"],
                "encoder": {"name": "manual"},
            }
        ),
    )
)


def get_sac_intraday_dsr_preset() -> RunPreset:
    """The production preset of the SAC + DSR intraday agent (roadmap, Phase 6 gate).

    Changing the deployed encoder is changing this preset's ``encoder``/``modes`` after an
    out-of-sample comparison says so.
    """
    return PRODUCTION
