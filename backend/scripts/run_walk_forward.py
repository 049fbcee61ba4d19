"""The main job: walk-forward runs of every encoder mode on the same rolling windows.

``python -m backend.scripts.run_walk_forward`` with no arguments runs the ground-truth
comparison offline: every encoder mode on each embedded synthetic market scenario
(``null``, ``momentum``, ``sequence``; ``--market`` picks one), then one table of which mode
finds which planted edge (:mod:`backend.evaluation.ground_truth`). ``--data-dir`` runs on
real bars instead (labelled as real data; no scenario). ``--dry-run`` loads and validates
the data and prints the window table without training. See ``Docs/WALK_FORWARD.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from backend.config.env_config import EnvConfig
from backend.config.training_config import FeatureConfig, TrainingSettings, config_from_dict
from backend.data_download.dataset import SymbolDataset
from backend.data_download.intraday_features import max_lookback
from backend.data_download.loader import DataQualityWarning, available_symbols
from backend.data_download.schema import DataValidationError
from backend.data_download.synthetic_market import (
    MARKET_NAMES,
    MARKET_SCENARIOS,
    ensure_scenario_dataset,
    ensure_synthetic_dataset,
    market_scenario,
    read_marker,
)
from backend.evaluation import ground_truth, tracking
from backend.evaluation import report as reports
from backend.training import walk_forward_runner as runner
from backend.training.executors import EXECUTORS, RAY_INSTALL_HINT
from backend.training.train import TRAINING_ENV_DEFAULTS
from backend.training.walk_forward import (
    MODE_PRESETS,
    RUN_PRESETS,
    InsufficientDataError,
    RunPreset,
    WalkForwardConfig,
    generate_windows,
    window_table,
)

AGENT = "SAC_INTRADAY_DSR"
DEFAULT_DATA_DIR = Path("data")
SYNTHETIC_DIR = DEFAULT_DATA_DIR / "synthetic"
REWARD_HORIZON_BARS = 1
ENCODER_MODES = ("manual", "cnn", "lstm", "transformer")
EXPERIMENTS_DIR = Path("backend/evaluation/experiments")
"""Default output root: ``<EXPERIMENTS_DIR>/<encoder or 'all'>/<YYYY-MM-DD_HHMMSS>/``."""
BASELINE_RUNS_DIR = Path("backend/evaluation/baseline_runs")
"""Where manual-only runs are archived."""
CROSS_MODE_REPORT = Path("Docs/Transformer_Experiment_Report.md")
"""Written when all four modes ran."""
CONFIG_SECTIONS = ("walk_forward", "features", "training", "env")


class UserError(Exception):
    """A mistake in arguments or data: reported as one line, never as a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of the main job."""
    parser = argparse.ArgumentParser(
        prog="python -m backend.scripts.run_walk_forward",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--symbols",
        default="SPY",
        help="comma-separated tickers (default: SPY); VIX is joined automatically",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="root holding intraday/<SYMBOL>/15m/*.csv of real bars (default: none, the "
        "embedded synthetic ground-truth markets in ./data/synthetic/<market>)",
    )
    parser.add_argument(
        "--market",
        default="all",
        choices=[*MARKET_NAMES, "all"],
        help="synthetic ground-truth market: "
        + "; ".join(f"{n}: {s.description}" for n, s in MARKET_SCENARIOS.items())
        + "; all (default): each of them and the ground-truth table. Ignored with --data-dir",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="training replicates per (window, mode), each with its own derived seed; tests "
        "use the seed-averaged session returns (default 1)",
    )
    parser.add_argument(
        "--sequence-encoder",
        default="all",
        help=f"encoder mode(s) to compare: one of {', '.join(ENCODER_MODES)}, a "
        "comma-separated list (manual,cnn) or all (default: all)",
    )
    parser.add_argument(
        "--mode",
        default="short",
        choices=sorted(MODE_PRESETS),
        help="run-budget preset: short finishes in minutes on 2 CPU cores, long is the real "
        "experiment",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--start", default=None, help="first date to load (YYYY-MM-DD)")
    parser.add_argument("--end", default=None, help="last date to load, inclusive")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML or JSON run config with optional sections 'walk_forward', 'features', "
        "'training' and 'env' (fields of WalkForwardConfig, FeatureConfig, TrainingSettings "
        "and EnvConfig); overrides the --mode preset",
    )
    parser.add_argument(
        "--stochastic-eval",
        action="store_true",
        help="sample test actions (seeded per job) instead of taking the mean action",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"run directory (default: {EXPERIMENTS_DIR}/<encoder or all>/<YYYY-MM-DD_HHMMSS>)",
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
        type=int,
        default=1,
        help="parallel job processes (default 1: serial; same results for the same seed)",
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
        help="run without VIX features, for data that have no VIX series",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="load and validate the data, print the window table, train nothing",
    )
    return parser


def resolve_data_dir(
    data_dir: Path | None, symbols: Sequence[str], market: str = "null"
) -> tuple[Path, bool]:
    """The store to read, and whether it is an embedded synthetic market.

    An explicit ``--data-dir`` is real data, used as given. Otherwise the scenario's
    synthetic market is generated (once, offline) in ``./data/synthetic/<market>``.
    """
    if data_dir is not None:
        if not data_dir.is_dir():
            raise UserError(f"--data-dir {data_dir}: no such directory")
        present = set(available_symbols(data_dir))
        missing = [s for s in symbols if s not in present]
        if present and missing:
            raise UserError(
                f"--data-dir {data_dir}: no bars for {missing}; it has {sorted(present)}"
            )
        return data_dir, False
    return ensure_scenario_dataset(SYNTHETIC_DIR, market), True


def _read_mapping(path: Path) -> dict[str, Any]:
    """The config file's top-level mapping, sections checked."""
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UserError(f"--config {path}: cannot parse: {exc}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(CONFIG_SECTIONS))
    if unknown:
        raise UserError(
            f"--config {path}: unknown section(s) {unknown}; expected "
            + ", ".join(f"'{s}'" for s in CONFIG_SECTIONS)
        )
    return data


def load_full_config(
    path: Path | None, preset: RunPreset, modes: Sequence[str]
) -> tuple[WalkForwardConfig, FeatureConfig, EnvConfig, dict[str, TrainingSettings]]:
    """Windows, features, env and per-mode training settings of a run.

    Precedence, lowest first: dataclass defaults, the ``--mode`` preset (windows and
    per-mode training overrides), then the config file's sections. ``env`` starts from
    :data:`backend.training.train.TRAINING_ENV_DEFAULTS`, as ``train.load_run_file`` does,
    and the feature preset of the agent is the base of ``features``. A file that sets
    ``walk_forward.test_sessions`` (and not ``windows``) drops the preset's window count.
    """
    data = _read_mapping(path) if path is not None else {}
    where = f"--config {path}" if path is not None else "preset"
    for section in CONFIG_SECTIONS:
        if not isinstance(data.get(section) or {}, dict):
            raise UserError(f"{where}: section '{section}' must be a mapping")
    training_file = dict(data.get("training") or {})
    if "encoder_mode" in training_file:
        raise UserError(
            f"{where}: training.encoder_mode is chosen by --sequence-encoder; remove it"
        )
    try:
        wf_file = dict(data.get("walk_forward") or {})
        wf_base = preset.walk_forward.to_dict()
        if "test_sessions" in wf_file and "windows" not in wf_file:
            wf_base["windows"] = None  # an explicit test length beats the preset's tiling
        wf = config_from_dict(WalkForwardConfig, {**wf_base, **wf_file})
        features = config_from_dict(
            FeatureConfig,
            {**FeatureConfig.for_agent(AGENT).to_dict(), **(data.get("features") or {})},
        )
        env = EnvConfig.from_dict({**TRAINING_ENV_DEFAULTS.to_dict(), **(data.get("env") or {})})
        training = {
            mode: config_from_dict(
                TrainingSettings, {**preset.training_overrides(mode), **training_file}
            )
            for mode in modes
        }
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"{where}: {exc}") from None
    return wf, features, env, training


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


