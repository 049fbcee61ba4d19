"""A walk-forward run's inference block: pooled test sessions, paired tests, power, DSR.

:func:`session_inference` turns the jobs' ``result.json`` files into the ``tests``,
``power``, ``deflated_sharpe``, ``sessions`` and ``seed_spread`` entries of
``metrics.json`` (:mod:`backend.evaluation.session_stats` does the statistics):

* every strategy's per-session net returns (``result["symbols"][SYM]["sessions"]``) are
  pooled over the windows in date order; windows must tile the test timeline, so a session
  seen by two windows is an error, not a silent double count;
* the family of paired tests is every strategy (encoder modes and baselines) against
  ``flat`` and against ``buy_and_hold``, and each encoder against ``manual``, on both
  metrics; Holm adjusts over the whole family (all symbols together);
* jobs carrying a ``"replicate"`` number (several training seeds per window and mode) are
  stacked ``(replicate, session)``: tests use the seed-averaged session returns and
  ``seed_spread`` shows each replicate's Sharpe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from backend.evaluation.session_stats import (
    DEFAULT_RESAMPLES,
    MEASURED_COVERAGE,
    SESSIONS_PER_YEAR,
    deflated_sharpe_ratio,
    holm_adjust,
    min_detectable_sharpe_difference,
    paired_session_tests,
    replicate_mean,
    replicate_spread,
)

__all__ = ["BASELINE_STRATEGIES", "build_pairs", "pooled_session_returns", "session_inference"]

BASELINE_STRATEGIES: tuple[str, ...] = ("flat", "buy_and_hold", "buy_and_hold_through", "random")
"""Baselines that enter the family of tests, in report order."""

ALPHA = 0.05
POWER = 0.8


def pooled_session_returns(
    results: Mapping[str, Mapping[str, Any]], modes: Sequence[str], symbol: str
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Per-session returns of every mode and baseline, pooled over windows.

    Returns:
        ``(dates, {strategy: array})``: modes get ``(n_replicates, n_sessions)`` arrays,
        baselines ``(n_sessions,)`` (they do not depend on the training seed).

    Raises:
        ValueError: If two windows test the same session, a replicate is missing for a
            window, or a mode's sessions differ from another's.
    """
    by_window: dict[int, dict[str, dict[int, Mapping[str, Any]]]] = {}
    for r in results.values():
        entry = r["symbols"][symbol]
        if "sessions" not in entry:
            raise ValueError(f"job w{r['window']:02d}/{r['mode']}: result has no 'sessions' block")
        replicate = int(r.get("replicate", 0))
        by_window.setdefault(int(r["window"]), {}).setdefault(r["mode"], {})[replicate] = entry[
            "sessions"
        ]
    order = sorted(by_window, key=lambda w: next(iter(by_window[w][modes[0]].values()))["dates"])
    dates: list[str] = []
    per_mode: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    per_baseline: dict[str, list[np.ndarray]] = {}
    replicates: set[int] | None = None
    for w in order:
        cells = by_window[w]
        first = cells[modes[0]][min(cells[modes[0]])]
        window_dates = list(first["dates"])
        for mode in modes:
            if mode not in cells:
                raise ValueError(f"window {w}: no result for mode {mode!r}")
            reps = set(cells[mode])
            replicates = reps if replicates is None else replicates
            if reps != replicates:
                raise ValueError(
                    f"window {w} mode {mode!r}: replicates {sorted(reps)}, "
                    f"expected {sorted(replicates)}"
                )
            rows = []
            for rep in sorted(reps):
                block = cells[mode][rep]
                if list(block["dates"]) != window_dates:
                    raise ValueError(
                        f"window {w} mode {mode!r}: other test sessions than {modes[0]!r}"
                    )
                rows.append(np.asarray(block["net_returns"], dtype=np.float64))
            per_mode[mode].append(np.vstack(rows))
        for name in BASELINE_STRATEGIES:
            if name in first["baselines"]:
                per_baseline.setdefault(name, []).append(
                    np.asarray(first["baselines"][name], dtype=np.float64)
                )
        dates.extend(window_dates)
    repeated = (
        sorted({d for d in dates if dates.count(d) > 1}) if len(set(dates)) != len(dates) else []
    )
    if repeated:
        dup = repeated[0]
        raise ValueError(
            f"test session {dup} appears in two windows: windows must tile the test timeline"
        )
    out: dict[str, np.ndarray] = {m: np.hstack(v) for m, v in per_mode.items()}
    for name, parts in per_baseline.items():
        if len(parts) == len(order):
            out[name] = np.concatenate(parts)
    return dates, out


