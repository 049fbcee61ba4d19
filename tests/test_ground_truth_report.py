"""The ground-truth table: pooling, theory columns, verdicts and the three claims."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backend.evaluation import ground_truth, session_stats

MODES = ("manual", "cnn")


def _result(mode: str, session_returns: list[float], replicate: int = 0) -> dict:
    """A job result whose test bars are one bar per session (so a session's return is it)."""
    days = pd.bdate_range("2024-01-02", periods=len(session_returns))
    stamps = (days + pd.Timedelta(hours=15)).tz_localize("UTC")
    return {
        "window": 0,
        "mode": mode,
        "replicate": replicate,
        "symbols": {
            "SPY": {
                "series": {
                    "timestamps": stamps.as_unit("ns").asi8.tolist(),
                    "net_returns": list(session_returns),
                }
            }
        },
    }


def _run(edges: dict[str, list[float]], theory: float) -> dict:
    return {
        "metrics": {},
        "results": {f"w00/{m}": _result(m, r) for m, r in edges.items()},
        "edge": {"per_session_bar_net": theory, "annual_sharpe_net": 9.0},
    }


def test_table_gives_the_verdicts_and_claims_from_pooled_session_returns():
    rng = np.random.default_rng(0)
    noise = lambda: list(0.002 * rng.standard_normal(300))  # noqa: E731
    edge = lambda: list(0.001 + 0.002 * rng.standard_normal(300))  # noqa: E731
    runs = {
        "null": _run({"manual": noise(), "cnn": noise()}, 0.0),
        "momentum": _run({"manual": edge(), "cnn": edge()}, 0.002),
        "sequence": _run({"manual": noise(), "cnn": edge()}, 0.002),
    }
    table = ground_truth.ground_truth_table(runs, "SPY", MODES)
    assert table["test_source"] == "fallback t-test"
    cells = {(r["scenario"], r["mode"]): r for r in table["rows"]}
    assert cells[("momentum", "cnn")]["verdict"] == "edge"
    assert cells[("null", "manual")]["verdict"] == "no edge"
    assert cells[("sequence", "manual")]["expected"] == "no edge"
    assert cells[("momentum", "manual")]["share_of_edge"] == pytest.approx(0.5, abs=0.15)
    assert table["claims"] == {
        "no_edge_claimed_in_null": True,
        "momentum_found_by_every_mode": True,
        "sequence_found_by_a_sequence_encoder_not_by_manual": True,
    }
    text = ground_truth.render_ground_truth_markdown(table, "SPY")
    assert "| sequence | cnn | 300 |" in text and "**holds**" in text and "FAILS" not in text
    assert cells[("null", "cnn")]["val_sharpe_se"] is None  # no training metrics here


def test_a_miss_is_reported_and_the_reports_own_tests_win():
    rng = np.random.default_rng(1)
    flat = list(0.002 * rng.standard_normal(200))
    runs = {"momentum": _run({"manual": flat, "cnn": flat}, 0.002)}
    runs["momentum"]["metrics"] = {
        "tests": [
            {
                "strategy": m,
                "against": "flat",
                "metric": "sharpe",
                "p_value": 0.5,
                "p_adjusted": 0.9,
            }
            for m in MODES
        ]
    }
    table = ground_truth.ground_truth_table(runs, "SPY", MODES)
    assert table["test_source"] == "report"
    assert all(r["p_adjusted"] == 0.9 for r in table["rows"])
    assert table["claims"]["momentum_found_by_every_mode"] is False
    assert table["claims"]["no_edge_claimed_in_null"] is None
    text = ground_truth.render_ground_truth_markdown(table, "SPY")
    assert "momentum / manual: no edge (expected edge)" in text and "**FAILS**" in text


def test_replicates_are_averaged_per_session():
    results = {
        "a": _result("cnn", [0.01, 0.0, -0.01]),
        "b": _result("cnn", [0.03, 0.0, 0.01], replicate=1),
    }
    pooled = ground_truth.pooled_session_returns(results, "cnn", "SPY")
    assert pooled.to_numpy() == pytest.approx([0.02, 0.0, 0.0])


def test_holm_adjustment_is_monotone_step_down():
    assert ground_truth._holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def _with_sessions(result: dict, baselines: dict[str, list[float]]) -> dict:
    """``result`` plus the per-session block the report's tests read (one bar per session)."""
    entry = result["symbols"]["SPY"]
    days = pd.to_datetime(entry["series"]["timestamps"], unit="ns", utc=True)
    entry["sessions"] = {
        "dates": [str(d.date()) for d in days],
        "net_returns": entry["series"]["net_returns"],
        "baselines": baselines,
    }
    return result


def test_pretrained_variant_rows_are_tested_in_one_family_with_the_scratch_rows():
    rng = np.random.default_rng(2)
    n = 250
    noise = lambda: list(0.002 * rng.standard_normal(n))  # noqa: E731
    edge = lambda: list(0.0008 + 0.002 * rng.standard_normal(n))  # noqa: E731
    baselines = {"flat": [0.0] * n, "buy_and_hold": noise()}
    scratch = {"manual": noise(), "cnn": noise()}
    run = _run(scratch, 0.002)
    run["results"] = {k: _with_sessions(r, baselines) for k, r in run["results"].items()}
    run["variants"] = {
        use: {
            "modes": ("cnn",),
            "metrics": {},
            "results": {"w00/cnn": _with_sessions(_result("cnn", returns), baselines)},
        }
        for use, returns in (("frozen", edge()), ("finetune", noise()))
    }
    table = ground_truth.ground_truth_table({"sequence": run}, "SPY", MODES, seed=3)
    cells = {r["mode"]: r for r in table["rows"]}
    assert list(cells) == ["manual", "cnn", "cnn+pretrained(frozen)", "cnn+pretrained(finetune)"]
    assert cells["cnn+pretrained(frozen)"]["verdict"] == "edge"
    assert cells["cnn+pretrained(frozen)"]["pretrained"] == "frozen"
    assert cells["cnn+pretrained(frozen)"]["expected"] == "any"  # a sequence encoder's
    assert table["test_source"].startswith("report's paired session tests, Holm over each")
    # One family: each strategy vs flat (5) and vs buy-and-hold (4), each encoder row vs
    # manual (3), each variant vs cnn from scratch (2); both metrics; Holm over all of it.
    tests = ground_truth.combined_tests(run, "SPY", MODES, seed=3)
    assert len(tests) == 2 * (5 + 4 + 3 + 2)
    keys = list(tests)
    adjusted = session_stats.holm_adjust([tests[k]["p_value"] for k in keys])
    frozen = cells["cnn+pretrained(frozen)"]
    at = keys.index(("cnn+pretrained(frozen)", "flat", "sharpe"))
    assert frozen["p_adjusted"] == pytest.approx(adjusted[at])
    # The pair's own seed: the same test as the report would make of that pair alone.
    frozen_returns = run["variants"]["frozen"]["results"]["w00/cnn"]["symbols"]["SPY"]
    direct = session_stats.paired_session_tests(
        {"cnn+pretrained(frozen)": frozen_returns["sessions"]["net_returns"], "flat": [0.0] * n},
        [("cnn+pretrained(frozen)", "flat")],
        seed=3,
    )
    assert frozen["p_value"] == pytest.approx(direct[0].p_value)
    assert frozen["vs_flat_estimate"] == pytest.approx(direct[0].estimate)
    assert frozen["vs_flat_ci_low"] < frozen["vs_flat_estimate"] < frozen["vs_flat_ci_high"]
    helps = {p["variant"]: p for p in table["pretraining"]}
    assert helps["cnn+pretrained(frozen)"]["verdict"] == "helps"
    assert helps["cnn+pretrained(finetune)"]["verdict"] == "no difference shown"
    # Issue 9's claims read the scratch rows only.
    assert table["claims"]["sequence_found_by_a_sequence_encoder_not_by_manual"] is False
    text = ground_truth.render_ground_truth_markdown(table, "SPY")
    assert "| sequence | cnn+pretrained(frozen) | 250 |" in text
    assert "## Pretrained trunks against the same encoder from scratch" in text
    assert "| sequence | cnn+pretrained(frozen) | +" in text and "| helps |" in text


def test_a_variant_on_other_sessions_is_refused():
    base = _with_sessions(_result("cnn", [0.01, 0.0, -0.01, 0.02]), {"flat": [0.0] * 4})
    other = _with_sessions(_result("cnn", [0.01, 0.0, -0.01]), {"flat": [0.0] * 3})
    variant = {"modes": ("cnn",), "results": {"w00/cnn": other}}
    run = {"results": {"w00/cnn": base}, "variants": {"frozen": variant}}
    with pytest.raises(ValueError, match=r"pretrained \(frozen\) run: tested 3 sessions"):
        ground_truth.combined_tests(run, "SPY", ("cnn",), seed=0)


def test_the_ground_truth_picture_draws_rows_with_an_interval_only(tmp_path):
    from backend.evaluation.ground_truth import plot_ground_truth

    def row(market, mode, low, high, p):
        return {
            "scenario": market,
            "mode": mode,
            "vs_flat_estimate": 0.0 if low is None else (low + high) / 2,
            "vs_flat_ci_low": low,
            "vs_flat_ci_high": high,
            "p_adjusted": p,
        }

    table = {"alpha": 0.05, "rows": [row("null", "manual", -1.0, 1.0, 0.9)]}
    path = plot_ground_truth(table, tmp_path / "gt.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    no_interval = {"rows": [row("null", "manual", None, None, 0.5)]}
    assert plot_ground_truth(no_interval, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
