"""What both tracks of ``backend.scripts.tune`` share.

The cut before the first test range, the Optuna study (sampler, pruner, SQLite storage) and
the files a search writes.

See ``backend/scripts/tune.py`` for the rules (the objective never reads a bar of the main
job's test ranges).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backend.config.experiment import dump_yaml
from backend.config.search_config import ParamSpace
from backend.data_download.dataset import SymbolDataset
from backend.scripts.run_walk_forward import common_sessions
from backend.training.walk_forward import (
    InsufficientDataError,
    WalkForwardConfig,
    WalkForwardWindow,
    generate_windows,
)
from backend.utils.atomic_io import write_json_atomic, write_text_atomic
from backend.utils.config_model import ConfigError
from backend.utils.provenance import collect_provenance

__all__ = [
    "BEST_CONFIG_FILE",
    "STUDY_FILE",
    "SUMMARY_FILE",
    "TuningRegion",
    "UserError",
    "check_space",
    "cut_before_first_test",
    "make_study",
    "set_path",
    "suggest",
    "write_outputs",
]

STUDY_FILE = "study.db"
BEST_CONFIG_FILE = "best_config.yaml"
SUMMARY_FILE = "tune.json"


class UserError(Exception):
    """A mistake in arguments, config or data: one line, exit code 2."""


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set the dotted ``path`` of a nested config dict to ``value`` (creating sections)."""
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def suggest(trial: Any, path: str, space: ParamSpace) -> Any:
    """Ask the Optuna ``trial`` for a value of ``path`` from its ``space``."""
    if space.choices is not None:
        # Optuna stores categorical values as scalars; lists (net_arch) travel as JSON text.
        keys = [json.dumps(c) for c in space.choices]
        return json.loads(trial.suggest_categorical(path, keys))
    assert space.low is not None and space.high is not None
    if space.integer:
        return trial.suggest_int(
            path, int(space.low), int(space.high), step=int(space.step or 1), log=space.log
        )
    return trial.suggest_float(path, space.low, space.high, step=space.step, log=space.log)


def check_space(config: Any, apply: Any) -> None:
    """Validate every choice and both ends of every range against the schema, one at a time.

    Raises:
        UserError: naming ``search.space.<path>``, the value and the schema's complaint.
    """
    if not config.search.space:
        raise UserError("search.space is empty: give the config a search section to tune")
    for path, space in config.search.space.items():
        values = list(space.choices) if space.choices is not None else [space.low, space.high]
        for value in values:
            if space.integer and value is not None:
                value = int(value)
            try:
                apply(config, {path: value})
            except (ConfigError, ValueError) as exc:
                raise UserError(f"search.space.{path}: value {value!r}: {exc}") from None


# ---------------------------------------------------------------------------------------
# The tuning region: everything before the main job's first test range
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuningRegion:
    """The bars the search may use and its inner windows."""

    first_test: str
    """First session of the main job's first test range: nothing from here on is used."""
    datasets: list[SymbolDataset]
    """The symbols' datasets cut before :attr:`first_test` (features computed on the cut)."""
    windows: list[dict[str, tuple[str, str]]]
    """Inner windows, oldest first: ``{"fit": (first, last), "val": (first, last)}``."""


def _outer_layout(datasets: Sequence[SymbolDataset]) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The main job's sessions and bar counts, from timestamps and the warm-up only.

    Like ``run_walk_forward.common_sessions`` (sessions every symbol has past its feature
    warm-up, scheduled bars each), but it never asks whether bars *after* the warm-up are
    finite: the test bars' values play no part in where the windows fall.
    """
    common: pd.DatetimeIndex | None = None
    for ds in datasets:
        complete = np.isfinite(ds.features.to_numpy(dtype=np.float64, na_value=np.nan)).all(1)
        first = int(np.argmax(complete)) if complete.any() else len(complete)
        days = ds.layout["session"]
        if first >= len(days):
            raise UserError(f"{ds.symbol}: no bar is past the feature warm-up; load more data")
        starts = first == 0 or days.iloc[first - 1] != days.iloc[first]
        ready = (
            ds.sessions[ds.sessions >= days.iloc[first]]
            if starts
            else ds.sessions[ds.sessions > days.iloc[first]]
        )
        common = ready if common is None else common.intersection(ready)
    assert common is not None
    counts = pd.Series(datasets[0].bars_per_session, index=datasets[0].sessions).reindex(common)
    return common, counts.to_numpy(dtype=np.int64)


def cut_before_first_test(
    datasets: Sequence[SymbolDataset],
    outer: WalkForwardConfig,
    inner: WalkForwardConfig,
    *,
    fallback_to_first_window: bool = False,
) -> tuple[str, list[SymbolDataset], pd.DatetimeIndex, list[WalkForwardWindow]]:
    """Drop every bar from the main job's first test session on; lay out inner windows.

    ``outer`` is the main job's window layout (same data, so the cut is exactly where its
    first test range starts); ``inner`` lays the search's windows out on the bars left.
    When they do not fit and ``fallback_to_first_window`` is set, the main job's first
    window is the one inner window (only its fit and validation ranges may be used: its
    test lies beyond the cut).

    Returns:
        ``(first test session, cut datasets, their common sessions, inner windows)``.

    Raises:
        UserError: when the bars before the first test are too few for one inner window.
    """
    sessions, bars = _outer_layout(datasets)
    outer_windows = generate_windows(bars, outer)
    first = min(w.test.start for w in outer_windows)
    cut = sessions[first]
    kept: list[SymbolDataset] = []
    for ds in datasets:
        mask = (ds.layout["session"] < cut).to_numpy()
        kept.append(
            SymbolDataset.from_market(
                ds.symbol, ds.market.loc[mask], ds.feature_config, interval=ds.interval
            )
        )
    inner_sessions, inner_bars = common_sessions(kept)
    try:
        windows = generate_windows(inner_bars, inner)
    except InsufficientDataError as exc:
        earliest = min(outer_windows, key=lambda w: w.test.start)
        if fallback_to_first_window and earliest.val.stop <= len(inner_sessions):
            # Windows spread over the whole range leave, before the first test, exactly the
            # first window's own fit and validation ranges: score those.
            return str(cut.date()), kept, inner_sessions, [earliest]
        raise UserError(
            f"too few sessions before the first test range ({cut.date()}) for an inner "
            f"window: {exc}"
        ) from None
    return str(cut.date()), kept, inner_sessions, list(windows)


def make_study(out: Path, config: Any, name: str, seed: int) -> Any:
    """A new maximizing study in ``<out>/study.db`` with the config's sampler and pruner."""
    import optuna

    search = config.search
    sampler = (
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup_trials)
        if search.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=0)
        if search.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    storage = f"sqlite:///{(out / STUDY_FILE).resolve()}"
    return optuna.create_study(
        study_name=name, storage=storage, direction="maximize", sampler=sampler, pruner=pruner
    )


