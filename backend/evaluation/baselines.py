"""Flat, buy-and-hold and random baselines on the env's own bars, timing and costs.

A baseline is only a fair yardstick if it is accounted exactly like the agent, so
:func:`simulate_targets` re-implements the accounting of
:class:`backend.environments.intraday_env.IntradayTradingEnv` in vectorized numpy (the test
``tests/test_evaluation_baselines.py`` checks it against the env to 1e-12):

* ``targets[i]`` is the position decided at the close of bar ``i-1`` and filled at the
  **open of bar** ``i``; it is held over bar ``i``.
* The position held into bar ``i`` earns the gap ``open[i] / close[i-1] - 1`` first; the
  fill then pays ``cost_rate * |target - previous| * equity``; the new position earns
  ``close[i] / open[i] - 1``.
* A change smaller than ``deadband`` is not traded (the env's ``EnvConfig.deadband``).
* With ``flatten_at_close`` the position is closed market-on-close at the data's last bar
  of each session (a change of session id), paying ``cost_rate * |target|``.
* The simulation starts flat, so bar 0's gap (to a close before the arrays) earns nothing.
  This equals an env episode started with ``reset(options={"start_bar": first - 1})`` and
  run to the end of its ``bar_range``; it does not stop at the env's ruin threshold.

Buy-and-hold with ``flatten_at_close=True`` therefore *re-enters every session* (one round
trip per session, costs paid twice, no overnight gap): it is the benchmark for an intraday
agent under the same constraint. ``hold_through_sessions`` (``flatten_at_close=False``) buys
once at the first open and never sells, earning every overnight gap; no exit cost is charged
at the end, like an env episode that ends while holding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from backend.data_download.market_arrays import MarketArrays
from backend.environments.env_config import EnvConfig
from backend.evaluation.metrics import BARS_PER_YEAR, PerformanceMetrics, compute_metrics

BASELINE_NAMES: tuple[str, ...] = ("flat", "buy_and_hold", "buy_and_hold_through", "random")
"""Names returned by :func:`run_baselines`; ``buy_and_hold_through`` never flattens."""


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Per-bar accounting of one target sequence, with the env's ``info`` semantics.

    Attributes:
        net_returns: ``info["net_return"]`` per bar, after costs.
        gross_returns: ``info["gross_return"]``, the same without costs.
        positions: Position held over each bar (``info["target"]``, after the deadband).
        end_positions: Position after each bar's close (``info["position"]``: 0 after a
            market-on-close flatten).
        turnover: ``info["turnover"]``, ``|delta position|`` at the open plus the flatten.
        trade_costs: ``info["trade_cost"]``, costs as fractions of the bar's start equity.
        equity: ``info["equity"]``, compounded from 1.
        session_ids: Session id of each bar, as given.
    """

    net_returns: np.ndarray
    gross_returns: np.ndarray
    positions: np.ndarray
    end_positions: np.ndarray
    turnover: np.ndarray
    trade_costs: np.ndarray
    equity: np.ndarray
    session_ids: np.ndarray

    def metrics(self, bars_per_year: float = BARS_PER_YEAR) -> PerformanceMetrics:
        """:func:`compute_metrics` on this result, with positions, turnover and costs."""
        return compute_metrics(
            self.net_returns,
            positions=self.positions,
            end_positions=self.end_positions,
            session_ids=self.session_ids,
            turnover=self.turnover,
            trade_costs=self.trade_costs,
            bars_per_year=bars_per_year,
        )


def _apply_deadband(
    targets: np.ndarray, is_last: np.ndarray, deadband: float, flatten_at_close: bool
) -> np.ndarray:
    """Held positions after the deadband; path-dependent, hence a (cheap) Python loop."""
    if deadband <= 0.0:
        return targets.copy()
    held = np.empty_like(targets)
    prev = 0.0
    last = is_last.tolist()
    for i, target in enumerate(targets.tolist()):
        if abs(target - prev) < deadband:
            target = prev
        held[i] = target
        prev = 0.0 if (flatten_at_close and last[i]) else target
    return held


