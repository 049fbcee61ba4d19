"""The main job: walk-forward runs of every encoder mode on the same rolling windows.

``python -m backend.scripts.run_walk_forward`` with no arguments runs the ground-truth
comparison offline: every registered encoder on each embedded synthetic market scenario
(``null``, ``momentum``, ``sequence``; ``--market`` / ``data.market`` picks one), then one
table of which mode finds which planted edge (:mod:`backend.evaluation.ground_truth`).
``--data-dir`` runs on real bars instead (labelled as real data; no scenario).
``--dry-run`` loads and validates the data and prints the window table (dates and bar
counts of fit, validation and test) without training; ``--print-config`` prints the
resolved experiment (preset + ``--config`` file + flags) as YAML. See
``Docs/WALK_FORWARD.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from backend.config.experiment import ExperimentConfig, resolve_experiment
from backend.config.presets import PRESETS, preset_names
from backend.data_download.dataset import SymbolDataset
from backend.data_download.feature_config import FeatureConfig
from backend.data_download.loader import DataQualityWarning
from backend.data_download.schema import DataValidationError
from backend.data_download.synthetic_market import (
    MARKET_NAMES,
    MARKET_SCENARIOS,
    ensure_synthetic_dataset,
    market_scenario,
    read_marker,
)
from backend.database.datasets import load_symbol_dataset
from backend.evaluation import ground_truth, tracking
from backend.evaluation import report as reports
from backend.models.feature_extractors import encoder_names, uses_sequence_observation
from backend.models.pretrained import PretrainedUse
from backend.training import walk_forward_runner as runner
from backend.training.executors import EXECUTORS, RAY_INSTALL_HINT, reuse_pools
from backend.training.train import resolve_data_dir
from backend.training.walk_forward import (
    InsufficientDataError,
    generate_windows,
    window_table,
)
from backend.utils.config_model import ConfigError

DEFAULT_PRESET = "short"
"""Preset of a run whose command line and config file name none."""
OUTPUT_ROOT = Path("runs/walk_forward")
"""Default output root (git-ignored): runs go to ``<root>/<encoder or 'all'>/<stamp>/`` and
the root's ``README.md`` indexes them; a run writes nothing outside it unless ``--publish``."""
INDEX_FILE = "README.md"
"""The experiments index in an output root."""
CROSS_MODE_FILE = "cross_mode_report.md"
"""The cross-mode comparison inside a run directory (every registered encoder ran)."""
EXPERIMENTS_DIR = Path("backend/evaluation/experiments")
"""Tracked experiments index, updated only by ``--publish``."""
BASELINE_RUNS_DIR = Path("backend/evaluation/baseline_runs")
"""Tracked archive of manual-only runs, written only by ``--publish``."""
CROSS_MODE_REPORT = Path("Docs/Transformer_Experiment_Report.md")
"""Tracked cross-mode report, written only by ``--publish`` when every registered encoder ran."""


PRETRAINED_USES: tuple[str, ...] = get_args(PretrainedUse)
"""Names ``--pretrained-use`` and ``--pretrained-variants`` accept (the schema's literal)."""


class UserError(Exception):
    """A mistake in arguments or data: reported as one line, never as a traceback."""


AUTO = "auto"
"""``--workers auto``: one job process per usable CPU core, at most one per pending job."""
WORKERS_ENV = "YOOPRL_WORKERS"
"""Environment variable that sets the default of ``--workers`` (a number or ``auto``)."""