def _trial_rows(study: Any, space: Mapping[str, ParamSpace]) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": {p: _decode(space[p], v) for p, v in t.params.items()},
                "window_values": t.user_attrs.get("window_values", []),
                "seconds": (
                    (t.datetime_complete - t.datetime_start).total_seconds()
                    if t.datetime_complete and t.datetime_start
                    else None
                ),
            }
        )
    return rows


def _decode(space: ParamSpace, value: Any) -> Any:
    return json.loads(value) if space.choices is not None else value


def write_outputs(
    out: Path,
    config: Any,
    study: Any,
    region: TuningRegion,
    wall: float,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    *,
    track: str,
    apply: Any,
    run_command: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the search's files and return the summary (``tune.json``).

    ``extra`` adds track-specific entries (the RL trials' step budget).

    ``best_config.yaml`` is ``apply(config, best params)`` with ``search.tuning_trials`` set
    to the number of trials; ``history.png`` plots every trial.
    """
    import optuna

    space = config.search.space
    rows = _trial_rows(study, space)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise UserError(
            f"no trial completed ({[r['state'] for r in rows]}); see {out / STUDY_FILE}"
        )
    best = study.best_trial
    best_params = {p: _decode(space[p], v) for p, v in best.params.items()}
    chosen = apply(config, best_params)
    n_trials = len(study.trials)
    chosen = chosen.model_copy(update={"search": chosen.search.replace(tuning_trials=n_trials)})
    write_text_atomic(out / BEST_CONFIG_FILE, dump_yaml(chosen.model_dump(mode="json")))
    summary = {
        "track": track,
        "objective": "mean best validation Sharpe over the inner windows (maximize)"
        if track == "rl"
        else "mean validation accuracy over the inner windows (maximize)",
        "n_trials": n_trials,
        "states": {
            s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})
        },
        "best": {"number": best.number, "value": best.value, "params": best_params},
        "region": {
            "first_test_session_excluded": region.first_test,
            "inner_windows": region.windows,
        },
        **(extra or {}),
        "trials": rows,
        "wall_s": wall,
        "loadavg_before": list(load_before),
        "loadavg_after": list(load_after),
        "cpu_count": os.cpu_count(),
        # CPU seconds of this process (user + system) since it started: the load-independent
        # figure beside the wall time on a shared machine.
        "process_cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
        "storage": f"sqlite:///{(out / STUDY_FILE).resolve()}",
        "dashboard": f"optuna-dashboard sqlite:///{(out / STUDY_FILE).resolve()}",
        "best_config": str(out / BEST_CONFIG_FILE),
        "run_best": run_command
        or f"python -m backend.scripts.run_walk_forward --config {out / BEST_CONFIG_FILE}",
        "base_config": config.model_dump(mode="json"),
        "provenance": collect_provenance(),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / SUMMARY_FILE, summary)
    _plot_history(rows, out / "history.png")
    return summary


def _plot_history(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    best = -np.inf
    xs, bests = [], []
    for r in rows:
        value = r["value"]
        if r["state"] == "COMPLETE" and value is not None:
            ax.scatter(r["number"], value, color="tab:blue", s=18)
            best = max(best, value)
        elif r["window_values"]:
            ax.scatter(r["number"], np.mean(r["window_values"]), color="tab:gray", marker="x", s=18)
        xs.append(r["number"])
        bests.append(best if np.isfinite(best) else np.nan)
    ax.plot(xs, bests, color="tab:orange", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (validation)")
    ax.set_title("Hyperparameter search (x: pruned, running mean)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