def build_pairs(modes: Sequence[str], baselines: Sequence[str]) -> list[tuple[str, str]]:
    """The run's family: each strategy vs flat and vs buy-and-hold, each encoder vs manual.

    ``flat`` against ``buy_and_hold`` is left out (it is ``buy_and_hold`` against ``flat``
    with the sign flipped), so no comparison enters the family twice.
    """
    strategies = [*modes, *baselines]
    pairs: list[tuple[str, str]] = []
    if "flat" in baselines:
        pairs += [(s, "flat") for s in strategies if s != "flat"]
    if "buy_and_hold" in baselines:
        pairs += [(s, "buy_and_hold") for s in strategies if s not in ("flat", "buy_and_hold")]
    if "manual" in modes:
        pairs += [(m, "manual") for m in modes if m != "manual"]
    return pairs


def _summary(x: np.ndarray) -> dict[str, Any]:
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    sharpe = float(x.mean()) / std * math.sqrt(SESSIONS_PER_YEAR) if std > 1e-15 else 0.0
    return {
        "n_sessions": int(x.size),
        "sharpe": sharpe,
        "mean_return": float(x.mean()),
        "volatility": std,
        "total_return": float(np.expm1(np.log1p(x).sum())),
    }


def session_inference(
    results: Mapping[str, Mapping[str, Any]],
    modes: Sequence[str],
    symbols: Sequence[str],
    *,
    seed: int,
    tuning_trials: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> dict[str, Any]:
    """``{"tests", "power", "deflated_sharpe", "sessions", "seed_spread"}`` of a run.

    Args:
        results: ``{job name: result.json content}``.
        modes: Encoder modes in report order.
        symbols: Tickers; each is tested on its own sessions, Holm over all of them.
        seed: Bootstrap seed (the run seed).
        tuning_trials: Extra trials made before this run (hyperparameter search), counted
            by the deflated Sharpe ratio.
        n_resamples: Bootstrap resamples per pair.
    """
    tests: list[dict[str, Any]] = []
    sessions: dict[str, Any] = {}
    seed_spread: dict[str, Any] = {}
    deflated: dict[str, Any] = {}
    pooled: dict[str, dict[str, np.ndarray]] = {}
    for symbol in symbols:
        dates, returns = pooled_session_returns(results, modes, symbol)
        pooled[symbol] = returns
        baselines = [b for b in BASELINE_STRATEGIES if b in returns]
        pairs = build_pairs(modes, baselines)
        found = paired_session_tests(
            returns, pairs, alpha=ALPHA, power=POWER, n_resamples=n_resamples, seed=seed
        )
        tests += [{"symbol": symbol, **t.to_dict()} for t in found]
        sessions[symbol] = {
            "first": dates[0],
            "last": dates[-1],
            "strategies": {
                name: _summary(replicate_mean(values, name)) for name, values in returns.items()
            },
        }
        seed_spread[symbol] = {m: replicate_spread(returns[m]) for m in modes}
        means = {m: replicate_mean(returns[m], m) for m in modes}
        best = max(modes, key=lambda m: _summary(means[m])["sharpe"])
        trial_sharpes = [
            s / math.sqrt(SESSIONS_PER_YEAR)
            for m in modes
            for s in seed_spread[symbol][m]["sharpe"]
        ]
        deflated[symbol] = {
            "best_mode": best,
            **deflated_sharpe_ratio(
                means[best], trial_sharpes, n_trials=len(trial_sharpes) + tuning_trials
            ),
            "tuning_trials": tuning_trials,
        }

    # Holm over the whole family: every symbol's tests together.
    adjusted = holm_adjust([t["p_value"] for t in tests])
    for t, q in zip(tests, adjusted, strict=True):
        t["p_adjusted"] = float(q)
        t["significant"] = bool(q < ALPHA)
    family = len(tests)
    n = min(s["strategies"][modes[0]]["n_sessions"] for s in sessions.values())
    power = {
        "min_detectable_sharpe": min_detectable_sharpe_difference(n, alpha=ALPHA, power=POWER),
        "min_detectable_sharpe_holm": min_detectable_sharpe_difference(
            n, alpha=ALPHA / max(family, 1), power=POWER
        ),
        "n_sessions": n,
        "alpha": ALPHA,
        "power": POWER,
        "family_size": family,
        "interval_coverage_measured": [list(row) for row in MEASURED_COVERAGE],
        "basis": (
            "annualized Sharpe of session returns against a zero-variance benchmark (flat) at "
            "true Sharpe 0, Lo (2002) iid standard error; paired tests' own figures (with the "
            "observed correlation, Jobson-Korkie/Memmel) are each test's min_detectable"
        ),
    }
    return {
        "tests": tests,
        "power": power,
        "deflated_sharpe": deflated,
        "sessions": sessions,
        "seed_spread": seed_spread,
        "pooled": pooled,
    }
