"""Bootstrap CIs, paired tests, verdict texts and the probabilistic Sharpe ratio."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from backend.evaluation.statistics import (
    MIN_WINDOWS_FOR_SIGNIFICANCE,
    bootstrap_mean_ci,
    paired_comparison,
    per_window_from_frame,
    probabilistic_sharpe_ratio,
    significance_verdict,
    stationary_bootstrap_indices,
    stationary_bootstrap_sharpe_ci,
    wilcoxon_test,
)


def test_bootstrap_mean_ci_covers_true_mean_in_seeded_simulation() -> None:
    rng = np.random.default_rng(123)
    true_mean = 0.5
    hits = 0
    trials = 200
    for k in range(trials):
        sample = rng.normal(true_mean, 1.0, size=30)
        ci = bootstrap_mean_ci(sample, n_resamples=1000, seed=k)
        assert ci.low <= ci.estimate <= ci.high
        hits += ci.low <= true_mean <= ci.high
    # nominal 95%; the percentile bootstrap runs slightly low at n = 30
    assert 0.88 <= hits / trials <= 0.99


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    x = [0.3, -0.1, 0.8, 0.2, 0.5, 1.1]
    a = bootstrap_mean_ci(x, seed=7)
    b = bootstrap_mean_ci(x, seed=7)
    c = bootstrap_mean_ci(x, seed=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)
    assert a.n == 6 and a.n_resamples == 10_000 and a.note == ""


def test_bootstrap_flags_few_windows() -> None:
    assert "only 3 windows" in bootstrap_mean_ci([1.0, 2.0, 3.0], n_resamples=200).note
    one = bootstrap_mean_ci([0.4], n_resamples=50)
    assert (one.low, one.high) == (0.4, 0.4) and "degenerate" in one.note


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_mean_ci([])
    with pytest.raises(ValueError, match="index 1"):
        bootstrap_mean_ci([0.1, math.nan])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci([0.1], confidence=1.5)


def test_stationary_indices_follow_blocks() -> None:
    rng = np.random.default_rng(0)
    idx = stationary_bootstrap_indices(50, 400, 10.0, rng)
    assert idx.shape == (400, 50) and idx.min() >= 0 and idx.max() < 50
    steps = (np.diff(idx, axis=1) % 50) == 1  # continuing a block (wrapping at the end)
    # a new block starts with probability 1/10 (and may continue by chance 1/50)
    assert 1.0 - steps.mean() == pytest.approx(0.1 * 49 / 50, abs=0.01)
    again = stationary_bootstrap_indices(50, 400, 10.0, np.random.default_rng(0))
    np.testing.assert_array_equal(idx, again)


def test_stationary_sharpe_ci_is_seeded_and_brackets_estimate() -> None:
    r = np.random.default_rng(5).normal(2e-4, 2e-3, size=2600)
    a = stationary_bootstrap_sharpe_ci(r, n_resamples=500, seed=3)
    b = stationary_bootstrap_sharpe_ci(r, n_resamples=500, seed=3)
    assert a == b
    assert a.low < a.estimate < a.high
    # the estimate is the metrics module's Sharpe
    assert a.estimate == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(6552))
    assert a.method == "stationary" and a.note == ""
    with pytest.raises(ValueError, match="at least 2"):
        stationary_bootstrap_sharpe_ci([0.01])


@pytest.mark.parametrize(
    ("p", "n", "expected"),
    [
        (
            0.43,
            3,
            "not significant at 5% (p=0.43, n=3 windows; at least 6 windows are needed "
            "to claim significance)",
        ),
        # a tiny p with too few windows is still not a claim
        (
            0.001,
            4,
            "not significant at 5% (p=0.001, n=4 windows; at least 6 windows are needed "
            "to claim significance)",
        ),
        (0.43, 8, "not significant at 5% (p=0.43, n=8 windows)"),
        (0.0078, 8, "significant at 5% (p=0.0078, n=8 windows)"),
        (math.nan, 1, "not testable at 5% (p undefined, n=1 window)"),
    ],
)
def test_verdict_texts(p: float, n: int, expected: str) -> None:
    assert significance_verdict(p, n) == expected


def test_minimum_windows_is_the_least_where_5pct_is_attainable() -> None:
    # exact two-sided Wilcoxon: the smallest p with n all-positive differences is 2 / 2**n
    assert wilcoxon_test(np.arange(1.0, 6.0))[1] == pytest.approx(2 / 2**5)  # 0.0625
    assert wilcoxon_test(np.arange(1.0, 7.0))[1] == pytest.approx(2 / 2**6)  # 0.03125
    assert MIN_WINDOWS_FOR_SIGNIFICANCE == 6


def test_wilcoxon_edge_cases() -> None:
    assert wilcoxon_test([0.0, 0.0, 0.0]) == (0.0, 1.0)
    stat, p = wilcoxon_test([0.2])
    assert math.isnan(stat) and math.isnan(p)
    ref = stats.wilcoxon([0.1, -0.2, 0.3, 0.5])
    assert wilcoxon_test([0.1, -0.2, 0.3, 0.5]) == (float(ref.statistic), float(ref.pvalue))


def test_paired_comparison_against_manual() -> None:
    per_window = {
        "manual": [0.1, 0.2, -0.3, 0.0, 0.4, 0.1, -0.2, 0.3],
        "cnn": [0.6, 0.9, 0.1, 0.7, 1.0, 0.5, 0.4, 0.8],  # better in every window
        "lstm": [0.1, 0.3, -0.4, 0.1, 0.3, 0.2, -0.3, 0.3],  # noise around manual
    }
    cnn, lstm = paired_comparison(per_window, n_resamples=2000, seed=1)
    assert (cnn.encoder, cnn.reference, cnn.n_windows) == ("cnn", "manual", 8)
    assert cnn.mean_difference == pytest.approx(0.55)  # diffs 0.5 0.7 0.4 0.7 0.6 0.4 0.6 0.5
    assert cnn.p_value == pytest.approx(2 / 2**8)  # every difference positive
    assert cnn.ci.low > 0.0
    assert cnn.verdict.startswith("cnn vs manual: mean Sharpe difference +0.55 ")
    assert cnn.verdict.endswith("significant at 5% (p=0.0078, n=8 windows)")
    assert "not significant" not in cnn.verdict
    assert lstm.verdict.endswith("n=8 windows)") and "not significant" in lstm.verdict
    assert lstm.ci.low < 0.0 < lstm.ci.high


def test_paired_comparison_few_windows_never_significant() -> None:
    (res,) = paired_comparison(
        {"manual": [0.0, 0.1, 0.2], "transformer": [1.0, 1.1, 1.2]}, n_resamples=500
    )
    assert "not significant" in res.verdict and "n=3 windows" in res.verdict
    assert "only 3 windows" in res.ci.note


def test_paired_comparison_input_errors() -> None:
    with pytest.raises(ValueError, match="reference 'manual' not in"):
        paired_comparison({"cnn": [1.0]})
    with pytest.raises(ValueError, match="2 windows but 'manual' has 3"):
        paired_comparison({"manual": [1.0, 2.0, 3.0], "cnn": [1.0, 2.0]})


def test_psr_matches_hand_computation() -> None:
    r = [0.01, -0.02, 0.03, 0.005, -0.004]
    n = 5
    mean = sum(r) / n  # 0.021 / 5 = 0.0042
    dev = [x - mean for x in r]
    m2 = sum(d * d for d in dev) / n
    m3 = sum(d**3 for d in dev) / n
    m4 = sum(d**4 for d in dev) / n
    sd1 = math.sqrt(sum(d * d for d in dev) / (n - 1))
    sr = mean / sd1
    skew = m3 / m2**1.5
    kurt = m4 / m2**2
    z = sr * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    expected = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    assert probabilistic_sharpe_ratio(r) == pytest.approx(expected, rel=1e-12)
    # against a benchmark equal to the sample Sharpe, PSR is exactly one half
    assert probabilistic_sharpe_ratio(r, benchmark_sharpe=sr) == pytest.approx(0.5)


def test_psr_edge_cases() -> None:
    assert math.isnan(probabilistic_sharpe_ratio([0.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="at least 3"):
        probabilistic_sharpe_ratio([0.01, 0.02])
    strong = np.random.default_rng(0).normal(1e-3, 1e-3, 500)
    assert probabilistic_sharpe_ratio(strong) > 0.999
    assert probabilistic_sharpe_ratio(-strong) < 0.001


def test_per_window_from_long_frame() -> None:
    frame = pd.DataFrame(
        {
            "window": [1, 0, 0, 1],
            "encoder": ["manual", "manual", "cnn", "cnn"],
            "sharpe": [0.2, 0.1, 0.5, 0.3],
        }
    )
    out = per_window_from_frame(frame)
    np.testing.assert_array_equal(out["manual"], [0.1, 0.2])  # sorted by window
    np.testing.assert_array_equal(out["cnn"], [0.5, 0.3])
    with pytest.raises(ValueError, match="encoder 'cnn' has no 'sharpe' for windows \\[1\\]"):
        per_window_from_frame(frame.iloc[:3])
    with pytest.raises(ValueError, match="repeated"):
        per_window_from_frame(pd.concat([frame, frame.iloc[:1]]))
