"""Honest uncertainty for walk-forward results: bootstrap CIs, paired tests, PSR.

A walk-forward comparison typically has a handful of test windows, so every number here
comes with its sample size, and nothing is called significant on too few windows:

* :func:`bootstrap_mean_ci`: percentile bootstrap CI of the mean of per-window metrics
  (Efron & Tibshirani 1993, ch. 13). With fewer than :data:`MIN_WINDOWS_FOR_CI` values the
  percentile interval is known to under-cover (it cannot be wider than the sample's range),
  so the result carries a note saying so.
* :func:`stationary_bootstrap_sharpe_ci`: CI of the annualized Sharpe of one per-bar series
  by the stationary bootstrap of Politis & Romano (1994), "The Stationary Bootstrap", JASA
  89(428): blocks of geometric length (mean ``mean_block_length``) keep the intraday
  autocorrelation and volatility clustering that an i.i.d. resample would destroy.
* :func:`paired_comparison`: each encoder against ``manual`` on the *same* windows, through
  the per-window Sharpe differences: Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
  two-sided) and a paired bootstrap CI of the mean difference.
* :func:`significance_verdict`: the plain-language sentence for a report. Significance is
  never claimed with fewer than :data:`MIN_WINDOWS_FOR_SIGNIFICANCE` windows: the exact
  two-sided Wilcoxon p-value cannot go below ``2 / 2**n``, which is 0.0625 > 0.05 at n = 5,
  so six windows are the least that can reach 5% at all.
* :func:`probabilistic_sharpe_ratio`: Bailey & López de Prado (2012), "The Sharpe Ratio
  Efficient Frontier", Journal of Risk 15(2), eq. for PSR: the probability that the true
  per-bar Sharpe exceeds a benchmark given the sample's length, skewness and kurtosis.

Every resampling function takes a ``seed`` and builds its own ``numpy.random.Generator``;
results are identical for a seed.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from backend.evaluation.metrics import BARS_PER_YEAR

MIN_WINDOWS_FOR_CI = 5
"""Below this many values a percentile bootstrap CI is flagged as unreliable."""

MIN_WINDOWS_FOR_SIGNIFICANCE = 6
"""Least number of paired windows for which significance may be claimed (module docstring)."""

_CHUNK_ELEMENTS = 2_000_000
"""Resample-matrix elements generated at once by the stationary bootstrap (memory bound)."""


@dataclass(frozen=True)
class BootstrapCI:
    """A bootstrap confidence interval.

    Attributes:
        estimate: The statistic on the original sample.
        low: Lower percentile bound.
        high: Upper percentile bound.
        confidence: Nominal coverage, e.g. 0.95.
        n: Sample size (windows, or bars for a return series).
        n_resamples: Bootstrap resamples drawn.
        method: ``"percentile"`` or ``"stationary"``.
        note: Caveat for the report (empty when there is none).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    n_resamples: int
    method: str
    note: str = ""

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain dict for JSON reports."""
        return dataclasses.asdict(self)


def _finite_1d(name: str, values: npt.ArrayLike) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D array, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: non-finite value {arr[i]} at index {i}")
    return arr


def _check_common(confidence: float, n_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples: must be >= 1, got {n_resamples}")


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_mean_ci(
    values: npt.ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> BootstrapCI:
    """Percentile bootstrap CI of the mean of per-window values (e.g. Sharpe per window).

    Windows are resampled with replacement as whole units, so within-window dependence is
    kept; windows are treated as exchangeable, which their non-overlapping test ranges
    make reasonable.

    Args:
        values: One value per window, finite.
        confidence: Nominal coverage.
        n_resamples: Bootstrap resamples.
        seed: Seed of the resampling generator.

    Raises:
        ValueError: On empty or non-finite values or invalid parameters.
    """
    _check_common(confidence, n_resamples)
    x = _finite_1d("values", values)
    n = int(x.size)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    low, high = _percentiles(means, confidence)
    note = ""
    if n == 1:
        note = "only 1 window: no sampling variability can be estimated; the CI is degenerate"
    elif n < MIN_WINDOWS_FOR_CI:
        note = (
            f"only {n} windows (< {MIN_WINDOWS_FOR_CI}): the percentile bootstrap "
            "under-covers badly; read the interval as descriptive"
        )
    return BootstrapCI(float(x.mean()), low, high, confidence, n, n_resamples, "percentile", note)


def stationary_bootstrap_indices(
    n: int, n_resamples: int, mean_block_length: float, rng: np.random.Generator
) -> np.ndarray:
    """Politis-Romano stationary bootstrap index matrix, ``(n_resamples, n)``.

    Each resample is built from blocks that start at a uniform random bar and have
    geometric lengths with mean ``mean_block_length`` (a new block starts at each position
    with probability ``1 / mean_block_length``); indices wrap around the end of the series.

    Raises:
        ValueError: If ``n < 1`` or ``mean_block_length < 1``.
    """
    if n < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if not mean_block_length >= 1.0:
        raise ValueError(f"mean_block_length: must be >= 1, got {mean_block_length}")
    p = 1.0 / mean_block_length
    new_block = rng.random((n_resamples, n)) < p
    new_block[:, 0] = True
    t = np.arange(n)
    block_start = np.maximum.accumulate(np.where(new_block, t, 0), axis=1)  # (R, n)
    starts = rng.integers(0, n, size=(n_resamples, n))
    first = np.take_along_axis(starts, block_start, axis=1)
    return (first + (t - block_start)) % n


def _sharpe_rows(samples: np.ndarray, bars_per_year: float) -> np.ndarray:
    """Annualized Sharpe (ddof=1, 0 for zero variance) of each row."""
    mean: np.ndarray = samples.mean(axis=1)
    std: np.ndarray = samples.std(axis=1, ddof=1)
    out = np.zeros(mean.shape, dtype=np.float64)
    ok = std >= 1e-15
    out[ok] = mean[ok] / std[ok] * math.sqrt(bars_per_year)
    return out


def stationary_bootstrap_sharpe_ci(
    returns: npt.ArrayLike,
    *,
    mean_block_length: float = 26.0,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    bars_per_year: float = BARS_PER_YEAR,
) -> BootstrapCI:
    """Stationary-bootstrap percentile CI of the annualized Sharpe of one return series.

    Args:
        returns: Per-bar net returns.
        mean_block_length: Mean block length in bars; the default, one regular session
            (26 bars), keeps intraday seasonality and volatility clustering within blocks.
        confidence: Nominal coverage.
        n_resamples: Bootstrap resamples (generated in memory-bounded chunks).
        seed: Seed of the resampling generator.
        bars_per_year: Annualization count (Sharpe as in ``metrics.sharpe_ratio``).

    Raises:
        ValueError: On fewer than 2 returns, non-finite values or invalid parameters.
    """
    _check_common(confidence, n_resamples)
    r = _finite_1d("returns", returns)
    n = int(r.size)
    if n < 2:
        raise ValueError(f"returns: need at least 2 bars for a Sharpe ratio, got {n}")
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    sharpes = []
    done = 0
    while done < n_resamples:
        k = min(chunk, n_resamples - done)
        idx = stationary_bootstrap_indices(n, k, mean_block_length, rng)
        sharpes.append(_sharpe_rows(r[idx], bars_per_year))
        done += k
    low, high = _percentiles(np.concatenate(sharpes), confidence)
    estimate = float(_sharpe_rows(r[None, :], bars_per_year)[0])
    note = ""
    if n < 10 * mean_block_length:
        note = (
            f"only {n} bars for a mean block of {mean_block_length:g}: few independent "
            "blocks, the interval is rough"
        )
    return BootstrapCI(estimate, low, high, confidence, n, n_resamples, "stationary", note)


def significance_verdict(
    p_value: float,
    n: int,
    *,
    alpha: float = 0.05,
    min_n: int = MIN_WINDOWS_FOR_SIGNIFICANCE,
) -> str:
    """Plain-language verdict, e.g. ``"not significant at 5% (p=0.43, n=3 windows)"``.

    Significance is claimed only when ``p < alpha`` **and** ``n >= min_n``; with fewer
    windows the sentence says so whatever the p-value. A NaN p-value (no test possible)
    reads as "not testable".
    """
    level = f"{100 * alpha:g}%"
    windows = f"n={n} window" + ("" if n == 1 else "s")
    if not math.isfinite(p_value):
        return f"not testable at {level} (p undefined, {windows})"
    body = f"p={p_value:.2g}, {windows}"
    if n < min_n:
        return (
            f"not significant at {level} ({body}; at least {min_n} windows are needed "
            "to claim significance)"
        )
    if p_value < alpha:
        return f"significant at {level} ({body})"
    return f"not significant at {level} ({body})"


@dataclass(frozen=True)
class PairedComparison:
    """One encoder against the reference on the same windows.

    Attributes:
        encoder: Encoder name.
        reference: Reference encoder name (``"manual"``).
        n_windows: Windows both have a value for.
        differences: ``encoder - reference`` per window, in window order.
        mean_difference: Mean of ``differences``.
        wilcoxon_statistic: Wilcoxon signed-rank statistic (NaN if not computable).
        p_value: Two-sided Wilcoxon p-value (1.0 if every difference is 0; NaN with one
            window).
        ci: Paired bootstrap CI of the mean difference.
        verdict: Plain-language summary for the report.
    """

    encoder: str
    reference: str
    n_windows: int
    differences: tuple[float, ...]
    mean_difference: float
    wilcoxon_statistic: float
    p_value: float
    ci: BootstrapCI
    verdict: str

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON reports (the CI nested)."""
        return dataclasses.asdict(self)


