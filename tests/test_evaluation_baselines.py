"""Baselines use the env's accounting exactly; baseline results and report plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.config.env_config import EnvConfig
from backend.data_download.market_arrays import MarketArrays, synthetic_market_arrays
from backend.environments.intraday_env import IntradayTradingEnv
from backend.evaluation.baselines import (
    BASELINE_NAMES,
    random_targets,
    run_baselines,
    run_baselines_for_env,
    simulate_targets,
)
from backend.evaluation.plots import plot_drawdowns, plot_equity_curves, plot_window_sharpe


@pytest.fixture(scope="module")
def arrays() -> MarketArrays:
    # a half day, a hole in the grid and a missing last bar (data's last bar = 24)
    return synthetic_market_arrays(
        n_sessions=6, n_features=3, half_days=(2,), missing_bars=((3, 5), (4, 25)), seed=1
    )


def _run_env(
    arrays: MarketArrays, config: EnvConfig, lo: int, actions: np.ndarray
) -> list[dict[str, Any]]:
    """Step the env from decision bar ``lo - 1`` with fixed actions; collect the infos."""
    env = IntradayTradingEnv(arrays, config, bar_range=(lo, arrays.n_bars))
    _, info = env.reset(options={"start_bar": lo - 1})
    infos = []
    for a in actions:
        _, _, terminated, truncated, info = env.step(np.array([a], dtype=np.float64))
        infos.append(info)
        if terminated or truncated:
            break
    return infos


@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("deadband", [0.0, 0.05])
@pytest.mark.parametrize("long_only", [False, True])
def test_simulator_matches_env_step_by_step(
    arrays: MarketArrays, flatten: bool, deadband: float, long_only: bool
) -> None:
    config = EnvConfig(
        cost_bps=1.0,
        slippage_bps=2.0,
        deadband=deadband,
        flatten_at_close=flatten,
        long_only=long_only,
        episode_sessions=0,  # one episode over the whole range
        random_start=False,
        ruin_equity=0.0,  # never stop early
    )
    # Start at session 1's opening bar so the env's first decision bar (lo - 1) exists;
    # the env then trades bars lo..n-1, which the simulator gets as bars 0..n-lo-1.
    lo = int(arrays.session_starts()[1])
    n = arrays.n_bars - lo
    rng = np.random.default_rng(42)
    targets = random_targets(n, rng, long_only=long_only)
    targets[10:40] = 0.7 if long_only else -1.0  # held across a session close
    targets[50:55] = 0.0
    targets[60:63] += 0.01  # small changes the deadband swallows
    targets = np.clip(targets, 0.0 if long_only else -1.0, 1.0)
    actions = 2.0 * targets - 1.0 if long_only else targets  # the env's long-only map

    infos = _run_env(arrays, config, lo, actions)
    assert [i["bar"] for i in infos] == list(range(lo, arrays.n_bars))  # aligned on bars

    sim = simulate_targets(
        arrays.open[lo:],
        arrays.close[lo:],
        arrays.session_index[lo:],
        targets,
        config.cost_rate,
        flatten_at_close=flatten,
        deadband=deadband,
    )
    for key, ours in (
        ("net_return", sim.net_returns),
        ("gross_return", sim.gross_returns),
        ("target", sim.positions),
        ("position", sim.end_positions),
        ("turnover", sim.turnover),
        ("trade_cost", sim.trade_costs),
        ("equity", sim.equity),
    ):
        env_values = np.array([i[key] for i in infos])
        np.testing.assert_allclose(ours, env_values, rtol=0, atol=1e-12, err_msg=key)


def test_flat_baseline_is_exactly_zero(arrays: MarketArrays) -> None:
    res = run_baselines(arrays.open, arrays.close, arrays.session_index, 2e-4)
    flat = res["flat"]
    assert not flat.simulation.net_returns.any()
    assert flat.metrics["sharpe"] == 0.0 and flat.metrics["n_trades"] == 0
    assert tuple(res) == BASELINE_NAMES


def test_buy_and_hold_by_hand() -> None:
    # two sessions of two bars; cost rate c = 0.001
    open_ = np.array([100.0, 101.0, 103.0, 102.0])
    close = np.array([101.0, 102.0, 102.0, 104.0])
    sid = np.array([0, 0, 1, 1])
    c = 1e-3
    res = run_baselines(open_, close, sid, c, flatten_at_close=True)
    # re-entering each session: buy at the open (pay c), flatten at the close (pay c)
    sim = res["buy_and_hold"].simulation
    expected = [
        (1 - c) * (101 / 100) - 1,  # bar 0: buy at the open (cost c), earn 101/100
        (102 / 101) * (1 - c) - 1,  # bar 1: no fill; earn 102/101; flatten at close (c)
        (1 - c) * (102 / 103) - 1,  # bar 2: flat overnight, so the gap earns nothing
        (104 / 102) * (1 - c) - 1,  # bar 3: hold, then flatten at the close
    ]
    np.testing.assert_allclose(sim.net_returns, expected, rtol=1e-13)
    assert res["buy_and_hold"].metrics["n_trades"] == 2
    assert res["buy_and_hold"].metrics["turnover_per_session"] == pytest.approx(2.0)
    # holding through: one entry cost, every gap earned, no exit cost at the end
    through = res["buy_and_hold_through"].simulation
    assert through.equity[-1] == pytest.approx((1 - c) * 104 / 100, rel=1e-13)
    assert res["buy_and_hold_through"].metrics["n_trades"] == 1


def test_random_baseline_is_seeded_and_averaged(arrays: MarketArrays) -> None:
    args = (arrays.open, arrays.close, arrays.session_index, 2e-4)
    a = run_baselines(*args, seed=3, n_seeds=4)["random"]
    b = run_baselines(*args, seed=3, n_seeds=4)["random"]
    np.testing.assert_array_equal(a.simulation.net_returns, b.simulation.net_returns)
    assert len(a.per_seed) == 4
    assert a.metrics["sharpe"] == pytest.approx(np.mean([m.sharpe for m in a.per_seed]))
    one = run_baselines(*args, seed=3)["random"]
    assert one.metrics["sharpe"] == a.per_seed[0].sharpe  # n_seeds=1 reports seed 3 alone
    long_only = run_baselines(*args, long_only=True)["random"].simulation.positions
    assert long_only.min() >= 0.0
    with pytest.raises(ValueError, match="n_seeds"):
        run_baselines(*args, n_seeds=0)


def test_baselines_for_env_use_the_env_cost_model(arrays: MarketArrays) -> None:
    config = EnvConfig(cost_bps=3.0, slippage_bps=1.0, deadband=0.1, max_position=0.5)
    lo, hi = int(arrays.session_starts()[2]), int(arrays.session_starts()[4])
    res = run_baselines_for_env(arrays, config, (lo, hi), n_seeds=2)
    bh = res["buy_and_hold"].simulation
    assert bh.net_returns.shape == (hi - lo,)
    assert np.all(bh.positions == 0.5)
    # one round trip per session at cost_rate 4e-4 on half the equity
    assert res["buy_and_hold"].metrics["total_cost"] == pytest.approx(
        bh.trade_costs.sum(), rel=1e-12
    )
    assert bh.trade_costs.max() == pytest.approx(4e-4 * 0.5, rel=0.02)
    assert np.abs(res["random"].simulation.positions).max() <= 0.5


def test_simulator_input_errors() -> None:
    with pytest.raises(ValueError, match="targets: expected shape"):
        simulate_targets([1.0, 1.0], [1.0, 1.0], [0, 0], [0.0], 0.0)
    with pytest.raises(ValueError, match="targets: non-finite value nan at index 1"):
        simulate_targets([1.0, 1.0], [1.0, 1.0], [0, 0], [0.0, math.nan], 0.0)
    with pytest.raises(ValueError, match="cost_rate"):
        simulate_targets([1.0], [1.0], [0], [0.0], -1.0)


def test_plots_write_non_empty_pngs(tmp_path: Path, arrays: MarketArrays) -> None:
    res = run_baselines(arrays.open, arrays.close, arrays.session_index, 2e-4)
    strategy = res["random"].simulation.net_returns * 0.5
    baselines = {name: r.simulation.net_returns for name, r in res.items()}
    paths = [
        plot_equity_curves(
            {"manual": strategy},
            tmp_path / "out" / "equity.png",
            baselines=baselines,
            timestamps=arrays.timestamps,
        ),
        plot_drawdowns({"manual": strategy, **baselines}, tmp_path / "dd.png"),
        plot_window_sharpe(
            {"manual": [0.1, -0.3, 0.5], "cnn": [0.2, 0.1, -0.4], "lstm": [0.0, 0.3, 0.2]},
            tmp_path / "sharpe.png",
        ),
    ]
    for p in paths:
        assert p.is_file() and p.stat().st_size > 1000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="same bars"):
        plot_drawdowns({"a": [0.0, 0.1], "b": [0.0]}, tmp_path / "bad.png")