def parse_workers(value: str | int) -> int | str:
    """``--workers`` value: ``auto`` or an integer >= 1.

    Raises:
        UserError: for anything else.
    """
    if value == AUTO:
        return AUTO
    try:
        workers = int(value)
    except ValueError:
        raise UserError(f"--workers {value}: expected an integer >= 1 or {AUTO!r}") from None
    if workers < 1:
        raise UserError(f"--workers {value}: must be >= 1")
    return workers


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | str, pending: int) -> int:
    """The number of job processes: ``auto`` is the usable cores, capped by ``pending``."""
    if workers == AUTO:
        return max(1, min(usable_cores(), pending))
    return int(workers)


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of the main job."""
    modes = ", ".join(encoder_names())
    parser = argparse.ArgumentParser(
        prog="python -m backend.scripts.run_walk_forward",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--symbols",
        default=None,
        help="comma-separated tickers (data.symbols; default: SPY); VIX is joined automatically",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="root holding intraday/<SYMBOL>/15m/*.csv of real bars (data.data_dir; default: "
        "none, the embedded synthetic ground-truth markets)",
    )
    parser.add_argument(
        "--market",
        default=None,
        choices=[*MARKET_NAMES, "all"],
        help="synthetic ground-truth market (data.market): "
        + "; ".join(f"{n}: {s.description}" for n, s in MARKET_SCENARIOS.items())
        + "; all: each of them and the ground-truth table (the default when neither "
        "--data-dir, --market nor the config file's data section chooses the data)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="training replicates per (window, mode), each with its own derived seed "
        "(walk_forward.seeds); tests use the seed-averaged session returns (default 1)",
    )
    parser.add_argument(
        "--sequence-encoder",
        default=None,
        help=f"encoder mode(s) to compare (modes): one of {modes}, a comma-separated list "
        "(manual,cnn) or all (default: all)",
    )
    parser.add_argument(
        "--mode",
        default=None,
        choices=preset_names(),
        help="run preset: "
        + "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
        + f" (default: the config file's 'preset', else {DEFAULT_PRESET})",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (training.seed; default: 0)"
    )
    parser.add_argument("--start", default=None, help="first date to load (YYYY-MM-DD)")
    parser.add_argument("--end", default=None, help="last date to load, inclusive")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML or JSON experiment file (backend.config.experiment.ExperimentConfig: "
        "sections data, walk_forward, features, env, reward, training, encoder; a bundle's "
        "config.yaml works too); merged over the preset, flags override it",
    )
    parser.add_argument(
        "--stochastic-eval",
        action="store_true",
        default=None,
        help="sample test actions (seeded per job) instead of taking the mean action",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="run directory (default: <output root>/<encoder or all>/<YYYY-MM-DD_HHMMSS>)",
    )
    parser.add_argument(
        "--output-root",
        type=Path,
        default=None,
        help=f"output root holding the runs and their index README.md (default: {OUTPUT_ROOT}, "
        "git-ignored; with --output, the run directory's parent)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help=f"also update the tracked records: {EXPERIMENTS_DIR}/README.md, the manual-run "
        f"archive {BASELINE_RUNS_DIR}/ and {CROSS_MODE_REPORT} (all four modes); without it a "
        "run writes only under its output root",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR with its recorded config: finished (window, mode) "
        "jobs are kept, the others run; other run options are ignored",
    )
    parser.add_argument(
        "--workers",
        default=os.environ.get(WORKERS_ENV, AUTO),
        help=f"parallel job processes, or {AUTO!r}: one per usable CPU core, at most one per "
        f"pending job (default: ${WORKERS_ENV}, else {AUTO}); same results for any number",
    )
    parser.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="where jobs run: local (serial, or a process pool with --workers N) or ray "
        "(a local Ray instance with --workers CPUs, or the cluster at --ray-address; needs "
        'pip install -e ".[ray]")',
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="with --executor ray: existing cluster to use (auto, ray://host:10001)",
    )
    parser.add_argument(
        "--tracking",
        default="none",
        choices=tracking.TRACKERS,
        help="experiment tracking besides TensorBoard: mlflow logs the config, per-step and "
        "final metrics, report, plots and bundles, one nested run per (window, mode) (needs "
        f"{tracking.MLFLOW_INSTALL_HINT}; default: none)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        metavar="URI",
        help="with --tracking mlflow: tracking server or store URI (default: a local file "
        "store in <run directory>/mlruns)",
    )
    parser.add_argument(
        "--no-vix",
        action="store_true",
        help="run without VIX features (features.use_vix: false), for data that have no VIX series",
    )
    parser.add_argument(
        "--pretrained-encoder",
        type=Path,
        default=None,
        metavar="BUNDLE",
        help="a supervised-lab bundle folder (<lab run>/bundles/<mode>) whose trunk is the "
        "encoder of that mode's jobs (training.pretrained.bundle); refused when its features, "
        "window length or normalizer differ, or its data overlap a window's val/test range",
    )
    parser.add_argument(
        "--pretrain",
        action="store_true",
        help="pretrain each window's trunk with the supervised lab on that window's fit range "
        "before the jobs run (training.pretrained.pretrain)",
    )
    parser.add_argument(
        "--pretrained-use",
        choices=PRETRAINED_USES,
        default=None,
        help="frozen (embeddings computed once, fast) or finetune (own learning rate and "
        "weight decay: training.pretrained.learning_rate / weight_decay); default frozen",
    )
    parser.add_argument(
        "--pretrained-variants",
        default=None,
        metavar="USES",
        help="ground-truth comparison only (pretrained_variants): also train each sequence "
        f"encoder on per-window pretrained trunks, once per use in a comma-separated list of "
        f"{', '.join(PRETRAINED_USES)} (or none); the table gains rows "
        "<mode>+pretrained(<use>) and their tests against the same encoder from scratch "
        "(default: none; each row costs about one job per market)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="load and validate the data, print the window table, train nothing",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved experiment (preset + file + flags) as YAML and exit",
    )
    return parser


def parse_symbols(text: str) -> list[str]:
    """``"spy, qqq"`` -> ``["SPY", "QQQ"]``, rejecting empty names."""
    symbols = [s.strip().upper() for s in text.split(",")]
    if not symbols or any(not s for s in symbols):
        raise UserError(f"--symbols {text!r}: expected comma-separated tickers like SPY,QQQ")
    return symbols


def common_sessions(datasets: Sequence[SymbolDataset]) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Sessions every symbol has past its feature warm-up, with their scheduled bar counts.

    All symbols share one set of windows, and no window starts inside the warm-up, where
    the features are not defined yet.
    """
    common = datasets[0].ready_sessions
    for ds in datasets[1:]:
        common = common.intersection(ds.ready_sessions)
    if len(common) == 0:
        raise UserError("no session is past the feature warm-up in every symbol; load more data")
    first = datasets[0]
    counts = pd.Series(first.bars_per_session, index=first.sessions).reindex(common)
    return common, counts.to_numpy(dtype=np.int64)