def wilcoxon_test(differences: npt.ArrayLike) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired differences: ``(statistic, p)``.

    Zero differences are dropped (Wilcoxon's original rule). All differences zero gives
    ``(0.0, 1.0)`` (no evidence of any difference); a single non-zero one gives
    ``(nan, nan)`` since nothing can be tested on one window.
    """
    d = _finite_1d("differences", differences)
    nonzero = d[d != 0.0]
    if nonzero.size == 0:
        return 0.0, 1.0
    if d.size < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        # scipy warns that small samples use the exact distribution; that is intended.
        warnings.simplefilter("ignore", UserWarning)
        res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def per_window_from_frame(
    frame: pd.DataFrame,
    *,
    value: str = "sharpe",
    encoder: str = "encoder",
    window: str = "window",
) -> dict[str, np.ndarray]:
    """Long table (one row per encoder and window) to ``{encoder: values in window order}``.

    Raises:
        ValueError: If a column is missing, an (encoder, window) pair repeats, or an encoder
            lacks a window another has: a paired test needs every encoder on every window.
    """
    missing = [c for c in (value, encoder, window) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame: missing columns {missing}")
    if frame.duplicated([encoder, window]).any():
        raise ValueError(f"frame: repeated ({encoder}, {window}) pairs")
    table = frame.pivot(index=window, columns=encoder, values=value).sort_index()
    holes = table.isna()
    if holes.to_numpy().any():
        name = holes.any(axis=0).idxmax()
        lacking = list(table.index[holes[name]])
        raise ValueError(f"frame: encoder {name!r} has no {value!r} for windows {lacking}")
    return {str(c): table[c].to_numpy(dtype=np.float64) for c in table.columns}


def paired_comparison(
    per_window: Mapping[str, Sequence[float] | npt.ArrayLike],
    *,
    reference: str = "manual",
    metric_name: str = "Sharpe",
    alpha: float = 0.05,
    min_windows: int = MIN_WINDOWS_FOR_SIGNIFICANCE,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> list[PairedComparison]:
    """Compare every encoder with ``reference`` on per-window values (e.g. Sharpe).

    Args:
        per_window: ``{encoder: values}``, every sequence in the same window order and of
            the same length (one value per walk-forward test window).
        reference: The encoder everything is compared with.
        metric_name: Name of the metric in the verdict text.
        alpha: Test level.
        min_windows: Least windows to claim significance (see
            :data:`MIN_WINDOWS_FOR_SIGNIFICANCE`).
        confidence: Coverage of the bootstrap CI of the mean difference.
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed (the same for every encoder, so results are reproducible).

    Returns:
        One :class:`PairedComparison` per encoder other than ``reference``, in input order.

    Raises:
        ValueError: If ``reference`` is missing, lengths differ, or values are not finite.
    """
    if reference not in per_window:
        raise ValueError(f"reference {reference!r} not in per_window keys {list(per_window)}")
    ref = _finite_1d(f"per_window[{reference!r}]", per_window[reference])
    out = []
    for name, values in per_window.items():
        if name == reference:
            continue
        x = _finite_1d(f"per_window[{name!r}]", values)
        if x.shape != ref.shape:
            raise ValueError(
                f"per_window[{name!r}]: {x.size} windows but {reference!r} has {ref.size}"
            )
        d = x - ref
        stat, p = wilcoxon_test(d)
        ci = bootstrap_mean_ci(d, confidence=confidence, n_resamples=n_resamples, seed=seed)
        mean = float(d.mean())
        verdict = (
            f"{name} vs {reference}: mean {metric_name} difference {mean:+.3g} "
            f"[{100 * confidence:g}% CI {ci.low:+.3g}, {ci.high:+.3g}]; "
            + significance_verdict(p, int(d.size), alpha=alpha, min_n=min_windows)
        )
        out.append(
            PairedComparison(
                encoder=name,
                reference=reference,
                n_windows=int(d.size),
                differences=tuple(float(v) for v in d),
                mean_difference=mean,
                wilcoxon_statistic=stat,
                p_value=p,
                ci=ci,
                verdict=verdict,
            )
        )
    return out


def probabilistic_sharpe_ratio(returns: npt.ArrayLike, benchmark_sharpe: float = 0.0) -> float:
    """Probabilistic Sharpe ratio (Bailey & López de Prado 2012), per-bar units.

    ``PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2))`` with
    ``SR`` the *non-annualized* per-bar Sharpe (``mean / std``, ddof=1 as elsewhere),
    ``SR*`` the benchmark in the same per-bar units (0 by default; divide an annualized
    benchmark by ``sqrt(bars_per_year)``), ``g3`` the skewness and ``g4`` the (non-excess)
    kurtosis of the returns, both the plain moment estimators (``bias=True``) used in the
    paper. Fat tails and negative skew widen the Sharpe's standard error and lower PSR.

    Args:
        returns: Per-bar net returns.
        benchmark_sharpe: ``SR*``, per bar.

    Returns:
        The probability in ``[0, 1]``; NaN for a zero-variance series (no Sharpe exists) or
        when the variance term is not positive (extreme skew; the approximation fails).

    Raises:
        ValueError: On fewer than 3 returns or non-finite values.
    """
    r = _finite_1d("returns", returns)
    n = int(r.size)
    if n < 3:
        raise ValueError(f"returns: need at least 3 bars for skewness, got {n}")
    std = float(r.std(ddof=1))
    if std < 1e-15:
        return math.nan
    sr = float(r.mean()) / std
    g3 = float(stats.skew(r, bias=True))
    g4 = float(stats.kurtosis(r, fisher=False, bias=True))
    var_term = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr**2
    if not var_term > 0.0:
        return math.nan
    z = (sr - benchmark_sharpe) * math.sqrt(n - 1) / math.sqrt(var_term)
    return float(stats.norm.cdf(z))
