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

Pretrained variants (issue 13, ``pretrained_variants``): a scenario may carry sub-runs of
its sequence encoders on per-window pretrained trunks. Their rows are named
``<mode>+pretrained(<use>)``; the scenario's tests are then recomputed with the report's
own machinery (:func:`~backend.evaluation.session_stats.paired_session_tests` on the
pooled test sessions, same seed) over one family: the run's family with the variants added
as strategies, plus each variant against its mode trained from scratch ("does pretraining
help"), so adding rows makes every verdict of that scenario stricter, never looser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from backend.data_download.synthetic_market import MARKET_SCENARIOS
from backend.evaluation import session_inference
from backend.evaluation.plots import plot_test_forest
from backend.evaluation.session_stats import paired_session_tests

ALPHA = 0.05
"""Significance level of the verdicts (on Holm-adjusted p-values)."""
BARS_PER_YEAR = 252 * 26


def variant_label(mode: str, use: str) -> str:
    """``transformer+pretrained(frozen)``: the table's name of a pretrained variant's row."""
    return f"{mode}+pretrained({use})"


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


def _test_fields(test: Mapping[str, Any] | None) -> dict[str, Any]:
    """The figures of a test against flat that a row shows (None where no test)."""
    keys = ("estimate", "ci_low", "ci_high", "min_detectable")
    return {f"vs_flat_{k}": (float(test[k]) if test and k in test else None) for k in keys}


def combined_tests(
    run: Mapping[str, Any], symbol: str, modes: Sequence[str], seed: int
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """A scenario's tests over its run and its pretrained variants' runs, as one family.

    The family is the run report's (:func:`session_inference.build_pairs`: every strategy
    against flat and buy-and-hold, each encoder against manual) with every variant row as
    a strategy, plus each variant against its mode from scratch; Holm over all of it.

    Returns:
        ``{(strategy, against, metric): test dict}`` (``SessionTest.to_dict`` fields).

    Raises:
        ValueError: if a variant's run tested other sessions than the scenario's run.
    """
    dates, returns = session_inference.pooled_session_returns(run["results"], modes, symbol)
    returns = dict(returns)
    labels: list[str] = []
    against_scratch: list[tuple[str, str]] = []
    for use, variant in run["variants"].items():
        vmodes = tuple(variant["modes"])
        vdates, vreturns = session_inference.pooled_session_returns(
            variant["results"], vmodes, symbol
        )
        if vdates != dates:
            raise ValueError(
                f"pretrained ({use}) run: tested {len(vdates)} sessions from {vdates[0]}, the "
                f"scenario's run {len(dates)} from {dates[0]}; they must share the windows"
            )
        for mode in vmodes:
            label = variant_label(mode, use)
            returns[label] = vreturns[mode]
            labels.append(label)
            if mode in modes:
                against_scratch.append((label, mode))
    baselines = [b for b in session_inference.BASELINE_STRATEGIES if b in returns]
    pairs = session_inference.build_pairs([*modes, *labels], baselines) + against_scratch
    found = paired_session_tests(
        returns, pairs, alpha=ALPHA, power=session_inference.POWER, seed=seed
    )
    return {(t.strategy, t.against, t.metric): t.to_dict() for t in found}


def expected_verdict(scenario: str, mode: str) -> str:
    """``no edge`` / ``edge`` / ``any``: what a working pipeline should conclude."""
    spec = MARKET_SCENARIOS[scenario]
    if spec.planted == "none":
        return "no edge"
    if mode == "manual":
        return "edge" if spec.findable_by_manual else "no edge"
    return "edge" if spec.planted == "momentum" else "any"


def ground_truth_table(
    runs: Mapping[str, Mapping[str, Any]],
    symbol: str,
    modes: Sequence[str],
    seed: int = 0,
) -> dict[str, Any]:
    """One row per (scenario, mode or pretrained variant) and the claims the table supports.

    Args:
        runs: ``{scenario: {"metrics": run metrics, "results": job results, "edge":
            theoretical edge dict of the marker for ``symbol``, optional "variants": {use:
            {"metrics", "results", "modes"}}}}``; the variants' runs share the scenario's
            windows.
        symbol: The traded symbol.
        modes: Encoder modes in report order.
        seed: Bootstrap seed of the recomputed tests of a scenario with variants (the run
            seed, so that the tests equal the report's up to the larger family).

    Returns:
        ``{"rows": [...], "test_source": ..., "claims": {...}, "pretraining": [...]}``;
        ``pretraining`` holds each variant's test against its mode from scratch.
    """
    rows: list[dict[str, Any]] = []
    pretraining: list[dict[str, Any]] = []
    sources: set[str] = set()
    for scenario, run in runs.items():
        edge = run["edge"]
        variants = dict(run.get("variants") or {})
        tests = combined_tests(run, symbol, modes, seed) if variants else None
        cells: list[tuple[str, str, str | None, Mapping[str, Any]]] = [
            (mode, mode, None, run) for mode in modes
        ]
        for use, variant in variants.items():
            cells += [(variant_label(m, use), m, use, variant) for m in variant["modes"]]
        for label, mode, use, source in cells:
            sessions = pooled_session_returns(source["results"], mode, symbol)
            values = sessions.to_numpy(dtype=np.float64)
            bars = sum(
                len(r["symbols"][symbol]["series"]["net_returns"])
                for r in source["results"].values()
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
                for r in source["results"].values()
                if r["mode"] == mode
            ]
            val_se = [float(x) for x in val_se if x is not None]
            if tests is not None:
                reported: dict[str, Any] | None = tests[(label, "flat", "sharpe")]
                sources.add("combined")
            else:
                reported = _reported_test(run["metrics"], mode, symbol)
                sources.add("report" if reported else "fallback")
            rows.append(
                {
                    "scenario": scenario,
                    "mode": label,
                    "encoder": mode,
                    "pretrained": use,
                    "n_sessions": int(values.size),
                    "sharpe": daily_sharpe,
                    "mean_return_per_bar": per_bar,
                    "theoretical_net_per_bar": theory,
                    "theoretical_sharpe_net": float(edge.get("annual_sharpe_net", 0.0)),
                    "share_of_edge": per_bar / theory if theory > 0 else None,
                    "p_value": reported["p_value"] if reported else _t_test_p(values),
                    "p_adjusted": reported.get("p_adjusted") if reported else None,
                    **_test_fields(reported),
                    "expected": expected_verdict(scenario, mode),
                    "val_sharpe_se": float(np.median(val_se)) if val_se else None,
                }
            )
            if tests is not None and use is not None and mode in modes:
                pretraining.append(
                    _pretraining_row(scenario, label, mode, use, tests[(label, mode, "sharpe")])
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
    if not from_report:
        source_text = "fallback t-test"
    elif "combined" in sources:
        source_text = (
            "report's paired session tests, Holm over each market's runs together (its "
            "encoders, pretrained variants and baselines)"
            + (" where it has variants, else the run's own" if "report" in sources else "")
        )
    else:
        source_text = "report"
    return {
        "rows": rows,
        "test_source": source_text,
        "alpha": ALPHA,
        # Issue 9's claims are about the encoder modes as trained from scratch.
        "claims": _claims([r for r in rows if r["pretrained"] is None]),
        "pretraining": pretraining,
    }


def _pretraining_row(
    scenario: str, label: str, mode: str, use: str, test: Mapping[str, Any]
) -> dict[str, Any]:
    """A variant's Sharpe against its mode from scratch and the verdict of that test."""
    if test["significant"]:
        verdict = "helps" if test["estimate"] > 0 else "hurts"
    else:
        verdict = "no difference shown"
    return {
        "scenario": scenario,
        "variant": label,
        "encoder": mode,
        "use": use,
        "estimate": float(test["estimate"]),
        "ci_low": float(test["ci_low"]),
        "ci_high": float(test["ci_high"]),
        "p_value": float(test["p_value"]),
        "p_adjusted": float(test["p_adjusted"]),
        "min_detectable": float(test["min_detectable"]),
        "n_sessions": int(test["n_sessions"]),
        "verdict": verdict,
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
    variants = (
        " `<mode>+pretrained(<use>)` rows train that encoder on a trunk pretrained per window "
        "on the window's fit range only."
        if any(r.get("pretrained") for r in table["rows"])
        else ""
    )
    lines = [
        "# Ground-truth comparison",
        "",
        f"Every encoder mode on each planted market ({symbol}, synthetic).{variants} `edge` "
        f"means the Holm-adjusted p-value against flat is below {table['alpha']} and the "
        f"Sharpe is positive; tests: {table['test_source']}.",
        "",
        "| market | mode | sessions | Sharpe (ann.) | Sharpe - flat [interval] | min det. | "
        "net bp/bar | theory bp/bar | share of edge | p adj. vs flat | verdict | expected | ok "
        "| val Sharpe SE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        share = r["share_of_edge"]
        diff = (
            "n/a"
            if r.get("vs_flat_estimate") is None
            else f"{_fmt(r['vs_flat_estimate'])} [{_fmt(r['vs_flat_ci_low'])}, "
            f"{_fmt(r['vs_flat_ci_high'])}]"
        )
        mde = r.get("vs_flat_min_detectable")
        lines.append(
            f"| {r['scenario']} | {r['mode']} | {r['n_sessions']} | {_fmt(r['sharpe'])} | "
            f"{diff} | {'n/a' if mde is None else format(mde, '.2f')} | "
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
    if table.get("pretraining"):
        lines += [
            "",
            "## Pretrained trunks against the same encoder from scratch",
            "",
            "Each trunk was pretrained per window on that window's fit range only "
            "(`training.pretrained.pretrain`); same sessions, same family of tests.",
            "",
            "| market | variant | Sharpe - scratch [interval] | min det. | p | p adj. | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['scenario']} | {p['variant']} | {_fmt(p['estimate'])} "
            f"[{_fmt(p['ci_low'])}, {_fmt(p['ci_high'])}] | {p['min_detectable']:.2f} | "
            f"{p['p_value']:.3g} | {p['p_adjusted']:.3g} | {p['verdict']} |"
            for p in table["pretraining"]
        ]
    lines += [
        "",
        "`Sharpe - flat [interval]`: the test's annualized Sharpe difference and its "
        "stationary-bootstrap interval (what the interval is: each market's report); `min "
        "det.`: the smallest difference that test detects at 80% power (unadjusted alpha). "
        "`theory bp/bar`: expected net return per session bar, after the env's costs, of the "
        "sign policy that knows the planted rule (`SignalEdge.per_session_bar`); `share of "
        "edge`: the mode's pooled mean over it. `val Sharpe SE`: standard error of one "
        "validation evaluation's annualized Sharpe (Lo 2002), what early stopping ranks "
        "checkpoints against.",
    ]
    return "\n".join(lines) + "\n"


def plot_ground_truth(table: Mapping[str, Any], path: str | Path) -> Path | None:
    """The table as a forest plot: each row's Sharpe minus flat and its interval.

    A filled marker is a Holm-significant difference (an ``edge`` or a ``loses`` verdict);
    rows without an interval (a fallback t-test) are left out of the picture, not the table.
    Returns None, writing nothing, when no row has an interval.
    """
    alpha = float(table.get("alpha", 0.05))
    tests = [
        {
            "strategy": f"{row['scenario']} / {row['mode']}",
            "against": "flat",
            "metric": "sharpe",
            "estimate": row["vs_flat_estimate"],
            "ci_low": row["vs_flat_ci_low"],
            "ci_high": row["vs_flat_ci_high"],
            "significant": row.get("p_adjusted") is not None and row["p_adjusted"] < alpha,
        }
        for row in table["rows"]
        if row.get("vs_flat_ci_low") is not None and row.get("vs_flat_ci_high") is not None
    ]
    if not tests:
        return None
    return plot_test_forest(
        tests, path, title="Ground truth: annualized Sharpe minus flat, per market and mode"
    )