def describe_data(
    datasets: Sequence[SymbolDataset], data_dir: Path, synthetic: bool, market: str | None = None
) -> str:
    """Per-symbol summary lines for the console; real data never mention a scenario."""
    if synthetic:
        source = "embedded synthetic market" + (f", scenario {market}" if market else "")
    else:
        source = "real data, CSV store"
    lines = [f"data: {data_dir} ({source})"]
    for ds in datasets:
        idx = ds.market.index
        lines.append(
            f"  {ds.symbol:<5} {idx[0]:%Y-%m-%d %H:%M} .. {idx[-1]:%Y-%m-%d %H:%M} NY  "
            f"{len(idx):>6} bars  {len(ds.sessions):>4} sessions  "
            f"{len(idx) - ds.warmup_rows:>6} past feature warm-up"
        )
    return "\n".join(lines)


def _known_names(text: str, known: Sequence[str], message: Callable[[list[str]], str]) -> list[str]:
    """The lower-cased names of a comma-separated list; ``message(bad)`` if any is unknown."""
    names = [s.strip().lower() for s in text.split(",")]
    bad = [n for n in names if n not in known]
    if bad:
        raise UserError(message(bad))
    return names


def parse_modes(text: str) -> tuple[str, ...]:
    """``"all"`` or ``"cnn,manual"`` -> modes in canonical order (manual first).

    Canonical order makes ``manual`` the reference column of every report and keeps the
    job grid (and so the output) independent of how the list was typed.
    """
    known = encoder_names()
    if text.strip().lower() == "all":
        return known
    names = _known_names(
        text,
        known,
        lambda bad: (
            f"--sequence-encoder {text!r}: unknown mode(s) {bad}; expected "
            f"{', '.join(known)}, a comma-separated list of them, or all"
        ),
    )
    return tuple(m for m in known if m in names)


