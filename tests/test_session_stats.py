"""Session-level inference: each test here can fail if the statistics are wrong.

Planted edges must be found, iid nulls rejected at about alpha, Holm matches hand
arithmetic, PSR/DSR match the worked example of Bailey & López de Prado (2014), the power
formula matches a Monte Carlo, and the "95% CI" label appears only where coverage holds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.evaluation.session_inference import build_pairs, pooled_session_returns
from backend.evaluation.session_stats import (
    MEASURED_COVERAGE,
    MIN_COVERAGE_FOR_CI,
    ci_method_label,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    holm_adjust,
    min_detectable_sharpe_difference,
    optimal_mean_block_length,
    paired_session_tests,
    per_session_returns,
    probabilistic_sharpe_ratio_from_moments,
    replicate_spread,
    sharpe_difference_standard_error,
    sharpe_standard_error,
)

SIGMA = 0.01


def _paired(n: int, rng: np.random.Generator, sr_a: float, sr_b: float, rho: float = 0.5):
    z = rng.standard_normal((2, n))
    b = rho * z[0] + math.sqrt(1 - rho**2) * z[1]
    return SIGMA * (sr_a + z[0]), SIGMA * (sr_b + b)


def test_session_returns_compound_their_bars() -> None:
    ids, r = per_session_returns([0.01, -0.02, 0.03, 0.0, 0.05], ["d1", "d1", "d2", "d2", "d3"])
    assert ids.tolist() == ["d1", "d2", "d3"]
    np.testing.assert_allclose(r, [1.01 * 0.98 - 1, 0.03, 0.05], rtol=1e-12)
    with pytest.raises(ValueError, match="not contiguous"):
        per_session_returns([0.0, 0.0, 0.0], ["d1", "d2", "d1"])
    with pytest.raises(ValueError, match="session_ids: expected shape"):
        per_session_returns([0.0, 0.0], ["d1"])


def test_planted_sharpe_edge_is_found_and_labelled_a_ci() -> None:
    rng = np.random.default_rng(0)
    a, b = _paired(250, rng, 0.3, 0.0)  # 4.8 annualized vs 0: the momentum-edge regime
    tests = paired_session_tests(
        {"agent": a, "bh": b, "flat": np.zeros(250)},
        [("agent", "flat"), ("agent", "bh")],
        n_resamples=1999,
        seed=1,
    )
    assert len(tests) == 4
    for t in tests:
        assert t.significant and t.p_adjusted < 0.01
        assert t.ci_low > 0.0 and t.ci_method == ci_method_label(250)
    sharpe_vs_flat = next(t for t in tests if t.metric == "sharpe" and t.against == "flat")
    assert sharpe_vs_flat.estimate == pytest.approx(
        a.mean() / a.std(ddof=1) * math.sqrt(252), rel=1e-12
    )
    assert sharpe_vs_flat.ci_low < 0.3 * math.sqrt(252) < sharpe_vs_flat.ci_high


def test_iid_null_rejects_at_about_alpha() -> None:
    rejections = {"sharpe": 0, "mean_return": 0}
    reps = 300
    for seed in range(reps):
        rng = np.random.default_rng(1000 + seed)
        a, b = _paired(80, rng, 0.05, 0.05)
        for t in paired_session_tests({"a": a, "b": b}, [("a", "b")], n_resamples=499, seed=seed):
            rejections[t.metric] += int(t.p_value < 0.05)
    for metric, count in rejections.items():
        # Binomial(300, 0.05): sd 0.0126; accept 0.02..0.095 (an anti-conservative test fails).
        assert 0.02 <= count / reps <= 0.095, (metric, count / reps)


def test_basic_interval_covers_as_recorded() -> None:
    """On iid normal data the interval covers at least what the fat-tailed benchmark recorded."""
    hits = 0
    reps = 200
    n = 40
    true = 0.1 * math.sqrt(252)
    for seed in range(reps):
        rng = np.random.default_rng(5000 + seed)
        a, b = _paired(n, rng, 0.1, 0.0)
        (t,) = paired_session_tests(
            {"a": a, "b": b}, [("a", "b")], metrics=("sharpe",), n_resamples=499, seed=seed
        )
        hits += int(t.ci_low <= true <= t.ci_high)
    recorded = dict(MEASURED_COVERAGE)[n]
    assert hits / reps >= recorded - 0.05
    assert hits / reps <= 0.99  # an interval that always covers is too wide to be useful


def test_p_value_and_interval_agree() -> None:
    """p < 0.05 exactly when the 95% interval excludes 0 (away from the +1 discreteness)."""
    resamples = 999
    for seed in range(40):
        rng = np.random.default_rng(9000 + seed)
        a, b = _paired(60, rng, 0.15 * rng.standard_normal(), 0.0)
        for t in paired_session_tests({"a": a, "b": b}, [("a", "b")], n_resamples=resamples):
            if abs(t.p_value - 0.05) > 4.0 / (resamples + 1):
                assert (t.p_value < 0.05) == (t.ci_low > 0.0 or t.ci_high < 0.0), t


def test_interval_is_called_a_ci_only_where_coverage_was_measured() -> None:
    for n in (5, 10, 40, 500):
        label = ci_method_label(n)
        supported = any(size <= n and cov >= MIN_COVERAGE_FOR_CI for size, cov in MEASURED_COVERAGE)
        assert label.startswith("95% CI") == supported
        if not supported:
            assert "not a CI" in label or "not a 95% CI" in label
    assert "not measured below 10" in ci_method_label(5)
    assert "measured coverage 0.92 at 120+" in ci_method_label(500)


def test_holm_against_hand_arithmetic_and_statsmodels() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(holm_adjust(p), [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    from statsmodels.stats.multitest import multipletests

    q = np.random.default_rng(3).uniform(0, 0.2, 17)
    np.testing.assert_allclose(holm_adjust(q), multipletests(q, method="holm")[1], rtol=1e-12)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        holm_adjust([0.5, 1.5])


def test_family_is_holm_adjusted_together() -> None:
    rng = np.random.default_rng(4)
    a, b = _paired(60, rng, 0.0, 0.0)
    tests = paired_session_tests(
        {"a": a, "b": b, "flat": np.zeros(60)},
        [("a", "flat"), ("b", "flat"), ("a", "b")],
        n_resamples=499,
    )
    np.testing.assert_allclose(
        [t.p_adjusted for t in tests], holm_adjust([t.p_value for t in tests])
    )
    assert all(t.p_adjusted >= t.p_value for t in tests)


def test_a_pairs_result_does_not_depend_on_the_other_pairs() -> None:
    rng = np.random.default_rng(5)
    a, b = _paired(50, rng, 0.1, 0.0)
    data = {"a": a, "b": b, "flat": np.zeros(50)}
    alone = paired_session_tests(data, [("a", "b")], n_resamples=499, seed=7)
    among = paired_session_tests(data, [("a", "flat"), ("a", "b")], n_resamples=499, seed=7)
    assert [(t.estimate, t.ci_low, t.p_value) for t in alone] == [
        (t.estimate, t.ci_low, t.p_value) for t in among[2:]
    ]


def test_replicates_are_averaged_per_session() -> None:
    rng = np.random.default_rng(6)
    reps = SIGMA * (0.2 + rng.standard_normal((3, 45)))
    flat = np.zeros(45)
    stacked = paired_session_tests({"m": reps, "flat": flat}, [("m", "flat")], n_resamples=299)
    averaged = paired_session_tests(
        {"m": reps.mean(axis=0), "flat": flat}, [("m", "flat")], n_resamples=299
    )
    assert [t.to_dict() for t in stacked] == [t.to_dict() for t in averaged]
    spread = replicate_spread(reps)
    assert spread["n_replicates"] == 3 and len(spread["sharpe"]) == 3
    assert spread["sharpe_min"] <= spread["sharpe_max"]


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="'x' not in returns"):
        paired_session_tests({"a": np.zeros(5)}, [("a", "x")])
    with pytest.raises(ValueError, match="different session counts"):
        paired_session_tests({"a": np.zeros(5), "b": np.zeros(6)}, [("a", "b")])
    with pytest.raises(
        ValueError, match=r"returns\['a'\]: non-finite value at replicate 0, session 1"
    ):
        paired_session_tests({"a": [0.0, np.nan, 0.0], "b": np.zeros(3)}, [("a", "b")])
    with pytest.raises(ValueError, match="unknown"):
        paired_session_tests({"a": np.zeros(5), "b": np.zeros(5)}, [("a", "b")], metrics=("x",))


def test_identical_strategies_give_p_one() -> None:
    x = np.random.default_rng(8).standard_normal(30) * SIGMA
    (sharpe, mean) = paired_session_tests({"a": x, "b": x.copy()}, [("a", "b")], n_resamples=199)
    assert sharpe.estimate == 0.0 and sharpe.p_value == 1.0 and mean.p_value == 1.0


def test_block_length_matches_arch_politis_white() -> None:
    from arch.bootstrap import optimal_block_length

    rng = np.random.default_rng(10)
    for n, phi in ((40, 0.0), (120, 0.5), (500, 0.8), (756, 0.2)):
        e = rng.standard_normal(n)
        x = np.empty(n)
        x[0] = e[0]
        for t in range(1, n):
            x[t] = phi * x[t - 1] + e[t]
        expected = float(optimal_block_length(x)["stationary"].iloc[0])
        assert optimal_mean_block_length(x) == pytest.approx(
            min(max(expected, 1.0), n / 4), rel=1e-10
        )
    # Strong persistence gets longer blocks than white noise.
    assert optimal_mean_block_length(x) > optimal_mean_block_length(e)
    assert optimal_mean_block_length(np.zeros(50)) == 1.0


def test_dsr_matches_the_papers_worked_example() -> None:
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example:
    # N=100 trials, V[SR] = 1/2 annualized, best SR 2.5 annualized over T=1250 daily
    # returns, skewness -3, kurtosis 10 -> SR0 = 0.1132 (daily), DSR = 0.9004.
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = probabilistic_sharpe_ratio_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0)
    assert dsr == pytest.approx(0.9004, abs=1e-3)
    assert expected_max_sharpe(1, 0.3) == 0.0


def test_deflated_sharpe_of_one_trial_is_its_psr_and_falls_with_trials() -> None:
    r = np.random.default_rng(9).standard_normal(200) * SIGMA + 0.001
    one = deflated_sharpe_ratio(r, [0.1])
    assert one["dsr"] == pytest.approx(one["psr"]) and one["n_trials"] == 1
    many = deflated_sharpe_ratio(r, [0.1, 0.0, -0.05, 0.02], n_trials=40)
    assert many["dsr"] < one["psr"] and many["sr0"] > 0
    with pytest.raises(ValueError, match="fewer than the 4 Sharpes"):
        deflated_sharpe_ratio(r, [0.1, 0.0, -0.05, 0.02], n_trials=2)


def test_sharpe_standard_errors() -> None:
    assert sharpe_standard_error(0.0, 100) == pytest.approx(0.1)
    assert sharpe_standard_error(1.0, 100) == pytest.approx(math.sqrt(1.5 / 100))
    assert sharpe_difference_standard_error(0.0, 0.0, 0.0, 50) == pytest.approx(math.sqrt(2 / 50))
    assert sharpe_difference_standard_error(0.2, 0.2, 1.0, 50) == pytest.approx(0.0, abs=1e-12)


def test_min_detectable_sharpe_has_80_percent_power() -> None:
    n = 100
    mde = min_detectable_sharpe_difference(n)  # vs flat, annualized
    assert mde == pytest.approx((1.959964 + 0.841621) * math.sqrt(252 / n), rel=1e-5)
    per_session = mde / math.sqrt(252)
    hits = 0
    reps = 200
    for seed in range(reps):
        x = SIGMA * (per_session + np.random.default_rng(7000 + seed).standard_normal(n))
        (t,) = paired_session_tests(
            {"x": x, "flat": np.zeros(n)}, [("x", "flat")], metrics=("sharpe",), n_resamples=499
        )
        hits += int(t.p_value < 0.05)
    assert 0.68 <= hits / reps <= 0.92


def _result(window: int, mode: str, dates: list[str], values: list[float]) -> dict:
    return {
        "window": window,
        "mode": mode,
        "symbols": {
            "SPY": {
                "sessions": {
                    "dates": dates,
                    "net_returns": values,
                    "baselines": {"flat": [0.0] * len(dates), "buy_and_hold": values},
                }
            }
        },
    }


def test_pooling_tiles_windows_in_date_order_and_rejects_overlap() -> None:
    results = {
        "w01/manual": _result(1, "manual", ["2024-01-05", "2024-01-08"], [0.3, 0.4]),
        "w00/manual": _result(0, "manual", ["2024-01-03", "2024-01-04"], [0.1, 0.2]),
    }
    dates, pooled = pooled_session_returns(results, ["manual"], "SPY")
    assert dates == ["2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]
    np.testing.assert_allclose(pooled["manual"], [[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(pooled["buy_and_hold"], [0.1, 0.2, 0.3, 0.4])
    results["w01/manual"] = _result(1, "manual", ["2024-01-04", "2024-01-05"], [0.3, 0.4])
    with pytest.raises(ValueError, match="2024-01-04 appears in two windows"):
        pooled_session_returns(results, ["manual"], "SPY")


def test_family_of_pairs() -> None:
    pairs = build_pairs(["manual", "cnn"], ["flat", "buy_and_hold", "random"])
    assert pairs == [
        ("manual", "flat"),
        ("cnn", "flat"),
        ("buy_and_hold", "flat"),
        ("random", "flat"),
        ("manual", "buy_and_hold"),
        ("cnn", "buy_and_hold"),
        ("random", "buy_and_hold"),
        ("cnn", "manual"),
    ]
    # A one-mode run still gets its tests against flat and buy-and-hold.
    assert build_pairs(["lstm"], ["flat", "buy_and_hold"]) == [
        ("lstm", "flat"),
        ("buy_and_hold", "flat"),
        ("lstm", "buy_and_hold"),
    ]
