"""Inference on per-session net returns: paired block-bootstrap tests, Holm, power, PSR/DSR.

The unit of inference is the **test session**: a strategy's net return over one trading
session (its bars compounded). Walk-forward windows tile the test timeline without
overlap, so pooling the windows' sessions gives one time-ordered series per strategy, and
every strategy is observed on the *same* sessions, so comparisons are paired. This module
is independent of RL: it takes ``{name: per-session returns}`` and is used by the
walk-forward report and the supervised lab alike.

Methods (and why):

* **Stationary bootstrap** (Politis & Romano 1994, JASA 89(428)) of the *pair* of session
  series, resampled with the same indices so the pairing and the cross-correlation are
  kept; geometric blocks keep serial dependence (volatility clustering across days). The
  mean block length is the automatic choice of Politis & White (2004), with the correction
  of Patton, Politis & White (2009), on the series of paired differences. Both are written
  here and checked against the ``arch`` package in the tests (``arch`` is a dev dependency
  only: importing it and statsmodels costs seconds per run, and its ``StationaryBootstrap``
  draws one resample per Python iteration, two orders of magnitude slower than the
  vectorized :func:`stationary_bootstrap_indices` for thousands of resamples x dozens of
  comparisons).
* **p-value**: two-sided, from the bootstrap distribution *centred* at the estimate
  (``T* - T`` as the null distribution of ``T``, Hall & Wilson 1991), equal-tailed:
  ``p = 2 (1 + #{sign(T) (T* - T) >= |T|}) / (B + 1)``. The interval reported beside it is
  the dual *basic* bootstrap interval ``[2T - q(1-a/2), 2T - q(a/2)]``, so "the interval
  excludes 0" and "p < 1 - confidence" agree.
* **Holm (1979)** step-down adjustment over the whole family of tests a run makes
  (:func:`holm_adjust`); verdicts use the adjusted p-values.
* **Coverage**: the basic interval is called a "95% CI" only at a sample size where a
  Monte Carlo (``benchmarks/bench_session_bootstrap_coverage.py``, figures in
  :data:`MEASURED_COVERAGE`) measured coverage within Monte Carlo error of 95%; otherwise
  its label states the coverage measured (0.83 at 10 sessions to 0.92 at 120 on fat-tailed,
  autocorrelated series: no size measured so far earns the name).
* **Power** (:func:`min_detectable_sharpe_difference`): the Sharpe standard error of Lo
  (2002, iid case) and, for a paired difference, Jobson & Korkie (1981) with Memmel's (2003)
  correction using the observed correlation; the minimum detectable annualized Sharpe
  difference at 80% power is ``(z(1 - alpha/2) + z(0.8)) * SE * sqrt(periods_per_year)``.
* **PSR / DSR** (Bailey & López de Prado 2012, "The Sharpe Ratio Efficient Frontier";
  2014, "The Deflated Sharpe Ratio"): the probability that the true Sharpe exceeds a
  benchmark given length, skewness and kurtosis; deflated by the expected maximum Sharpe
  of ``n_trials`` unskilled trials with the observed variance of the trials' Sharpes.

Replicates: every function that takes per-session returns accepts a 1-D array
``(n_sessions,)`` or a 2-D array ``(n_replicates, n_sessions)`` (e.g. one row per training
seed); tests run on the **replicate mean** of each session (the seed-averaged strategy),
and :func:`replicate_spread` summarises the spread across replicates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from backend.evaluation.statistics import stationary_bootstrap_indices

__all__ = [
    "DEFAULT_RESAMPLES",
    "METRICS",
    "MEASURED_COVERAGE",
    "MIN_COVERAGE_FOR_CI",
    "SessionTest",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "ci_method_label",
    "holm_adjust",
    "measured_coverage",
    "min_detectable_sharpe_difference",
    "optimal_mean_block_length",
    "paired_session_tests",
    "per_session_returns",
    "probabilistic_sharpe_ratio_from_moments",
    "replicate_mean",
    "replicate_spread",
    "sharpe_difference_standard_error",
    "sharpe_standard_error",
    "stationary_bootstrap_indices",
]

SESSIONS_PER_YEAR = 252
"""Annualization of session statistics (Sharpe scales by ``sqrt(252)``)."""

METRICS: tuple[str, ...] = ("sharpe", "mean_return")
"""Statistics compared: annualized Sharpe of session returns, mean session (daily) return."""

MEASURED_COVERAGE: tuple[tuple[int, float], ...] = (
    (10, 0.83),
    (20, 0.88),
    (30, 0.87),
    (40, 0.885),
    (60, 0.91),
    (120, 0.92),
)
"""``(n_sessions, coverage)``: measured coverage of the nominal 95% basic interval.