def parse_pretrained_variants(text: str) -> tuple[str, ...]:
    """``"finetune,frozen"`` or ``"none"`` -> the uses, refusing unknown names."""
    if text.strip().lower() == "none":
        return ()
    return tuple(
        _known_names(
            text,
            PRETRAINED_USES,
            lambda bad: (
                f"--pretrained-variants {text!r}: unknown use(s) {bad}; expected a "
                f"comma-separated list of {', '.join(PRETRAINED_USES)}, or none"
            ),
        )
    )


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment fields the command-line flags set (the highest-precedence layer)."""
    data: dict[str, Any] = {}
    if args.symbols is not None:
        data["symbols"] = parse_symbols(args.symbols)
    if args.data_dir is not None:
        if not args.data_dir.is_dir():
            raise UserError(f"--data-dir {args.data_dir}: no such directory")
        data["data_dir"] = str(args.data_dir)
    if args.start is not None:
        data["start"] = args.start
    if args.end is not None:
        data["end"] = args.end
    if args.market is not None and args.market != "all":
        data["market"] = args.market
    out: dict[str, Any] = {"data": data} if data else {}
    if args.seeds is not None:
        if args.seeds < 1:
            raise UserError(f"--seeds {args.seeds}: must be >= 1")
        out["walk_forward"] = {"seeds": args.seeds}
    if args.sequence_encoder is not None:
        out["modes"] = list(parse_modes(args.sequence_encoder))
    training: dict[str, Any] = {}
    if args.seed is not None:
        if args.seed < 0:
            raise UserError(f"--seed {args.seed}: must be >= 0")
        training["seed"] = args.seed
    pretrained: dict[str, Any] = {}
    if args.pretrained_encoder is not None:
        if args.pretrain:
            raise UserError("--pretrained-encoder and --pretrain: give one of them")
        if not args.pretrained_encoder.is_dir():
            raise UserError(f"--pretrained-encoder {args.pretrained_encoder}: no such folder")
        pretrained["bundle"] = str(args.pretrained_encoder)
    if args.pretrain:
        pretrained["pretrain"] = True
    if args.pretrained_use is not None:
        pretrained["use"] = args.pretrained_use
    if args.pretrained_variants is not None:
        out["pretrained_variants"] = list(parse_pretrained_variants(args.pretrained_variants))
    if pretrained:
        training["pretrained"] = pretrained
    if training:
        out["training"] = training
    if args.stochastic_eval:
        out["stochastic_eval"] = True
    if args.no_vix:
        out["features"] = {"use_vix": False}
    return out


def resolve_cli_config(
    args: argparse.Namespace, market: str | None = None, pretrained_use: str | None = None
) -> ExperimentConfig:
    """The experiment of a command line: preset < ``--config`` file < flags.

    Args:
        args: The parsed command line.
        market: Scenario of one sub-run of the ground-truth comparison (set over the
            flags as ``data.market``); ``None`` for an ordinary run.
        pretrained_use: With ``market``: the sub-run of one ``pretrained_variants`` entry,
            i.e. the sequence encoders of ``modes`` with ``training.pretrained`` set to
            ``pretrain`` and this ``use``. The sub-runs record ``pretrained_variants`` empty:
            each is an ordinary run (resumable on its own).

    Raises:
        UserError: for an unreadable file or a flag mistake.
        ConfigError: for any invalid key or value (one line, paths named).
    """
    if args.config is not None and not args.config.is_file():
        raise UserError(f"--config {args.config}: no such file")
    overrides = cli_overrides(args)
    if market is not None:
        overrides = {**overrides, "data": {**overrides.get("data", {}), "market": market}}
        overrides["pretrained_variants"] = []
    if pretrained_use is not None:
        base = resolve_experiment(args.mode, args.config, overrides, default_preset=DEFAULT_PRESET)
        training = dict(overrides.get("training", {}))
        training["pretrained"] = {"pretrain": True, "use": pretrained_use}
        overrides = {
            **overrides,
            "modes": list(pretrainable_modes(base.modes)),
            "training": training,
        }
    return resolve_experiment(args.mode, args.config, overrides, default_preset=DEFAULT_PRESET)


def pretrainable_modes(modes: Sequence[str]) -> tuple[str, ...]:
    """The modes of ``modes`` that a pretrained-variant sub-run trains (sequence encoders).

    Raises:
        UserError: if there are none.
    """
    found = tuple(m for m in modes if m in runner.PRETRAINABLE_MODES)
    if not found:
        raise UserError(
            f"pretrained_variants: modes {list(modes)} hold no pretrainable encoder; add one "
            f"of {', '.join(runner.PRETRAINABLE_MODES)}"
        )
    return found


def check_pretrained_variants(args: argparse.Namespace, config: ExperimentConfig) -> None:
    """Refuse ``pretrained_variants`` where it cannot apply (named, one line).

    It is a row set of the ground-truth comparison: an ordinary run (real data or one
    ``--market``) uses ``--pretrain``/``--pretrained-use``, and the base rows must train
    from scratch for the variants to be compared with them.
    """
    if not config.pretrained_variants:
        return
    if not is_ground_truth_run(args, config):
        raise UserError(
            "pretrained_variants / --pretrained-variants apply to the ground-truth comparison "
            "(no --data-dir or --market, or --market all); for one run use --pretrain with "
            "--pretrained-use"
        )
    if config.training.pretrained.enabled:
        raise UserError(
            "pretrained_variants with training.pretrained (--pretrain / --pretrained-encoder): "
            "the base rows must train from scratch; give one of them"
        )
    pretrainable_modes(config.modes)


def is_ground_truth_run(args: argparse.Namespace, config: ExperimentConfig) -> bool:
    """Whether the command line asks for the ground-truth comparison (every scenario).

    ``--market all``, or nothing that chooses the data: no ``--data-dir``, no ``--market``
    and no ``data.data_dir`` / ``data.market`` in the config file. This is the default job.
    """
    if args.market is not None:
        return bool(args.market == "all")
    chosen = config.data.model_fields_set & {"data_dir", "database", "market"}
    return config.data.data_dir is None and config.data.database is None and not chosen


def default_output(choice: str, now: dt.datetime | None = None, root: Path | None = None) -> Path:
    """``<output root>/<encoder or all>/<YYYY-MM-DD_HHMMSS>`` (root: :data:`OUTPUT_ROOT`)."""
    stamp = (now or dt.datetime.now()).strftime("%Y-%m-%d_%H%M%S")
    return (OUTPUT_ROOT if root is None else root) / choice / stamp


def index_root(run_dir: Path, output_root: Path | None) -> Path:
    """Where the run's experiments index lives: the output root, or the run's parent.

    A run outside the given (or default) root indexes into its own parent folder, so a
    run never writes beside itself anywhere else.
    """
    root = OUTPUT_ROOT if output_root is None else output_root
    try:
        run_dir.resolve().relative_to(root.resolve())
    except ValueError:
        return run_dir.parent
    return root


def load_datasets(
    symbols: Sequence[str],
    data_dir: Path,
    features: FeatureConfig,
    start: str | None,
    end: str | None,
    database: str | None = None,
) -> tuple[list[SymbolDataset], list[str]]:
    """Every symbol's dataset and the data-quality warnings raised while loading.

    ``database`` (``data.database``) is read instead of ``data_dir`` when given.
    """
    datasets = []
    source = {"database": database} if database is not None else {"data_dir": data_dir}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQualityWarning)
        for symbol in symbols:
            datasets.append(load_symbol_dataset(symbol, features, start=start, end=end, **source))
    return datasets, [str(w.message) for w in caught]


def _spec_from_args(
    args: argparse.Namespace,
    market: str | None = None,
    stamp: dt.datetime | None = None,
    pretrained_use: str | None = None,
) -> tuple[runner.RunSpec, Path, bool]:
    """A new run's spec from the command line (and its data dir, synthetic flag).

    ``market`` names one scenario of the ground-truth comparison: its run goes to
    ``<run directory>/<market>`` and always reads the synthetic market; with
    ``pretrained_use`` the variant's run goes to ``<run directory>/<market>-pretrained-<use>``.
    """
    config = resolve_cli_config(args, market, pretrained_use)
    data_dir, synthetic = resolve_data_dir(config)
    modes = config.modes
    label = "all" if set(modes) == set(encoder_names()) else "-".join(modes)
    output = (
        args.output
        if args.output is not None
        else default_output(label, now=stamp, root=args.output_root)
    )
    if market is not None:
        # One sub-run per scenario (and pretrained variant) of the ground-truth comparison.
        output = output / variant_folder(market, pretrained_use)
    spec = runner.RunSpec(
        output_dir=str(output), data_dir=str(data_dir), config=config, synthetic=synthetic
    )
    return spec, data_dir, synthetic


def variant_folder(market: str, pretrained_use: str | None = None) -> str:
    """``sequence`` or ``sequence-pretrained-frozen``: a sub-run's folder in the comparison."""
    return market if pretrained_use is None else f"{market}-pretrained-{pretrained_use}"


