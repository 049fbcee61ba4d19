"""The supervised lab's run report: metrics JSON, Markdown and PNG plots.

Every figure is computed on the concatenated out-of-sample test bars of all windows.
Forecasters are compared per task with the best *baseline* (highest validation accuracy,
never the test), per (symbol, session) accuracy, Wilcoxon signed-rank, Holm-adjusted over
every comparison of the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from backend.evaluation.metrics import compute_metrics  # noqa: E402
from backend.evaluation.plots import plot_equity_curves  # noqa: E402
from backend.supervised.baselines import BASELINES  # noqa: E402
from backend.supervised.calibration import (  # noqa: E402
    coverage_curve,
    expected_calibration_error,
    reliability,
)
from backend.supervised.ensembles import ENSEMBLES  # noqa: E402
from backend.supervised.evaluation import (  # noqa: E402
    classification_scores,
    direction_targets,
    holm_adjust_finite,
    paired_session_tests,
    session_accuracy,
    trading_view,
)
from backend.supervised.labels import CLASS_NAMES  # noqa: E402
from backend.supervised.pipeline import WindowResult  # noqa: E402
from backend.utils.atomic_io import write_text_atomic  # noqa: E402

COVERAGES = np.linspace(0.1, 1.0, 10)


def _cat(items: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(list(items))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    return value


def build_metrics(
    windows: Sequence[WindowResult],
    *,
    tasks: Sequence[str],
    nets: Sequence[str],
    cost_rate: float,
    ece_bins: int,
    latency_budget_ms: float,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every number of the report, JSON-ready."""
    labels = {t: _cat([w.test.labels[t] for w in windows]) for t in tasks}
    bars = _cat([w.test.bar_in_session for w in windows])
    keys = _cat(
        [
            np.char.add(np.char.add(w.test.symbol.astype(str), "|"), w.test.session.astype(str))
            for w in windows
        ]
    )
    names = [n for n in windows[0].probs[tasks[0]]]
    out: dict[str, Any] = {"tasks": {}, "extra": dict(extra or {})}
    all_tests: list[tuple[str, str, dict[str, Any]]] = []
    for task in tasks:
        probs = {n: _cat([w.probs[task][n] for w in windows]) for n in names}
        scores = {n: classification_scores(probs[n], labels[task], bars, ece_bins) for n in names}
        # Best baseline by mean validation accuracy over windows (never by the test).
        val_acc = {n: float(np.mean([w.val_accuracy[task][n] for w in windows])) for n in names}
        best_baseline = max(BASELINES, key=lambda b: val_acc[b])
        per_session = {n: session_accuracy(probs[n], labels[task], keys) for n in names}
        candidates = [n for n in names if n not in BASELINES]
        tests = paired_session_tests(per_session, candidates, best_baseline)
        for row in tests:
            all_tests.append((task, row["model"], row))
        raw = {n: _cat([w.raw_probs[task][n] for w in windows]) for n in nets}
        keep = labels[task] >= 0
        calib = {
            n: {
                "ece_before": expected_calibration_error(
                    raw[n][keep], labels[task][keep], ece_bins
                ),
                "ece_after": scores[n]["ece"],
                "temperatures": [w.nets[n].temperatures[task] for w in windows],
            }
            for n in nets
        }
        coverage: dict[str, dict[str, list[float]]] = {}
        for n in nets:
            pred_ok = probs[n][keep].argmax(axis=1) == labels[task][keep]
            sources = windows[0].confidence[task][n].keys()
            coverage[n] = {}
            for s in sources:
                conf = _cat([w.confidence[task][n][s] for w in windows])[keep]
                coverage[n][s] = coverage_curve(conf, pred_ok, COVERAGES)[1].tolist()
            coverage[n]["mc_variance_mean"] = [
                float(_cat([w.mc_variance[task][n] for w in windows]).mean())
            ]
        out["tasks"][task] = {
            "scores": scores,
            "val_accuracy": val_acc,
            "best_baseline": best_baseline,
            "tests": tests,
            "calibration": calib,
            "coverage": coverage,
            "combiner_weights": {
                n: [w.nets[n].combiner_weights[task] for w in windows] for n in nets
            },
            "ensemble_weights": [w.ensemble_weights.get(task, {}) for w in windows],
        }
        if task == "direction":
            out["tasks"][task]["sign_accuracy"] = {
                n: _sign_accuracy(probs[n], labels[task]) for n in names
            }
    adjusted = holm_adjust_finite([row["p_value"] for _, _, row in all_tests])
    for (_, _, row), p_adj in zip(all_tests, adjusted, strict=True):
        row["p_holm"] = p_adj
        row["significant"] = bool(p_adj < 0.05) if math.isfinite(p_adj) else False
    out["n_comparisons"] = len(all_tests)
    out["ensembles_vs_best_member"] = _ensemble_summary(out, tasks, nets)
    out["intensity"] = _intensity(windows, nets)
    out["trading"] = _trading(windows, names, cost_rate)
    out["latency_ms"] = _latency(windows, nets, latency_budget_ms)
    out["attention_by_age"] = attention_by_age(windows)
    out["class_balance"] = [
        {"window": w.index, "symbol": s.symbol, **s.class_balance}
        for w in windows
        for s in w.symbols
    ]
    out["windows"] = [
        {
            "window": w.index,
            **{f"{k}_range": v for k, v in w.dates.items()},
            "thresholds": {s.symbol: s.thresholds.to_dict() for s in w.symbols},
            "training": {
                n: {
                    "epochs_run": r.train.epochs_run,
                    "best_epoch": r.train.best_epoch,
                    "best_val_loss": r.train.best_val_loss,
                    "seconds": r.train.seconds,
                    **r.summary,
                }
                for n, r in w.nets.items()
            },
        }
        for w in windows
    ]
    result: dict[str, Any] = _plain(out)
    return result