From ``python benchmarks/bench_session_bootstrap_coverage.py`` (400 Monte Carlo samples of
paired rho=0.5, Student-t(5), AR(1) phi=0.1 session returns with a known difference, 999
resamples; ``benchmarks/results/session_bootstrap_coverage.json``): the *lowest* of the four
coverages measured at that size (Sharpe and mean difference, paired and against flat).
Monte Carlo standard error 0.011. The Sharpe intervals cover 0.90-0.955 from 10 sessions on;
the mean-return intervals under-cover on these fat-tailed series (0.83 at 10, 0.92 at
120), and the mean-return test's size at 5% was 0.095 at 40 sessions, 0.055 at 60 and
0.05 at 120: read mean-return verdicts on fewer than 60 sessions with care.
"""

MIN_COVERAGE_FOR_CI = 0.95 - 0.011
"""An interval is called a 95% CI only where measured coverage is within one MC s.e. of 0.95."""


def measured_coverage(n: int) -> tuple[int, float] | None:
    """The largest measured size ``<= n`` and its coverage (None below the smallest)."""
    below = [(size, cov) for size, cov in MEASURED_COVERAGE if size <= n]
    return below[-1] if below else None


DEFAULT_RESAMPLES = 9_999
"""Bootstrap resamples: p-values resolve to 1e-4, below Holm's first threshold for ~100 tests."""

_STD_FLOOR = 1e-15
_CHUNK_ELEMENTS = 4_000_000


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------