def parse_modes(text: str) -> tuple[str, ...]:
    """``"all"`` or ``"cnn,manual"`` -> modes in canonical order (manual first).

    Canonical order makes ``manual`` the reference column of every report and keeps the
    job grid (and so the output) independent of how the list was typed.
    """
    if text.strip().lower() == "all":
        return ENCODER_MODES
    names = [s.strip().lower() for s in text.split(",")]
    bad = [n for n in names if n not in ENCODER_MODES]
    if bad or not names:
        raise UserError(
            f"--sequence-encoder {text!r}: unknown mode(s) {bad}; expected "
            f"{', '.join(ENCODER_MODES)}, a comma-separated list of them, or all"
        )
    return tuple(m for m in ENCODER_MODES if m in names)


def default_output(choice: str, now: dt.datetime | None = None) -> Path:
    """``backend/evaluation/experiments/<encoder or all>/<YYYY-MM-DD_HHMMSS>``."""
    stamp = (now or dt.datetime.now()).strftime("%Y-%m-%d_%H%M%S")
    return EXPERIMENTS_DIR / choice / stamp


def load_datasets(
    symbols: Sequence[str],
    data_dir: Path,
    features: FeatureConfig,
    start: str | None,
    end: str | None,
) -> tuple[list[SymbolDataset], list[str]]:
    """Every symbol's dataset and the data-quality warnings raised while loading."""
    datasets = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQualityWarning)
        for symbol in symbols:
            datasets.append(SymbolDataset.load(symbol, data_dir, features, start=start, end=end))
    return datasets, [str(w.message) for w in caught]