def simulate_targets(
    open_: npt.ArrayLike,
    close: npt.ArrayLike,
    session_ids: npt.ArrayLike,
    targets: npt.ArrayLike,
    cost_rate: float,
    *,
    flatten_at_close: bool = True,
    deadband: float = 0.0,
) -> SimulationResult:
    """Account a target-position sequence exactly like the env (module docstring).

    Args:
        open_: Bar opening prices, ``(n,)``, positive.
        close: Bar closing prices, ``(n,)``, positive.
        session_ids: Session id per bar, non-decreasing; a change marks a session's last bar.
        targets: Target position filled at the open of each bar, ``(n,)``, finite.
        cost_rate: Cost per unit of traded notional (``EnvConfig.cost_rate``, e.g. 2e-4).
        flatten_at_close: Close the position at each session's last bar, paying costs.
        deadband: Skip fills smaller than this (``EnvConfig.deadband``).

    Raises:
        ValueError: On mismatched shapes, empty input, non-finite or non-positive prices,
            non-finite targets, or a negative cost rate or deadband.
    """
    o = np.asarray(open_, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    sid = np.asarray(session_ids)
    tgt = np.asarray(targets, dtype=np.float64)
    n = o.shape[0] if o.ndim == 1 else -1
    if n <= 0:
        raise ValueError(f"open_: expected a non-empty 1-D array, got shape {o.shape}")
    for name, arr in (("close", c), ("session_ids", sid), ("targets", tgt)):
        if arr.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},) like open_, got {arr.shape}")
    for name, arr in (("open_", o), ("close", c), ("targets", tgt)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}: non-finite value {arr[i]} at index {i}")
    if (o <= 0).any() or (c <= 0).any():
        raise ValueError("open_/close: prices must be positive")
    if not (np.isfinite(cost_rate) and cost_rate >= 0.0):
        raise ValueError(f"cost_rate: must be finite and >= 0, got {cost_rate}")
    if not (np.isfinite(deadband) and deadband >= 0.0):
        raise ValueError(f"deadband: must be finite and >= 0, got {deadband}")

    gap = np.zeros(n)
    gap[1:] = o[1:] / c[:-1] - 1.0
    intraday = c / o - 1.0
    is_last = np.empty(n, dtype=bool)
    is_last[-1] = True
    np.not_equal(sid[1:], sid[:-1], out=is_last[:-1])

    held = _apply_deadband(tgt, is_last, deadband, flatten_at_close)
    flat_now = is_last & (held != 0.0) if flatten_at_close else np.zeros(n, dtype=bool)
    end_pos = np.where(flat_now, 0.0, held)
    prev = np.r_[0.0, end_pos[:-1]]
    delta = np.abs(held - prev)

    # Same order of operations as IntradayTradingEnv.step, per unit of start equity.
    a = 1.0 + prev * gap  # equity at the open, before the fill
    cost_open = cost_rate * delta * np.maximum(a, 0.0)
    e_open = a - cost_open
    b = e_open * (1.0 + held * intraday)  # equity at the close, before a flatten
    cost_close = np.where(flat_now, cost_rate * np.abs(held) * np.maximum(b, 0.0), 0.0)
    growth = b - cost_close

    net = growth - 1.0
    gross = (1.0 + prev * gap) * (1.0 + held * intraday) - 1.0
    return SimulationResult(
        net_returns=net,
        gross_returns=gross,
        positions=held,
        end_positions=end_pos,
        turnover=delta + np.where(flat_now, np.abs(held), 0.0),
        trade_costs=cost_open + cost_close,
        equity=np.cumprod(growth),
        session_ids=sid.copy(),
    )


def flat_targets(n: int) -> np.ndarray:
    """Never hold anything: the zero line every strategy must beat after costs."""
    return np.zeros(n, dtype=np.float64)


def buy_and_hold_targets(n: int, size: float = 1.0) -> np.ndarray:
    """Hold ``size`` on every bar (re-entered each session when flattening at close)."""
    return np.full(n, float(size), dtype=np.float64)


def random_targets(n: int, rng: np.random.Generator, *, long_only: bool = False) -> np.ndarray:
    """A fresh uniform target each bar, in ``[-1, 1]`` (or ``[0, 1]`` when long-only).

    The random policy's expected gross return is about 0 (long-only: half the market's),
    so it measures what costs and noise alone do to a strategy that trades every bar.
    """
    low = 0.0 if long_only else -1.0
    return rng.uniform(low, 1.0, size=n)


@dataclass(frozen=True, eq=False)
class BaselineResult:
    """One baseline's outcome.

    Attributes:
        name: Baseline name (one of :data:`BASELINE_NAMES`).
        metrics: Metrics as a ``{name: float}`` dict (counts as floats too); for
            ``random`` with several seeds, the field-wise mean over seeds.
        simulation: The per-bar accounting of the first (or only) seed, for plots.
        per_seed: Metrics of every seed (one entry for deterministic baselines).
    """

    name: str
    metrics: dict[str, float]
    simulation: SimulationResult
    per_seed: tuple[PerformanceMetrics, ...] = field(default_factory=tuple)