def _spec_from_run_dir(run_dir: Path) -> runner.RunSpec:
    """The recorded spec of the run to resume."""
    path = run_dir / runner.RUN_FILE
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: no {runner.RUN_FILE} there; not a run directory")
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["spec"]
        spec = runner.RunSpec.from_dict(recorded)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--resume {run_dir}: unreadable {runner.RUN_FILE}: {exc}") from None
    # The directory may have moved since; the recorded output_dir is informative only.
    return runner.RunSpec(
        output_dir=str(run_dir),
        data_dir=spec.data_dir,
        config=spec.config,
        synthetic=spec.synthetic,
    )


def _progress(total: int, done: int) -> Any:
    """A rich progress bar over jobs (plain lines when not on a terminal)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]walk-forward jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    task = progress.add_task("", total=total, completed=done)
    return progress, task


def run(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run; raises :class:`UserError` for user mistakes."""
    args = build_parser().parse_args(argv)
    if args.ray_address is not None and args.executor != "ray":
        raise UserError("--ray-address needs --executor ray")
    if args.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL_HINT}")
    args.workers = parse_workers(args.workers)
    if args.print_config:
        if args.resume:
            config = _spec_from_run_dir(args.resume).config
        else:
            config = resolve_cli_config(args)
            if is_ground_truth_run(args, config):
                print(
                    "# ground-truth comparison: this experiment runs once per data.market in "
                    f"{list(MARKET_NAMES)}, then the ground-truth table"
                )
                for use in config.pretrained_variants:
                    print(
                        f"# and once more per market for pretrained_variants {use!r}: the "
                        "sequence encoders with training.pretrained {pretrain: true, use: "
                        f"{use}}}"
                    )
                config = resolve_cli_config(args, MARKET_NAMES[0])
        print(config.to_yaml(), end="")
        return 0
    if args.tracking_uri is not None and args.tracking != "mlflow":
        raise UserError("--tracking-uri needs --tracking mlflow")
    if args.tracking == "mlflow" and importlib.util.find_spec("mlflow") is None:
        hint = tracking.MLFLOW_INSTALL_HINT
        raise UserError(f"--tracking mlflow needs MLflow, which is not installed: {hint}")
    if args.resume is not None:
        spec = _spec_from_run_dir(args.resume)
        data_dir, synthetic = Path(spec.data_dir), spec.synthetic
        if synthetic:
            ensure_synthetic_dataset(data_dir, market_scenario(spec.config.data.market))
        return _run_one(args, spec, data_dir, synthetic, "resume")
    config = resolve_cli_config(args)
    check_pretrained_variants(args, config)
    if is_ground_truth_run(args, config):
        with reuse_pools():  # the three markets' jobs share one pool of started workers
            return run_ground_truth(args)
    spec, data_dir, synthetic = _spec_from_args(args)
    return _run_one(args, spec, data_dir, synthetic, spec.preset)