def _spec_from_args(
    args: argparse.Namespace, market: str | None = None
) -> tuple[runner.RunSpec, Path, bool]:
    """A new run's spec from the command line (and its data dir, synthetic flag)."""
    symbols = parse_symbols(args.symbols)
    data_dir, synthetic = resolve_data_dir(args.data_dir, symbols, market or "null")
    modes = parse_modes(args.sequence_encoder)
    preset = RUN_PRESETS[args.mode]
    wf, features, env, training = load_full_config(args.config, preset, modes)
    if args.no_vix:
        features = replace(features, use_vix=False)
    needed_gap = max_lookback(features) + REWARD_HORIZON_BARS
    wf = replace(wf, gap_bars=max(wf.gap_bars, needed_gap))
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be >= 0")
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: must be >= 1")
    label = "all" if set(modes) == set(ENCODER_MODES) else "-".join(modes)
    output = args.output if args.output is not None else default_output(label)
    if market is not None and args.market == "all":
        output = output / market  # one sub-run per scenario of the ground-truth comparison
    spec = runner.RunSpec(
        output_dir=str(output),
        data_dir=str(data_dir),
        symbols=tuple(symbols),
        modes=modes,
        preset=args.mode,
        seed=args.seed,
        stochastic_eval=args.stochastic_eval,
        walk_forward=wf,
        features=features,
        env=env,
        training=training,
        start=args.start,
        end=args.end,
        synthetic=synthetic,
        market=market if synthetic else None,
        seeds=args.seeds,
    )
    return spec, data_dir, synthetic


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
    return replace(spec, output_dir=str(run_dir))


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
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be >= 1")
    if args.tracking_uri is not None and args.tracking != "mlflow":
        raise UserError("--tracking-uri needs --tracking mlflow")
    if args.tracking == "mlflow" and importlib.util.find_spec("mlflow") is None:
        hint = tracking.MLFLOW_INSTALL_HINT
        raise UserError(f"--tracking mlflow needs MLflow, which is not installed: {hint}")
    if args.resume is not None:
        spec = _spec_from_run_dir(args.resume)
        data_dir, synthetic = Path(spec.data_dir), spec.synthetic
        if synthetic:
            if spec.market is not None:
                ensure_synthetic_dataset(data_dir, market_scenario(spec.market))
            else:
                ensure_synthetic_dataset(data_dir)
        return _run_one(args, spec, data_dir, synthetic, "resume")
    if args.data_dir is None and args.market == "all":
        return run_ground_truth(args)
    market = None if args.data_dir is not None else args.market
    spec, data_dir, synthetic = _spec_from_args(args, market)
    return _run_one(args, spec, data_dir, synthetic, spec.preset)


def _run_one(
    args: argparse.Namespace,
    spec: runner.RunSpec,
    data_dir: Path,
    synthetic: bool,
    label: str,
) -> int:
    """Load, print the windows, and (unless ``--dry-run``) execute one run."""
    datasets, notes = load_datasets(spec.symbols, data_dir, spec.features, spec.start, spec.end)
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
        f"purge gap >= {wf_config.gap_bars} bars"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string())
    if args.dry_run:
        print("\ndry run: nothing trained")
        return 0
    return execute(
        spec,
        windows,
        sessions,
        workers=args.workers,
        resume=args.resume is not None,
        executor=args.executor,
        ray_address=args.ray_address,
        tracker=tracking.make_tracker(args.tracking, spec.output_dir, args.tracking_uri),
    )


GROUND_TRUTH_FILE = "ground_truth.md"
"""The ground-truth table, at the root of a ``--market all`` run."""


