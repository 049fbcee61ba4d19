"""Performance metrics of a per-bar net return series (15-minute bars).

Conventions (every number in a report depends on them, so they are fixed here once):

* **Returns** are per-bar *net* returns ``R_t = E_t / E_{t-1} - 1`` after costs, exactly the
  env's ``info["net_return"]`` (``backend/environments/intraday_env.py``). Equity compounds:
  ``E_t = prod(1 + R_s, s <= t)`` with ``E_{-1} = 1``.
* **Annualization**: ``bars_per_year = 26 * 252 = 6552`` (26 regular-session 15-minute bars,
  252 sessions a year), so Sharpe and Sortino scale by ``sqrt(6552) ~= 80.94``. Half days
  (14 bars) and missing bars make a real year slightly shorter (about 6,500 bars), so the
  factor overstates by well under 1%; pass ``bars_per_year`` to use an exact count. The
  risk-free rate is taken as 0: the agent is flat overnight and holds cash intraday.
* **Sharpe** = ``mean(R) / std(R, ddof=1) * sqrt(bars_per_year)``. ``ddof=1`` (the unbiased
  sample variance) is the statistic ``backend.training.callbacks`` uses for early
  stopping, so validation and test Sharpe are the same statistic. Fewer than 2 bars or a
  standard deviation below ``1e-15`` (an all-flat policy) give **0.0, not NaN**: a policy that
  never trades has no risk-adjusted edge, and a NaN would poison averages across windows.
* **Sortino** = ``mean(R) / DD * sqrt(bars_per_year)`` with the downside deviation
  ``DD = sqrt(mean(min(R, 0)^2))`` over **all** bars (target return 0, Sortino & Price 1994):
  bars above target contribute zeros rather than being dropped, which would inflate ``DD``.
  ``DD == 0``: ``+inf`` if the mean is positive, else 0.0; fewer than 2 bars: 0.0.
* **Max drawdown** is ``max_t (1 - E_t / max(1, max_{s<=t} E_s))`` as a positive fraction; the
  starting equity 1 counts as a peak, so a loss on the first bar is a drawdown.
* **Calmar** = annualized return / max drawdown, with the annualized return
  ``(1 + total)^(bars_per_year / n_bars) - 1`` (-1 after ruin, ``+inf`` if it
  overflows a float, as a few very good bars annualized easily do). No drawdown: ``+inf`` if the
  annualized return is positive, else 0.0 (a flat series). Annualizing a short window
  explodes; compare Calmar only between windows of equal length.
* **Profit factor** = sum of positive bar returns / ``|sum of negative bar returns|``: no
  losing bar gives ``+inf`` (if anything was gained) and no bar moving at all gives NaN
  (undefined: 0/0).
* **Win rate (bars)**: share of *all* bars with a net return > 0 (flat bars are not wins).
* **Trades**: a trade is a maximal run of bars holding a non-zero position of one sign
  (size changes inside the run do not split it). It opens when the position leaves flat or
  flips sign and closes when it returns to flat or flips, or at a close that flattens it
  (market-on-close, seen through ``end_positions``). Its net return compounds the
  returns of its bars plus the following bar when that bar is flat (that bar holds only the
  exit fill and the gap the old position earned); a flip bar belongs to the new trade. A
  trade still open at the end of the series counts, marked to the last bar. **Win rate
  (trades)** is the share of trades with a net return > 0 (NaN with no trade).
* **Positions** are the positions *held over* each bar, i.e. filled at its open: the env's
  ``info["target"]`` (after the deadband), not ``info["position"]``, which is 0 after a
  market-on-close flatten and is passed separately as ``end_positions``.
* **Turnover** per session = ``sum |delta position|`` / number of sessions. Pass the env's
  ``info["turnover"]``, or ``end_positions`` with the positions, to include
  market-on-close flattens; from positions alone it only sees fills at the open.
* **Exposure** is reported two ways: ``exposure`` is the share of bars with a non-zero
  position (how often the strategy is in the market) and ``mean_abs_position`` the mean of
  ``|position|`` over all bars (how much of the equity it puts at risk on average). A policy
  that holds 5% on every bar has exposure 1.0 but mean |position| 0.05.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BARS_PER_SESSION = 26
"""15-minute bars in a regular 09:30-16:00 NYSE session."""

SESSIONS_PER_YEAR = 252
"""Trading sessions per year (the usual equity-market convention)."""

BARS_PER_YEAR = BARS_PER_SESSION * SESSIONS_PER_YEAR
"""Default annualization count, 6552; ``sqrt(6552)`` scales a per-bar Sharpe."""

_STD_FLOOR = 1e-15
"""Below this a per-bar standard deviation is treated as zero (float noise of a flat run)."""


@dataclass(frozen=True)
class PerformanceMetrics:
    """Summary of one strategy's per-bar net returns (see the module docstring).

    Attributes:
        total_return: Compounded return over the series, ``prod(1 + R) - 1``.
        annualized_return: ``(1 + total_return)^(bars_per_year / n_bars) - 1``.
        sharpe: Annualized Sharpe ratio (ddof=1, zero risk-free rate; 0.0 if std is 0).
        sortino: Annualized Sortino ratio (downside deviation, target 0, all bars).
        max_drawdown: Largest peak-to-trough loss of the equity curve, positive fraction.
        calmar: ``annualized_return / max_drawdown`` (inf with no drawdown and a gain).
        win_rate_bars: Share of bars with a positive net return.
        win_rate_trades: Share of trades with a positive net return (NaN without trades).
        profit_factor: Gross bar gains / gross bar losses (inf without losses).
        turnover_per_session: Mean ``sum |delta position|`` per session.
        exposure: Share of bars with a non-zero position (NaN without positions).
        mean_abs_position: Mean ``|position|`` over all bars (NaN without positions).
        n_trades: Number of trades (0 without positions).
        n_bars: Number of bars.
        n_sessions: Number of sessions (distinct ids, or ``ceil(n_bars / 26)`` without ids).
        total_cost: Sum of per-bar trade costs as fractions of equity (0 if not given).
    """

    total_return: float
    annualized_return: float
    sharpe: float
    sortino: float
    max_drawdown: float
    calmar: float
    win_rate_bars: float
    win_rate_trades: float
    profit_factor: float
    turnover_per_session: float
    exposure: float
    mean_abs_position: float
    n_trades: int
    n_bars: int
    n_sessions: int
    total_cost: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain ``{name: value}`` for JSON/CSV reports (inf/NaN kept as floats)."""
        return dataclasses.asdict(self)


