"""The ground-truth comparison: which encoder mode finds which planted edge.

The default main job runs every encoder mode on each scenario of
:data:`backend.data_download.synthetic_market.MARKET_SCENARIOS` (``null``, ``momentum``,
``sequence``). This module turns the per-scenario runs into one table: for every (scenario,
mode) the pooled out-of-sample Sharpe, the mean net return per bar next to the scenario's
theoretical net edge per bar (how close the mode comes), the test against flat and the
verdict, plus whether the verdict is the expected one (``null``: nobody may claim an edge;
``momentum``: everybody should find it; ``sequence``: a sequence encoder should, manual
must not).

The test against flat comes from the run's own ``metrics["tests"]`` (Holm-adjusted over
the run's family) when the report provides it; otherwise a fallback is computed here: a
one-sample t-test of the pooled per-session net returns against 0 (flat earns exactly 0),
Holm-adjusted over every (scenario, mode) cell of the table. Which one was used is stated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from backend.data_download.synthetic_market import MARKET_SCENARIOS

ALPHA = 0.05
"""Significance level of the verdicts (on Holm-adjusted p-values)."""
BARS_PER_YEAR = 252 * 26


def pooled_session_returns(
    results: Mapping[str, Mapping[str, Any]], mode: str, symbol: str
) -> pd.Series:
    """Net return per test session of ``mode`` pooled over windows, averaged over seeds.

    Sessions are the New York dates of the bars; each session's bar returns compound.
    """
    per_replicate: dict[int, dict[str, float]] = {}
    for result in results.values():
        if result["mode"] != mode:
            continue
        entry = result["symbols"][symbol]
        ts = pd.to_datetime(
            np.asarray(entry["series"]["timestamps"], dtype=np.int64), unit="ns", utc=True
        )
        dates = ts.tz_convert("America/New_York").strftime("%Y-%m-%d")
        growth = pd.Series(1.0 + np.asarray(entry["series"]["net_returns"]), index=dates)
        sessions = growth.groupby(level=0).prod() - 1.0
        per_replicate.setdefault(int(result.get("replicate", 0)), {}).update(
            {str(day): float(value) for day, value in sessions.items()}
        )
    frame = pd.DataFrame(per_replicate).sort_index()
    return frame.mean(axis=1)


def _holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (monotone, capped at 1)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[idx]))
        adjusted[idx] = running
    return adjusted


def _t_test_p(values: np.ndarray) -> float:
    """Two-sided one-sample t-test p-value of mean 0 (1.0 for constant or tiny samples)."""
    if values.size < 3 or float(np.std(values)) == 0.0:
        return 1.0
    return float(stats.ttest_1samp(values, 0.0).pvalue)


def _reported_test(metrics: Mapping[str, Any], mode: str, symbol: str) -> dict[str, Any] | None:
    """The run report's own test of ``mode`` against flat on the Sharpe, if it made one."""
    for test in metrics.get("tests") or []:
        if (
            test.get("strategy") == mode
            and test.get("against") == "flat"
            and test.get("metric") == "sharpe"
            and test.get("symbol", symbol) == symbol
        ):
            return dict(test)
    return None


def expected_verdict(scenario: str, mode: str) -> str:
    """``no edge`` / ``edge`` / ``any``: what a working pipeline should conclude."""
    spec = MARKET_SCENARIOS[scenario]
    if spec.planted == "none":
        return "no edge"
    if mode == "manual":
        return "edge" if spec.findable_by_manual else "no edge"
    return "edge" if spec.planted == "momentum" else "any"


