"""The ground-truth table: pooling, theory columns, verdicts and the three claims."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backend.evaluation import ground_truth

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
