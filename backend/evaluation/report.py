"""Walk-forward run reports: ``metrics.json``, ``report.md`` and PNG charts.

:func:`build_metrics` turns a run's ``run.json`` and job results into one JSON-ready dict;
:func:`render_markdown` renders *only* that dict, so every number in ``report.md`` is a
number of ``metrics.json`` in the same rounding (:func:`fmt`), and a test can check it.

The unit of inference is the **test session** (:mod:`backend.evaluation.session_inference`):
every strategy's per-session net returns are pooled over the windows and paired across
strategies on the same sessions; ``tests`` (each strategy against flat and buy-and-hold,
each encoder against manual; Holm-adjusted over the family), ``power`` (minimum detectable
Sharpe difference) and ``deflated_sharpe`` come from there, and the report's verdicts read
the adjusted p-values. Per-window tables and their means over windows are descriptive.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from backend.evaluation.plots import (
    plot_drawdowns,
    plot_equity_curves,
    plot_session_equity,
    plot_test_forest,
    plot_window_sharpe,
)
from backend.evaluation.session_inference import pooled_session_returns, session_inference
from backend.evaluation.session_stats import replicate_mean
from backend.evaluation.statistics import bootstrap_mean_ci
from backend.utils.atomic_io import write_json_atomic

__all__ = [
    "AGGREGATE_METRICS",
    "TABLE_COLUMNS",
    "TEST_COLUMNS",
    "archive_baseline_run",
    "build_metrics",
    "fmt",
    "inference_markdown",
    "render_markdown",
    "test_verdict",
    "update_experiments_index",
    "write_cross_mode_report",
    "write_run_report",
]

TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("total_return", "total return"),
    ("sharpe", "Sharpe"),
    ("sortino", "Sortino"),
    ("max_drawdown", "max DD"),
    ("calmar", "Calmar"),
    ("win_rate_bars", "win rate (bars)"),
    ("profit_factor", "profit factor"),
    ("turnover_per_session", "turnover/session"),
    ("mean_abs_position", "mean |position|"),
    ("exposure", "bars in market"),
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

TEST_COLUMNS: tuple[str, ...] = (
    "symbol",
    "strategy",
    "against",
    "metric",
    "estimate",
    "interval",
    "p",
    "p (Holm)",
    "verdict",
    "MDE (Holm)",
    "sessions",
)
"""Columns of the report's table of ``metrics.json["tests"]``, one row per test."""

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
        "aggregates", "baseline_aggregates", "resources", "tests", "power",
        "deflated_sharpe", "sessions", "seed_spread"}``.
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

    inference = session_inference(
        results,
        modes,
        symbols,
        seed=seed,
        tuning_trials=int(spec.get("tuning_trials", 0) or 0),
    )
    inference.pop("pooled")
    for t in inference["tests"]:
        t["verdict"] = test_verdict(t)

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
        "config": spec["config"],
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
        **inference,
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


_METRIC_WORDS = {"sharpe": "annualized Sharpe", "mean_return": "mean daily return"}


def _interval_name(t: Mapping[str, Any]) -> str:
    return "95% CI" if str(t["ci_method"]).startswith("95% CI") else "bootstrap interval"


def test_verdict(t: Mapping[str, Any]) -> str:
    """One sentence for a test row, read from its Holm-adjusted p-value."""
    what = _METRIC_WORDS.get(t["metric"], t["metric"])
    head = (
        f"{t['strategy']} vs {t['against']}: {what} difference {fmt(t['estimate'])} "
        f"[{_interval_name(t)} {fmt(t['ci_low'])}, {fmt(t['ci_high'])}], "
        f"p={fmt(t['p_value'], 2)}, Holm p={fmt(t['p_adjusted'], 2)}, "
        f"n={t['n_sessions']} sessions: "
    )
    if t["significant"]:
        return head + "significant at 5% after Holm"
    return head + (
        f"not significant at 5% after Holm (80% power needs a difference of about "
        f"{fmt(t['min_detectable_adjusted'], 3)})"
    )


def _test_row(t: Mapping[str, Any]) -> list[str]:
    return [
        str(t["symbol"]),
        str(t["strategy"]),
        str(t["against"]),
        str(t["metric"]),
        fmt(t["estimate"]),
        f"[{fmt(t['ci_low'])}, {fmt(t['ci_high'])}]",
        fmt(t["p_value"]),
        fmt(t["p_adjusted"]),
        "significant" if t["significant"] else "not significant",
        fmt(t["min_detectable_adjusted"]),
        str(t["n_sessions"]),
    ]