def _run_one(
    args: argparse.Namespace,
    spec: runner.RunSpec,
    data_dir: Path,
    synthetic: bool,
    label: str,
) -> int:
    """Load, print the windows, and (unless ``--dry-run``) execute one run."""
    planned = _plan_from_args(args, spec, data_dir, synthetic, label)
    if planned is None:
        return 0
    run_planned(
        [planned], workers=args.workers, executor=args.executor, ray_address=args.ray_address
    )
    return finish_run(planned, publish=args.publish, output_root=args.output_root)


def _plan_from_args(
    args: argparse.Namespace,
    spec: runner.RunSpec,
    data_dir: Path,
    synthetic: bool,
    label: str,
) -> PlannedRun | None:
    """Load the data, print it and the windows, and plan the run (None with ``--dry-run``)."""
    datasets, notes = load_datasets(
        spec.symbols, data_dir, spec.features, spec.start, spec.end, spec.config.data.database
    )
    print(describe_data(datasets, data_dir, synthetic, spec.market))
    for note in notes:
        print(f"  warning: {note}")

    sessions, bars = common_sessions(datasets)
    wf_config = spec.walk_forward
    windows = generate_windows(bars, wf_config)
    table = window_table(windows, sessions, bars)
    print(
        f"\nwalk-forward ({label}): {len(windows)} window(s), train {wf_config.train_sessions} "
        f"sessions (val {wf_config.val_sessions}), test {wf_config.test_sessions}, "
        f"purge gap >= {wf_config.purge_bars} bars"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string())
    if args.dry_run:
        print("\ndry run: nothing trained")
        return None
    return plan_run(
        spec,
        windows,
        sessions,
        resume=args.resume is not None,
        tracker=tracking.make_tracker(args.tracking, spec.output_dir, args.tracking_uri),
    )


GROUND_TRUTH_FILE = "ground_truth.md"
"""The ground-truth table, at the root of a ground-truth comparison run."""
GROUND_TRUTH_PLOT = "ground_truth.png"
"""Its picture: every row's Sharpe minus flat with the interval, filled when Holm-significant."""


def run_ground_truth(args: argparse.Namespace) -> int:
    """Every scenario as its own sub-run under one run directory, then the table.

    With ``pretrained_variants``, each scenario also gets one sub-run per use (the
    sequence encoders on per-window pretrained trunks), tested with the scenario's own run
    as one family in the table (:func:`backend.evaluation.ground_truth.ground_truth_table`).
    """
    runs: dict[str, dict[str, Any]] = {}
    root: Path | None = None
    spec: runner.RunSpec | None = None
    stamp = dt.datetime.now()
    uses = resolve_cli_config(args).pretrained_variants
    # Plan every sub-run first, then run all their jobs through one executor (no worker
    # waits for one market's slowest job), then write each sub-run's report.
    planned: list[tuple[str, str | None, PlannedRun, Path]] = []
    for market in MARKET_NAMES:
        print(f"\n=== ground-truth market: {market} ({MARKET_SCENARIOS[market].description})")
        spec, data_dir, synthetic = _spec_from_args(args, market, stamp)
        root = Path(spec.output_dir).parent
        plan = _plan_from_args(args, spec, data_dir, synthetic, f"{spec.preset}, market {market}")
        if plan is not None:
            planned.append((market, None, plan, data_dir))
        for use in uses:
            print(f"\n=== ground-truth market: {market}, sequence encoders pretrained ({use})")
            vspec, _, _ = _spec_from_args(args, market, stamp, pretrained_use=use)
            label = f"{vspec.preset}, market {market}, pretrained {use}"
            vplan = _plan_from_args(args, vspec, data_dir, synthetic, label)
            if vplan is not None:
                planned.append((market, use, vplan, data_dir))
    if args.dry_run or root is None or spec is None:
        return 0
    run_planned(
        [p for _, _, p, _ in planned],
        workers=args.workers,
        executor=args.executor,
        ray_address=args.ray_address,
    )
    for market, variant, plan, market_dir in planned:
        code = finish_run(plan, publish=args.publish, output_root=args.output_root)
        if code != 0:
            return code
        finished = _finished_run(plan.spec, market_dir)
        if variant is None:
            runs[market] = {**finished, "variants": runs.get(market, {}).get("variants", {})}
        else:
            runs.setdefault(market, {"variants": {}})["variants"][variant] = finished
    table = ground_truth.ground_truth_table(runs, spec.symbols[0], spec.modes, seed=spec.seed)
    runner.write_json_atomic(root / "ground_truth.json", table)
    text = ground_truth.render_ground_truth_markdown(table, spec.symbols[0])
    (root / GROUND_TRUTH_FILE).write_text(text, encoding="utf-8")
    picture = ground_truth.plot_ground_truth(table, root / GROUND_TRUTH_PLOT)
    # The root's report.md (what the console renders): the table and each market's report.
    folders = [variant_folder(m, u) for m in runs for u in (None, *runs[m]["variants"])]
    links = ", ".join(f"[{f}]({f}/report.md)" for f in folders)
    image = (
        "" if picture is None else f"![Sharpe minus flat per market and mode]({picture.name})\n\n"
    )
    (root / "report.md").write_text(
        f"{text}\n{image}Per-market run reports: {links}.\n", encoding="utf-8"
    )
    print("\n" + text)
    print(f"ground-truth table: {root / GROUND_TRUTH_FILE}")
    return 0


