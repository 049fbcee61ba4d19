"""Coverage and size of the paired session bootstrap, by sample size (picks MIN_SESSIONS_FOR_CI).

Usage::

    python benchmarks/bench_session_bootstrap_coverage.py [--reps 400] [--resamples 999]

For each number of sessions, draws ``--reps`` Monte Carlo samples of two paired session
return series with a known difference and runs
:func:`backend.evaluation.session_stats.paired_session_tests` on each:

* DGP: unit-variance Student-t(5) innovations, correlated ``rho = 0.5`` across the two
  strategies, AR(1) ``phi = 0.1`` over sessions (stationary, unit variance), scaled to
  1% daily volatility; strategy A has per-session Sharpe 0.1 (1.6 annualized), B has 0.
  The true differences are therefore known exactly: Sharpe ``0.1 * sqrt(252)``, mean
  ``0.001``.
* ``coverage``: share of samples whose nominal 95% interval holds the true difference, for
  the Sharpe and the mean-return metric, against B (paired) and against flat (zeros).
* ``size``: rejection rate at 5% (unadjusted) when A and B have the same Sharpe (0.05).

The Monte Carlo standard error of a coverage near 0.95 is ``sqrt(.95 * .05 / reps)``
(0.011 at 400). Writes ``benchmarks/results/session_bootstrap_coverage.json``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.evaluation.session_stats import paired_session_tests  # noqa: E402
from benchmarks.bench_env import machine_info, write_result  # noqa: E402

DEFAULT_OUT = Path("benchmarks/results/session_bootstrap_coverage.json")
SIGMA = 0.01


def paired_sample(
    n: int, rng: np.random.Generator, sr_a: float, sr_b: float, rho: float = 0.5, phi: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Two paired session series with per-session Sharpes ``sr_a`` and ``sr_b`` exactly."""
    df = 5.0
    scale = math.sqrt((df - 2.0) / df)  # unit-variance t
    z = rng.standard_t(df, size=(2, n + 50)) * scale
    e_a = z[0]
    e_b = rho * z[0] + math.sqrt(1.0 - rho**2) * z[1]
    out = []
    for e in (e_a, e_b):
        u = np.empty_like(e)
        u[0] = e[0]
        for t in range(1, e.size):
            u[t] = phi * u[t - 1] + math.sqrt(1.0 - phi**2) * e[t]
        out.append(u[50:])
    return sr_a * SIGMA + SIGMA * out[0], sr_b * SIGMA + SIGMA * out[1]


def measure(n: int, reps: int, resamples: int, seed: int) -> dict[str, Any]:
    """Coverage of both metrics (paired and against flat) and size at ``n`` sessions."""
    rng = np.random.default_rng(seed + n)
    true = {"sharpe": 0.1 * math.sqrt(252), "mean_return": 0.1 * SIGMA}
    hits = {"paired_sharpe": 0, "paired_mean_return": 0, "flat_sharpe": 0, "flat_mean_return": 0}
    rejections = {"sharpe": 0, "mean_return": 0}
    for i in range(reps):
        a, b = paired_sample(n, rng, 0.1, 0.0)
        flat = np.zeros(n)
        tests = paired_session_tests(
            {"a": a, "b": b, "flat": flat},
            [("a", "b"), ("a", "flat")],
            n_resamples=resamples,
            seed=i,
        )
        for t in tests:
            key = ("paired_" if t.against == "b" else "flat_") + t.metric
            if t.against == "flat":
                target = true[t.metric] if t.metric == "mean_return" else true["sharpe"]
            else:
                target = true[t.metric]
            hits[key] += int(t.ci_low <= target <= t.ci_high)
        a0, b0 = paired_sample(n, rng, 0.05, 0.05)
        for t in paired_session_tests(
            {"a": a0, "b": b0}, [("a", "b")], n_resamples=resamples, seed=i
        ):
            rejections[t.metric] += int(t.p_value < 0.05)
    return {
        "n_sessions": n,
        "coverage": {k: v / reps for k, v in hits.items()},
        "size_at_5pct": {k: v / reps for k, v in rejections.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,20,30,40,60,120", help="session counts")
    parser.add_argument("--reps", type=int, default=400, help="Monte Carlo samples per size")
    parser.add_argument("--resamples", type=int, default=999, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    from tqdm import tqdm

    rows = [
        measure(int(n), args.reps, args.resamples, args.seed)
        for n in tqdm(args.sizes.split(","), desc="sample sizes")
    ]
    mc_se = math.sqrt(0.95 * 0.05 / args.reps)
    ok = [min(r["coverage"].values()) >= 0.95 - mc_se - 1e-12 for r in rows]
    # The smallest size from which every larger size measured is also within one MC s.e.
    smallest = None
    for i in range(len(rows) - 1, -1, -1):
        if not ok[i]:
            break
        smallest = rows[i]["n_sessions"]
    result = {
        "benchmark": "session_bootstrap_coverage",
        "config": vars(args) | {"out": str(args.out)},
        "monte_carlo_se": mc_se,
        "rows": rows,
        "smallest_n_within_one_se_of_95": smallest,
        "seconds": time.perf_counter() - began,
        "machine": machine_info(),
    }
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