def inference_markdown(metrics: Mapping[str, Any]) -> list[str]:
    """Verdicts, the test table, power, deflated Sharpe and the pooled-session summary."""
    tests = metrics["tests"]
    power = metrics["power"]
    lines = ["## Verdicts (paired tests on the pooled test sessions, Holm-adjusted)", ""]
    first = tests[0] if tests else None
    lines.append(
        f"Every strategy's net return per test session is pooled over the "
        f"{len(metrics['windows'])} window(s) and paired across strategies on the same "
        f"sessions ({power['n_sessions']} per strategy). Family: {power['family_size']} tests "
        "(each strategy against flat and against buy-and-hold, each encoder against manual; "
        "annualized Sharpe and mean daily return), Holm-adjusted; p-values are two-sided, "
        "from the centred stationary block bootstrap."
        + (f" Intervals: {first['ci_method']}." if first else "")
    )
    lines.append("")
    mode_tests = [t for t in tests if t["strategy"] in metrics["modes"]]
    lines += [f"- {t['verdict']}" for t in mode_tests] or ["- no test"]
    lines += ["", "## Power", ""]
    lines.append(
        f"With {power['n_sessions']} pooled test sessions, a two-sided {fmt(power['alpha'])} "
        f"test has {fmt(100 * power['power'], 3)}% power only against an annualized Sharpe "
        f"(vs flat) of at least {fmt(power['min_detectable_sharpe'], 3)}; at Holm's strictest "
        f"level over the {power['family_size']} tests, "
        f"{fmt(power['min_detectable_sharpe_holm'], 3)} (Lo 2002 standard error). Each test's "
        "own figure at the Holm level, with the observed correlation of the pair, is the "
        "column 'MDE (Holm)' below. Read 'not significant' against these numbers."
    )
    lines += ["", "## All tests", ""]
    lines += _table(list(TEST_COLUMNS), [_test_row(t) for t in tests])
    lines += ["", "## Deflated Sharpe ratio of the best mode", ""]
    for symbol, d in metrics["deflated_sharpe"].items():
        lines.append(
            f"- {symbol}: best mode by pooled session Sharpe is {d['best_mode']} (annualized "
            f"{fmt(d['sharpe_annualized'])}, {d['n']} sessions, skewness {fmt(d['skewness'], 3)},"
            f" kurtosis {fmt(d['kurtosis'], 3)}). PSR (P[true Sharpe > 0]) = {fmt(d['psr'], 3)};"
            f" DSR given {d['n_trials']} trial(s) (modes x seeds + {d['tuning_trials']} tuning) "
            f"= {fmt(d['dsr'], 3)}, against the expected maximum Sharpe of that many unskilled "
            f"trials, {fmt(d['sr0_annualized'], 3)} annualized (Bailey & Lopez de Prado 2014)."
        )
    lines += ["", "## Pooled test sessions per strategy", ""]
    rows = []
    for symbol, block in metrics["sessions"].items():
        for name, st in block["strategies"].items():
            rows.append(
                [
                    symbol,
                    name,
                    str(st["n_sessions"]),
                    fmt(st["sharpe"]),
                    fmt(st["mean_return"]),
                    fmt(st["volatility"]),
                    fmt(st["total_return"]),
                ]
            )
    lines += _table(
        ["symbol", "strategy", "sessions", "Sharpe", "mean daily", "daily vol", "total"], rows
    )
    spread = [
        (symbol, mode, s)
        for symbol, per in metrics["seed_spread"].items()
        for mode, s in per.items()
        if s["n_replicates"] > 1
    ]
    if spread:
        lines += ["", "## Spread across training seeds", ""]
        lines += _table(
            ["symbol", "mode", "seeds", "Sharpe min", "Sharpe max", "Sharpe std", "seed-mean"],
            [
                [
                    symbol,
                    mode,
                    str(s["n_replicates"]),
                    fmt(s["sharpe_min"]),
                    fmt(s["sharpe_max"]),
                    fmt(s["sharpe_std"]),
                    fmt(s["sharpe_of_mean"]),
                ]
                for symbol, mode, s in spread
            ],
        )
        lines += ["", "Tests use the seed-averaged session returns (the seed-mean column)."]
    return lines


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
    lines += ["", *inference_markdown(metrics)]
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
        "## Means over windows (descriptive)",
        "",
        "Mean of the per-window figures [percentile bootstrap interval over windows]. "
        "Windows are few, so these intervals are descriptive, not confidence intervals; "
        "inference is on the pooled test sessions above.",
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
    ]
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
    if metrics["tests"]:
        paths.append(
            plot_test_forest(
                metrics["tests"],
                run_dir / "tests_sharpe.png",
                title="Annualized Sharpe differences on the pooled test sessions",
            )
        )
    for symbol in symbols:
        _, pooled = pooled_session_returns(results, modes, symbol)
        paths.append(
            plot_session_equity(
                {m: replicate_mean(pooled[m], m) for m in modes},
                run_dir / f"sessions_{symbol}.png",
                baselines={b: pooled[b] for b in BASELINES_SHOWN if b in pooled and b != "flat"},
                title=f"{symbol}: net return compounded over the pooled test sessions",
            )
        )
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
    lines += ["", "## Means over windows (descriptive: [percentile bootstrap interval])", ""]
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
    lines += ["", "## Is any encoder better than manual, flat or buy-and-hold?", ""]
    lines += [f"- {t['verdict']}" for t in metrics["tests"] if t["strategy"] in modes]
    power = metrics["power"]
    lines += [
        "",
        "Tests pair the strategies on the pooled test sessions (stationary block bootstrap, "
        f"Holm over {power['family_size']} tests). With {power['n_sessions']} sessions, 80% "
        "power needs an annualized Sharpe difference of about "
        f"{fmt(power['min_detectable_sharpe_holm'], 3)} at the Holm level; smaller edges "
        "read as 'not significant'.",
    ]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
