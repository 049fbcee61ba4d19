"""The supervised lab's track of ``python -m backend.scripts.tune`` (``--track supervised``).

Same rules as the RL track (``backend/scripts/tune.py``): the lab's windows are cut from the
data as ``run_supervised`` cuts them; every bar from the first session of their first test
range on is dropped before features are computed; inner windows on the bars left train each
trial, and the objective is the first model's mean **validation** accuracy on ``direction``
over them (the inner windows' test ranges lie before the cut and are not scored either).
``best_config.yaml`` is a lab config file: ``python -m backend.scripts.run_supervised
--config best_config.yaml --model <models> --tasks <tasks>`` (the command is printed).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from backend.config.experiment import AGENT
from backend.config.supervised import SupervisedConfig
from backend.config.training_config import FeatureConfig
from backend.data_download.intraday_features import max_lookback
from backend.scripts import run_supervised
from backend.scripts.run_walk_forward import load_datasets
from backend.scripts.tune_study import (
    BEST_CONFIG_FILE,
    STUDY_FILE,
    TuningRegion,
    UserError,
    check_space,
    cut_before_first_test,
    make_study,
    set_path,
    suggest,
    write_outputs,
)
from backend.supervised.pipeline import run_window
from backend.training.walk_forward import WalkForwardConfig
from backend.utils.config_model import load_mapping

__all__ = ["apply_lab_params", "run_supervised_search"]


def apply_lab_params(config: SupervisedConfig, params: Mapping[str, Any]) -> SupervisedConfig:
    """``config`` with each ``{path: value}`` set, validated again.

    Raises:
        pydantic.ValidationError: a value the lab's schema rejects.
    """
    data = config.model_dump(mode="json")
    for path, value in params.items():
        set_path(data, path, value)
    return SupervisedConfig.model_validate(data)


def _windows(config: SupervisedConfig, features: FeatureConfig, max_windows: int | None) -> Any:
    wf = config.walk_forward
    gap = max_lookback(features) + config.sequence_length + config.labels.horizon
    return WalkForwardConfig(
        train_sessions=wf.train_sessions,
        test_sessions=wf.test_sessions,
        val_fraction=wf.val_fraction,
        max_windows=max_windows,
        gap_bars=gap,
    )


def _lab_config(args: argparse.Namespace) -> SupervisedConfig:
    """The lab config of the file over the preset, its own ``models``/``tasks`` kept."""
    loaded = load_mapping(args.config)
    ns = argparse.Namespace(
        mode=args.mode if args.mode in run_supervised.MODES else "short",
        config=args.config,
        model=",".join(loaded.get("models", ["cnn"])),
        tasks=",".join(loaded.get("tasks", ["direction"])),
    )
    try:
        return run_supervised.resolve_config(ns)
    except run_supervised.UserError as exc:
        raise UserError(str(exc)) from None


def run_supervised_search(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Run the lab's study; write ``best_config.yaml``, ``tune.json``, ``history.png``."""
    import optuna

    config = _lab_config(args)
    config = config.model_copy(
        update={"training": config.training.model_copy(update={"tensorboard": False})}
    )
    check_space(config, apply_lab_params)
    seed = 0 if args.seed is None else int(args.seed)
    features = FeatureConfig.for_agent(AGENT)
    out.mkdir(parents=True, exist_ok=True)
    if (out / STUDY_FILE).exists():
        raise UserError(f"--output {out}: already holds a study ({STUDY_FILE}); pick a new folder")
    data_dir = args.data_dir
    if data_dir is None:
        data_dir = out / "data"
        run_supervised._synthetic_store(
            data_dir, ["SPY"], run_supervised.MARKETS["momentum"], features.use_vix
        )
    datasets, _ = load_datasets(["SPY"], data_dir, features, None, None)
    cut, kept, sessions, inner = cut_before_first_test(
        datasets,
        _windows(config, features, config.walk_forward.max_windows),
        _windows(config, features, config.search.windows),
    )
    model = config.models[0]
    region = TuningRegion(
        cut,
        kept,
        [
            {
                "fit": (str(sessions[w.fit.start].date()), str(sessions[w.fit.stop - 1].date())),
                "val": (str(sessions[w.val.start].date()), str(sessions[w.val.stop - 1].date())),
            }
            for w in inner
        ],
    )
    study = make_study(out, config, "tune-supervised", seed)
    load_before = os.getloadavg()
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        params = {p: suggest(trial, p, s) for p, s in config.search.space.items()}
        cfg = apply_lab_params(config, params)
        values: list[float] = []
        for k, window in enumerate(inner):
            result = run_window(kept, sessions, window, cfg, seed=seed, output_dir=None)
            values.append(float(result.val_accuracy["direction"][model]))
            trial.set_user_attr("window_values", values)
            trial.report(float(np.mean(values)), step=k)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after window {k}")
        return float(np.mean(values))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=args.trials, show_progress_bar=not args.no_progress)
    wall = time.perf_counter() - started
    models = ",".join(config.models)
    tasks = ",".join(config.tasks)
    command = (
        f"python -m backend.scripts.run_supervised --config {out / BEST_CONFIG_FILE} "
        f"--model {models} --tasks {tasks}"
        + (f" --data-dir {args.data_dir}" if args.data_dir is not None else " --market momentum")
    )
    summary = write_outputs(
        out,
        config,
        study,
        region,
        wall,
        load_before,
        os.getloadavg(),
        track="supervised",
        apply=apply_lab_params,
        run_command=command,
    )
    return summary
