"""End to end through ``train_on_range``: a tiny SAC run on a small synthetic market."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from backend.config.env_config import EnvConfig
from backend.config.training_config import FeatureConfig, TrainingSettings
from backend.data_download.dataset import SymbolDataset
from backend.data_download.loader import join_vix_asof
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)
from backend.models.sac import YoopSAC
from backend.training.train import (
    TRAINING_ENV_DEFAULTS,
    load_run_file,
    resolve_env_config,
    split_sessions,
    train_on_range,
)

th.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset() -> SymbolDataset:
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=24, seed=7)
    )
    market = join_vix_asof(frames["SPY"], frames["VIX"])
    return SymbolDataset.from_market("SPY", market, FeatureConfig())


def _spans(dataset: SymbolDataset) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    return split_sessions(dataset.sessions, val_fraction=0.15, gap_sessions=1)


def _settings(tmp_path: Path, mode: str, **overrides: Any) -> TrainingSettings:
    values: dict[str, Any] = {
        "encoder_mode": mode,
        "sequence_length": 8,
        "embedding_dim": 8,
        "manual_hidden_dims": (16,),
        "transformer_hidden_dim": 8,
        "transformer_num_layers": 1,
        "transformer_num_heads": 2,
        "net_arch": (16,),
        "total_timesteps": 240,
        "batch_size": 16,
        "gradient_accumulation_steps": 2,
        "buffer_size": 1_000,
        "learning_starts": 40,
        "eval_every_steps": 80,
        "early_stop_window": 10,
        "device": "cpu",
        "seed": 3,
        "tensorboard_log": str(tmp_path / "tb"),
    }
    values.update(overrides)
    return TrainingSettings(**values)


ENV = dataclasses.replace(TRAINING_ENV_DEFAULTS, episode_sessions=2)


@pytest.mark.parametrize("mode", ["manual", "transformer"])
def test_tiny_training_run_logs_and_restores_best(
    dataset: SymbolDataset, tmp_path: Path, mode: str
) -> None:
    fit, val = _spans(dataset)
    result = train_on_range(
        dataset, fit, val, _settings(tmp_path, mode), ENV, attention_probe_every=50
    )
    m = result.metrics
    assert m["steps_done"] == 240
    assert m["n_evaluations"] == 3
    assert not m["stopped_early"]
    assert m["restored_best"]
    assert np.isfinite(m["best_val_sharpe"])
    assert m["best_val_sharpe"] == max(s for _, s in result.val_history)
    assert m["train_time_s"] > 0
    assert result.env_config.use_sequence_encoder == (mode == "transformer")
    assert result.normalizer.is_fitted
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events, "TensorBoard event files must be written"
    tags = _scalar_tags(events)
    assert {"eval/val_sharpe", "train/critic_loss", "train/encoder_grad_norm_actor"} <= tags
    assert "trading/final_equity" in tags
    if mode == "transformer":
        assert "encoder/attention_entropy" in tags


def _scalar_tags(events: list[Path]) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: set[str] = set()
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


class _LastWeights(BaseCallback):
    """Snapshot of the policy after every step, i.e. the weights before any restore."""

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[str, th.Tensor] = {}

    def _on_step(self) -> bool:
        self.state = {k: v.clone() for k, v in self.model.policy.state_dict().items()}
        return True


def test_early_stopping_triggers_and_best_weights_are_restored(
    dataset: SymbolDataset, tmp_path: Path
) -> None:
    fit, val = _spans(dataset)
    settings = _settings(
        tmp_path,
        "manual",
        learning_starts=10,
        eval_every_steps=30,
        early_stop_window=1,
        total_timesteps=2_000,
    )
    best_path = tmp_path / "best.zip"
    last = _LastWeights()
    result = train_on_range(
        dataset, fit, val, settings, ENV, best_model_path=best_path, callbacks=[last]
    )
    m = result.metrics
    assert m["stopped_early"]
    assert m["steps_done"] < 2_000
    # With a window of 1 training stops at the first evaluation that is no new best.
    history = [s for _, s in result.val_history]
    assert len(history) >= 2
    assert history[-1] <= max(history[:-1])
    assert m["best_val_sharpe"] == max(history)
    assert m["restored_best"]
    restored = result.model.policy.state_dict()
    # Training went on after the best evaluation, so the restore really changed weights...
    assert any(not th.equal(last.state[k], restored[k]) for k in restored)
    # ...to exactly the best model's, as saved at that evaluation.
    best = YoopSAC.load(best_path, device="cpu")
    for key, value in best.policy.state_dict().items():
        assert th.equal(value, restored[key]), key


def test_seeded_runs_give_identical_parameters(dataset: SymbolDataset, tmp_path: Path) -> None:
    fit, val = _spans(dataset)
    settings = _settings(tmp_path, "manual", total_timesteps=160, tensorboard_log=None)
    a = train_on_range(dataset, fit, val, settings, ENV).model.policy.state_dict()
    b = train_on_range(dataset, fit, val, settings, ENV).model.policy.state_dict()
    for key in a:
        assert th.equal(a[key], b[key]), key


def test_env_layout_follows_the_encoder(tmp_path: Path) -> None:
    cfg = resolve_env_config(_settings(tmp_path, "lstm", sequence_length=12), None)
    assert cfg.use_sequence_encoder and cfg.sequence_length == 12
    assert cfg.episode_sessions == TRAINING_ENV_DEFAULTS.episode_sessions
    flat = resolve_env_config(_settings(tmp_path, "manual"), EnvConfig(use_sequence_encoder=True))
    assert not flat.use_sequence_encoder


def test_run_file_sections_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  encoder_mode: cnn\n  batch_size: 32\nenv:\n  dsr_eta: 0.1\n")
    settings, env, features = load_run_file(path)
    assert settings.encoder_mode == "cnn" and settings.batch_size == 32
    assert env.dsr_eta == pytest.approx(0.1)
    assert env.episode_sessions == TRAINING_ENV_DEFAULTS.episode_sessions
    assert features == FeatureConfig.for_agent("SAC_INTRADAY_DSR")
    path.write_text("trainng: {}\n")
    with pytest.raises(ValueError, match="unknown section"):
        load_run_file(path)
    path.write_text("training:\n  transformer_hidden_dim: 30\n")
    with pytest.raises(ValueError, match="divisible by transformer_num_heads"):
        load_run_file(path)


def test_settings_round_trip(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "transformer")
    for name in ("s.yaml", "s.json"):
        assert TrainingSettings.load(settings.save(tmp_path / name)) == settings
    config = settings.encoder_config()
    assert (config.d_model, config.n_heads, config.n_layers) == (8, 2, 1)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="must divide batch_size"):
        _settings(tmp_path, "manual", gradient_accumulation_steps=3)


def test_fit_and_val_must_be_ordered(dataset: SymbolDataset, tmp_path: Path) -> None:
    fit, val = _spans(dataset)
    with pytest.raises(ValueError, match="fit_last < val_first"):
        train_on_range(dataset, val, fit, _settings(tmp_path, "manual"), ENV)
    assert isinstance(fit[0], pd.Timestamp)


def test_cli_trains_and_saves(tmp_path: Path) -> None:
    from backend.data_download.synthetic_market import write_synthetic_market
    from backend.training.train import main

    data_dir = tmp_path / "data"
    write_synthetic_market(
        data_dir, SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=24, seed=7)
    )
    settings = _settings(tmp_path, "manual", total_timesteps=120, eval_every_steps=60)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump({"training": settings.to_dict(), "env": {"episode_sessions": 2}})
    )
    out = tmp_path / "out"
    argv = ["--config", str(config), "--data-dir", str(data_dir), "--output", str(out)]
    assert main([*argv, "--no-progress", "--val-fraction", "0.15"]) == 0
    (run_dir,) = out.iterdir()
    names = {p.name for p in run_dir.iterdir()}
    assert {"model.zip", "config.yaml", "metrics.json", "training_settings.json"} <= names
    assert any(n.startswith("normalizer_SPY") for n in names)
    model = YoopSAC.load(run_dir / "model.zip", device="cpu")
    assert model.num_timesteps == 120
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    # the bundle's own config.yaml (with its derived 'encoder' section) trains again as is
    again, again_env, again_features = load_run_file(run_dir / "config.yaml")
    assert again == settings
    assert again_env.episode_sessions == 2
    edited = yaml.safe_load((run_dir / "config.yaml").read_text())
    edited["encoder"]["config"]["embedding_dim"] += 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(edited))
    with pytest.raises(ValueError, match="'encoder' section .* disagrees"):
        load_run_file(bad)
