"""The supervised lab: multi-task direction / volatility / regime forecasts on walk-forward windows.

``python -m backend.scripts.run_supervised`` with no arguments runs offline on the embedded
ground-truth markets (a synthetic SPY with planted AR(1) momentum, and the same market
without it), trains every model (LSTM, CNN, transformer trunks: the RL encoders) and the
ensembles on the ``short`` budget, compares them with the baselines on the same sessions,
writes a report under the output folder and prints its path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch as th
import yaml
from pydantic import ValidationError

from backend.config.experiment import AGENT
from backend.config.supervised import MODES, SupervisedConfig
from backend.config.training_config import FeatureConfig
from backend.data_download.intraday_features import max_lookback
from backend.data_download.synthetic_market import (
    DEFAULT_UNDERLYINGS,
    SyntheticMarketConfig,
    write_synthetic_market,
)
from backend.scripts.run_walk_forward import (
    common_sessions,
    describe_data,
    load_datasets,
    parse_symbols,
)
from backend.supervised.bundle import save_bundle
from backend.supervised.oracle import bayes_direction_accuracy, bayes_sign_accuracy
from backend.supervised.pipeline import WindowResult, run_window
from backend.supervised.report import write_report
from backend.training.train import TRAINING_ENV_DEFAULTS
from backend.training.walk_forward import (
    InsufficientDataError,
    WalkForwardConfig,
    generate_windows,
    window_table,
)
from backend.utils.atomic_io import write_text_atomic
from backend.utils.provenance import collect_provenance

EXPERIMENTS_DIR = Path("backend/evaluation/experiments/supervised")
"""Default output root (git-ignored): ``<EXPERIMENTS_DIR>/<YYYY-MM-DD_HHMMSS>/``."""
MARKETS: dict[str, float] = {"momentum": 0.3, "null": 0.0}
"""Embedded ground-truth markets: name -> planted AR(1) coefficient of bar shocks."""
NETS = ("lstm", "cnn", "transformer")


class UserError(Exception):
    """A mistake in arguments, config or data: reported as one line."""


def build_parser() -> argparse.ArgumentParser:
    """Command line of the lab."""
    p = argparse.ArgumentParser(
        prog="python -m backend.scripts.run_supervised", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="CSV store (intraday/<SYMBOL>/15m/*.csv); default: the embedded "
        "ground-truth markets, generated under the output folder",
    )
    p.add_argument("--symbols", default="SPY", help="comma-separated tickers (default SPY)")
    p.add_argument("--no-vix", action="store_true", help="no VIX features (data without VIX)")
    p.add_argument(
        "--market",
        default="all",
        choices=[*MARKETS, "all"],
        help="embedded market(s) when no --data-dir: momentum (planted AR(1) "
        "phi=0.3), null (none) or all (default)",
    )
    p.add_argument(
        "--model",
        default="all",
        help="lstm, cnn, transformer, ensemble (all three + ensembles), all, or a "
        "comma-separated list of networks (default all)",
    )
    p.add_argument(
        "--tasks",
        default="all",
        help="comma-separated subset of direction,volatility,regime (default all; "
        "direction is always included)",
    )
    p.add_argument(
        "--mode",
        default="short",
        choices=sorted(MODES),
        help="budget preset: short (minutes on 2 CPU cores) or long",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--start", default=None, help="first date to load (YYYY-MM-DD)")
    p.add_argument("--end", default=None, help="last date to load, inclusive")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML/JSON with SupervisedConfig fields, over the --mode preset",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"output folder (default {EXPERIMENTS_DIR}/<YYYY-MM-DD_HHMMSS>)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="load the data and print the windows, train nothing"
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )
    return p


def resolve_config(args: argparse.Namespace) -> SupervisedConfig:
    """Preset, then the config file, then ``--model`` / ``--tasks``."""
    data: dict[str, Any] = MODES[args.mode].model_dump()
    if args.config is not None:
        if not args.config.is_file():
            raise UserError(f"--config {args.config}: no such file")
        text = args.config.read_text(encoding="utf-8")
        try:
            loaded = json.loads(text) if args.config.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise UserError(f"--config {args.config}: cannot parse: {exc}") from None
        if not isinstance(loaded or {}, dict):
            raise UserError(f"--config {args.config}: expected a mapping at the top level")
        for key, value in (loaded or {}).items():
            if isinstance(value, dict) and isinstance(data.get(key), dict) and key != "encoders":
                data[key] = {**data[key], **value}
            else:
                data[key] = value
    choice = args.model.strip().lower()
    if choice in ("all", "ensemble"):
        data["models"], data["ensemble"] = list(NETS), True
    else:
        names = [n.strip() for n in choice.split(",")]
        bad = [n for n in names if n not in NETS]
        if bad:
            raise UserError(
                f"--model {args.model!r}: unknown {bad}; expected lstm, cnn, transformer, "
                "ensemble, all or a comma-separated list of networks"
            )
        data["models"] = [n for n in NETS if n in names]
        data["ensemble"] = len(data["models"]) >= 2 and data.get("ensemble", True)
    if args.tasks.strip().lower() != "all":
        tasks = [t.strip().lower() for t in args.tasks.split(",")]
        data["tasks"] = ["direction", *[t for t in tasks if t != "direction"]]
    where = f"--config {args.config}" if args.config else "options"
    try:
        return SupervisedConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise UserError(f"{where}: {loc}: {first['msg']}") from None


def _markets(args: argparse.Namespace) -> list[str]:
    return list(MARKETS) if args.market == "all" else [args.market]


def _synthetic_store(root: Path, symbols: Sequence[str], phi: float, vix: bool) -> Path:
    known = {u.symbol: u for u in DEFAULT_UNDERLYINGS}
    missing = [s for s in symbols if s not in known]
    if missing:
        raise UserError(
            f"--symbols: {missing} are not in the embedded market (it has {sorted(known)}); "
            "pass --data-dir for other symbols"
        )
    config = SyntheticMarketConfig(
        underlyings=tuple(known[s] for s in symbols),
        leveraged=(),
        include_vix=vix,
        signal_strength=phi,
    )
    write_synthetic_market(root, config)
    return root


def run_market(
    args: argparse.Namespace,
    config: SupervisedConfig,
    data_dir: Path,
    output: Path,
    *,
    title: str,
    phi: float | None,
) -> Path | None:
    """Load, cut windows, run them all, write report and bundles; returns the report path."""
    symbols = parse_symbols(args.symbols)
    features = FeatureConfig.for_agent(AGENT).replace(use_vix=not args.no_vix)
    datasets, notes = load_datasets(symbols, data_dir, features, args.start, args.end)
    print(describe_data(datasets, data_dir, phi is not None))
    for note in notes:
        print(f"  warning: {note}")
    sessions, bars = common_sessions(datasets)
    wf = config.walk_forward
    gap = max_lookback(features) + config.sequence_length + config.labels.horizon
    try:
        windows = generate_windows(
            bars,
            WalkForwardConfig(
                train_sessions=wf.train_sessions,
                test_sessions=wf.test_sessions,
                val_fraction=wf.val_fraction,
                max_windows=wf.max_windows,
                gap_bars=gap,
            ),
        )
    except InsufficientDataError as exc:
        raise UserError(str(exc)) from None
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(window_table(windows, sessions, bars).to_string())
    if args.dry_run:
        return None
    output.mkdir(parents=True, exist_ok=True)
    results: list[WindowResult] = []
    started = time.perf_counter()
    for window in windows:
        results.append(
            run_window(datasets, sessions, window, config, seed=args.seed, output_dir=output)
        )
        print(
            f"  window {window.index + 1}/{len(windows)} done "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    provenance = collect_provenance()
    extra: dict[str, Any] = {
        "data": str(data_dir),
        "symbols": ", ".join(symbols),
        "market": title,
        "mode": args.mode,
        "seed": args.seed,
        "windows": len(windows),
        "git_commit": provenance["git_commit"],
        "seconds": time.perf_counter() - started,
    }
    if phi is not None:
        h, share = config.labels.horizon, config.labels.sideways_share
        extra["oracle"] = {
            "phi": phi,
            "horizon": h,
            "direction": bayes_direction_accuracy(phi, h, share),
            "sign": bayes_sign_accuracy(phi, h, share),
        }
    report = write_report(
        results,
        output,
        tasks=config.tasks,
        nets=config.models,
        cost_rate=TRAINING_ENV_DEFAULTS.cost_rate,
        ece_bins=config.confidence.ece_bins,
        latency_budget_ms=config.latency_budget_ms,
        extra=extra,
        title=f"Supervised lab: {title}",
    )
    lab = config.model_dump(mode="json")
    for mode, net in results[-1].nets.items():
        save_bundle(
            output / "bundles" / mode,
            net,
            results[-1],
            datasets,
            feature_config=features,
            lab_config=lab,
            sequence_length=config.sequence_length,
            feature_clip=config.feature_clip,
            data_dir=data_dir,
        )
    write_text_atomic(
        output / "run.json",
        json.dumps(
            {
                "argv": sys.argv[1:],
                "config": lab,
                "features": features.to_dict(),
                "provenance": provenance,
                **{k: v for k, v in extra.items() if k != "oracle"},
            },
            indent=2,
            default=str,
        )
        + "\n",
    )
    return report


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, run every market, print the report path; :class:`UserError` for mistakes."""
    args = build_parser().parse_args(argv)
    config = resolve_config(args)
    if args.print_config:
        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
        return 0
    th.set_num_threads(config.training.torch_threads)
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    output = args.output or EXPERIMENTS_DIR / stamp
    if args.data_dir is not None:
        if not args.data_dir.is_dir():
            raise UserError(f"--data-dir {args.data_dir}: no such directory")
        report = run_market(args, config, args.data_dir, output, title=str(args.data_dir), phi=None)
        if report is not None:
            print(f"report: {report}")
        return 0
    reports = []
    for market in _markets(args):
        phi = MARKETS[market]
        sub = output / market
        store = _synthetic_store(sub / "data", parse_symbols(args.symbols), phi, not args.no_vix)
        report = run_market(
            args,
            config,
            store,
            sub,
            title=f"embedded market '{market}' (planted AR(1) phi = {phi})",
            phi=phi,
        )
        if report is not None:
            reports.append(report)
    if not reports:
        return 0
    if len(reports) == 1:
        print(f"report: {reports[0]}")
        return 0
    index = output / "report.md"
    lines = ["# Supervised lab: embedded ground-truth markets", ""]
    lines += [f"- [{r.parent.name}]({r.relative_to(output)})" for r in reports]
    write_text_atomic(index, "\n".join(lines) + "\n")
    print(f"report: {index}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: user mistakes print one line and exit 2."""
    try:
        return run(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