def _finished_run(spec: runner.RunSpec, data_dir: Path) -> dict[str, Any]:
    """What the table reads of a finished sub-run: metrics, job results, edge, modes."""
    out = Path(spec.output_dir)
    run_info = json.loads((out / runner.RUN_FILE).read_text(encoding="utf-8"))
    jobs = [
        runner.Job(
            int(j["window"]),
            str(j["mode"]),
            tuple(j["fit"]),
            tuple(j["val"]),
            tuple(j["test"]),
            int(j.get("replicate", 0)),
        )
        for j in _recorded_jobs(out)
    ]
    marker = read_marker(data_dir) or {}
    return {
        "metrics": json.loads((out / "metrics.json").read_text(encoding="utf-8")),
        "results": runner.collect_results(spec, jobs) if jobs else {},
        "edge": (marker.get("theoretical_edge") or {}).get(spec.symbols[0], {}),
        "run_info": run_info,
        "modes": spec.modes,
    }


def _recorded_jobs(out: Path) -> list[dict[str, Any]]:
    """``(window, mode, replicate, dates)`` of every finished job below ``out``."""
    jobs = []
    for path in sorted((out / "windows").glob("w*/*/" + runner.RESULT_FILE)):
        data = json.loads(path.read_text(encoding="utf-8"))
        jobs.append(
            {
                "window": data["window"],
                "mode": data["mode"],
                "replicate": data.get("replicate", 0),
                "fit": data["fit_sessions"],
                "val": data["val_sessions"],
                "test": data["test_sessions"],
            }
        )
    return jobs


@dataclasses.dataclass
class PlannedRun:
    """A run whose ``run.json`` is written and whose pending jobs are known."""

    spec: runner.RunSpec
    jobs: list[runner.Job]
    """Every job of the run."""
    pending: list[runner.Job]
    """The jobs without a complete ``result.json`` (all of them unless resuming)."""
    tracker: tracking.Tracker

    @property
    def out(self) -> Path:
        """The run directory."""
        return Path(self.spec.output_dir)


def plan_run(
    spec: runner.RunSpec,
    windows: Sequence[Any],
    sessions: pd.DatetimeIndex,
    *,
    resume: bool = False,
    tracker: tracking.Tracker | None = None,
) -> PlannedRun:
    """Check the run, write its ``run.json``, pretrain its trunks; nothing is trained yet."""
    tracker = tracker or tracking.NullTracker()
    out = Path(spec.output_dir)
    jobs = runner.plan_jobs(windows, sessions, spec.modes, spec.seeds)
    if spec.config.training.pretrained.bundle is not None:
        for job in jobs:  # before anything is written: a refused bundle leaves no run
            try:
                runner.check_pretrained(spec, job)
            except (ValueError, FileNotFoundError) as exc:
                raise UserError(f"--pretrained-encoder, job {job.name}: {exc}") from None
    if not resume:
        if (out / runner.RUN_FILE).exists():
            raise UserError(f"--output {out}: already holds a run; use --resume {out}")
        runner.write_run_json(spec, windows, jobs)
    else:
        recorded = json.loads((out / runner.RUN_FILE).read_text(encoding="utf-8"))
        if [w["test"] for w in recorded["windows"]] != [
            list(j.test) for j in jobs if j.replicate == 0 and j.mode == spec.modes[0]
        ]:
            raise UserError(
                f"--resume {out}: the data now give other windows than the run recorded; "
                "restore the data or start a new run"
            )
    pending = [
        j
        for j in jobs
        if runner.load_complete_result(runner.job_dir(out, j) / runner.RESULT_FILE, j, spec) is None
    ]
    if spec.config.training.pretrained.pretrain and pending:
        # Each window's trunk sees that window's fit range only (backend/supervised/pretrain.py).
        from backend.supervised.pretrain import pretrain_run

        trunks = pretrain_run(spec, windows, sessions, only_windows={j.window for j in pending})
        print(f"pretrained trunks: {len(trunks)} under {out / 'pretrained'}")
    print(
        f"\nrun directory: {out}\njobs: {len(jobs)} ({len(windows)} window(s) x "
        f"{len(spec.modes)} mode(s): {', '.join(spec.modes)}), {len(jobs) - len(pending)} "
        f"already done, {len(pending)} to run"
    )
    tracker.start(json.loads((out / runner.RUN_FILE).read_text(encoding="utf-8")))
    return PlannedRun(spec=spec, jobs=jobs, pending=pending, tracker=tracker)


