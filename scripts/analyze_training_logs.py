"""Summarise training runs: loss and entropy trends, validation Sharpe, test drawdown.

Usage::

    python scripts/analyze_training_logs.py RUN_DIR [RUN_DIR ...] [--tensorboard DIR]
                                            [--out FILE.md] [--plot FILE.png]

A ``RUN_DIR`` is one of

* a walk-forward run (``python -m backend.scripts.run_walk_forward``): ``run.json``,
  ``windows/wNN/<mode>/result.json`` and TensorBoard runs ``tensorboard/wNN_<mode>_<SYM>_k``;
  one row per (window, mode, symbol);
* a model bundle (``metadata.json``, e.g. from ``backend.training.train``): one row, whose
  TensorBoard run is the newest ``<SYM>_<mode>_k`` under ``--tensorboard``;
* a bare TensorBoard log folder: one row per run folder holding event files.

For every row it reads the scalars with TensorBoard's ``EventAccumulator`` and reports

* ``train/actor_loss``, ``train/critic_loss``, ``train/ent_coef``: mean of the first and of
  the last quarter of the logged points, the slope of a least-squares line over the
  environment steps (per 1,000 steps), and whether the series went down (last-quarter mean
  below first-quarter mean);
* ``eval/val_sharpe``: best and last value (else the ``val_history`` of ``result.json``);
* the test max drawdown from ``result.json`` (or ``metrics.json`` / bundle metadata).

A markdown table goes to stdout (and ``--out``), then a per-(run, mode) summary and a list
of what was missing; ``--plot`` draws the actor and critic loss curves into one PNG.
Missing tags or files never fail the script: the cell reads ``n/a`` and the note says why.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ACTOR_LOSS = "train/actor_loss"
CRITIC_LOSS = "train/critic_loss"
ENT_COEF = "train/ent_coef"
VAL_SHARPE = "eval/val_sharpe"
TREND_TAGS = (ACTOR_LOSS, CRITIC_LOSS, ENT_COEF)
SLOPE_PER = 1_000
"""Slopes are reported per this many environment steps."""

_WF_RUN = re.compile(r"^w(?P<window>\d+)_(?P<mode>[a-z]+)_(?P<symbol>[A-Za-z0-9.^-]+?)(?:_\d+)?$")
"""TensorBoard run name of a walk-forward job: ``w00_manual_SPY_1`` (SB3 appends ``_k``)."""


# ---------------------------------------------------------------------------------------
# Trends
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trend:
    """How one scalar series moved over training."""

    n_points: int
    """Logged points."""
    first_quartile_mean: float
    """Mean of the first quarter of the points (at least one point)."""
    last_quartile_mean: float
    """Mean of the last quarter of the points (at least one point)."""
    slope: float
    """Least-squares slope of value over steps, per step (0.0 with one distinct step)."""
    decreased: bool
    """Whether the last-quarter mean is below the first-quarter mean."""

    @property
    def change(self) -> float:
        """``last_quartile_mean - first_quartile_mean``."""
        return self.last_quartile_mean - self.first_quartile_mean


def compute_trend(
    steps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray
) -> Trend | None:
    """Trend of a series; non-finite values are dropped first.

    Args:
        steps: Environment step of each value.
        values: The scalar values, same length as ``steps``.

    Returns:
        The trend, or None when no finite value is left.

    Raises:
        ValueError: if ``steps`` and ``values`` differ in length.
    """
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"steps and values differ in length: {x.shape} vs {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(y.size)
    if n == 0:
        return None
    q = max(1, n // 4)
    first = float(y[:q].mean())
    last = float(y[-q:].mean())
    slope = float(np.polyfit(x, y, 1)[0]) if np.unique(x).size > 1 else 0.0
    return Trend(n, first, last, slope, last < first)


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


def read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag of a TensorBoard run folder: ``{tag: (steps, values)}``.

    All points are kept (``size_guidance`` 0 = no reservoir sampling), so the trends use
    the whole series.
    """
    from tensorboard.backend.event_processing.event_accumulator import (  # type: ignore[import-untyped]
        SCALARS,
        EventAccumulator,
    )

    acc = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("scalars", []):
        events = acc.Scalars(tag)
        out[tag] = (
            np.array([e.step for e in events], dtype=np.float64),
            np.array([e.value for e in events], dtype=np.float64),
        )
    return out