def _as_series(name: str, values: npt.ArrayLike, n: int | None = None) -> np.ndarray:
    """1-D float64 copy of ``values``, rejecting NaN/inf with the offending index."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if n is None and arr.size == 0:
        raise ValueError(f"{name}: empty series; need at least one bar")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} values like net_returns, got {arr.shape[0]}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: non-finite value {arr[i]} at index {i}")
    return arr


def check_returns(net_returns: npt.ArrayLike) -> np.ndarray:
    """Validate a per-bar return series and return it as float64.

    Raises:
        ValueError: If it is empty, not 1-D, holds NaN/inf (the message names the first
            index) or a return below -1 (more than the whole equity lost).
    """
    r = _as_series("net_returns", net_returns)
    below = r < -1.0
    if below.any():
        i = int(np.flatnonzero(below)[0])
        raise ValueError(f"net_returns: {r[i]} < -1 at index {i} (loss beyond total equity)")
    return r


def equity_curve(net_returns: npt.ArrayLike) -> np.ndarray:
    """Compounded equity after each bar, starting from 1: ``cumprod(1 + R)``."""
    return np.cumprod(1.0 + check_returns(net_returns))


def drawdown_curve(net_returns: npt.ArrayLike) -> np.ndarray:
    """Drawdown after each bar, ``1 - E_t / running peak`` (initial equity 1 is a peak)."""
    equity = equity_curve(net_returns)
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return 1.0 - equity / peak


def max_drawdown(net_returns: npt.ArrayLike) -> float:
    """Largest drawdown of the compounded equity curve as a positive fraction."""
    return float(max(drawdown_curve(net_returns).max(), 0.0))


def sharpe_ratio(net_returns: npt.ArrayLike, bars_per_year: float = BARS_PER_YEAR) -> float:
    """Annualized Sharpe, ``mean / std(ddof=1) * sqrt(bars_per_year)``; 0.0 if undefined."""
    r = check_returns(net_returns)
    if r.size < 2:
        return 0.0
    std = float(r.std(ddof=1))
    if std < _STD_FLOOR:
        return 0.0
    return float(r.mean() / std * math.sqrt(bars_per_year))


def sortino_ratio(net_returns: npt.ArrayLike, bars_per_year: float = BARS_PER_YEAR) -> float:
    """Annualized Sortino with target 0 over all bars (module docstring for edge cases)."""
    r = check_returns(net_returns)
    if r.size < 2:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    mean = float(r.mean())
    if downside < _STD_FLOOR:
        return math.inf if mean > 0.0 else 0.0
    return mean / downside * math.sqrt(bars_per_year)


def trade_spans(
    positions: npt.ArrayLike, end_positions: npt.ArrayLike | None = None
) -> list[tuple[int, int]]:
    """``(first_bar, last_bar)`` of each trade (inclusive), in order.

    A trade is a maximal run of non-zero positions of one sign; see the module docstring.
    ``end_positions`` (the position after each bar's close, env ``info["position"]``) also
    ends a trade at a bar whose close flattened it (market-on-close), so buy-and-hold
    re-entered every session counts one trade per session.
    """
    p = _as_series("positions", positions, None if np.size(positions) else 0)
    sign = np.sign(p).astype(np.int64).tolist()
    if end_positions is None:
        carried = sign
    else:
        carried = np.sign(_as_series("end_positions", end_positions, p.size)).tolist()
    spans: list[tuple[int, int]] = []
    start = -1
    for i, s in enumerate(sign):
        if start >= 0 and (s != sign[start] or carried[i - 1] == 0):
            spans.append((start, i - 1))
            start = -1
        if start < 0 and s != 0:
            start = i
    if start >= 0:
        spans.append((start, p.size - 1))
    return spans


def trade_returns(
    net_returns: npt.ArrayLike,
    positions: npt.ArrayLike,
    end_positions: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Net return of each trade: its bars compounded, plus a following flat (exit) bar."""
    r = check_returns(net_returns)
    p = _as_series("positions", positions, r.size)
    out = []
    for first, last in trade_spans(p, end_positions):
        stop = last + 1
        if stop < r.size and p[stop] == 0.0:
            stop += 1  # the flat bar after the trade carries its exit fill
        out.append(float(np.prod(1.0 + r[first:stop]) - 1.0))
    return np.asarray(out, dtype=np.float64)


def _annualized(final_equity: float, n_bars: int, bars_per_year: float) -> float:
    """``final^(bars_per_year / n) - 1`` in log space: -1 after ruin, inf on overflow."""
    if final_equity <= 0.0:
        return -1.0
    log_growth = math.log(final_equity) * bars_per_year / n_bars
    return math.expm1(log_growth) if log_growth < 700.0 else math.inf


def compute_metrics(
    net_returns: npt.ArrayLike,
    *,
    positions: npt.ArrayLike | None = None,
    end_positions: npt.ArrayLike | None = None,
    session_ids: npt.ArrayLike | None = None,
    turnover: npt.ArrayLike | None = None,
    trade_costs: npt.ArrayLike | None = None,
    bars_per_year: float = BARS_PER_YEAR,
) -> PerformanceMetrics:
    """Compute :class:`PerformanceMetrics` from per-bar net returns.

    Args:
        net_returns: Per-bar net returns after costs (env ``info["net_return"]``).
        positions: Position held over each bar (env ``info["target"]``); enables exposure,
            trades and, without ``turnover``, turnover from ``|diff(positions)|`` starting
            flat.
        end_positions: Position after each bar's close (env ``info["position"]``, 0 after
            a market-on-close flatten); lets trades end at a flattening close.
        session_ids: Session id of each bar, to count sessions; without it the count is
            ``ceil(n_bars / 26)``.
        turnover: Per-bar ``|delta position|`` (env ``info["turnover"]``, which includes
            market-on-close flattens); preferred over the reconstruction from positions.
        trade_costs: Per-bar costs as fractions of equity (env ``info["trade_cost"]``).
        bars_per_year: Annualization count (default ``26 * 252``).

    Returns:
        The metrics; see the module docstring for every definition and edge case.

    Raises:
        ValueError: On an empty series, NaN/inf (naming the index), returns below -1, arrays
            of different lengths, or a non-positive ``bars_per_year``.
    """
    if not (math.isfinite(bars_per_year) and bars_per_year > 0):
        raise ValueError(f"bars_per_year: must be a positive number, got {bars_per_year}")
    r = check_returns(net_returns)
    n = int(r.size)

    equity = np.cumprod(1.0 + r)
    total = float(equity[-1] - 1.0)
    annual = _annualized(float(equity[-1]), n, bars_per_year)
    mdd = max_drawdown(r)
    if mdd > 0.0:
        calmar = annual / mdd
    else:
        calmar = math.inf if annual > 0.0 else 0.0

    gains = float(r[r > 0.0].sum())
    losses = float(-r[r < 0.0].sum())
    if losses > 0.0:
        profit_factor = gains / losses
    else:
        profit_factor = math.inf if gains > 0.0 else math.nan

    if session_ids is not None:
        sid = np.asarray(session_ids)
        if sid.shape != (n,):
            raise ValueError(f"session_ids: expected shape ({n},), got {sid.shape}")
        n_sessions = int(np.unique(sid).size)
    else:
        n_sessions = math.ceil(n / BARS_PER_SESSION)

    exposure = math.nan
    mean_abs_position = math.nan
    n_trades = 0
    win_trades = math.nan
    total_turnover = 0.0
    if positions is not None:
        p = _as_series("positions", positions, n)
        exposure = float(np.mean(p != 0.0))
        mean_abs_position = float(np.mean(np.abs(p)))
        tr = trade_returns(r, p, end_positions)
        n_trades = int(tr.size)
        if n_trades:
            win_trades = float(np.mean(tr > 0.0))
        end = p if end_positions is None else _as_series("end_positions", end_positions, n)
        carried = np.r_[0.0, end[:-1]]  # position into each bar's open, starting flat
        total_turnover = float(np.abs(p - carried).sum() + np.abs(p - end).sum())
    if turnover is not None:
        total_turnover = float(_as_series("turnover", turnover, n).sum())
    total_cost = 0.0
    if trade_costs is not None:
        total_cost = float(_as_series("trade_costs", trade_costs, n).sum())

    return PerformanceMetrics(
        total_return=total,
        annualized_return=annual,
        sharpe=sharpe_ratio(r, bars_per_year),
        sortino=sortino_ratio(r, bars_per_year),
        max_drawdown=mdd,
        calmar=float(calmar),
        win_rate_bars=float(np.mean(r > 0.0)),
        win_rate_trades=win_trades,
        profit_factor=float(profit_factor),
        turnover_per_session=total_turnover / n_sessions,
        exposure=exposure,
        mean_abs_position=mean_abs_position,
        n_trades=n_trades,
        n_bars=n,
        n_sessions=n_sessions,
        total_cost=total_cost,
    )