def _mean_metrics(items: Sequence[PerformanceMetrics]) -> dict[str, float]:
    dicts = [m.to_dict() for m in items]
    return {k: float(np.mean([d[k] for d in dicts])) for k in dicts[0]}


def run_baselines(
    open_: npt.ArrayLike,
    close: npt.ArrayLike,
    session_ids: npt.ArrayLike,
    cost_rate: float,
    *,
    flatten_at_close: bool = True,
    deadband: float = 0.0,
    seed: int = 0,
    n_seeds: int = 1,
    long_only: bool = False,
    size: float = 1.0,
    bars_per_year: float = BARS_PER_YEAR,
) -> dict[str, BaselineResult]:
    """Evaluate every baseline of :data:`BASELINE_NAMES` on the same bars and costs.

    Args:
        open_: Bar opening prices.
        close: Bar closing prices.
        session_ids: Session id per bar.
        cost_rate: Cost per unit of traded notional.
        flatten_at_close: Flatten at each session close (flat, buy_and_hold, random);
            ``buy_and_hold_through`` always holds through sessions.
        deadband: The env's deadband, applied to every baseline.
        seed: Seed of the first random run; seeds ``seed .. seed + n_seeds - 1`` are used,
            each with its own ``numpy.random.default_rng``.
        n_seeds: Random runs to average (1 = report one seed).
        long_only: Random targets in ``[0, 1]`` instead of ``[-1, 1]``.
        size: Largest position (the env's ``max_position``): buy-and-hold holds it and the
            random targets are scaled by it.
        bars_per_year: Annualization count for the metrics.

    Returns:
        ``{name: BaselineResult}`` in :data:`BASELINE_NAMES` order.

    Raises:
        ValueError: If ``n_seeds < 1`` or the inputs are invalid (see
            :func:`simulate_targets`).
    """
    if n_seeds < 1:
        raise ValueError(f"n_seeds: must be >= 1, got {n_seeds}")
    n = np.asarray(open_).shape[0]
    common = {"cost_rate": cost_rate, "deadband": deadband}

    def one(
        name: str, targets: np.ndarray, flatten: bool
    ) -> tuple[str, SimulationResult, PerformanceMetrics]:
        sim = simulate_targets(
            open_, close, session_ids, targets, flatten_at_close=flatten, **common
        )
        return name, sim, sim.metrics(bars_per_year)

    out: dict[str, BaselineResult] = {}
    for name, targets, flatten in (
        ("flat", flat_targets(n), flatten_at_close),
        ("buy_and_hold", buy_and_hold_targets(n, size), flatten_at_close),
        ("buy_and_hold_through", buy_and_hold_targets(n, size), False),
    ):
        _, sim, m = one(name, targets, flatten)
        out[name] = BaselineResult(name, _mean_metrics([m]), sim, (m,))
    runs = [
        one(
            "random",
            size * random_targets(n, np.random.default_rng(s), long_only=long_only),
            flatten_at_close,
        )
        for s in range(seed, seed + n_seeds)
    ]
    per_seed = tuple(m for _, _, m in runs)
    out["random"] = BaselineResult("random", _mean_metrics(per_seed), runs[0][1], per_seed)
    return out


def run_baselines_for_env(
    arrays: MarketArrays,
    config: EnvConfig,
    bar_range: tuple[int, int] | None = None,
    *,
    seed: int = 0,
    n_seeds: int = 1,
    bars_per_year: float = BARS_PER_YEAR,
) -> dict[str, BaselineResult]:
    """:func:`run_baselines` on an env's bars with the env's costs, deadband and flatten.

    The bars ``[bar_range[0], bar_range[1])`` are simulated starting flat, i.e. like an env
    episode that starts at decision bar ``bar_range[0] - 1`` and runs to the range's end.
    ``max_position`` sizes buy-and-hold and scales the random targets; ``long_only`` makes
    the random targets long-only, as the env's action map does.

    Args:
        arrays: The symbol's bars.
        config: The env configuration whose cost model to use.
        bar_range: Half-open bar range (the test window); ``None`` means all bars.
        seed: First random seed.
        n_seeds: Random runs to average.
        bars_per_year: Annualization count for the metrics.
    """
    lo, hi = (0, arrays.n_bars) if bar_range is None else bar_range
    return run_baselines(
        arrays.open[lo:hi],
        arrays.close[lo:hi],
        arrays.session_index[lo:hi],
        config.cost_rate,
        flatten_at_close=config.flatten_at_close,
        deadband=config.deadband,
        seed=seed,
        n_seeds=n_seeds,
        long_only=config.long_only,
        size=config.max_position,
        bars_per_year=bars_per_year,
    )
