"""The hyperparameter search: never reads a test bar, prunes, best config runs as is.

Runs on the 40-session synthetic store of ``walk_forward_workspace`` with a tiny budget
(seconds per trial).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from backend.config.experiment import resolve_experiment
from backend.data_download.dataset import SymbolDataset
from backend.scripts import run_walk_forward, tune, tune_rl
from backend.scripts.tune_study import UserError
from backend.utils.config_model import ConfigError

TINY_SEARCH = {
    "modes": ["manual"],
    "encoder": {"name": "manual"},
    "walk_forward": {"train_sessions": 12, "test_sessions": 3, "max_windows": 2},
    "training": {
        "total_timesteps": 150,
        "learning_starts": 50,
        "batch_size": 16,
        "buffer_size": 1000,
        "eval_every_steps": 75,
    },
    "search": {
        "windows": 2,
        "startup_trials": 1,
        # Trials train 75 steps (120 rounded down to the last evaluation); the best config
        # keeps the 150 of the training section for the main job.
        "trial_timesteps": 120,
        "space": {
            "training.learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
            "training.net_arch": {"choices": [[16], [32, 32]]},
        },
    },
}


@pytest.fixture(scope="module")
def search_file(walk_forward_workspace: Path) -> Path:
    data = {**TINY_SEARCH, "data": {"data_dir": str(walk_forward_workspace / "store")}}
    path = walk_forward_workspace / "search.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def tuned(search_file: Path, walk_forward_workspace: Path) -> Path:
    out = walk_forward_workspace / "tune_run"
    assert tune.main(["--track", "rl", "--config", str(search_file), "--trials", "3",
                      "--output", str(out), "--no-progress"]) == 0  # fmt: skip
    return out


def _datasets(config: object) -> list[SymbolDataset]:
    from backend.training.train import resolve_data_dir

    data_dir, _ = resolve_data_dir(config)  # type: ignore[arg-type]
    return [
        SymbolDataset.load(s, data_dir, config.features)  # type: ignore[attr-defined]
        for s in config.data.symbols  # type: ignore[attr-defined]
    ]


def _poisoned(ds: SymbolDataset, first: str) -> SymbolDataset:
    """``ds`` with every price, volume, VIX and feature value from session ``first`` on NaN.

    Built field by field: ``from_market`` itself refuses NaN prices.
    """
    late = (ds.layout["session"] >= np.datetime64(first)).to_numpy()
    market, features = ds.market.copy(), ds.features.copy()
    market.loc[late, :] = np.nan
    features.loc[late, :] = np.nan
    return SymbolDataset(ds.symbol, market, features, ds.layout, ds.feature_config, ds.interval)


def test_objective_never_reads_a_test_bar(search_file: Path, tmp_path: Path) -> None:
    config = resolve_experiment(file=search_file, default_preset="short")
    clean = _datasets(config)
    region = tune_rl.tuning_region(clean, config)
    # The inner windows (fit and validation) end before the main job's first test session.
    assert all(w["val"][1] < region.first_test for w in region.windows)
    assert all(w["fit"][1] < w["val"][0] for w in region.windows)
    poisoned = [_poisoned(ds, region.first_test) for ds in clean]
    assert np.isnan(poisoned[0].market["close"].to_numpy()).sum() > 0
    a = tune_rl.run_rl_search(config, clean, tmp_path / "clean", trials=2, progress=False)
    b = tune_rl.run_rl_search(config, poisoned, tmp_path / "poisoned", trials=2, progress=False)
    assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
    assert [t["value"] for t in a["trials"]] == [t["value"] for t in b["trials"]]
    assert [t["window_values"] for t in a["trials"]] == [t["window_values"] for t in b["trials"]]
    assert a["region"] == b["region"]
    # The check has teeth: the same poison one session before the cut changes the search.
    last_val = region.windows[-1]["val"][0]
    early = [_poisoned(ds, last_val) for ds in clean]
    with pytest.raises(ValueError, match="must be finite"):
        tune_rl.run_rl_search(config, early, tmp_path / "early", trials=2, progress=False)


def test_best_config_runs_through_the_main_job_unchanged_and_counts_the_trials(
    tuned: Path, walk_forward_workspace: Path
) -> None:
    summary = json.loads((tuned / "tune.json").read_text())
    assert summary["n_trials"] == 3 and (tuned / "study.db").is_file()
    assert (tuned / "history.png").stat().st_size > 0
    assert summary["wall_s"] > 0 and len(summary["loadavg_before"]) == 3
    best_file = tuned / "best_config.yaml"
    best = yaml.safe_load(best_file.read_text())
    assert best["search"]["tuning_trials"] == 3
    # Trials trained the search's budget; the chosen config keeps the main job's.
    assert summary["trial_timesteps"] == {"asked": 120, "trained": 75}
    assert best["training"]["total_timesteps"] == TINY_SEARCH["training"]["total_timesteps"]
    for path, value in summary["best"]["params"].items():
        section, key = path.split(".")
        assert best[section][key] == value
    out = walk_forward_workspace / "best_run"
    assert run_walk_forward.main(["--config", str(best_file), "--output", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["spec"]["config"] == resolve_experiment(file=best_file).model_dump(mode="json")
    assert run["spec"]["config"]["training"]["total_timesteps"] == 150
    assert run["spec"]["tuning_trials"] == 3
    assert run["windows"][0]["test"][0] == summary["region"]["first_test_session_excluded"]
    metrics = json.loads((out / "metrics.json").read_text())
    dsr = metrics["deflated_sharpe"]["SPY"]
    assert dsr["tuning_trials"] == 3 and dsr["n_trials"] == 1 + 3  # one mode x one seed + 3
    assert "+ 3 tuning" in (out / "report.md").read_text()


def _patch_evaluations(monkeypatch: pytest.MonkeyPatch, sharpe_of_lr: object) -> list[float]:
    """Validation Sharpe = ``sharpe_of_lr(learning rate)``; returns the rates evaluated."""
    from backend.training.callbacks import ValidationEarlyStopping

    seen: list[float] = []

    def evaluate(self: ValidationEarlyStopping) -> dict[str, float]:
        lr = float(self.model.learning_rate)  # type: ignore[arg-type]
        seen.append(lr)
        sharpe = sharpe_of_lr(lr)  # type: ignore[operator]
        return {"sharpe": sharpe, "total_return": 0.0, "turnover": 0.0, "steps": 100.0}

    monkeypatch.setattr(ValidationEarlyStopping, "evaluate", evaluate)
    return seen


def _enqueue(monkeypatch: pytest.MonkeyPatch, *params: dict[str, object]) -> None:
    """The study ``run_rl_search`` makes runs ``params`` first (in order)."""
    make = tune_rl.make_study

    def make_study(*args: object, **kwargs: object) -> object:
        study = make(*args, **kwargs)
        for p in params:
            study.enqueue_trial(p)
        return study

    monkeypatch.setattr(tune_rl, "make_study", make_study)


@pytest.mark.parametrize("warmup", [0, 1])
def test_a_trial_reporting_a_bad_validation_sharpe_is_pruned_and_recorded(
    search_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warmup: int
) -> None:
    import optuna

    search = {
        "pruner": "median",
        "startup_trials": 1,
        "prune_warmup_evaluations": warmup,
        "trial_timesteps": 150,  # two evaluations per window
    }
    config = resolve_experiment(
        file=search_file, overrides={"search": search}, default_preset="short"
    )
    seen = _patch_evaluations(monkeypatch, lambda lr: 1.0 if lr > 1e-3 else -5.0)
    _enqueue(
        monkeypatch,
        {"training.learning_rate": 5e-3, "training.net_arch": "[16]"},  # good: Sharpe 1
        {"training.learning_rate": 2e-4, "training.net_arch": "[16]"},  # bad: Sharpe -5
    )
    out = tmp_path / "pruned"
    summary = tune_rl.run_rl_search(config, _datasets(config), out, trials=2, progress=False)
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE", "PRUNED"]
    assert summary["best"]["value"] == 1.0
    # Pruned inside training, right after the first evaluation past the warm-up (a full
    # window would have evaluated 150 / 75 = 2 times per window).
    assert sum(lr < 1e-3 for lr in seen) == warmup + 1
    assert sum(lr > 1e-3 for lr in seen) >= 2 * len(summary["region"]["inner_windows"])
    # Recorded as pruned in the SQLite study, with the figures it was pruned on.
    study = optuna.load_study(study_name="tune-rl", storage=summary["storage"])
    bad = study.trials[1]
    assert bad.state == optuna.trial.TrialState.PRUNED
    assert list(bad.intermediate_values.values()) == [-5.0] * (warmup + 1)
    # ... and counted in the trials the main job's deflated Sharpe ratio is given.
    best = resolve_experiment(file=out / "best_config.yaml")
    assert best.search.tuning_trials == 2


def test_trials_train_the_search_budget_up_to_their_last_evaluation(
    search_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = resolve_experiment(
        file=search_file, overrides={"search": {"pruner": "none"}}, default_preset="short"
    )
    trained: list[tuple[int, int]] = []
    train = tune_rl.train_on_range

    def train_on_range(*args: object, **kwargs: object) -> object:
        result = train(*args, **kwargs)  # type: ignore[arg-type]
        budget = args[3].training.total_timesteps  # type: ignore[attr-defined]
        trained.append((budget, result.model.num_timesteps))
        return result

    monkeypatch.setattr(tune_rl, "train_on_range", train_on_range)
    out = tmp_path / "budget"
    summary = tune_rl.run_rl_search(config, _datasets(config), out, trials=1, progress=False)
    # SB3 steps the env train_freq steps at a time, so it may pass the budget by fewer.
    freq = config.training.train_freq
    assert trained and all(b == 75 and 75 <= n < 75 + freq for b, n in trained)
    assert summary["trial_timesteps"] == {"asked": 120, "trained": 75}
    best = resolve_experiment(file=out / "best_config.yaml")
    assert best.training.total_timesteps == config.training.total_timesteps == 150
    assert best.training.tensorboard_log == config.training.tensorboard_log
    # A budget below one evaluation could never be scored: refused before any trial.
    short = resolve_experiment(
        file=search_file, overrides={"search": {"trial_timesteps": 50}}, default_preset="short"
    )
    with pytest.raises(UserError, match=r"search.trial_timesteps 50 is below "
                       r"training.eval_every_steps 75"):  # fmt: skip
        tune_rl.run_rl_search(short, _datasets(short), tmp_path / "short", trials=1)


def _space(space: dict[str, object]) -> dict[str, object]:
    return {"search": {"space": space}}


def test_search_space_is_validated_with_its_path(search_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"search.space: 'training.learnig_rate'"):
        resolve_experiment(overrides=_space({"training.learnig_rate": {"low": 1e-4, "high": 1}}))
    with pytest.raises(ConfigError, match="may not vary 'walk_forward'"):
        resolve_experiment(overrides=_space({"walk_forward.test_sessions": {"choices": [5]}}))
    with pytest.raises(ConfigError, match=r"search.space.training.gamma: give either choices"):
        both = {"choices": [0.9], "low": 0.1, "high": 0.2}
        resolve_experiment(overrides=_space({"training.gamma": both}))
    bad = yaml.safe_load(search_file.read_text())
    bad["search"]["space"] = {"encoder.embedding_dim": {"choices": [8, -4]}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    code = tune.main(["--track", "rl", "--config", str(path), "--trials", "1", "--output",
                      str(tmp_path / "o"), "--no-progress"])  # fmt: skip
    assert code == 2


def test_the_documents_grid_ships_as_a_valid_search_file() -> None:
    path = (
        Path(__file__).resolve().parents[1]
        / "backend/config/examples/search_transformer_large.yaml"
    )
    config = resolve_experiment(file=path)
    space = config.search.space
    assert space["encoder.d_model"].choices == (256, 512, 1024)
    assert space["encoder.n_heads"].choices == (4, 8, 16)
    assert space["encoder.n_layers"].choices == (4, 6, 8)
    assert space["env.sequence_length"].choices == (60, 90, 120)
    assert config.encoder.size == "large"
    tune_rl.check_space(config, tune_rl.apply_params)  # every value is valid in the schema


def test_supervised_track_cuts_before_the_first_test_and_writes_a_lab_config(
    tmp_path: Path,
) -> None:
    from backend.config.supervised import SupervisedConfig

    lab = {
        "models": ["cnn"],
        "tasks": ["direction"],
        "walk_forward": {"train_sessions": 40, "test_sessions": 4, "max_windows": 1},
        "training": {"epochs": 2},
        "confidence": {"mc_passes": 2},
        "baselines": {"hgb_max_iter": 5},
        "latency_repeats": 10,
        "search": {
            "windows": 1,
            "startup_trials": 1,
            "space": {"training.learning_rate": {"choices": [0.001, 0.003]}},
        },
    }
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(lab))
    out = tmp_path / "tune"
    args = ["--track", "supervised", "--config", str(path), "--trials", "2", "--output", str(out)]
    assert tune.main([*args, "--no-progress"]) == 0
    summary = json.loads((out / "tune.json").read_text())
    assert summary["track"] == "supervised" and summary["n_trials"] == 2
    cut = summary["region"]["first_test_session_excluded"]
    assert all(w["val"][1] < cut for w in summary["region"]["inner_windows"])
    best = SupervisedConfig.model_validate(yaml.safe_load((out / "best_config.yaml").read_text()))
    assert best.search.tuning_trials == 2
    assert best.training.learning_rate == summary["best"]["params"]["training.learning_rate"]
    assert "--model cnn --tasks direction" in summary["run_best"]