def _sign_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Bull-vs-bear accuracy on bars labelled bull or bear (sideways ignored on both sides)."""
    keep = (labels == 0) | (labels == 2)
    guess = np.where(probs[keep, 2] >= probs[keep, 0], 2, 0)
    return float((guess == labels[keep]).mean()) if keep.any() else float("nan")


def _ensemble_summary(
    out: Mapping[str, Any], tasks: Sequence[str], nets: Sequence[str]
) -> list[dict[str, Any]]:
    rows = []
    for task in tasks:
        scores = out["tasks"][task]["scores"]
        members = [n for n in nets]
        if not members or not any(e in scores for e in ENSEMBLES):
            continue
        best = max(members, key=lambda n: scores[n]["accuracy"])
        for e in ENSEMBLES:
            if e not in scores:
                continue
            diff = scores[e]["accuracy"] - scores[best]["accuracy"]
            rows.append(
                {
                    "task": task,
                    "ensemble": e,
                    "best_member": best,
                    "accuracy": scores[e]["accuracy"],
                    "best_member_accuracy": scores[best]["accuracy"],
                    "difference": diff,
                    "beats_best_member": bool(diff > 0),
                    "log_loss_difference": scores[e]["log_loss"] - scores[best]["log_loss"],
                }
            )
    return rows


def _intensity(windows: Sequence[WindowResult], nets: Sequence[str]) -> dict[str, Any]:
    target = _cat([w.test.intensity for w in windows])
    keep = np.isfinite(target)
    out: dict[str, Any] = {}
    for n in nets:
        if not all(n in w.intensity for w in windows):
            continue
        pred = _cat([w.intensity[n] for w in windows])[keep]
        y = target[keep]
        ss = float(((y - y.mean()) ** 2).sum())
        out[n] = {
            "r2": 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else float("nan"),
            "corr": float(np.corrcoef(pred, y)[0, 1]) if y.size > 2 else float("nan"),
            "n": int(y.size),
        }
    return out


def _trading(
    windows: Sequence[WindowResult], names: Sequence[str], cost_rate: float
) -> dict[str, Any]:
    """Env-exact trading view per forecaster, all windows and symbols concatenated."""
    columns = ("net_returns", "positions", "end_positions", "turnover", "trade_costs")
    parts: dict[str, dict[str, list[np.ndarray]]] = {}

    def add(name: str, view: Mapping[str, np.ndarray], block: int) -> None:
        store = parts.setdefault(name, {c: [] for c in (*columns, "session_ids")})
        for c in columns:
            store[c].append(view[c])
        # Session ids made unique across windows and symbols (they restart per arrays).
        store["session_ids"].append(view["session_ids"] + block * 1_000_000)

    block = 0
    for w in windows:
        offset = 0
        for s in w.symbols:
            n = s.test_rows.size
            for name in [*names, "flat", "long_every_session"]:
                if name == "flat":
                    pos = np.zeros(n)
                elif name == "long_every_session":
                    pos = np.ones(n)
                else:
                    pos = direction_targets(w.probs["direction"][name][offset : offset + n])
                add(name, trading_view(s.arrays, s.test_rows, pos, cost_rate), block)
                conf = w.confidence["direction"].get(name, {}).get("combined")
                if conf is not None:
                    sized = direction_targets(
                        w.probs["direction"][name][offset : offset + n], conf[offset : offset + n]
                    )
                    add(
                        f"{name}_sized",
                        trading_view(s.arrays, s.test_rows, sized, cost_rate),
                        block,
                    )
            offset += n
            block += 1
    out: dict[str, Any] = {"cost_rate": cost_rate, "metrics": {}, "returns": {}}
    for name, store in parts.items():
        arrays = {c: _cat(v) for c, v in store.items()}
        out["metrics"][name] = compute_metrics(
            arrays["net_returns"],
            positions=arrays["positions"],
            end_positions=arrays["end_positions"],
            session_ids=arrays["session_ids"],
            turnover=arrays["turnover"],
            trade_costs=arrays["trade_costs"],
        ).to_dict()
        out["returns"][name] = arrays["net_returns"]
    return out


def _latency(windows: Sequence[WindowResult], nets: Sequence[str], budget: float) -> dict[str, Any]:
    last = windows[-1]
    rows = {n: dict(last.nets[n].latency_ms) for n in nets}
    if len(nets) >= 2:
        rows["ensemble"] = {
            "p50": sum(r["p50"] for r in rows.values()),
            "p99": sum(r["p99"] for r in rows.values()),
        }
    for r in rows.values():
        r["budget_ms"] = budget
        r["margin_p99"] = budget / r["p99"] if r["p99"] > 0 else float("inf")
    return rows


def attention_by_age(windows: Sequence[WindowResult]) -> dict[str, list[float]] | None:
    """Mean attention of the newest bar to the bar of each age (0 = itself), per layer."""
    maps = [w.attention for w in windows if w.attention is not None]
    if not maps:
        return None
    att = _cat(maps)  # (n, L, H, T)
    mean = att.mean(axis=(0, 2))[:, ::-1]  # (L, T) by age
    return {f"layer_{i}": row.tolist() for i, row in enumerate(mean)}


# ------------------------------------------------------------------------------- plots


def plot_reliability(
    windows: Sequence[WindowResult], task: str, nets: Sequence[str], path: Path, n_bins: int
) -> Path:
    """Reliability diagrams of each network before and after temperature scaling."""
    labels = _cat([w.test.labels[task] for w in windows])
    keep = labels >= 0
    fig, axes = plt.subplots(1, len(nets), figsize=(4 * len(nets), 4), squeeze=False)
    for ax, n in zip(axes[0], nets, strict=True):
        for kind, source in (("before", "raw_probs"), ("after", "probs")):
            p = _cat([getattr(w, source)[task][n] for w in windows])[keep]
            rel = reliability(p.max(axis=1), p.argmax(axis=1) == labels[keep], n_bins)
            ax.plot(rel.confidence, rel.accuracy, "o-", label=f"{kind} (ECE {rel.ece:.3f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(
            title=f"{task}: {n}", xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1)
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_coverage(metrics: Mapping[str, Any], task: str, path: Path) -> Path:
    """Accuracy vs coverage per network and confidence source."""
    coverage = metrics["tasks"][task]["coverage"]
    fig, axes = plt.subplots(1, len(coverage), figsize=(4 * len(coverage), 4), squeeze=False)
    for ax, (n, curves) in zip(axes[0], coverage.items(), strict=True):
        for s, values in curves.items():
            if s == "mc_variance_mean":
                continue
            ax.plot(COVERAGES, values, "o-", label=s)
        ax.set(title=f"{task}: {n}", xlabel="coverage", ylabel="accuracy of kept")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_attention_by_age(profile: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Mean attention by bar age, one line per layer."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for layer, values in profile.items():
        ax.plot(np.arange(len(values)), values, "o-", label=layer)
    ax.set(
        xlabel="bar age (0 = decision bar)",
        ylabel="mean attention of the newest bar",
        title="Transformer attention by bar age",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_hit_rate(metrics: Mapping[str, Any], task: str, names: Sequence[str], path: Path) -> Path:
    """Accuracy by bar of the session."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for n in names:
        hits = metrics["tasks"][task]["scores"][n]["hit_rate_by_bar"]
        xs = sorted(int(k) for k in hits)
        ax.plot(xs, [hits[str(k)] if str(k) in hits else hits[k] for k in xs], "o-", label=n)
    ax.set(xlabel="bar of session", ylabel="accuracy", title=f"{task}: hit rate by time of day")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- markdown


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def render_markdown(metrics: Mapping[str, Any], plots: Sequence[str], title: str) -> str:
    """The report text."""
    extra = metrics.get("extra", {})
    lines = [f"# {title}", ""]
    for key in ("data", "symbols", "market", "mode", "seed", "windows", "git_commit"):
        if key in extra:
            lines.append(f"- **{key}**: {extra[key]}")
    lines.append(
        "- All figures: out-of-sample test bars of every walk-forward window; thresholds, "
        "normalizers, baselines and models fitted on the fit range, temperatures, confidence "
        "combiners and ensembles on the validation range."
    )
    lines.append(
        f"- Paired tests: per (symbol, session) accuracy against the best baseline by "
        f"validation accuracy, Wilcoxon signed-rank, Holm-adjusted over all "
        f"{metrics['n_comparisons']} comparisons of this run."
    )
    lines.append("")
    oracle = extra.get("oracle")
    if oracle:
        lines += [
            "## What the planted process allows",
            "",
            f"AR(1) momentum phi = {oracle['phi']}, horizon {oracle['horizon']} bars: the "
            f"Bayes-optimal 3-class direction accuracy is **{oracle['direction']:.3f}** and "
            f"its bull-vs-bear sign accuracy on non-sideways bars **{oracle['sign']:.3f}** "
            "(backend/supervised/oracle.py). A reference, not a strict bound: it assumes a "
            "constant, known volatility, while the labels' band is scaled by a trailing "
            "volatility, which makes sideways partly predictable from the time of day and "
            "changes which bars count as trending; a few hundred test bars also carry a "
            "sampling error of +-0.02-0.03.",
            "",
        ]
    for task, block in metrics["tasks"].items():
        lines += [
            f"## {task}",
            "",
            f"Best baseline (validation accuracy): "
            f"**{block['best_baseline']}**. Classes: {', '.join(CLASS_NAMES[task])}.",
            "",
        ]
        tests = {row["model"]: row for row in block["tests"]}
        rows = []
        for name, s in block["scores"].items():
            t = tests.get(name)
            rows.append(
                [
                    name,
                    _f(s["accuracy"]),
                    _f(s["macro_f1"]),
                    _f(s["log_loss"]),
                    _f(s["ece"]),
                    _f(s["brier"]),
                    _f(block.get("sign_accuracy", {}).get(name)) if task == "direction" else "",
                    _f(t["mean_difference"]) if t else "",
                    _f(t["p_value"]) if t else "",
                    (_f(t["p_holm"]) + (" *" if t["significant"] else "")) if t else "",
                    str(s["n"]),
                ]
            )
        lines += _table(
            [
                "forecaster",
                "accuracy",
                "macro-F1",
                "log loss",
                "ECE",
                "Brier",
                "sign acc" if task == "direction" else "",
                "Δ acc/session vs best baseline",
                "p",
                "p Holm",
                "n bars",
            ],
            rows,
        )
        calib = block["calibration"]
        lines += _table(
            ["network", "ECE before", "ECE after temperature", "temperatures per window"],
            [
                [
                    n,
                    _f(c["ece_before"]),
                    _f(c["ece_after"]),
                    ", ".join(_f(t, 2) for t in c["temperatures"]),
                ]
                for n, c in calib.items()
            ],
        )
        cov_rows = []
        for n, curves in block["coverage"].items():
            for s, values in curves.items():
                if s == "mc_variance_mean":
                    continue
                cov_rows.append([n, s, _f(values[1]), _f(values[4]), _f(values[-1])])
        lines += ["Coverage vs accuracy (accuracy of the most confident 20 % / 50 % / all):", ""]
        lines += _table(["network", "confidence", "20 %", "50 %", "100 %"], cov_rows)
        cm_name = max(
            (n for n in block["scores"] if n not in BASELINES),
            key=lambda n: block["scores"][n]["accuracy"],
        )
        s = block["scores"][cm_name]
        lines += [
            f"Per class ({cm_name}, the most accurate non-baseline): precision "
            f"{[round(v, 3) for v in s['precision']]}, recall "
            f"{[round(v, 3) for v in s['recall']]}, confusion (rows true) "
            f"{s['confusion']}.",
            "",
        ]
    if metrics.get("ensembles_vs_best_member"):
        lines += ["## Ensembles against their best member", ""]
        lines += _table(
            [
                "task",
                "ensemble",
                "accuracy",
                "best member",
                "its accuracy",
                "Δ",
                "beats it?",
                "Δ log loss",
            ],
            [
                [
                    r["task"],
                    r["ensemble"],
                    _f(r["accuracy"]),
                    r["best_member"],
                    _f(r["best_member_accuracy"]),
                    _f(r["difference"]),
                    "yes" if r["beats_best_member"] else "no",
                    _f(r["log_loss_difference"]),
                ]
                for r in metrics["ensembles_vs_best_member"]
            ],
        )
    if metrics.get("intensity"):
        lines += ["## Volatility intensity (regression of standardized log future vol)", ""]
        lines += _table(
            ["network", "R²", "corr", "n"],
            [[n, _f(v["r2"]), _f(v["corr"]), str(v["n"])] for n, v in metrics["intensity"].items()],
        )
    trading = metrics["trading"]["metrics"]
    lines += [
        "## Trading view (position = sign of predicted direction, env costs, flat at close)",
        "",
        f"Cost rate {metrics['trading']['cost_rate']:.4g} per unit traded; `_sized` = "
        "position x combined confidence.",
        "",
    ]
    lines += _table(
        ["strategy", "total return", "Sharpe", "max DD", "turnover/session", "trades", "exposure"],
        [
            [
                n,
                _f(m["total_return"], 4),
                _f(m["sharpe"], 2),
                _f(m["max_drawdown"], 4),
                _f(m["turnover_per_session"], 2),
                str(m["n_trades"]),
                _f(m["exposure"], 2),
            ]
            for n, m in trading.items()
        ],
    )
    lines += ["## Latency of one prediction (batch 1, this machine)", ""]
    lines += _table(
        ["model", "p50 ms", "p99 ms", "budget ms", "budget / p99"],
        [
            [n, _f(v["p50"], 2), _f(v["p99"], 2), _f(v["budget_ms"], 0), _f(v["margin_p99"], 1)]
            for n, v in metrics["latency_ms"].items()
        ],
    )
    if metrics.get("attention_by_age"):
        lines += ["## Mean attention of the decision bar by bar age (transformer)", ""]
        profile = metrics["attention_by_age"]
        width = len(next(iter(profile.values())))
        lines += _table(
            ["layer", *[str(a) for a in range(width)]],
            [[k, *[_f(v, 3) for v in vals]] for k, vals in profile.items()],
        )
    lines += [
        "## Class balance per window (shares of "
        + ", ".join(f"{t}: {'/'.join(c)}" for t, c in CLASS_NAMES.items())
        + ")",
        "",
    ]
    cb_rows = []
    for row in metrics["class_balance"]:
        for part in ("fit", "val", "test"):
            cb_rows.append(
                [str(row["window"]), row["symbol"], part]
                + ["/".join(f"{v:.2f}" for v in row[part][t]) for t in metrics["tasks"]]
            )
    lines += _table(["window", "symbol", "part", *metrics["tasks"].keys()], cb_rows)
    lines += ["## Windows", ""]
    lines += _table(
        ["window", "fit", "val", "test"],
        [
            [
                str(w["window"]),
                " .. ".join(w["fit_range"]),
                " .. ".join(w["val_range"]),
                " .. ".join(w["test_range"]),
            ]
            for w in metrics["windows"]
        ],
    )
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def write_report(
    windows: Sequence[WindowResult],
    output_dir: Path,
    *,
    tasks: Sequence[str],
    nets: Sequence[str],
    cost_rate: float,
    ece_bins: int,
    latency_budget_ms: float,
    extra: Mapping[str, Any],
    title: str,
) -> Path:
    """Write ``metrics.json``, PNG plots and ``report.md`` under ``output_dir``."""
    metrics = build_metrics(
        windows,
        tasks=tasks,
        nets=nets,
        cost_rate=cost_rate,
        ece_bins=ece_bins,
        latency_budget_ms=latency_budget_ms,
        extra=extra,
    )
    plots_dir = output_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    for task in tasks:
        plots.append(
            str(
                plot_reliability(
                    windows, task, nets, plots_dir / f"reliability_{task}.png", ece_bins
                ).relative_to(output_dir)
            )
        )
        plots.append(
            str(
                plot_coverage(metrics, task, plots_dir / f"coverage_{task}.png").relative_to(
                    output_dir
                )
            )
        )
    names = list(metrics["tasks"]["direction"]["scores"])
    plots.append(
        str(
            plot_hit_rate(
                metrics, "direction", names, plots_dir / "hit_rate_direction.png"
            ).relative_to(output_dir)
        )
    )
    if metrics.get("attention_by_age"):
        plots.append(
            str(
                plot_attention_by_age(
                    metrics["attention_by_age"], plots_dir / "attention_by_age.png"
                ).relative_to(output_dir)
            )
        )
    returns = metrics["trading"].pop("returns")
    shown = {
        n: r
        for n, r in returns.items()
        if n in nets or n.startswith("ens_") and not n.endswith("_sized")
    }
    if shown:
        plots.append(
            str(
                plot_equity_curves(
                    shown,
                    plots_dir / "equity_direction.png",
                    baselines={
                        n: returns[n]
                        for n in ("long_every_session", "logreg", "hgb")
                        if n in returns
                    },
                    title="Direction trading view (net of env costs)",
                ).relative_to(output_dir)
            )
        )
    write_text_atomic(output_dir / "metrics.json", json.dumps(_plain(metrics), indent=2) + "\n")
    text = render_markdown(metrics, plots, title)
    path = output_dir / "report.md"
    write_text_atomic(path, text + "\n")
    return path
