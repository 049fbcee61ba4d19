"""Ground-truth markets: each scenario plants what it says, and only where it says.

The sequence scenario's claim is the one that matters most: its edge must be invisible to
the best model we can fit on the 32 manual one-bar features and plain to the same model fed
the raw window of single-bar returns. Both sides use one learner (scikit-learn's histogram
gradient boosting), fit on the first half of the sessions and scored on the second.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend.config.training_config import FeatureConfig
from backend.data_download.intraday_features import compute_features
from backend.data_download.synthetic_market import (
    DEFAULT_CONFIG,
    MARKER_FILE,
    MARKET_NAMES,
    MARKET_SCENARIOS,
    SyntheticMarketConfig,
    ensure_scenario_dataset,
    generate_synthetic_market,
    market_scenario,
    theoretical_edge_per_bar,
)

sklearn_ensemble = pytest.importorskip("sklearn.ensemble")

WINDOW = 8
"""Single-bar returns the raw-window model sees (the pattern needs lags 2 and 5)."""


def _market(name: str, n_sessions: int = 500) -> pd.DataFrame:
    """SPY of the scenario (with the VIX column the manual features read)."""
    config = dataclasses.replace(
        market_scenario(name),
        end=None,
        n_sessions=n_sessions,
        underlyings=DEFAULT_CONFIG.underlyings[:1],
        leveraged=(),
    )
    frames = generate_synthetic_market(config)
    market = frames["SPY"].copy()
    market["vix"] = frames["VIX"]["close"]
    return market


def _out_of_sample_edge(name: str) -> dict[str, tuple[float, float]]:
    """``{inputs: (edge / bar std, t-stat)}`` of sign(predicted next return) on held-out bars."""
    market = _market(name)
    features = compute_features(market, FeatureConfig.for_agent("SAC_INTRADAY_DSR")).to_numpy()
    ret = np.log(market["close"] / market["open"]).to_numpy()
    day = np.asarray(market.index.tz_localize(None).normalize())
    nxt = np.append(ret[1:], np.nan)
    same_session = np.append(day[1:] == day[:-1], False)
    raw = np.column_stack(
        [np.concatenate([np.full(j, np.nan), ret[: len(ret) - j]]) for j in range(WINDOW)]
    )
    usable = np.flatnonzero(
        same_session & np.isfinite(features).all(axis=1) & np.isfinite(raw).all(axis=1)
    )
    fit, test = usable[: len(usable) // 2], usable[len(usable) // 2 :]
    y = (nxt > 0).astype(int)
    out = {}
    for label, x in (("manual", features), ("raw_window", raw)):
        model = sklearn_ensemble.HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, random_state=0
        )
        model.fit(x[fit], y[fit])
        position = np.where(model.predict_proba(x[test])[:, 1] > 0.5, 1.0, -1.0)
        pnl = position * nxt[test]
        out[label] = (
            float(pnl.mean() / nxt[test].std()),
            float(pnl.mean() / pnl.std() * np.sqrt(len(pnl))),
        )
    return out


def test_registry_names_the_three_ground_truth_markets():
    assert MARKET_NAMES == ("null", "momentum", "sequence")
    assert market_scenario("null") == DEFAULT_CONFIG
    assert market_scenario("momentum").signal_strength > 0
    assert market_scenario("sequence").pattern_strength > 0
    assert not MARKET_SCENARIOS["sequence"].findable_by_manual
    with pytest.raises(ValueError, match="unknown market scenario 'noise'; expected one of null"):
        market_scenario("noise")


def test_sequence_edge_is_invisible_to_manual_features_and_plain_in_the_raw_window():
    edges = _out_of_sample_edge("sequence")
    manual_edge, manual_t = edges["manual"]
    raw_edge, raw_t = edges["raw_window"]
    assert abs(manual_t) < 3.0, edges
    assert raw_t > 5.0, edges
    assert raw_edge > 0.05 and raw_edge > 5 * abs(manual_edge), edges


@pytest.mark.slow
def test_momentum_edge_is_plain_to_manual_features():
    edges = _out_of_sample_edge("momentum")
    assert edges["manual"][1] > 5.0, edges


@pytest.mark.slow
def test_null_market_has_no_edge_for_either_model():
    edges = _out_of_sample_edge("null")
    assert all(abs(t) < 3.0 for _, t in edges.values()), edges


def test_pattern_keeps_unit_variance_and_no_linear_autocorrelation():
    market = _market("sequence", n_sessions=400)
    ret = np.log(market["close"] / market["open"])
    day = market.index.tz_localize(None).normalize()
    z = ret.groupby(day).transform(lambda s: s / s.std()).to_numpy()
    same = np.asarray(day[1:] == day[:-1])
    for lag in (1, 2, 5):
        ok = np.asarray(day[lag:] == day[:-lag])
        corr = np.corrcoef(z[:-lag][ok], z[lag:][ok])[0, 1]
        assert abs(corr) < 0.04, (lag, corr)
    assert same.any()
    # The parity of bars t-2 and t-5 carries the whole edge.
    s = np.sign(z)
    k = np.arange(len(z))
    ok = (k >= 5) & np.concatenate([np.zeros(5, bool), np.asarray(day[5:] == day[:-5])])
    parity = np.zeros_like(z)
    parity[5:] = s[3:-2] * s[:-5]
    measured = float(np.mean(parity[ok] * z[ok]))
    assert measured == pytest.approx(market_scenario("sequence").pattern_strength, abs=0.04)


def test_theoretical_edges_are_recorded_in_the_scenario_folder(tmp_path: Path):
    root = ensure_scenario_dataset(tmp_path, "sequence")
    assert root == tmp_path / "sequence"
    marker = json.loads((root / MARKER_FILE).read_text())
    assert marker["planted"] == "sequence"
    spy = marker["theoretical_edge"]["SPY"]
    expected = theoretical_edge_per_bar(market_scenario("sequence"), "SPY")
    assert spy["edge_per_bar"] == pytest.approx(expected.edge_per_bar)
    assert spy["per_session_bar_net"] < spy["per_session_bar_gross"]
    assert spy["per_session_bar_net"] > 0  # the planted edge beats the env's costs
    null = ensure_scenario_dataset(tmp_path, "null")
    assert (
        json.loads((null / MARKER_FILE).read_text())["theoretical_edge"]["SPY"]["edge_per_bar"]
        == 0.0
    )
    assert (tmp_path / "sequence" / MARKER_FILE).is_file()  # not overwritten by null


def test_sequence_flip_rate_and_edge_match_a_simulation():
    config = SyntheticMarketConfig(
        n_sessions=3000,
        end=None,
        pattern_strength=0.3,
        leveraged=(),
        include_vix=False,
        underlyings=DEFAULT_CONFIG.underlyings[:1],
    )
    edge = theoretical_edge_per_bar(config, "SPY")
    frame = generate_synthetic_market(config)["SPY"]
    ret = np.log(frame["close"] / frame["open"]).to_numpy()
    day = frame.index.tz_localize(None).normalize()
    bar = pd.Series(1, index=frame.index).groupby(day).cumcount().to_numpy()
    n_bars = pd.Series(1, index=frame.index).groupby(day).transform("size").to_numpy()
    full = (n_bars == 26) & (bar >= 5)
    position = np.zeros_like(ret)
    position[5:] = np.sign(ret[3:-2]) * np.sign(ret[:-5])
    measured = float(np.mean(position[full] * ret[full]))
    assert measured == pytest.approx(edge.edge_per_bar, rel=0.12)
    flips = np.mean(position[1:][full[1:] & full[:-1]] != position[:-1][full[1:] & full[:-1]])
    assert flips == pytest.approx(edge.flip_probability, abs=0.02)


def test_config_refuses_two_planted_edges_and_bad_lags():
    with pytest.raises(ValueError, match="plant one edge at a time"):
        SyntheticMarketConfig(signal_strength=0.2, pattern_strength=0.2)
    with pytest.raises(ValueError, match="pattern_lags must be two ints 1 <= a < b"):
        SyntheticMarketConfig(pattern_lags=(3, 3))