def event_run_dirs(root: Path) -> list[Path]:
    """Folders under (or equal to) ``root`` that directly hold TensorBoard event files."""
    if not root.is_dir():
        return []
    found = {p.parent for p in root.rglob("events.out.tfevents.*") if p.is_file()}
    return sorted(found)


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _num(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass
class Unit:
    """One trained model: a row of the table."""

    run: str
    """Run label (the RUN_DIR's name)."""
    label: str
    """``w00/manual/SPY``, ``SPY/manual`` or the TensorBoard run name."""
    mode: str
    """Encoder mode (``?`` when unknown)."""
    tb_dir: Path | None = None
    """TensorBoard run folder, if found."""
    max_drawdown: float | None = None
    """Test max drawdown (positive fraction)."""
    val_history: list[tuple[float, float]] = field(default_factory=list)
    """(step, val Sharpe) from the result file: the fallback for ``eval/val_sharpe``."""
    notes: list[str] = field(default_factory=list)
    """What was missing."""


def _newest(dirs: Iterable[Path]) -> Path | None:
    """The run folder with the highest SB3 suffix ``_k`` (the latest run of that name)."""

    def key(p: Path) -> tuple[int, str]:
        m = re.search(r"_(\d+)$", p.name)
        return (int(m.group(1)) if m else -1, p.name)

    ordered = sorted(dirs, key=key)
    return ordered[-1] if ordered else None


def discover_units(run_dir: Path, tensorboard: Path | None = None) -> list[Unit]:
    """The rows of one RUN_DIR (see the module docstring for the layouts understood).

    Args:
        run_dir: Walk-forward run, model bundle or TensorBoard log folder.
        tensorboard: TensorBoard root to search instead of ``run_dir/tensorboard`` (or
            ``run_dir`` itself).

    Returns:
        The units found; empty when the folder holds nothing recognisable.
    """
    run = run_dir.name or str(run_dir)
    if tensorboard is not None:
        tb_root = tensorboard
    elif (run_dir / "tensorboard").is_dir():
        tb_root = run_dir / "tensorboard"
    else:
        tb_root = run_dir
    tb_dirs = event_run_dirs(tb_root)

    results = sorted(run_dir.glob("windows/w*/*/result.json"))
    if results or (run_dir / "run.json").is_file() or (run_dir / "metrics.json").is_file():
        return _walk_forward_units(run_dir, run, results, tb_dirs)
    meta = _load_json(run_dir / "metadata.json")
    if meta is not None:
        return [_bundle_unit(run_dir, run, meta, tb_dirs)]
    units = []
    for d in tb_dirs:
        m = _WF_RUN.match(d.name)
        mode = m.group("mode") if m else _mode_from_name(d.name)
        units.append(Unit(run, str(d.relative_to(tb_root)) or d.name, mode, tb_dir=d))
    return units


def _mode_from_name(name: str) -> str:
    for mode in ("manual", "cnn", "lstm", "transformer"):
        if re.search(rf"(^|_){mode}(_|$)", name):
            return mode
    return "?"


def _walk_forward_units(
    run_dir: Path, run: str, results: Sequence[Path], tb_dirs: Sequence[Path]
) -> list[Unit]:
    by_job: dict[tuple[int, str, str], list[Path]] = {}
    for d in tb_dirs:
        m = _WF_RUN.match(d.name)
        if m:
            key = (int(m.group("window")), m.group("mode"), m.group("symbol"))
            by_job.setdefault(key, []).append(d)
    units: dict[tuple[int, str, str], Unit] = {}
    for path in results:
        data = _load_json(path)
        if data is None:
            continue
        window, mode = int(data.get("window", -1)), str(data.get("mode", path.parent.name))
        for symbol, entry in (data.get("symbols") or {}).items():
            unit = Unit(run, f"w{window:02d}/{mode}/{symbol}", mode)
            unit.max_drawdown = _num((entry.get("metrics") or {}).get("max_drawdown"))
            unit.val_history = [
                (float(s), float(v))
                for s, v in entry.get("val_history") or []
                if _num(v) is not None
            ]
            units[(window, mode, symbol)] = unit
    if not units:
        # No result.json (deleted bundles, or a copied report): fall back on metrics.json.
        metrics = _load_json(run_dir / "metrics.json") or {}
        for row in metrics.get("per_window") or []:
            window, mode, symbol = int(row["window"]), str(row["mode"]), str(row["symbol"])
            unit = Unit(run, f"w{window:02d}/{mode}/{symbol}", mode)
            unit.max_drawdown = _num(row.get("max_drawdown"))
            units[(window, mode, symbol)] = unit
    for key in by_job:
        if key not in units:
            window, mode, symbol = key
            units[key] = Unit(run, f"w{window:02d}/{mode}/{symbol}", mode)
            units[key].notes.append("no result.json")
    for key, unit in units.items():
        unit.tb_dir = _newest(by_job.get(key, []))
    return [units[k] for k in sorted(units)]


def _bundle_unit(run_dir: Path, run: str, meta: Mapping[str, Any], tb_dirs: Sequence[Path]) -> Unit:
    mode = str(meta.get("encoder_mode", "?"))
    symbols = meta.get("symbols") or ([meta["symbol"]] if "symbol" in meta else [])
    label = f"{'+'.join(map(str, symbols)) or run}/{mode}"
    unit = Unit(run, label, mode)
    metrics = meta.get("metrics") or {}
    unit.max_drawdown = _num((metrics.get("test") or {}).get("max_drawdown"))
    best = _num(metrics.get("best_val_sharpe"))
    if best is not None:
        unit.val_history = [(float(metrics.get("best_step") or 0), best)]
    prefixes = [f"{s}_{mode}" for s in symbols]
    matches = [d for d in tb_dirs if any(d.name.startswith(p) for p in prefixes)]
    unit.tb_dir = _newest(matches or (tb_dirs if len(tb_dirs) == 1 else []))
    return unit


# ---------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------


@dataclass
class Row:
    """The numbers of one unit."""

    unit: Unit
    trends: dict[str, Trend | None]
    val_sharpe_best: float | None
    val_sharpe_last: float | None
    curves: dict[str, tuple[np.ndarray, np.ndarray]]


def analyze_unit(unit: Unit) -> Row:
    """Trends, validation Sharpe and notes of one unit."""
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if unit.tb_dir is None:
        unit.notes.append("no TensorBoard run found")
    else:
        scalars = read_scalars(unit.tb_dir)
    trends: dict[str, Trend | None] = {}
    for tag in TREND_TAGS:
        trends[tag] = compute_trend(*scalars[tag]) if tag in scalars else None
        if unit.tb_dir is not None and trends[tag] is None:
            unit.notes.append(f"no {tag}")
    best: float | None
    last: float | None
    if VAL_SHARPE in scalars and np.isfinite(scalars[VAL_SHARPE][1]).any():
        vals = scalars[VAL_SHARPE][1]
        vals = vals[np.isfinite(vals)]
        best, last = float(vals.max()), float(vals[-1])
    elif unit.val_history:
        vals = np.array([v for _, v in unit.val_history])
        best, last = float(vals.max()), float(vals[-1])
        if unit.tb_dir is not None:
            unit.notes.append(f"no {VAL_SHARPE} (Sharpe from the result file)")
    else:
        best = last = None
        unit.notes.append("no validation Sharpe")
    if unit.max_drawdown is None:
        unit.notes.append("no test max drawdown")
    curves = {t: scalars[t] for t in (ACTOR_LOSS, CRITIC_LOSS) if t in scalars}
    return Row(unit, trends, best, last, curves)


def fmt(value: float | None, digits: int = 4) -> str:
    """``n/a`` for None, else ``digits`` significant digits."""
    return "n/a" if value is None else f"{value:.{digits}g}"


def _trend_cells(trend: Trend | None) -> list[str]:
    if trend is None:
        return ["n/a", "n/a", "n/a"]
    arrow = "down" if trend.decreased else "up/flat"
    return [
        f"{fmt(trend.first_quartile_mean)} -> {fmt(trend.last_quartile_mean)}",
        fmt(trend.slope * SLOPE_PER, 3),
        arrow,
    ]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render_markdown(rows: Sequence[Row]) -> str:
    """The report: per-unit table, per-(run, mode) summary, notes."""
    per_1k = f"slope/{SLOPE_PER // 1000}k"
    header = ["run", "model", "mode"]
    for short in ("actor", "critic", "ent_coef"):
        header += [f"{short} Q1 -> Q4", f"{short} {per_1k}", f"{short} trend"]
    header += ["val Sharpe best", "val Sharpe last", "test max DD"]
    body = []
    for r in rows:
        cells = [r.unit.run, r.unit.label, r.unit.mode]
        for tag in TREND_TAGS:
            cells += _trend_cells(r.trends[tag])
        cells += [fmt(r.val_sharpe_best), fmt(r.val_sharpe_last), fmt(r.unit.max_drawdown)]
        body.append(cells)
    lines = ["# Training log summary", ""]
    lines += [
        "Q1 -> Q4: mean of the first and of the last quarter of the logged points; slope of a "
        f"least-squares line per {SLOPE_PER:,} env steps; trend `down` when Q4 < Q1.",
        "",
    ]
    lines += _table(header, body) if body else ["No run found."]

    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.unit.run, r.unit.mode), []).append(r)
    summary = []
    for (run, mode), members in groups.items():

        def share(tag: str, members: list[Row] = members) -> str:
            known = [t for t in (m.trends[tag] for m in members) if t is not None]
            if not known:
                return "n/a"
            return f"{sum(t.decreased for t in known)}/{len(known)}"

        def mean(values: Iterable[float | None]) -> str:
            finite = [v for v in values if v is not None]
            return fmt(float(np.mean(finite))) if finite else "n/a"

        summary.append(
            [
                run,
                mode,
                str(len(members)),
                share(ACTOR_LOSS),
                share(CRITIC_LOSS),
                share(ENT_COEF),
                mean(m.val_sharpe_best for m in members),
                mean(m.unit.max_drawdown for m in members),
            ]
        )
    if summary:
        lines += ["", "## Per run and mode", ""]
        lines += _table(
            [
                "run",
                "mode",
                "models",
                "actor loss down",
                "critic loss down",
                "ent_coef down",
                "mean best val Sharpe",
                "mean test max DD",
            ],
            summary,
        )
    notes = [
        f"- {r.unit.run} {r.unit.label}: {'; '.join(r.unit.notes)}" for r in rows if r.unit.notes
    ]
    if notes:
        lines += ["", "## Missing", "", *notes]
    return "\n".join(lines) + "\n"