def per_session_returns(
    net_returns: npt.ArrayLike, session_ids: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Compounded net return of each session: ``(session ids in order, returns)``.

    Args:
        net_returns: Per-bar net returns, ``(n,)``.
        session_ids: Session id (or date string) of each bar, ``(n,)``, grouped: a session's
            bars are contiguous.

    Raises:
        ValueError: On mismatched shapes, non-finite returns or a session whose bars are
            not contiguous.
    """
    r = np.asarray(net_returns, dtype=np.float64)
    sid = np.asarray(session_ids)
    if r.ndim != 1 or sid.shape != r.shape:
        raise ValueError(f"session_ids: expected shape {r.shape} like net_returns, got {sid.shape}")
    if not np.isfinite(r).all():
        i = int(np.flatnonzero(~np.isfinite(r))[0])
        raise ValueError(f"net_returns: non-finite value {r[i]} at index {i}")
    if r.size == 0:
        return sid[:0], r[:0]
    starts = np.r_[0, np.flatnonzero(sid[1:] != sid[:-1]) + 1]
    ids = sid[starts]
    if len(set(ids.tolist())) != ids.size:
        raise ValueError("session_ids: a session's bars are not contiguous")
    log_growth = np.add.reduceat(np.log1p(r), starts)
    return ids, np.expm1(log_growth)


def _as_matrix(name: str, values: npt.ArrayLike) -> np.ndarray:
    """``(n_replicates, n_sessions)`` float64 view of 1-D or 2-D finite input."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0 or x.shape[0] == 0:
        raise ValueError(
            f"returns[{name!r}]: expected (n_sessions,) or (n_replicates, n_sessions), "
            f"got shape {np.shape(values)}"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        rep, s = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"returns[{name!r}]: non-finite value at replicate {rep}, session {s}")
    return x


def replicate_mean(values: npt.ArrayLike, name: str = "returns") -> np.ndarray:
    """Per-session mean over replicates (1-D input is returned as a float copy)."""
    return _as_matrix(name, values).mean(axis=0)


def _sharpe(x: np.ndarray, periods_per_year: float) -> np.ndarray:
    """Annualized Sharpe along the last axis (ddof=1; 0 where the std is ~0)."""
    mean = x.mean(axis=-1)
    std = x.std(axis=-1, ddof=1)
    out = np.zeros(np.shape(mean), dtype=np.float64)
    ok = std >= _STD_FLOOR
    out[ok] = mean[ok] / std[ok] * math.sqrt(periods_per_year)
    return out


def replicate_spread(
    values: npt.ArrayLike, *, periods_per_year: float = SESSIONS_PER_YEAR
) -> dict[str, Any]:
    """Sharpe and mean session return of each replicate, with their min/max/std.

    Returns:
        ``{"n_replicates", "sharpe": [per replicate], "mean_return": [...],
        "sharpe_min", "sharpe_max", "sharpe_std", "sharpe_of_mean"}`` (std is NaN for one).
    """
    x = _as_matrix("returns", values)
    sharpes = _sharpe(x, periods_per_year)
    return {
        "n_replicates": int(x.shape[0]),
        "sharpe": [float(v) for v in sharpes],
        "mean_return": [float(v) for v in x.mean(axis=1)],
        "sharpe_min": float(sharpes.min()),
        "sharpe_max": float(sharpes.max()),
        "sharpe_std": float(sharpes.std(ddof=1)) if x.shape[0] > 1 else math.nan,
        "sharpe_of_mean": float(_sharpe(x.mean(axis=0), periods_per_year)),
    }


# ---------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------


def _politis_white_stationary(x: np.ndarray) -> float:
    """Politis & White (2004) / Patton, Politis & White (2009) stationary-bootstrap block.

    The tuning follows ``arch.bootstrap.optimal_block_length`` (which a test reproduces to
    1e-10): the lag window ``m`` is twice the first lag after which ``k_n = max(5,
    log10 n)`` autocorrelations lie inside ``+-2 sqrt(log10(n) / n)``, at most
    ``ceil(sqrt n) + k_n``; with the flat-top kernel ``h(t) = min(1, 2 (1 - |t|))``,
    ``G = sum h(k/m) |k| gamma_k`` and ``sigma^2 = sum h(k/m) gamma_k``, the block is
    ``(2 G^2 / (2 sigma^4))^(1/3) n^(1/3)``, capped at ``ceil(min(3 sqrt n, n / 3))``.
    Written here rather than imported because importing ``arch`` (and statsmodels with it)
    costs seconds per run.
    """
    n = x.size
    eps = x - x.mean()
    b_max = math.ceil(min(3.0 * math.sqrt(n), n / 3.0))
    kn = max(5, int(math.log10(n)))
    m_max = math.ceil(math.sqrt(n)) + kn
    cv = 2.0 * math.sqrt(math.log10(n) / n)
    acv = np.zeros(m_max + 1)
    abs_acorr = np.zeros(m_max + 1)
    opt_m: int | None = None
    for i in range(m_max + 1):
        v1 = float(eps[i + 1 :] @ eps[i + 1 :])
        v2 = float(eps[: -(i + 1)] @ eps[: -(i + 1)])
        cross = float(eps[i:] @ eps[: n - i])
        acv[i] = cross / n
        abs_acorr[i] = abs(cross) / math.sqrt(v1 * v2) if v1 * v2 > 0.0 else 0.0
        if i >= kn and opt_m is None and np.all(abs_acorr[i - kn : i] < cv):
            opt_m = i - kn
    m = min(2 * max(opt_m, 1) if opt_m is not None else m_max, m_max)
    g = 0.0
    lr_acv = float(acv[0])
    for k in range(1, m + 1):
        lam = 1.0 if k / m <= 0.5 else 2.0 * (1.0 - k / m)
        g += 2.0 * lam * k * float(acv[k])
        lr_acv += 2.0 * lam * float(acv[k])
    d_sb = 2.0 * lr_acv**2
    if not d_sb > 0.0:
        return 1.0
    return float(min(((2.0 * g**2) / d_sb) ** (1.0 / 3.0) * n ** (1.0 / 3.0), b_max))


def optimal_mean_block_length(x: npt.ArrayLike) -> float:
    """Politis-White mean block length for the stationary bootstrap of ``x``, in ``[1, n/4]``.

    The upper bound leaves at least about four blocks per resample on short samples, where
    the estimator is itself noisy. Fewer than 8 values or a constant series give 1.
    """
    arr = np.asarray(x, dtype=np.float64)
    n = arr.size
    if n < 8 or float(arr.std()) < _STD_FLOOR:
        return 1.0
    value = _politis_white_stationary(arr)
    if not math.isfinite(value):
        return 1.0
    return float(min(max(value, 1.0), max(1.0, n / 4.0)))


def _pair_seed(seed: int, *names: str) -> int:
    digest = hashlib.sha256(":".join([str(seed), *names]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _bootstrap_pair(
    a: np.ndarray,
    b: np.ndarray,
    block: float,
    n_resamples: int,
    seed: int,
    periods_per_year: float,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of each metric's difference ``a - b``, same indices for both."""
    n = a.size
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    out: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    done = 0
    while done < n_resamples:
        k = min(chunk, n_resamples - done)
        idx = stationary_bootstrap_indices(n, k, block, rng)
        ra, rb = a[idx], b[idx]
        out["mean_return"].append(ra.mean(axis=1) - rb.mean(axis=1))
        out["sharpe"].append(_sharpe(ra, periods_per_year) - _sharpe(rb, periods_per_year))
        done += k
    return {m: np.concatenate(v) for m, v in out.items()}


def _estimate(metric: str, a: np.ndarray, b: np.ndarray, periods_per_year: float) -> float:
    if metric == "mean_return":
        return float(a.mean() - b.mean())
    return float(_sharpe(a, periods_per_year) - _sharpe(b, periods_per_year))


def _centred_p_value(samples: np.ndarray, estimate: float) -> float:
    """Two-sided equal-tailed p of ``H0: difference = 0``, bootstrap centred at the estimate.

    ``T* - T`` stands in for the estimator's null distribution; the p-value doubles the tail
    beyond the estimate on its own side, ``2 (1 + #{sign(T) (T* - T) >= |T|}) / (B + 1)``,
    which makes it exactly dual to the equal-tailed basic interval (the interval excludes
    0 iff ``p < 1 - confidence``, up to the ``+1`` of the finite-sample correction).
    """
    if estimate == 0.0:
        return 1.0
    tol = 1e-12 * max(1.0, abs(estimate))
    tail = int((np.sign(estimate) * (samples - estimate) >= abs(estimate) - tol).sum())
    return float(min(1.0, 2.0 * (1 + tail) / (samples.size + 1)))


def _basic_interval(samples: np.ndarray, estimate: float, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    q_low, q_high = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(2.0 * estimate - q_high), float(2.0 * estimate - q_low)


# ---------------------------------------------------------------------------------------
# Power and Sharpe standard errors
# ---------------------------------------------------------------------------------------


def sharpe_standard_error(sharpe: float, n: int) -> float:
    """Lo (2002) iid standard error of a per-period Sharpe: ``sqrt((1 + SR^2 / 2) / n)``."""
    if n < 2:
        raise ValueError(f"n: need at least 2 periods, got {n}")
    return math.sqrt((1.0 + 0.5 * sharpe**2) / n)


def sharpe_difference_standard_error(sr_a: float, sr_b: float, rho: float, n: int) -> float:
    """Standard error of ``SR_a - SR_b`` on ``n`` paired periods (per-period Sharpes).

    Jobson & Korkie (1981) with Memmel's (2003) correction:
    ``Var = (2 (1 - rho) + (SR_a^2 + SR_b^2 - 2 SR_a SR_b rho^2) / 2) / n``.
    """
    if n < 2:
        raise ValueError(f"n: need at least 2 periods, got {n}")
    if not -1.0 <= rho <= 1.0:
        raise ValueError(f"rho: must be in [-1, 1], got {rho}")
    var = 2.0 * (1.0 - rho) + 0.5 * (sr_a**2 + sr_b**2 - 2.0 * sr_a * sr_b * rho**2)
    return math.sqrt(max(var, 0.0) / n)


def min_detectable_sharpe_difference(
    n: int,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    sr_a: float = 0.0,
    sr_b: float | None = None,
    rho: float = 0.0,
    periods_per_year: float = SESSIONS_PER_YEAR,
) -> float:
    """Smallest annualized Sharpe difference a two-sided level-``alpha`` test detects.

    ``(z(1 - alpha / 2) + z(power)) * SE * sqrt(periods_per_year)`` with the standard error
    at the given per-period Sharpes: :func:`sharpe_standard_error` of ``sr_a`` alone when
    ``sr_b`` is None (a test against a zero-variance benchmark such as flat), else
    :func:`sharpe_difference_standard_error` with the correlation ``rho``.
    """
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power: must be in (0, 1), got {alpha}, {power}")
    if sr_b is None:
        se = sharpe_standard_error(sr_a, n)
    else:
        se = sharpe_difference_standard_error(sr_a, sr_b, rho, n)
    z = float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))
    return z * se * math.sqrt(periods_per_year)


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionTest:
    """One paired test of ``strategy`` against ``against`` on one metric.

    Attributes:
        strategy: Strategy name.
        against: Reference strategy name.
        metric: ``"sharpe"`` (annualized, session returns) or ``"mean_return"`` (per
            session).
        estimate: ``metric(strategy) - metric(against)`` on the pooled sessions.
        ci_low: Lower bound of the basic stationary-bootstrap interval.
        ci_high: Upper bound.
        ci_method: What the interval is, in words, including whether it is a 95% CI.
        p_value: Two-sided centred-bootstrap p-value of "no difference".
        p_adjusted: Holm-adjusted over the family (equal to ``p_value`` until adjusted).
        significant: ``p_adjusted < alpha``.
        n_sessions: Paired sessions.
        block_length: Mean block length used (Politis-White on the paired differences).
        n_resamples: Bootstrap resamples.
        min_detectable: Smallest annualized Sharpe difference (metric ``sharpe``) or mean
            session return difference (``mean_return``) this test detects at 80% power,
            two-sided ``alpha`` unadjusted.
        min_detectable_adjusted: The same at Holm's strictest level ``alpha / m``.
        correlation: Correlation of the two session series (NaN if one is constant).
    """

    strategy: str
    against: str
    metric: str
    estimate: float
    ci_low: float
    ci_high: float
    ci_method: str
    p_value: float
    p_adjusted: float
    significant: bool
    n_sessions: int
    block_length: float
    n_resamples: int
    min_detectable: float
    min_detectable_adjusted: float
    correlation: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``metrics.json``."""
        return dataclasses.asdict(self)


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in input order.

    Sorted ascending, ``p_(i)`` becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``: the
    family-wise error rate is controlled at any level ``alpha`` by ``adjusted < alpha``.
    (The same numbers as ``statsmodels`` ``multipletests(method="holm")``, which a test
    checks; written out here because that function runs a full ``gc.collect()`` per call.)

    Raises:
        ValueError: If a p-value is outside ``[0, 1]``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError(f"p_values: must lie in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out = np.empty(m, dtype=np.float64)
    out[order] = np.maximum.accumulate(stepped)
    return out


def ci_method_label(n: int, confidence: float = 0.95) -> str:
    """What the interval is at ``n`` sessions, with its measured coverage.

    Called a "95% CI" only where :data:`MEASURED_COVERAGE` supports it at that size
    (coverage >= :data:`MIN_COVERAGE_FOR_CI`); otherwise the label gives the coverage
    measured at the nearest smaller size, or says none was measured.
    """
    base = "stationary block bootstrap over sessions, basic interval"
    found = measured_coverage(n)
    if found is None:
        return (
            f"nominal {100 * confidence:g}% {base}; coverage not measured below "
            f"{MEASURED_COVERAGE[0][0]} sessions (n={n}): descriptive only, not a CI"
        )
    size, coverage = found
    if coverage >= MIN_COVERAGE_FOR_CI and confidence == 0.95:
        return f"95% CI ({base}; measured coverage {coverage:.2f} at {size}+ sessions)"
    return (
        f"nominal {100 * confidence:g}% {base}; measured coverage {coverage:.2f} at "
        f"{size}+ sessions, so not a {100 * confidence:g}% CI (n={n})"
    )


def _mde_mean(d: np.ndarray, alpha: float, power: float) -> float:
    z = float(stats.norm.ppf(1.0 - alpha / 2.0) + stats.norm.ppf(power))
    return z * float(d.std(ddof=1)) / math.sqrt(d.size)


def paired_session_tests(
    returns: Mapping[str, npt.ArrayLike],
    pairs: Sequence[tuple[str, str]],
    *,
    metrics: Sequence[str] = METRICS,
    alpha: float = 0.05,
    power: float = 0.8,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    block_length: float | None = None,
    periods_per_year: float = SESSIONS_PER_YEAR,
) -> list[SessionTest]:
    """Paired tests of every ``(strategy, against)`` pair, Holm-adjusted as one family.

    Args:
        returns: ``{name: per-session net returns}``, every array on the same sessions in
            time order, ``(n_sessions,)`` or ``(n_replicates, n_sessions)`` (replicates are
            averaged per session before testing).
        pairs: ``(strategy, against)`` names; the family is every pair x every metric.
        metrics: Subset of :data:`METRICS`.
        alpha: Family-wise level of the Holm procedure.
        power: Power of the minimum-detectable-effect figures.
        confidence: Nominal coverage of the intervals.
        n_resamples: Bootstrap resamples per pair.
        seed: Base seed; each pair's generator derives from (seed, strategy, against), so a
            pair's result does not depend on which other pairs are tested.
        block_length: Mean block length; None picks it per pair (Politis-White).
        periods_per_year: Annualization of the Sharpe (252 sessions).

    Returns:
        One :class:`SessionTest` per pair and metric, pairs in input order.

    Raises:
        ValueError: On unknown names or metrics, arrays of different session counts,
            fewer than 3 sessions, or non-finite values.
    """
    unknown_metrics = [m for m in metrics if m not in METRICS]
    if unknown_metrics:
        raise ValueError(f"metrics: unknown {unknown_metrics}; expected some of {METRICS}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples: must be >= 1, got {n_resamples}")
    means: dict[str, np.ndarray] = {}
    for strategy, against in pairs:
        for name in (strategy, against):
            if name not in returns:
                raise ValueError(f"pairs: {name!r} not in returns keys {sorted(returns)}")
            if name not in means:
                means[name] = replicate_mean(returns[name], name)
    sizes = {k: v.size for k, v in means.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"returns: strategies cover different session counts {sizes}")
    n = next(iter(sizes.values()), 0)
    if pairs and n < 3:
        raise ValueError(f"returns: need at least 3 paired sessions, got {n}")
    family = len(pairs) * len(metrics)
    raw: list[dict[str, Any]] = []
    for strategy, against in pairs:
        a, b = means[strategy], means[against]
        d = a - b
        block = optimal_mean_block_length(d) if block_length is None else float(block_length)
        samples = _bootstrap_pair(
            a, b, block, n_resamples, _pair_seed(seed, strategy, against), periods_per_year
        )
        sa, sb = float(a.std(ddof=1)), float(b.std(ddof=1))
        rho = float(np.corrcoef(a, b)[0, 1]) if sa > _STD_FLOOR and sb > _STD_FLOOR else math.nan
        sr_a = float(_sharpe(a, 1.0))
        sr_b = float(_sharpe(b, 1.0))
        for metric in metrics:
            est = _estimate(metric, a, b, periods_per_year)
            low, high = _basic_interval(samples[metric], est, confidence)
            p = _centred_p_value(samples[metric], est)
            if metric == "sharpe":
                kwargs: dict[str, Any] = {"periods_per_year": periods_per_year, "power": power}
                if sb <= _STD_FLOOR:
                    kwargs.update(sr_a=sr_a)
                elif sa <= _STD_FLOOR:
                    kwargs.update(sr_a=sr_b)
                else:
                    kwargs.update(sr_a=sr_a, sr_b=sr_b, rho=rho)
                mde = min_detectable_sharpe_difference(n, alpha=alpha, **kwargs)
                mde_adj = min_detectable_sharpe_difference(n, alpha=alpha / family, **kwargs)
            else:
                mde = _mde_mean(d, alpha, power)
                mde_adj = _mde_mean(d, alpha / family, power)
            raw.append(
                {
                    "strategy": strategy,
                    "against": against,
                    "metric": metric,
                    "estimate": est,
                    "ci_low": low,
                    "ci_high": high,
                    "ci_method": ci_method_label(n, confidence),
                    "p_value": p,
                    "n_sessions": int(n),
                    "block_length": block,
                    "n_resamples": int(n_resamples),
                    "min_detectable": mde,
                    "min_detectable_adjusted": mde_adj,
                    "correlation": rho,
                }
            )
    adjusted = holm_adjust([r["p_value"] for r in raw])
    return [
        SessionTest(**r, p_adjusted=float(q), significant=bool(q < alpha))
        for r, q in zip(raw, adjusted, strict=True)
    ]


# ---------------------------------------------------------------------------------------
# Probabilistic and deflated Sharpe ratio
# ---------------------------------------------------------------------------------------


def probabilistic_sharpe_ratio_from_moments(
    sharpe: float, n: int, skewness: float, kurtosis: float, benchmark: float = 0.0
) -> float:
    """PSR (Bailey & López de Prado 2012) from per-period moments.

    ``Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2))`` with the
    non-annualized Sharpe, skewness ``g3`` and *non-excess* kurtosis ``g4`` (3 for a
    normal). NaN when the variance term is not positive.
    """
    if n < 2:
        raise ValueError(f"n: need at least 2 periods, got {n}")
    var_term = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not var_term > 0.0:
        return math.nan
    z = (sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(var_term)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, trial_sharpe_variance: float) -> float:
    """Expected maximum Sharpe of ``n_trials`` unskilled trials (Bailey & LdP 2014, eq. 7).

    ``sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))`` with gamma the
    Euler-Mascheroni constant; 0 for a single trial (nothing was selected).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials: must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    if not trial_sharpe_variance >= 0.0:
        raise ValueError(f"trial_sharpe_variance: must be >= 0, got {trial_sharpe_variance}")
    gamma = float(np.euler_gamma)
    q1 = float(stats.norm.ppf(1.0 - 1.0 / n_trials))
    q2 = float(stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e)))
    return math.sqrt(trial_sharpe_variance) * ((1.0 - gamma) * q1 + gamma * q2)


