"""Walk-forward run reports: ``metrics.json``, ``report.md`` and PNG charts.

:func:`build_metrics` turns a run's ``run.json`` and job results into one JSON-ready dict;
:func:`render_markdown` renders *only* that dict, so every number in ``report.md`` is a
number of ``metrics.json`` in the same rounding (:func:`fmt`), and a test can check it.

Units of comparison: one *unit* is one (window, symbol) pair. Aggregates are means over
units with percentile-bootstrap CIs; the paired test of each encoder against ``manual``
pairs the two on the same units (Wilcoxon signed-rank + bootstrap CI of the mean
difference, :func:`backend.evaluation.statistics.paired_comparison`). With one symbol a
unit is simply a window.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backend.evaluation.plots import plot_drawdowns, plot_equity_curves, plot_window_sharpe
from backend.evaluation.statistics import bootstrap_mean_ci, paired_comparison
from backend.utils.atomic_io import write_json_atomic

__all__ = [
    "AGGREGATE_METRICS",
    "ALL_MODES",
    "TABLE_COLUMNS",
    "archive_baseline_run",
    "build_metrics",
    "fmt",
    "render_markdown",
    "update_experiments_index",
    "write_cross_mode_report",
    "write_run_report",
]

ALL_MODES: tuple[str, ...] = ("manual", "cnn", "lstm", "transformer")
"""The four encoder modes; a run with all of them gets the cross-mode report."""

TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("total_return", "total return"),
    ("sharpe", "Sharpe"),
    ("sortino", "Sortino"),
    ("max_drawdown", "max DD"),
    ("calmar", "Calmar"),
    ("win_rate_bars", "win rate (bars)"),
    ("profit_factor", "profit factor"),
    ("turnover_per_session", "turnover/session"),
    ("exposure", "exposure"),
    ("n_trades", "trades"),
)
"""Metric key and column title of the per-window tables, in order."""

RESOURCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("train_time_s", "train s"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("inference_latency_ms_median", "latency ms"),
)
"""Resource fields of a model row (not of baselines)."""

AGGREGATE_METRICS: tuple[str, ...] = (
    "sharpe",
    "sortino",
    "total_return",
    "max_drawdown",
    "calmar",
    "win_rate_bars",
)
"""Metrics averaged over units with a bootstrap CI."""

BASELINES_SHOWN: tuple[str, ...] = ("flat", "buy_and_hold", "buy_and_hold_through", "random")

_N_RESAMPLES = 5_000


def fmt(value: Any, digits: int = 4) -> str:
    """The report's one number format: ``n/a`` for None/NaN, 4 significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    v = float(value)
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}"


def _finite(values: Sequence[Any]) -> np.ndarray:
    arr = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def _ci(values: Sequence[Any], seed: int) -> dict[str, Any]:
    """Bootstrap CI of the mean of the finite values (None estimate when none is finite)."""
    x = _finite(values)
    if x.size == 0:
        return {"estimate": None, "low": None, "high": None, "n": 0, "note": "no finite value"}
    ci = bootstrap_mean_ci(x, n_resamples=_N_RESAMPLES, seed=seed)
    return ci.to_dict()


