"""End to end through ``train_on_range``: a tiny SAC run on a small synthetic market."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from backend.config.experiment import (
    TRAINING_ENV_DEFAULTS,
    ExperimentConfig,
    load_experiment,
    resolve_experiment,
)
from backend.data_download.dataset import SymbolDataset
from backend.data_download.feature_config import FeatureConfig
from backend.data_download.loader import join_vix_asof
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)
from backend.environments.intraday_env import IntradayTradingEnv
from backend.models.sac import YoopSAC
from backend.training.train import build_model, split_sessions, train_on_range
from backend.utils.config_model import ConfigError

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


ENCODERS: dict[str, dict[str, Any]] = {
    "manual": {"embedding_dim": 8, "hidden_dims": [16]},
    "transformer": {"embedding_dim": 8, "d_model": 8, "n_layers": 1, "n_heads": 2},
    "lstm": {"embedding_dim": 8},
    "cnn": {"embedding_dim": 8},
}


def _training(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "net_arch": [16],
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
    return values


def _config(tmp_path: Path, mode: str, **training: Any) -> ExperimentConfig:
    return resolve_experiment(
        overrides={
            "env": {"sequence_length": 8, "episode_sessions": 2},
            "encoder": {"name": mode, **ENCODERS[mode]},
            "training": _training(tmp_path, **training),
        }
    )


@pytest.mark.parametrize("mode", ["manual", "transformer"])
def test_tiny_training_run_logs_and_restores_best(
    dataset: SymbolDataset, tmp_path: Path, mode: str
) -> None:
    fit, val = _spans(dataset)
    result = train_on_range(dataset, fit, val, _config(tmp_path, mode), attention_probe_every=50)
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
    config = _config(
        tmp_path,
        "manual",
        learning_starts=10,
        eval_every_steps=30,
        early_stop_window=1,
        total_timesteps=2_000,
    )
    best_path = tmp_path / "best.zip"
    last = _LastWeights()
    result = train_on_range(dataset, fit, val, config, best_model_path=best_path, callbacks=[last])
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
    config = _config(tmp_path, "manual", total_timesteps=160, tensorboard_log=None)
    a = train_on_range(dataset, fit, val, config).model.policy.state_dict()
    b = train_on_range(dataset, fit, val, config).model.policy.state_dict()
    for key in a:
        assert th.equal(a[key], b[key]), key


def test_batched_envs_train_with_the_same_budget_and_are_seeded(
    dataset: SymbolDataset, tmp_path: Path
) -> None:
    """n_envs > 1: same transitions, evaluation steps and updates per transition; repeatable."""
    fit, val = _spans(dataset)
    # 50 is no multiple of 4: evaluations come at the first step of 4 envs past each 50.
    common = {"eval_every_steps": 50, "tensorboard_log": None}
    single = train_on_range(dataset, fit, val, _config(tmp_path, "manual", **common))
    config = _config(tmp_path, "manual", n_envs=4, **common)
    result = train_on_range(dataset, fit, val, config)
    m = result.metrics
    assert m["steps_done"] == single.metrics["steps_done"] == 240
    assert [s for s, _ in single.val_history] == [50, 100, 150, 200]
    assert [s for s, _ in result.val_history] == [52, 100, 152, 200]
    model = result.model
    assert model.env is not None and model.env.num_envs == 4
    assert model.gradient_steps == 4  # one update per transition, as with one env
    assert model.replay_buffer.n_envs == 4  # type: ignore[union-attr]
    assert model.replay_buffer.size() == 240 // 4  # type: ignore[union-attr]
    # Updates after learning_starts (40) transitions: 200 either way.
    assert model._n_updates == single.model._n_updates == 200
    again = train_on_range(dataset, fit, val, config).model.policy.state_dict()
    for key, value in model.policy.state_dict().items():
        assert th.equal(value, again[key]), key
    assert any(
        not th.equal(value, single.model.policy.state_dict()[key])
        for key, value in model.policy.state_dict().items()
    ), "four envs see other episodes than one"


def test_n_envs_is_a_validated_training_option() -> None:
    with pytest.raises(ConfigError, match=r"training\.n_envs: Input should be greater than"):
        resolve_experiment(overrides={"training": {"n_envs": 0}})
    config = resolve_experiment(overrides={"training": {"n_envs": 4}})
    assert "  n_envs: 4\n" in config.to_yaml()  # what --print-config shows
    with pytest.raises(ConfigError, match=r"n_envs 4 does not combine with augmentation"):
        resolve_experiment(overrides={"training": {"n_envs": 4, "input_jitter": 0.1}})


def test_env_layout_follows_the_encoder(tmp_path: Path) -> None:
    cfg = resolve_experiment(
        overrides={"encoder": {"name": "lstm"}, "env": {"sequence_length": 12}}
    ).env
    assert cfg.use_sequence_encoder and cfg.sequence_length == 12
    assert cfg.episode_sessions == TRAINING_ENV_DEFAULTS.episode_sessions
    assert not resolve_experiment(
        overrides={"encoder": {"name": "manual"}}
    ).env.use_sequence_encoder
    # A layout that contradicts the encoder is refused, not silently overridden.
    with pytest.raises(ConfigError, match=r"env\.use_sequence_encoder=True disagrees"):
        resolve_experiment(
            overrides={"encoder": {"name": "manual"}, "env": {"use_sequence_encoder": True}}
        )


def test_run_file_sections_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "encoder:\n  name: cnn\n  kernel_size: 5\ntraining:\n  batch_size: 32\n"
        "reward:\n  eta: 0.1\n"
    )
    config = load_experiment(path)
    assert config.encoder.name == "cnn" and config.encoder.kernel_size == 5  # type: ignore[union-attr]
    assert config.training.batch_size == 32
    assert config.reward.eta == pytest.approx(0.1)  # type: ignore[union-attr]
    assert config.reward.warmup_steps == 20  # type: ignore[union-attr]  # training default kept
    assert config.env.episode_sessions == TRAINING_ENV_DEFAULTS.episode_sessions
    assert config.features == FeatureConfig.for_agent("SAC_INTRADAY_DSR")
    path.write_text("trainng: {}\n")
    with pytest.raises(
        ConfigError, match=r"run\.yaml: trainng: unknown key \(did you mean 'training'"
    ):
        load_experiment(path)
    path.write_text("encoder:\n  d_model: 30\n")
    with pytest.raises(
        ConfigError, match=r"encoder: d_model \(width\) 30 must be divisible by n_heads"
    ):
        load_experiment(path)
    path.write_text("encoder:\n  name: transformer\n  local_window: [20, zero]\n")
    with pytest.raises(
        ConfigError, match=r"encoder\.local_window\[1\]: Input should be a valid integer"
    ):
        load_experiment(path)
    path.write_text("reward:\n  name: sharpe\n")
    names = r"'dsr', 'ddr', 'log_return', 'cost_penalized'"
    with pytest.raises(ConfigError, match=rf"reward: .*{names}"):
        load_experiment(path)


def test_config_round_trip(tmp_path: Path) -> None:
    config = _config(tmp_path, "transformer")
    for name in ("s.yaml", "s.json"):
        assert ExperimentConfig.load(config.save(tmp_path / name)) == config
    assert load_experiment(tmp_path / "s.yaml") == config
    encoder = config.encoder
    assert (encoder.d_model, encoder.n_heads, encoder.n_layers) == (8, 2, 1)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="must divide batch_size"):
        _config(tmp_path, "manual", gradient_accumulation_steps=3)


TRANSFORMER_YAML = """
encoder:
  name: transformer
  temporal_decay: learnable
  local_window: [20, null]
  positional_encoding: learned
