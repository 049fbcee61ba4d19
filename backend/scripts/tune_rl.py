"""The RL track of ``backend.scripts.tune``: SAC trials scored on inner validation ranges.

Each trial trains ``train_on_range`` on every inner window's fit range of the bars before
the main job's first test range and scores the early-stopping criterion, the best
validation Sharpe (mean over windows and symbols). See ``backend/scripts/tune.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from stable_baselines3.common.callbacks import BaseCallback

from backend.config.experiment import ExperimentConfig, resolve_experiment
from backend.data_download.dataset import SymbolDataset
from backend.scripts.tune_study import (
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
from backend.training.callbacks import ValidationEarlyStopping
from backend.training.train import train_on_range
from backend.training.walk_forward_runner import derive_seed
from backend.utils.config_model import ConfigError

__all__ = [
    "PruneOnValidation",
    "apply_params",
    "rl_objective",
    "run_rl_search",
    "trial_timesteps",
    "tuning_region",
]


def apply_params(config: ExperimentConfig, params: Mapping[str, Any]) -> ExperimentConfig:
    """``config`` with each ``{path: value}`` set, validated again as a whole.

    Raises:
        ConfigError: a value the schema rejects, named by its path.
    """
    data = config.model_dump(mode="json")
    for path, value in params.items():
        set_path(data, path, value)
    return resolve_experiment(file=data)


def tuning_region(datasets: Sequence[SymbolDataset], config: ExperimentConfig) -> TuningRegion:
    """The RL search's region: :func:`cut_before_first_test` with the config's layout."""
    inner_wf = config.walk_forward.replace(max_windows=config.search.windows)
    cut, kept, inner_sessions, inner = cut_before_first_test(
        datasets, config.walk_forward, inner_wf, fallback_to_first_window=True
    )

    def span(start: int, stop: int) -> tuple[str, str]:
        return str(inner_sessions[start].date()), str(inner_sessions[stop - 1].date())

    windows = [
        {"fit": span(w.fit.start, w.fit.stop), "val": span(w.val.start, w.val.stop)} for w in inner
    ]
    return TuningRegion(cut, kept, windows)


def trial_timesteps(config: ExperimentConfig) -> tuple[int, int]:
    """``(asked, trained)`` SAC steps of a trial of ``config``.

    ``asked`` is ``search.trial_timesteps`` (else ``training.total_timesteps``); ``trained``
    rounds it down to the last validation evaluation, a multiple of
    ``training.eval_every_steps``: the objective is the best validation Sharpe, so steps
    after the last evaluation cannot change it (same seed, same values, less time).

    Raises:
        ConfigError: when the budget is below one evaluation (the trial could not be scored).
    """
    asked = config.search.trial_timesteps or config.training.total_timesteps
    every = config.training.eval_every_steps
    trained = asked // every * every
    if trained == 0:
        field = (
            "search.trial_timesteps"
            if config.search.trial_timesteps
            else "training.total_timesteps"
        )
        raise ConfigError(
            f"{field} {asked} is below training.eval_every_steps {every}: a trial would "
            "never be evaluated on validation; raise the budget or evaluate more often"
        )
    return asked, trained


def _trial_config(config: ExperimentConfig, params: Mapping[str, Any]) -> ExperimentConfig:
    cfg = apply_params(config, params)
    # The search's own budget (``search`` cannot be searched, so read it from either).
    _, steps = trial_timesteps(cfg)
    # Trials log nothing to TensorBoard: the search's record is the study.
    training = cfg.training.replace(tensorboard_log=None, total_timesteps=steps)
    return cfg.model_copy(update={"training": training})


class PruneOnValidation(BaseCallback):
    """After each validation evaluation: report the running objective; prune when told.

    Hooked into ``ValidationEarlyStopping`` as its ``callback_after_eval`` (``parent``), so
    the figure reported is the early-stopping criterion itself (best smoothed validation
    Sharpe so far), averaged with the windows already done. The first ``warmup``
    evaluations of a window are reported but never pruned on. Steps are
    ``window * 10_000 + evaluation`` so that trials are compared at the same window.
    """

    def __init__(self, trial: Any, done: Sequence[float], window: int, warmup: int = 0) -> None:
        super().__init__()
        self.trial, self.done, self.window, self.warmup = trial, list(done), window, warmup
        self.evaluations = 0

    def _on_step(self) -> bool:
        import optuna

        stopping = self.parent
        assert isinstance(stopping, ValidationEarlyStopping), "hook it as callback_after_eval"
        self.evaluations += 1
        if not np.isfinite(stopping.best_sharpe):
            return True
        running = float(np.mean([*self.done, stopping.best_sharpe]))
        self.trial.report(running, step=self.window * 10_000 + self.evaluations)
        if self.evaluations > self.warmup and self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned in window {self.window} after {self.evaluations} evaluation(s): "
                f"running mean {running:.4g}"
            )
        return True


def rl_objective(
    region: TuningRegion, config: ExperimentConfig, params: Mapping[str, Any], trial: Any = None
) -> tuple[float, list[float]]:
    """Mean best validation Sharpe of ``params`` over the inner windows (and each window's).

    With a ``trial``, reports the running mean after every validation evaluation
    (:class:`PruneOnValidation`) and after each window, and raises ``TrialPruned`` when the
    pruner says so.
    """
    import optuna

    cfg = _trial_config(config, params)
    warmup = config.search.prune_warmup_evaluations
    values: list[float] = []
    for k, window in enumerate(region.windows):
        per_symbol = []
        for ds in region.datasets:
            seed = derive_seed(config.training.seed, k, f"tune:{ds.symbol}")
            job = cfg.model_copy(update={"training": cfg.training.replace(seed=seed)})
            hook = PruneOnValidation(trial, values, k, warmup) if trial is not None else None
            try:
                fit = (pd.Timestamp(window["fit"][0]), pd.Timestamp(window["fit"][1]))
                val = (pd.Timestamp(window["val"][0]), pd.Timestamp(window["val"][1]))
                result = train_on_range(ds, fit, val, job, after_eval=hook)
            except optuna.TrialPruned:
                trial.set_user_attr("window_values", values)
                raise
            sharpe = result.metrics["best_val_sharpe"]
            per_symbol.append(float(sharpe) if sharpe is not None else float("-inf"))
        values.append(float(np.mean(per_symbol)))
        if trial is not None:
            trial.set_user_attr("window_values", values)
            trial.report(float(np.mean(values)), step=k * 10_000 + 9_999)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after window {k}: mean {np.mean(values):.4g}")
    return float(np.mean(values)), values


def run_rl_search(
    config: ExperimentConfig,
    datasets: Sequence[SymbolDataset],
    out: Path,
    *,
    trials: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the study; write ``best_config.yaml``, ``tune.json``, ``history.png``.

    Returns:
        The content of ``tune.json``.
    """
    import optuna

    check_space(config, apply_params)
    try:
        asked, trained = trial_timesteps(config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    region = tuning_region(datasets, config)
    out.mkdir(parents=True, exist_ok=True)
    if (out / STUDY_FILE).exists():
        raise UserError(f"--output {out}: already holds a study ({STUDY_FILE}); pick a new folder")
    study = make_study(out, config, "tune-rl", config.training.seed)
    load_before = os.getloadavg()
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        params = {p: suggest(trial, p, s) for p, s in config.search.space.items()}
        value, _ = rl_objective(region, config, params, trial)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=trials, catch=(ConfigError,), show_progress_bar=progress)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    return write_outputs(
        out,
        config,
        study,
        region,
        wall,
        load_before,
        load_after,
        track="rl",
        apply=apply_params,
        extra={"trial_timesteps": {"asked": asked, "trained": trained}},
    )
