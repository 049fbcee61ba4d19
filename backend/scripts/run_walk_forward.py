"""The main job: walk-forward runs of every encoder mode on the same rolling windows.

``python -m backend.scripts.run_walk_forward`` with no arguments runs offline on the
embedded synthetic market. ``--dry-run`` loads and validates the data and prints the window
table (dates and bar counts of fit, validation and test) without training.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from backend.config.training_config import FeatureConfig, config_from_dict
from backend.data_download.dataset import SymbolDataset
from backend.data_download.intraday_features import max_lookback
from backend.data_download.loader import DataQualityWarning, available_symbols
from backend.data_download.schema import DataValidationError
from backend.data_download.synthetic_market import ensure_synthetic_dataset
from backend.training.walk_forward import (
    MODE_PRESETS,
    InsufficientDataError,
    WalkForwardConfig,
    generate_windows,
    window_table,
)

AGENT = "SAC_INTRADAY_DSR"
DEFAULT_DATA_DIR = Path("data")
SYNTHETIC_DIR = DEFAULT_DATA_DIR / "synthetic"
REWARD_HORIZON_BARS = 1
ENCODER_MODES = ("manual", "cnn", "lstm", "transformer")


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
        help="root holding intraday/<SYMBOL>/15m/*.csv (default: ./data if it has the "
        "symbols, else the embedded synthetic market in ./data/synthetic)",
    )
    parser.add_argument(
        "--sequence-encoder",
        default="all",
        choices=[*ENCODER_MODES, "all"],
        help="encoder mode(s) to compare (default: all)",
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
        help="YAML or JSON run config with optional sections 'walk_forward' and 'features' "
        "(fields of WalkForwardConfig and FeatureConfig); overrides the --mode preset",
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


def resolve_data_dir(data_dir: Path | None, symbols: Sequence[str]) -> tuple[Path, bool]:
    """The store to read, and whether it is the embedded synthetic market.

    An explicit ``--data-dir`` is used as given. Otherwise ``./data`` is used when it holds
    every requested symbol, else the synthetic market is generated (once, offline).
    """
    if data_dir is not None:
        if not data_dir.is_dir():
            raise UserError(f"--data-dir {data_dir}: no such directory")
        return data_dir, False
    present = set(available_symbols(DEFAULT_DATA_DIR))
    if present and all(s in present for s in symbols):
        return DEFAULT_DATA_DIR, False
    return ensure_synthetic_dataset(SYNTHETIC_DIR), True


def load_run_config(
    path: Path | None, preset: WalkForwardConfig
) -> tuple[WalkForwardConfig, FeatureConfig]:
    """Window and feature settings: the preset, overridden by the config file's sections."""
    features = FeatureConfig.for_agent(AGENT)
    if path is None:
        return preset, features
    if not path.is_file():
        raise UserError(f"--config {path}: no such file")
    text = path.read_text()
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    data = data or {}
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping at the top level")
    unknown = sorted(set(data) - {"walk_forward", "features"})
    if unknown:
        raise UserError(
            f"--config {path}: unknown section(s) {unknown}; expected 'walk_forward', 'features'"
        )
    try:
        if "walk_forward" in data:
            preset = config_from_dict(
                WalkForwardConfig, {**preset.to_dict(), **data["walk_forward"]}
            )
        if "features" in data:
            features = config_from_dict(FeatureConfig, {**features.to_dict(), **data["features"]})
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"--config {path}: {exc}") from None
    return preset, features


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


def describe_data(datasets: Sequence[SymbolDataset], data_dir: Path, synthetic: bool) -> str:
    """Per-symbol summary lines for the console."""
    source = "embedded synthetic market" if synthetic else "CSV store"
    lines = [f"data: {data_dir} ({source})"]
    for ds in datasets:
        idx = ds.market.index
        lines.append(
            f"  {ds.symbol:<5} {idx[0]:%Y-%m-%d %H:%M} .. {idx[-1]:%Y-%m-%d %H:%M} NY  "
            f"{len(idx):>6} bars  {len(ds.sessions):>4} sessions  "
            f"{len(idx) - ds.warmup_rows:>6} past feature warm-up"
        )
    return "\n".join(lines)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run; raises :class:`UserError` for user mistakes."""
    args = build_parser().parse_args(argv)
    symbols = parse_symbols(args.symbols)
    data_dir, synthetic = resolve_data_dir(args.data_dir, symbols)
    preset, feature_config = load_run_config(args.config, MODE_PRESETS[args.mode])
    if args.no_vix:
        feature_config = replace(feature_config, use_vix=False)
    needed_gap = max_lookback(feature_config) + REWARD_HORIZON_BARS
    wf_config = replace(preset, gap_bars=max(preset.gap_bars, needed_gap))

    datasets = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataQualityWarning)
        for symbol in symbols:
            datasets.append(
                SymbolDataset.load(symbol, data_dir, feature_config, start=args.start, end=args.end)
            )
    print(describe_data(datasets, data_dir, synthetic))
    for w in caught:
        print(f"  warning: {w.message}")

    sessions, bars = common_sessions(datasets)
    windows = generate_windows(bars, wf_config)
    table = window_table(windows, sessions, bars)
    print(
        f"\nwalk-forward ({args.mode}): {len(windows)} window(s), train {wf_config.train_sessions} "
        f"sessions (val {wf_config.val_sessions}), test {wf_config.test_sessions}, "
        f"purge gap >= {wf_config.gap_bars} bars"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string())
    if args.dry_run:
        print("\ndry run: nothing trained")
        return 0
    print(
        "\ntraining is not implemented yet (issues #3 and #4); this run stopped after the "
        "data and window checks. Use --dry-run to silence this notice."
    )
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