env:
  sequence_length: 24
"""


def test_encoder_section_changes_the_extractor_that_trains(
    dataset: SymbolDataset, tmp_path: Path
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(TRANSFORMER_YAML)
    config = load_experiment(path)
    normalizer = dataset.fit_normalizer(dataset.sessions[0], dataset.sessions[10])
    env = IntradayTradingEnv(dataset.arrays(normalizer), config.env, reward=config.reward)
    model = build_model(env, config, tensorboard_log=None)
    for extractor in (
        model.policy.actor.features_extractor,
        model.policy.critic.features_extractor,
    ):
        body = extractor.transformer
        assert body.decay == "learnable" and isinstance(body.decay_raw, th.nn.Parameter)
        assert body.position_kind == "learned"
        assert isinstance(body.positional, th.nn.Parameter) and body.positional.shape[0] == 24
        local, global_ = body.allowed[0], body.allowed[1]  # (T, T) each
        assert not bool(local[23, 0]) and bool(local[23, 4]) and not bool(local[23, 3])
        assert bool(global_.all())  # layer 0 sees 20 bars, layer 1 the whole window
    default = build_model(
        IntradayTradingEnv(dataset.arrays(normalizer), ExperimentConfig().env),
        ExperimentConfig(),
        tensorboard_log=None,
    ).policy.actor.features_extractor.transformer
    assert default.decay == "none" and default.position_kind == "sinusoidal"


def test_fit_and_val_must_be_ordered(dataset: SymbolDataset, tmp_path: Path) -> None:
    fit, val = _spans(dataset)
    with pytest.raises(ValueError, match="fit_last < val_first"):
        train_on_range(dataset, val, fit, _config(tmp_path, "manual"))
    assert isinstance(fit[0], pd.Timestamp)


def test_cli_trains_and_saves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from backend.data_download.synthetic_market import write_synthetic_market
    from backend.training.train import main

    data_dir = tmp_path / "data"
    write_synthetic_market(
        data_dir, SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=24, seed=7)
    )
    config = _config(tmp_path, "manual", total_timesteps=120, eval_every_steps=60)
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "training": config.training.to_dict(),
                "encoder": config.encoder.to_dict(),
                "env": {"episode_sessions": 2},
            }
        )
    )
    out = tmp_path / "out"
    argv = ["--config", str(path), "--data-dir", str(data_dir), "--output", str(out)]
    assert main([*argv, "--no-progress", "--val-fraction", "0.15"]) == 0
    (run_dir,) = out.iterdir()
    names = {p.name for p in run_dir.iterdir()}
    assert {"model.zip", "config.yaml", "metrics.json", "training_settings.json"} <= names
    assert any(n.startswith("normalizer_SPY") for n in names)
    model = YoopSAC.load(run_dir / "model.zip", device="cpu")
    assert model.num_timesteps == 120
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    # The bundle's config.yaml is the experiment, complete: it loads back equal...
    again = load_experiment(run_dir / "config.yaml")
    assert again.training == config.training and again.encoder == config.encoder
    assert again.env.episode_sessions == 2 and again.data.data_dir == str(data_dir)
    # ...and trains again as it is (data dir, symbol and all, recorded in it).
    out2 = tmp_path / "out2"
    bundle_argv = ["--config", str(run_dir / "config.yaml"), "--output", str(out2)]
    assert main([*bundle_argv, "--no-progress", "--val-fraction", "0.15"]) == 0
    (run_dir2,) = out2.iterdir()
    assert load_experiment(run_dir2 / "config.yaml") == again
    # The main job reads it too (its walk-forward windows need more data than this store).
    from backend.scripts import run_walk_forward

    capsys.readouterr()
    assert run_walk_forward.main(["--config", str(run_dir / "config.yaml"), "--print-config"]) == 0
    printed = ExperimentConfig.model_validate(yaml.safe_load(capsys.readouterr().out))
    # The main job labels a file that names no preset with its default one ("short"); every
    # field of the complete file wins over that preset, so all else is the bundle's experiment.
    assert printed.preset == "short"
    assert printed.replace(preset=None) == again


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("trainig:\n  seed: 1\n", "trainig"),
        ("training:\n  learnig_rate: 0.1\n", r"training\.learnig_rate"),
        ("encoder:\n  name: cnn\n  kernal_size: 5\n", r"encoder\.kernal_size"),
        ("reward:\n  name: dsr\n  etaa: 0.1\n", r"reward\.etaa"),
        ("data:\n  symbol: QQQ\n", r"data\.symbol"),
        ("env:\n  cost_bp: 2\n", r"env\.cost_bp"),
    ],
)
def test_cli_misspelled_key_is_exit_2_naming_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, path: str
) -> None:
    from backend.training.train import main

    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["--config", str(config), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(rf"^error: .*bad\.yaml: {path}: unknown key", err)


def test_cli_print_config_shows_the_resolved_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from backend.training.train import main

    path = tmp_path / "t.yaml"
    # The short preset's tiny transformer has one layer; two windows need two.
    path.write_text(TRANSFORMER_YAML.replace("  local_window", "  n_layers: 2\n  local_window"))
    assert main(["--config", str(path), "--preset", "short", "--seed", "7", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["encoder"]["temporal_decay"] == "learnable"
    assert printed["encoder"]["local_window"] == [20, None]
    assert printed["encoder"]["positional_encoding"] == "learned"
    assert printed["encoder"]["size"] == "tiny"  # from the preset, under the file
    assert printed["encoder"]["d_model"] == 16 and printed["encoder"]["n_layers"] == 2
    assert printed["env"]["sequence_length"] == 24  # the file over the preset's 16
    assert printed["training"]["seed"] == 7  # the flag over both
    assert printed["preset"] == "short"
    assert ExperimentConfig.model_validate(printed) == resolve_experiment(
        "short", path, {"training": {"seed": 7}}
    )
