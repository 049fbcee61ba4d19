"""Hyperparameter search that never sees a test range (Optuna, SQLite storage).

``python -m backend.scripts.tune --track rl --config FILE --trials N`` searches the config's
``search.space`` (schema paths: ``backend/config/search_config.py``) and writes, under its
output folder::

    study.db           Optuna's SQLite storage (``optuna-dashboard sqlite:///<out>/study.db``)
    best_config.yaml   the base config with the best trial's values and
                       ``search.tuning_trials: N``: run it as is with
                       ``python -m backend.scripts.run_walk_forward --config best_config.yaml``
    tune.json          every trial (params, value, per-window values, state, seconds), the
                       tuning region, wall time, load average, provenance
    history.png        objective per trial and the running best

**Where the objective comes from.** The main job's windows are cut from the data exactly as
``run_walk_forward`` cuts them; every bar from the first session of their *first test range*
on is dropped before features are computed. On the bars left, an inner walk-forward
(``walk_forward`` of the config, ``search.windows`` windows, the latest first) trains each
trial on the inner fit ranges and scores it on the inner **validation** ranges only (the RL
track: best validation Sharpe, the early-stopping criterion; mean over windows). So no
trial, and no choice between trials, ever depends on a bar the final report tests on
(``tests/test_tune.py`` poisons those bars with NaN and gets the same search).

Pruning: after every validation evaluation (``ValidationEarlyStopping``'s
``callback_after_eval`` hook) and after each inner window the trial's running objective is
reported; the median pruner (``search.pruner``) stops a trial below the median of earlier
trials at that point, from inside training, once ``search.prune_warmup_evaluations`` of the
window are past. Pruned trials are stored as PRUNED in ``study.db`` and counted in
``search.tuning_trials``. ``search.trial_timesteps`` trains trials on a shorter budget than
the main job (a low-fidelity search), rounded down to the last validation evaluation (later
steps cannot change the objective); the best config keeps the config's own
``training.total_timesteps``. The final report is the main job's, run once with the chosen
config; its deflated Sharpe ratio counts the trials.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.config.experiment import resolve_experiment
from backend.config.presets import preset_names
from backend.scripts.run_walk_forward import load_datasets
from backend.scripts.tune_rl import run_rl_search
from backend.scripts.tune_study import UserError
from backend.training.train import resolve_data_dir
from backend.training.walk_forward import InsufficientDataError
from backend.utils.config_model import ConfigError

__all__ = ["OUTPUT_ROOT", "main"]

OUTPUT_ROOT = Path("runs/tune")
"""Default output root (git-ignored): ``<root>/<track>/<YYYY-MM-DD_HHMMSS>/``."""


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Command line of the tuner."""
    p = argparse.ArgumentParser(
        prog="python -m backend.scripts.tune", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--track", choices=("rl", "supervised"), required=True)
    p.add_argument("--config", type=Path, required=True, help="config file with a search section")
    p.add_argument("--trials", type=int, required=True, help="number of trials")
    p.add_argument(
        "--mode",
        default=None,
        choices=preset_names(),
        help="rl: run preset (default: the file's 'preset', else short)",
    )
    p.add_argument("--seed", type=int, default=None, help="sampler and training seed")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="bar store (default as the main job)"
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"output folder (default {OUTPUT_ROOT}/<track>/<YYYY-MM-DD_HHMMSS>)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _rl(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.seed is not None:
        overrides["training"] = {"seed": args.seed}
    if args.data_dir is not None:
        overrides["data"] = {"data_dir": str(args.data_dir)}
    config = resolve_experiment(args.mode, args.config, overrides, default_preset="short")
    data_dir, _ = resolve_data_dir(config)
    datasets, _ = load_datasets(
        config.data.symbols, data_dir, config.features, config.data.start, config.data.end
    )
    return run_rl_search(config, datasets, out, trials=args.trials, progress=not args.no_progress)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, search, print where the results are."""
    args = build_parser().parse_args(argv)
    if args.trials < 1:
        raise UserError(f"--trials {args.trials}: must be >= 1")
    if not args.config.is_file():
        raise UserError(f"--config {args.config}: no such file")
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    out = args.output or OUTPUT_ROOT / args.track / stamp
    if args.track == "rl":
        summary = _rl(args, out)
    else:
        from backend.scripts.tune_supervised import run_supervised_search

        summary = run_supervised_search(args, out)
    best = summary["best"]
    print(
        f"{summary['n_trials']} trials ({summary['states']}) in {summary['wall_s']:.0f} s; best "
        f"#{best['number']} value {best['value']:.4g} with {best['params']}"
    )
    print(f"best config: {summary['best_config']}\nrun it: {summary['run_best']}")
    print(f"study: {summary['dashboard']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user mistakes print one line and exit 2."""
    try:
        return run(argv)
    except (UserError, ConfigError, InsufficientDataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