def deflated_sharpe_ratio(
    returns: npt.ArrayLike,
    trial_sharpes: Sequence[float],
    *,
    n_trials: int | None = None,
    periods_per_year: float = SESSIONS_PER_YEAR,
) -> dict[str, Any]:
    """PSR against 0 and DSR of the selected strategy's per-period returns.

    Args:
        returns: The selected (best) strategy's per-session returns (1-D; average
            replicates first).
        trial_sharpes: Per-period (non-annualized) Sharpes of every trial, the selected one
            included; their variance is ``V[SR_n]``.
        n_trials: Trials made (default ``len(trial_sharpes)``); may exceed the Sharpes
            given when tuning trials were recorded without their returns.
        periods_per_year: For the annualized figures in the output.

    Returns:
        ``{"sharpe", "sharpe_annualized", "n", "skewness", "kurtosis", "n_trials",
        "trial_sharpe_variance", "sr0", "sr0_annualized", "psr", "dsr"}``.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.size < 3 or not np.isfinite(r).all():
        raise ValueError(f"returns: need a finite 1-D series of >= 3 periods, got {r.shape}")
    trials = np.asarray(trial_sharpes, dtype=np.float64)
    n_tr = int(trials.size if n_trials is None else n_trials)
    if n_tr < max(1, trials.size):
        raise ValueError(f"n_trials: {n_tr} is fewer than the {trials.size} Sharpes given")
    std = float(r.std(ddof=1))
    sr = float(r.mean()) / std if std > _STD_FLOOR else 0.0
    skew = float(stats.skew(r, bias=True)) if std > _STD_FLOOR else 0.0
    kurt = float(stats.kurtosis(r, fisher=False, bias=True)) if std > _STD_FLOOR else 3.0
    var = float(trials.var(ddof=1)) if trials.size > 1 else 0.0
    sr0 = expected_max_sharpe(n_tr, var)
    annual = math.sqrt(periods_per_year)
    return {
        "sharpe": sr,
        "sharpe_annualized": sr * annual,
        "n": int(r.size),
        "skewness": skew,
        "kurtosis": kurt,
        "n_trials": n_tr,
        "trial_sharpe_variance": var,
        "sr0": sr0,
        "sr0_annualized": sr0 * annual,
        "psr": probabilistic_sharpe_ratio_from_moments(sr, r.size, skew, kurt, 0.0),
        "dsr": probabilistic_sharpe_ratio_from_moments(sr, r.size, skew, kurt, sr0),
    }
