"""TensorBoard is on by default: every preset logs, and a run leaves the tags people read."""

from __future__ import annotations

from pathlib import Path

import pytest
from walk_forward_support import main_job_argv

from backend.config.experiment import resolve_experiment
from backend.config.presets import preset_names
from backend.scripts import run_walk_forward as cli

REQUIRED_TAGS = {
    "train/actor_loss": "SAC actor loss",
    "train/critic_loss": "SAC critic loss",
    "train/ent_coef": "entropy coefficient",
    "train/ent_coef_loss": "entropy coefficient loss",
    "trading/mean_step_reward": "mean DSR per step",
    "eval/val_sharpe": "validation Sharpe",
    "train/encoder_grad_norm_critic": "encoder gradient norm",
}


def _scalar_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for events in run_dir.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags.update(acc.Tags()["scalars"])
    return tags


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_logs_to_tensorboard(preset):
    experiment = resolve_experiment(preset)
    for mode in ("manual", "transformer"):
        settings = experiment.for_mode(mode).training
        assert settings.tensorboard_log is not None, f"{preset}/{mode} has TensorBoard off"


def test_run_leaves_event_files_with_losses_dsr_sharpe_grad_norms_attention(
    walk_forward_workspace, capsys
):
    root = walk_forward_workspace
    out = root / "tb_run"
    code = cli.main(main_job_argv(root, out, modes="manual,transformer"))
    printed = capsys.readouterr().out
    assert code == 0
    assert f"tensorboard: tensorboard --logdir {out / 'tensorboard'}" in printed
    runs = sorted(p for p in (out / "tensorboard").iterdir() if p.is_dir())
    names = [p.name for p in runs]
    # one TensorBoard run per (window, mode, symbol), all under the run's output root
    assert any(n.startswith("w00_manual_SPY") for n in names), names
    assert any(n.startswith("w01_transformer_SPY") for n in names), names
    for run_dir in runs:
        tags = _scalar_tags(run_dir)
        missing = {t: why for t, why in REQUIRED_TAGS.items() if t not in tags}
        assert not missing, f"{run_dir.name} lacks {missing}"
        if "_transformer_" in run_dir.name:
            assert "encoder/attention_entropy" in tags, run_dir.name