def plot_losses(rows: Sequence[Row], path: Path) -> Path:
    """Actor and critic loss curves of every unit, one panel each, into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, tag in zip(axes, (ACTOR_LOSS, CRITIC_LOSS), strict=True):
        drawn = 0
        for r in rows:
            if tag in r.curves:
                steps, values = r.curves[tag]
                ax.plot(steps, values, label=f"{r.unit.run} {r.unit.label}", lw=1)
                drawn += 1
        ax.set_title(tag)
        ax.set_xlabel("env steps")
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def analyze(run_dirs: Sequence[Path], tensorboard: Path | None = None) -> list[Row]:
    """Rows of every run directory, in the order given."""
    return [analyze_unit(u) for run_dir in run_dirs for u in discover_units(run_dir, tensorboard)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument(
        "--tensorboard",
        type=Path,
        default=None,
        metavar="DIR",
        help="TensorBoard root to search (default: RUN_DIR/tensorboard, else RUN_DIR)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the loss curves")
    args = parser.parse_args(argv)
    missing = [p for p in args.run_dirs if not p.is_dir()]
    if missing:
        print(f"error: not a directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    rows = analyze(args.run_dirs, args.tensorboard)
    text = render_markdown(rows)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    if args.plot is not None:
        plot_losses(rows, args.plot)
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