def ground_truth_table(
    runs: Mapping[str, Mapping[str, Any]], symbol: str, modes: Sequence[str]
) -> dict[str, Any]:
    """One row per (scenario, mode) and the claims the table supports.

    Args:
        runs: ``{scenario: {"metrics": run metrics, "results": job results, "edge":
            theoretical edge dict of the marker for ``symbol``}}``.
        symbol: The traded symbol.
        modes: Encoder modes in report order.

    Returns:
        ``{"rows": [...], "test_source": "report" | "fallback t-test", "claims": {...}}``.
    """
    rows: list[dict[str, Any]] = []
    for scenario, run in runs.items():
        edge = run["edge"]
        for mode in modes:
            sessions = pooled_session_returns(run["results"], mode, symbol)
            values = sessions.to_numpy(dtype=np.float64)
            bars = sum(
                len(r["symbols"][symbol]["series"]["net_returns"])
                for r in run["results"].values()
                if r["mode"] == mode and int(r.get("replicate", 0)) == 0
            )
            per_bar = float(np.sum(values) / bars) if bars else math.nan
            daily_sharpe = (
                float(values.mean() / values.std(ddof=1) * math.sqrt(252))
                if values.size > 1 and values.std(ddof=1) > 0
                else 0.0
            )
            theory = float(edge.get("per_session_bar_net", 0.0))
            val_se = [
                r["symbols"][symbol].get("training", {}).get("val_sharpe_se")
                for r in run["results"].values()
                if r["mode"] == mode
            ]
            val_se = [float(x) for x in val_se if x is not None]
            reported = _reported_test(run["metrics"], mode, symbol)
            rows.append(
                {
                    "scenario": scenario,
                    "mode": mode,
                    "n_sessions": int(values.size),
                    "sharpe": daily_sharpe,
                    "mean_return_per_bar": per_bar,
                    "theoretical_net_per_bar": theory,
                    "theoretical_sharpe_net": float(edge.get("annual_sharpe_net", 0.0)),
                    "share_of_edge": per_bar / theory if theory > 0 else None,
                    "p_value": reported["p_value"] if reported else _t_test_p(values),
                    "p_adjusted": reported.get("p_adjusted") if reported else None,
                    "expected": expected_verdict(scenario, mode),
                    "val_sharpe_se": float(np.median(val_se)) if val_se else None,
                }
            )
    from_report = all(r["p_adjusted"] is not None for r in rows)
    if not from_report:
        adjusted = _holm([float(r["p_value"]) for r in rows])
        for row, p in zip(rows, adjusted, strict=True):
            row["p_adjusted"] = p
    for row in rows:
        significant = row["p_adjusted"] < ALPHA
        row["verdict"] = ("edge" if row["sharpe"] > 0 else "loses") if significant else "no edge"
        row["as_expected"] = row["expected"] == "any" or row["verdict"] == row["expected"]
    return {
        "rows": rows,
        "test_source": "report" if from_report else "fallback t-test",
        "alpha": ALPHA,
        "claims": _claims(rows),
    }


def _claims(rows: Sequence[Mapping[str, Any]]) -> dict[str, bool | None]:
    """The issue's three claims, each True/False (None when the scenario did not run)."""

    def cells(scenario: str) -> list[Mapping[str, Any]]:
        return [r for r in rows if r["scenario"] == scenario]

    null, momentum, sequence = cells("null"), cells("momentum"), cells("sequence")
    seq_found = [r for r in sequence if r["mode"] != "manual" and r["verdict"] == "edge"]
    manual_seq = [r for r in sequence if r["mode"] == "manual"]
    return {
        "no_edge_claimed_in_null": all(r["verdict"] != "edge" for r in null) if null else None,
        "momentum_found_by_every_mode": (
            all(r["verdict"] == "edge" for r in momentum) if momentum else None
        ),
        "sequence_found_by_a_sequence_encoder_not_by_manual": (
            bool(seq_found) and all(r["verdict"] != "edge" for r in manual_seq)
            if sequence
            else None
        ),
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if isinstance(value, float) else str(value)


def render_ground_truth_markdown(table: Mapping[str, Any], symbol: str) -> str:
    """The report section: the table, the claims, and what each column means."""
    lines = [
        "# Ground-truth comparison",
        "",
        f"Every encoder mode on each planted market ({symbol}, synthetic). `edge` means the "
        f"Holm-adjusted p-value against flat is below {table['alpha']} and the Sharpe is "
        f"positive; tests: {table['test_source']}.",
        "",
        "| market | mode | sessions | Sharpe (ann.) | net bp/bar | theory bp/bar | share of "
        "edge | p adj. vs flat | verdict | expected | ok | val Sharpe SE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        share = r["share_of_edge"]
        lines.append(
            f"| {r['scenario']} | {r['mode']} | {r['n_sessions']} | {_fmt(r['sharpe'])} | "
            f"{_fmt(r['mean_return_per_bar'] * 1e4)} | "
            f"{_fmt(r['theoretical_net_per_bar'] * 1e4)} | "
            f"{'n/a' if share is None else f'{share:.0%}'} | {r['p_adjusted']:.3g} | "
            f"{r['verdict']} | {r['expected']} | {'yes' if r['as_expected'] else 'NO'} | "
            f"{'n/a' if r['val_sharpe_se'] is None else format(r['val_sharpe_se'], '.1f')} |"
        )
    lines += ["", "## Claims", ""]
    for claim, holds in table["claims"].items():
        text = "not run" if holds is None else ("holds" if holds else "FAILS")
        lines.append(f"- {claim.replace('_', ' ')}: **{text}**")
    misses = [r for r in table["rows"] if not r["as_expected"]]
    if misses:
        lines += ["", "Cells that miss the expectation:"]
        lines += [
            f"- {r['scenario']} / {r['mode']}: {r['verdict']} (expected {r['expected']})"
            for r in misses
        ]
    lines += [
        "",
        "`theory bp/bar`: expected net return per session bar, after the env's costs, of the "
        "sign policy that knows the planted rule (`SignalEdge.per_session_bar`); `share of "
        "edge`: the mode's pooled mean over it. `val Sharpe SE`: standard error of one "
        "validation evaluation's annualized Sharpe (Lo 2002), what early stopping ranks "
        "checkpoints against.",
    ]
    return "\n".join(lines) + "\n"