def run_ground_truth(args: argparse.Namespace) -> int:
    """Every scenario as its own sub-run under one output root, then the table."""
    runs: dict[str, dict[str, Any]] = {}
    root: Path | None = None
    spec: runner.RunSpec | None = None
    for market in MARKET_NAMES:
        print(f"\n=== ground-truth market: {market} ({MARKET_SCENARIOS[market].description})")
        spec, data_dir, synthetic = _spec_from_args(args, market)
        root = Path(spec.output_dir).parent
        code = _run_one(args, spec, data_dir, synthetic, f"{spec.preset}, market {market}")
        if code != 0 or args.dry_run:
            if code != 0:
                return code
            continue
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
        runs[market] = {
            "metrics": json.loads((out / "metrics.json").read_text(encoding="utf-8")),
            "results": runner.collect_results(spec, jobs) if jobs else {},
            "edge": (marker.get("theoretical_edge") or {}).get(spec.symbols[0], {}),
            "run_info": run_info,
        }
    if args.dry_run or root is None or spec is None:
        return 0
    table = ground_truth.ground_truth_table(runs, spec.symbols[0], spec.modes)
    runner.write_json_atomic(root / "ground_truth.json", table)
    text = ground_truth.render_ground_truth_markdown(table, spec.symbols[0])
    (root / GROUND_TRUTH_FILE).write_text(text, encoding="utf-8")
    print("\n" + text)
    print(f"ground-truth table: {root / GROUND_TRUTH_FILE}")
    return 0


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


def execute(
    spec: runner.RunSpec,
    windows: Sequence[Any],
    sessions: pd.DatetimeIndex,
    *,
    workers: int = 1,
    resume: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    tracker: tracking.Tracker | None = None,
) -> int:
    """Run the pending jobs, then write the reports; returns the exit code."""
    tracker = tracker or tracking.NullTracker()
    out = Path(spec.output_dir)
    jobs = runner.plan_jobs(windows, sessions, spec.modes, spec.seeds)
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
    print(
        f"\nrun directory: {out}\njobs: {len(jobs)} ({len(windows)} window(s) x "
        f"{len(spec.modes)} mode(s): {', '.join(spec.modes)}), {len(jobs) - len(pending)} "
        f"already done, {len(pending)} to run on {workers} worker(s) ({executor})"
    )
    progress, task = _progress(len(jobs), len(jobs) - len(pending))
    tracker.start(json.loads((out / runner.RUN_FILE).read_text(encoding="utf-8")))

    def on_done(job: runner.Job, result: dict[str, Any]) -> None:
        sharpe = ", ".join(
            f"{s} Sharpe {reports.fmt(r['metrics']['sharpe'], 3)}"
            for s, r in result["symbols"].items()
        )
        progress.console.print(f"  {job.name}: {sharpe} ({result['job_time_s']:.0f} s)")
        progress.update(task, advance=1, description=job.name)
        tracker.log_job(job.name, result)

    with progress:
        try:
            runner.run_jobs(
                spec,
                pending,
                workers=workers,
                on_done=on_done,
                executor=executor,
                ray_address=ray_address,
            )
        except BaseException as exc:
            tracker.finish({}, status="FAILED")
            # Finished jobs keep their result.json; say how to continue, then fail loudly.
            print(
                f"run stopped ({type(exc).__name__}: {exc}); finished jobs are kept, continue "
                f"with: python -m backend.scripts.run_walk_forward --resume {out}",
                file=sys.stderr,
            )
            raise
    results = runner.collect_results(spec, jobs)
    run_info = json.loads((out / runner.RUN_FILE).read_text(encoding="utf-8"))
    metrics = reports.write_run_report(out, run_info, results)
    tracker.finish(metrics)
    index = reports.update_experiments_index(EXPERIMENTS_DIR / "README.md", out, metrics)
    print(f"\nexperiments index: {index}")
    if spec.modes == ("manual",):
        archived = reports.archive_baseline_run(BASELINE_RUNS_DIR, out, metrics)
        print(f"baseline run archived: {archived}")
    if set(ENCODER_MODES) <= set(spec.modes):
        cross = reports.write_cross_mode_report(CROSS_MODE_REPORT, metrics, out)
        print(f"cross-mode report: {cross}")
    for c in metrics["comparisons"]:
        print(f"  {c['verdict']}")
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
    except (UserError, DataValidationError, InsufficientDataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # config validation and empty ranges
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
