"""Metrics against numbers worked out by hand on tiny series."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from backend.evaluation.metrics import (
    BARS_PER_YEAR,
    PerformanceMetrics,
    compute_metrics,
    drawdown_curve,
    max_drawdown,
    sharpe_ratio,
    sortino_ratio,
    trade_returns,
    trade_spans,
)

ANN = math.sqrt(26 * 252)  # sqrt(6552) = 80.9444...


def test_annualization_constant() -> None:
    assert BARS_PER_YEAR == 6552
    assert ANN == pytest.approx(80.94442538, abs=1e-8)


def test_three_bar_series_by_hand() -> None:
    r = [0.01, -0.02, 0.03]
    m = compute_metrics(r)
    # total: 1.01 * 0.98 * 1.03 - 1 = 0.9898 * 1.03 - 1 = 1.019494 - 1
    assert m.total_return == pytest.approx(0.019494, abs=1e-15)
    # mean = 0.02 / 3; sum of squared deviations = (0.0001 + 0.0004 + 0.0009) - 3 * mean^2
    # = 0.0014 - 0.0004 / 3 = 0.0038 / 3; ddof=1 -> variance = 0.0019 / 3 = 6.3333e-4
    # std = 0.025166; per-bar Sharpe = 0.0066667 / 0.025166 = 0.2649065; x 80.9444 = 21.4427
    expected_sharpe = (0.02 / 3) / math.sqrt(0.0019 / 3) * ANN
    assert m.sharpe == pytest.approx(expected_sharpe, rel=1e-12)
    assert m.sharpe == pytest.approx(21.4427, abs=1e-4)
    # downside deviation over all 3 bars: sqrt((0 + 0.02^2 + 0) / 3) = 0.011547
    # Sortino = 0.0066667 / 0.011547 * 80.944 = 0.57735 * 80.944 = 46.733
    assert m.sortino == pytest.approx((0.02 / 3) / math.sqrt(0.0004 / 3) * ANN, rel=1e-12)
    assert m.sortino == pytest.approx(46.7333, abs=1e-3)
    # equity 1.01 -> 0.9898 -> 1.019494; peak 1.01; drawdown 1 - 0.9898 / 1.01 = 0.02
    assert m.max_drawdown == pytest.approx(0.02, abs=1e-15)
    annual = 1.019494 ** (6552 / 3) - 1.0
    assert m.annualized_return == pytest.approx(annual, rel=1e-9)
    assert m.calmar == pytest.approx(annual / 0.02, rel=1e-9)
    assert m.win_rate_bars == pytest.approx(2 / 3)
    assert m.profit_factor == pytest.approx((0.01 + 0.03) / 0.02)  # = 2
    assert (m.n_bars, m.n_sessions) == (3, 1)  # ceil(3 / 26) without session ids
    assert math.isnan(m.exposure) and m.n_trades == 0  # no positions given
    assert math.isnan(m.mean_abs_position)


def test_sharpe_uses_ddof_1_and_bars_per_year_parameter() -> None:
    r = np.array([0.001, 0.002, -0.0005, 0.0015])
    assert sharpe_ratio(r, 100.0) == pytest.approx(r.mean() / r.std(ddof=1) * 10.0, rel=1e-12)
    m = compute_metrics(r, bars_per_year=14 * 252)
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(3528), rel=1e-12)


def test_all_flat_series_is_zero_not_nan() -> None:
    m = compute_metrics(np.zeros(52), positions=np.zeros(52), session_ids=np.repeat([0, 1], 26))
    assert m.total_return == 0.0 and m.annualized_return == 0.0
    assert m.sharpe == 0.0 and m.sortino == 0.0
    assert m.max_drawdown == 0.0 and m.calmar == 0.0
    assert m.win_rate_bars == 0.0
    assert math.isnan(m.profit_factor)  # 0 / 0: no bar moved, documented as undefined
    assert math.isnan(m.win_rate_trades)  # no trade
    assert (m.n_trades, m.exposure, m.turnover_per_session, m.n_sessions) == (0, 0.0, 0.0, 2)


def test_constant_return_has_zero_std_and_sharpe_zero() -> None:
    m = compute_metrics([0.001] * 5)
    assert m.sharpe == 0.0  # std 0 -> 0 by definition
    assert m.sortino == math.inf  # no downside with a positive mean
    assert m.calmar == math.inf and m.profit_factor == math.inf


def test_single_bar_series() -> None:
    m = compute_metrics([0.05], positions=[1.0])
    assert m.total_return == pytest.approx(0.05)
    assert m.sharpe == 0.0 and m.sortino == 0.0  # fewer than 2 bars
    assert m.max_drawdown == 0.0 and m.calmar == math.inf
    assert (m.n_bars, m.n_trades, m.win_rate_trades, m.exposure) == (1, 1, 1.0, 1.0)
    huge = compute_metrics([0.5])  # 1.5^6552 overflows a float: inf, no warning
    assert huge.annualized_return == math.inf and huge.calmar == math.inf
    loss = compute_metrics([-0.05])
    assert loss.max_drawdown == pytest.approx(0.05)  # the starting equity is a peak
    assert loss.profit_factor == 0.0


def test_max_drawdown_on_hand_path() -> None:
    # equity: 1.1, 0.88, 0.968, 1.21, 0.605; peaks 1.1, 1.1, 1.1, 1.21, 1.21
    # drawdowns: 0, 0.2, 0.12, 0, 0.5 -> max 0.5
    r = [0.1, -0.2, 0.1, 0.25, -0.5]
    np.testing.assert_allclose(drawdown_curve(r), [0.0, 0.2, 0.12, 0.0, 0.5], atol=1e-12)
    assert max_drawdown(r) == pytest.approx(0.5)
    assert max_drawdown([0.01, 0.02]) == 0.0


def test_profit_factor_without_losses_is_inf() -> None:
    assert compute_metrics([0.01, 0.0, 0.02]).profit_factor == math.inf


def test_sortino_downside_over_all_bars() -> None:
    r = np.array([0.02, -0.01, 0.0, -0.03])
    dd = math.sqrt((0.01**2 + 0.03**2) / 4)  # zeros for the bars above target, n = 4
    assert sortino_ratio(r, 1.0) == pytest.approx(r.mean() / dd, rel=1e-12)


def test_trades_counted_on_hand_position_path() -> None:
    #            0    1    2    3    4     5    6    7    8    9
    positions = [0.0, 1.0, 0.5, 0.0, -1.0, -1.0, 1.0, 0.0, 0.0, 0.5]
    # trades: long [1, 2] (resize inside the run, exit fill in flat bar 3),
    # short [4, 5] (the flip bar 6 belongs to the next trade), long [6] (exit in bar 7),
    # long [9] still open at the end.
    assert trade_spans(positions) == [(1, 2), (4, 5), (6, 6), (9, 9)]
    r = [0.0, 0.01, 0.02, -0.001, 0.01, -0.03, 0.02, -0.001, 0.0, -0.01]
    expected = [
        1.01 * 1.02 * 0.999 - 1,  # bars 1, 2 + exit bar 3
        1.01 * 0.97 - 1,  # bars 4, 5
        1.02 * 0.999 - 1,  # bar 6 + exit bar 7
        -0.01,  # bar 9, open
    ]
    np.testing.assert_allclose(trade_returns(r, positions), expected, rtol=1e-12)
    m = compute_metrics(r, positions=positions, session_ids=[0] * 5 + [1] * 5)
    assert m.n_trades == 4
    assert m.win_rate_trades == pytest.approx(2 / 4)
    assert m.exposure == pytest.approx(6 / 10)
    assert m.mean_abs_position == pytest.approx(np.abs(positions).mean())
    # |diff| from flat: 1 + 0.5 + 0.5 + 1 + 0 + 2 + 1 + 0 + 0.5 = 6.5 over 2 sessions
    assert m.turnover_per_session == pytest.approx(3.25)


def test_market_on_close_flatten_ends_a_trade() -> None:
    # held long over all four bars, but flattened at the close of bar 1 (end position 0)
    positions = [1.0, 1.0, 1.0, 1.0]
    end_positions = [1.0, 0.0, 1.0, 0.0]
    assert trade_spans(positions) == [(0, 3)]
    assert trade_spans(positions, end_positions) == [(0, 1), (2, 3)]
    m = compute_metrics(
        [0.01, -0.02, 0.0, 0.01],
        positions=positions,
        end_positions=end_positions,
        session_ids=[0, 0, 1, 1],
    )
    assert m.n_trades == 2 and m.win_rate_trades == 0.5  # 1.01 * 0.98 < 1; 1.0 * 1.01 > 1
    # buy, sell at the close, buy, sell at the close: 4 units over 2 sessions
    assert m.turnover_per_session == pytest.approx(2.0)


def test_turnover_and_costs_from_env_info_take_precedence() -> None:
    m = compute_metrics(
        [0.0, 0.0],
        positions=[1.0, 1.0],
        turnover=[1.0, 1.0],  # e.g. entry, then a market-on-close flatten
        trade_costs=[2e-4, 2e-4],
        session_ids=[0, 0],
    )
    assert m.turnover_per_session == pytest.approx(2.0)
    assert m.total_cost == pytest.approx(4e-4)


def test_to_dict_is_json_ready() -> None:
    m = compute_metrics([0.01, -0.005, 0.002], positions=[1.0, 1.0, 0.0])
    d = m.to_dict()
    assert set(d) == {f for f in PerformanceMetrics.__dataclass_fields__}
    json.dumps(d)
    with pytest.raises(AttributeError):
        m.sharpe = 1.0  # type: ignore[misc]


def test_empty_series_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_metrics([])


def test_nan_raises_with_index() -> None:
    with pytest.raises(ValueError, match="index 2"):
        compute_metrics([0.01, 0.0, math.nan, 0.01])
    with pytest.raises(ValueError, match=r"positions: non-finite value nan at index 1"):
        compute_metrics([0.01, 0.0], positions=[0.0, math.nan])


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="< -1 at index 1"):
        compute_metrics([0.0, -1.5])
    with pytest.raises(ValueError, match="expected 2 values"):
        compute_metrics([0.0, 0.01], positions=[1.0])
    with pytest.raises(ValueError, match="bars_per_year"):
        compute_metrics([0.0, 0.01], bars_per_year=0.0)


def test_small_positions_on_every_bar_are_full_exposure_but_small_mean_size() -> None:
    # The real-SPY failure mode: ~5% positions on every bar. "Exposure" alone reads 1.0.
    m = compute_metrics([0.001, -0.001, 0.0, 0.002], positions=[0.05, -0.05, 0.05, 0.06])
    assert m.exposure == 1.0
    assert m.mean_abs_position == pytest.approx(0.0525)