def build_metrics(
    run: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Everything the report shows, as one JSON-ready dict.

    Args:
        run: Content of ``run.json``.
        results: ``{job name: result.json content}`` of every job.

    Returns:
        ``{"run", "modes", "symbols", "windows", "per_window", "baselines_per_window",
        "aggregates", "baseline_aggregates", "resources", "comparisons"}``.
    """
    spec = run["spec"]
    modes: list[str] = list(spec["modes"])
    symbols: list[str] = list(spec["symbols"])
    windows = run["windows"]
    seed = int(spec["seed"])
    by_key = {(r["window"], r["mode"]): r for r in results.values()}

    per_window: list[dict[str, Any]] = []
    baselines_rows: list[dict[str, Any]] = []
    for w in windows:
        for symbol in symbols:
            for mode in modes:
                entry = by_key[(w["index"], mode)]["symbols"][symbol]
                row = {"window": w["index"], "mode": mode, "symbol": symbol}
                row.update({k: entry["metrics"][k] for k, _ in TABLE_COLUMNS})
                row.update({k: entry["metrics"][k] for k in AGGREGATE_METRICS})
                row.update({k: entry.get(k) for k, _ in RESOURCE_COLUMNS})
                row["steps_done"] = entry["training"].get("steps_done")
                row["best_val_sharpe"] = entry["training"].get("best_val_sharpe")
                row["cuda_peak_mib"] = entry.get("cuda_peak_mib")
                per_window.append(row)
            # Baselines do not depend on the mode (same bars, costs and seed): take the first.
            first = by_key[(w["index"], modes[0])]["symbols"][symbol]["baselines"]
            for name in BASELINES_SHOWN:
                if name in first:
                    brow = {"window": w["index"], "baseline": name, "symbol": symbol}
                    brow.update({k: first[name][k] for k, _ in TABLE_COLUMNS})
                    brow.update({k: first[name][k] for k in AGGREGATE_METRICS})
                    baselines_rows.append(brow)

    aggregates = {
        mode: {
            m: _ci([r[m] for r in per_window if r["mode"] == mode], seed) for m in AGGREGATE_METRICS
        }
        for mode in modes
    }
    baseline_aggregates = {
        name: {
            m: _ci([r[m] for r in baselines_rows if r["baseline"] == name], seed)
            for m in AGGREGATE_METRICS
        }
        for name in BASELINES_SHOWN
        if any(r["baseline"] == name for r in baselines_rows)
    }
    resources = {}
    for mode in modes:
        rows = [r for r in per_window if r["mode"] == mode]
        resources[mode] = {
            "train_time_s_mean": float(np.mean(_finite([r["train_time_s"] for r in rows]))),
            "train_time_s_total": float(np.sum(_finite([r["train_time_s"] for r in rows]))),
            "peak_rss_mib_max": float(np.max(_finite([r["peak_rss_mib"] for r in rows]))),
            "inference_latency_ms_median": float(
                np.median(_finite([r["inference_latency_ms_median"] for r in rows]))
            ),
        }

    comparisons: list[dict[str, Any]] = []
    if "manual" in modes and len(modes) > 1:
        per_unit = {
            mode: [
                r["sharpe"] if r["sharpe"] is not None else np.nan
                for r in per_window
                if r["mode"] == mode
            ]
            for mode in modes
        }
        finite = np.all(np.isfinite(np.asarray(list(per_unit.values()), dtype=float)), axis=0)
        clean = {
            m: [v for v, ok in zip(vals, finite, strict=True) if ok] for m, vals in per_unit.items()
        }
        if len(clean["manual"]) > 0:
            for c in paired_comparison(
                clean, reference="manual", n_resamples=_N_RESAMPLES, seed=seed
            ):
                comparisons.append(c.to_dict())

    run_summary = {
        "output_dir": spec["output_dir"],
        "preset": spec["preset"],
        "seed": seed,
        "stochastic_eval": spec["stochastic_eval"],
        "data_dir": spec["data_dir"],
        "synthetic": spec.get("synthetic", False),
        "data": run["data"],
        "git_commit": run["provenance"].get("git_commit"),
        "git_dirty": run["provenance"].get("git_dirty"),
        "packages": run["provenance"].get("packages"),
        "python": run["provenance"].get("python"),
        "created_utc": run.get("created_utc"),
        "config": {k: spec[k] for k in ("walk_forward", "features", "env", "training")},
    }
    return {
        "run": run_summary,
        "modes": modes,
        "symbols": symbols,
        "windows": windows,
        "per_window": per_window,
        "baselines_per_window": baselines_rows,
        "aggregates": aggregates,
        "baseline_aggregates": baseline_aggregates,
        "resources": resources,
        "comparisons": comparisons,
    }


# ---------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _ci_text(ci: Mapping[str, Any]) -> str:
    if ci.get("estimate") is None:
        return "n/a"
    return f"{fmt(ci['estimate'])} [{fmt(ci['low'])}, {fmt(ci['high'])}]"


def render_markdown(metrics: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """``report.md`` from :func:`build_metrics` output alone (numbers via :func:`fmt`)."""
    run = metrics["run"]
    modes = metrics["modes"]
    symbols = metrics["symbols"]
    lines = [
        f"# Walk-forward report: {', '.join(modes)} on {', '.join(symbols)}",
        "",
        f"- run: `{run['output_dir']}` (preset `{run['preset']}`, seed {run['seed']}, "
        f"{'stochastic' if run['stochastic_eval'] else 'deterministic'} test actions)",
        f"- data: `{run['data_dir']}`"
        + (" (embedded synthetic market)" if run["synthetic"] else ""),
    ]
    for symbol, d in run["data"].items():
        lines.append(
            f"  - {symbol}: {d['first_bar']} .. {d['last_bar']}, {d['n_bars']} bars, "
            f"sha256 `{d['sha256'][:16]}…`"
        )
    lines += [
        f"- code: commit `{run['git_commit']}`" + (" (dirty tree)" if run["git_dirty"] else ""),
        f"- windows: {len(metrics['windows'])}; every number is on the test range, net of "
        "costs, which the model never saw.",
        "",
        *_preset_caveat(metrics),
        "## Windows",
        "",
    ]
    lines += _table(
        ["window", "fit", "val", "test"],
        [
            [str(w["index"]), " .. ".join(w["fit"]), " .. ".join(w["val"]), " .. ".join(w["test"])]
            for w in metrics["windows"]
        ],
    )
    lines += ["", "## Per window and mode", ""]
    header = [
        "window",
        "symbol",
        "mode",
        *(t for _, t in TABLE_COLUMNS),
        *(t for _, t in RESOURCE_COLUMNS),
    ]
    rows = [
        [str(r["window"]), r["symbol"], r["mode"]]
        + [fmt(r[k]) for k, _ in TABLE_COLUMNS]
        + [fmt(r[k]) for k, _ in RESOURCE_COLUMNS]
        for r in metrics["per_window"]
    ]
    lines += _table(header, rows)
    lines += ["", "## Baselines per window (same bars, same costs)", ""]
    header = ["window", "symbol", "baseline", *(t for _, t in TABLE_COLUMNS)]
    rows = [
        [str(r["window"]), r["symbol"], r["baseline"]] + [fmt(r[k]) for k, _ in TABLE_COLUMNS]
        for r in metrics["baselines_per_window"]
    ]
    lines += _table(header, rows)
    lines += [
        "",
        "## Aggregates over windows (mean [95% bootstrap CI])",
        "",
    ]
    header = ["strategy", *AGGREGATE_METRICS]
    rows = [
        [mode] + [_ci_text(metrics["aggregates"][mode][m]) for m in AGGREGATE_METRICS]
        for mode in modes
    ] + [
        [f"baseline: {name}"] + [_ci_text(agg[m]) for m in AGGREGATE_METRICS]
        for name, agg in metrics["baseline_aggregates"].items()
    ]
    lines += _table(header, rows)
    n_units = len(metrics["windows"]) * len(symbols)
    if n_units < 5:
        lines += [
            "",
            f"Only {n_units} window(s): the intervals are descriptive, not reliable.",
        ]
    lines += ["", "## Resources", ""]
    lines += _table(
        ["mode", "train s (mean)", "train s (total)", "peak RSS MiB (max)", "latency ms (median)"],
        [
            [
                mode,
                fmt(res["train_time_s_mean"]),
                fmt(res["train_time_s_total"]),
                fmt(res["peak_rss_mib_max"]),
                fmt(res["inference_latency_ms_median"]),
            ]
            for mode, res in metrics["resources"].items()
        ],
    )
    lines += [
        "",
        "Peak RSS is the worker process's high-water mark when the job ended (it includes "
        "earlier jobs of the same process); latency is the median wall time of one "
        "`predict` call during the test rollout.",
        "",
        "## Each encoder against manual (paired on windows, Sharpe)",
        "",
    ]
    if len(symbols) > 1:
        lines += [
            "With several symbols each (window, symbol) pair is one unit of the paired test "
            "and of the averages above.",
            "",
        ]
    if metrics["comparisons"]:
        for c in metrics["comparisons"]:
            lines.append(f"- {c['verdict']}")
    else:
        lines.append("- no comparison: the run has no `manual` mode or no other mode.")
    if plots:
        lines += ["", "## Charts", ""]
        lines += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Charts and files
# ---------------------------------------------------------------------------------------


def _concatenated(
    results: Mapping[str, Mapping[str, Any]], modes: Sequence[str], symbol: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Test-range net returns of each mode and baseline, concatenated in window order."""
    by_window: dict[int, dict[str, Any]] = {}
    for r in results.values():
        by_window.setdefault(r["window"], {})[r["mode"]] = r["symbols"][symbol]["series"]
    strategies: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    baselines: dict[str, list[np.ndarray]] = {b: [] for b in BASELINES_SHOWN}
    for w in sorted(by_window):
        series = by_window[w]
        n = min(len(series[m]["net_returns"]) for m in modes)
        first = series[modes[0]]["baselines"]
        n = min([n, *(len(v) for v in first.values())])
        for m in modes:
            strategies[m].append(np.asarray(series[m]["net_returns"][:n], dtype=float))
        for b in BASELINES_SHOWN:
            if b in first:
                baselines[b].append(np.asarray(first[b][:n], dtype=float))
    return (
        {m: np.concatenate(v) for m, v in strategies.items()},
        {b: np.concatenate(v) for b, v in baselines.items() if v},
    )


def _plots(
    run_dir: Path, metrics: Mapping[str, Any], results: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    modes, symbols = metrics["modes"], metrics["symbols"]
    paths = []
    for symbol in symbols:
        strategies, baselines = _concatenated(results, modes, symbol)
        shown = {k: v for k, v in baselines.items() if k in ("buy_and_hold", "random", "flat")}
        paths.append(
            plot_equity_curves(
                strategies,
                run_dir / f"equity_{symbol}.png",
                baselines=shown,
                title=f"{symbol}: equity over the concatenated test windows (net of costs)",
            )
        )
        paths.append(
            plot_drawdowns(
                {**strategies, "buy_and_hold": baselines["buy_and_hold"]},
                run_dir / f"drawdown_{symbol}.png",
                title=f"{symbol}: drawdown over the concatenated test windows",
            )
        )
        per_window = {
            m: [
                np.nan if r["sharpe"] is None else r["sharpe"]
                for r in metrics["per_window"]
                if r["mode"] == m and r["symbol"] == symbol
            ]
            for m in modes
        }
        paths.append(
            plot_window_sharpe(
                per_window,
                run_dir / f"window_sharpe_{symbol}.png",
                window_labels=[f"w{w['index']}" for w in metrics["windows"]],
                title=f"{symbol}: test Sharpe per walk-forward window",
            )
        )
    return [str(p) for p in paths]


def write_run_report(
    run_dir: str | Path,
    run: Mapping[str, Any],
    results: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Write ``metrics.json``, the PNGs and ``report.md`` into ``run_dir``.

    Returns:
        The metrics dict (with ``"plots"``: the PNG file names).
    """
    out = Path(run_dir)
    metrics = build_metrics(run, results)
    plots = _plots(out, metrics, results)
    metrics["plots"] = [Path(p).name for p in plots]
    write_json_atomic(out / "metrics.json", metrics)
    (out / "report.md").write_text(render_markdown(metrics, plots), encoding="utf-8")
    return metrics


def headline(metrics: Mapping[str, Any]) -> str:
    """``manual 0.41, cnn -0.2``: mean test Sharpe per mode."""
    return ", ".join(
        f"{mode} {fmt(metrics['aggregates'][mode]['sharpe']['estimate'], 3)}"
        for mode in metrics["modes"]
    )


_ENTRY = re.compile(r"^- \d{4}-\d{2}-\d{2} ")
"""A run's line in an index: a bullet starting with its date; other text is left alone."""

_INDEX_HEADER = (
    "# Walk-forward experiments\n\n"
    "One line per run, newest first: date, modes, symbols, windows, report, mean test "
    "Sharpe per mode. Written by `python -m backend.scripts.run_walk_forward`.\n\n"
)


def update_experiments_index(
    readme: str | Path, run_dir: str | Path, metrics: Mapping[str, Any]
) -> Path:
    """Insert this run's line at the top of the list in ``readme`` (created if missing).

    A line for the same run directory is replaced, so a resumed run is listed once. Only
    lines that look like entries (``- YYYY-MM-DD ...``) are touched: the file's prose stays.
    """
    path = Path(readme)
    run_path = Path(run_dir)
    try:
        link = run_path.resolve().relative_to(path.parent.resolve()).as_posix() + "/report.md"
    except ValueError:
        link = (run_path / "report.md").as_posix()
    date = str(metrics["run"].get("created_utc") or "")[:16].replace("T", " ")
    line = (
        f"- {date} UTC | modes: {', '.join(metrics['modes'])} | symbols: "
        f"{', '.join(metrics['symbols'])} | windows: {len(metrics['windows'])} | "
        f"preset: {metrics['run']['preset']} | [report]({link}) | Sharpe: {headline(metrics)}"
    )
    text = path.read_text(encoding="utf-8") if path.is_file() else _INDEX_HEADER
    lines = [x for x in text.splitlines() if not (_ENTRY.match(x) and f"]({link})" in x)]
    first = next((i for i, x in enumerate(lines) if _ENTRY.match(x)), None)
    if first is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += ["", line]
    else:
        lines.insert(first, line)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def archive_baseline_run(
    archive_root: str | Path, run_dir: str | Path, metrics: Mapping[str, Any]
) -> Path:
    """Copy a manual-only run's report, metrics and charts to ``<archive_root>/<date>/``.

    ``<date>`` is the run's start (UTC, ``YYYY-MM-DD_HHMMSS``), so two runs of one day do
    not collide.

    The folder gets a README.md pointing back to the run, and the index
    ``<archive_root>/README.md`` gets a line (newest first).
    """
    root = Path(archive_root)
    created = str(metrics["run"].get("created_utc") or "")
    try:
        stamp = dt.datetime.fromisoformat(created).strftime("%Y-%m-%d_%H%M%S")
    except ValueError:
        stamp = Path(run_dir).name
    target = root / stamp
    target.mkdir(parents=True, exist_ok=True)
    for name in ["report.md", "metrics.json", *metrics.get("plots", [])]:
        source = Path(run_dir) / name
        if source.is_file():
            shutil.copy2(source, target / name)
    (target / "README.md").write_text(
        f"# Baseline run {stamp} (manual encoder)\n\n"
        f"Archived copy of `{run_dir}`: see [report.md](report.md) and metrics.json. "
        f"Mean test Sharpe: {headline(metrics)}. Commit `{metrics['run']['git_commit']}`, "
        f"seed {metrics['run']['seed']}, preset `{metrics['run']['preset']}`.\n",
        encoding="utf-8",
    )
    update_experiments_index(root / "README.md", target, metrics)
    return target


def _preset_caveat(metrics: Mapping[str, Any]) -> list[str]:
    """A warning paragraph for smoke-test budgets, whose numbers are not evidence."""
    if metrics["run"]["preset"] != "short":
        return []
    return [
        "**This is a `short` run** (a few thousand steps, tiny encoders, 2 windows): a smoke "
        "test of the pipeline. Its numbers say nothing about which encoder is better; run "
        "`--mode long` for the experiment.",
        "",
    ]


def write_cross_mode_report(
    path: str | Path, metrics: Mapping[str, Any], run_dir: str | Path
) -> Path:
    """The cross-mode comparison document (written when all four modes ran)."""
    modes = metrics["modes"]
    lines = [
        "# Transformer experiment: encoder modes compared walk-forward",
        "",
        f"Generated from run `{run_dir}` (preset `{metrics['run']['preset']}`, seed "
        f"{metrics['run']['seed']}, commit `{metrics['run']['git_commit']}`, symbols "
        f"{', '.join(metrics['symbols'])}, {len(metrics['windows'])} windows). Full tables: "
        f"`{Path(run_dir) / 'report.md'}`. All numbers are out-of-sample test results net of "
        "costs.",
        "",
        *_preset_caveat(metrics),
        "## Sharpe per window",
        "",
    ]
    header = ["window", "symbol", *modes]
    rows = []
    for w in metrics["windows"]:
        for symbol in metrics["symbols"]:
            cells = {
                r["mode"]: fmt(r["sharpe"])
                for r in metrics["per_window"]
                if r["window"] == w["index"] and r["symbol"] == symbol
            }
            rows.append([str(w["index"]), symbol, *(cells[m] for m in modes)])
    lines += _table(header, rows)
    lines += ["", "## Aggregated (mean [95% bootstrap CI] over windows)", ""]
    lines += _table(
        ["mode", "Sharpe", "Sortino", "max DD", "train s (mean)", "peak RSS MiB", "latency ms"],
        [
            [
                m,
                _ci_text(metrics["aggregates"][m]["sharpe"]),
                _ci_text(metrics["aggregates"][m]["sortino"]),
                _ci_text(metrics["aggregates"][m]["max_drawdown"]),
                fmt(metrics["resources"][m]["train_time_s_mean"]),
                fmt(metrics["resources"][m]["peak_rss_mib_max"]),
                fmt(metrics["resources"][m]["inference_latency_ms_median"]),
            ]
            for m in modes
        ],
    )
    lines += ["", "## Is any sequence encoder better than manual?", ""]
    lines += [f"- {c['verdict']}" for c in metrics["comparisons"]]
    lines += [
        "",
        "A difference is called significant only when the two-sided Wilcoxon test gives "
        "p < 0.05 on at least 6 windows; with fewer windows no claim is made whatever the "
        "numbers.",
    ]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