def run_planned(
    planned: Sequence[PlannedRun],
    *,
    workers: int | str = 1,
    executor: str = "local",
    ray_address: str | None = None,
) -> None:
    """Run the pending jobs of every planned run through one executor, one progress bar.

    One run's jobs go in plan order (window by window). Several runs' jobs (the
    ground-truth comparison) go together, those whose encoder reads a window of bars (the
    costly ones) first, so the cheap ones fill the workers' tails. The order changes no
    result: each job's seed comes from the job.
    """
    items = [(p.spec, job) for p in planned for job in p.pending]
    if len(planned) > 1:
        items.sort(key=lambda item: not uses_sequence_observation(item[1].mode))  # stable
    n_workers = resolve_workers(workers, len(items))
    total = sum(len(p.jobs) for p in planned)
    print(f"\n{len(items)} job(s) to run on {n_workers} worker(s) ({executor})")
    progress, task = _progress(total, total - len(items))
    by_dir = {p.spec.output_dir: p for p in planned}

    def on_done(spec: runner.RunSpec, job: runner.Job, result: dict[str, Any]) -> None:
        sharpe = ", ".join(
            f"{s} Sharpe {reports.fmt(r['metrics']['sharpe'], 3)}"
            for s, r in result["symbols"].items()
        )
        label = job.name if len(planned) == 1 else f"{Path(spec.output_dir).name}/{job.name}"
        progress.console.print(f"  {label}: {sharpe} ({result['job_time_s']:.0f} s)")
        progress.update(task, advance=1, description=label)
        by_dir[spec.output_dir].tracker.log_job(job.name, result)

    with progress:
        try:
            runner.run_spec_jobs(
                items,
                workers=n_workers,
                on_done=on_done,
                executor=executor,
                ray_address=ray_address,
            )
        except BaseException as exc:
            for p in planned:
                p.tracker.finish({}, status="FAILED")
            # Finished jobs keep their result.json; say how to continue, then fail loudly.
            resumes = "; ".join(
                f"python -m backend.scripts.run_walk_forward --resume {p.out}" for p in planned
            )
            print(
                f"run stopped ({type(exc).__name__}: {exc}); finished jobs are kept, continue "
                f"with: {resumes}",
                file=sys.stderr,
            )
            raise


def finish_run(
    planned: PlannedRun, *, publish: bool = False, output_root: Path | None = None
) -> int:
    """Collect a finished run's results and write its reports; returns the exit code.

    Everything goes under the run directory and its output root's index; the tracked
    records (:data:`EXPERIMENTS_DIR`, :data:`BASELINE_RUNS_DIR`, :data:`CROSS_MODE_REPORT`)
    change only with ``publish``.
    """
    spec, out, tracker = planned.spec, planned.out, planned.tracker
    results = runner.collect_results(spec, planned.jobs)
    run_info = json.loads((out / runner.RUN_FILE).read_text(encoding="utf-8"))
    metrics = reports.write_run_report(out, run_info, results)
    tracker.finish(metrics)
    index = reports.update_experiments_index(
        index_root(out, output_root) / INDEX_FILE, out, metrics
    )
    print(f"\nexperiments index: {index}")
    all_modes = set(encoder_names()) <= set(spec.modes)
    if all_modes:
        cross = reports.write_cross_mode_report(out / CROSS_MODE_FILE, metrics, out)
        print(f"cross-mode report: {cross}")
    if publish:
        published = reports.update_experiments_index(EXPERIMENTS_DIR / "README.md", out, metrics)
        print(f"published to the tracked index: {published}")
        if spec.modes == ("manual",):
            archived = reports.archive_baseline_run(BASELINE_RUNS_DIR, out, metrics)
            print(f"published baseline run archive: {archived}")
        if all_modes:
            cross = reports.write_cross_mode_report(CROSS_MODE_REPORT, metrics, out)
            print(f"published cross-mode report: {cross}")
    for t in metrics["tests"]:
        if t["strategy"] in spec.modes and t["metric"] == "sharpe":
            print(f"  {t['verdict']}")
    print(f"report: {out / 'report.md'}")
    if (out / "tensorboard").is_dir():
        print(f"tensorboard: tensorboard --logdir {out / 'tensorboard'}")
    if tracker.describe():
        print(tracker.describe())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one clean line on stderr and exit code 2 for user mistakes."""
    try:
        return run(argv)
    except (
        UserError,
        ConfigError,
        DataValidationError,
        InsufficientDataError,
        FileNotFoundError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # empty ranges and other data mistakes
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
