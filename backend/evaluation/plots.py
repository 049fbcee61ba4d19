"""PNG charts for walk-forward reports: equity, drawdown, per-window Sharpe.

Figures are built with the object-oriented API (``matplotlib.figure.Figure`` rendered by
the Agg canvas) instead of ``pyplot``: no display is needed, no global backend is switched
at import time, and no figure is left registered in pyplot's global state after saving.
Every function writes one PNG (creating parent folders) and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from backend.evaluation.metrics import drawdown_curve, equity_curve

_DPI = 120


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, format="png", dpi=_DPI, bbox_inches="tight")
    return out


def _x_axis(n: int, timestamps: npt.ArrayLike | None) -> np.ndarray:
    """Bar numbers, or UTC datetimes when int64 ns ``timestamps`` of length ``n`` are given."""
    if timestamps is None:
        return np.arange(n)
    ts = np.asarray(timestamps)
    if ts.shape != (n,):
        raise ValueError(f"timestamps: expected shape ({n},), got {ts.shape}")
    return ts.astype("datetime64[ns]") if ts.dtype.kind in "iu" else ts


def _check_same_length(curves: Mapping[str, npt.ArrayLike]) -> int:
    if not curves:
        raise ValueError("no series to plot")
    lengths = {name: int(np.size(v)) for name, v in curves.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"all series must cover the same bars, got lengths {lengths}")
    return next(iter(lengths.values()))


def plot_equity_curves(
    strategies: Mapping[str, npt.ArrayLike],
    path: str | Path,
    *,
    baselines: Mapping[str, npt.ArrayLike] | None = None,
    timestamps: npt.ArrayLike | None = None,
    title: str = "Equity (net of costs)",
) -> Path:
    """Compounded equity of strategies (solid) and baselines (dashed) on one chart.

    Args:
        strategies: ``{label: per-bar net returns}``.
        path: PNG file to write.
        baselines: ``{label: per-bar net returns}`` over the same bars.
        timestamps: Bar start times (int64 ns UTC) for the x axis; bar numbers otherwise.
        title: Chart title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    base = dict(baselines or {})
    n = _check_same_length({**strategies, **base})
    x = _x_axis(n, timestamps)
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    for label, r in strategies.items():
        ax.plot(x, equity_curve(r), label=label, linewidth=1.4)
    for label, r in base.items():
        ax.plot(x, equity_curve(r), label=label, linestyle="--", linewidth=1.0)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_title(title)
    ax.set_xlabel("time" if timestamps is not None else "bar")
    ax.set_ylabel("equity (start = 1)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_drawdowns(
    series: Mapping[str, npt.ArrayLike],
    path: str | Path,
    *,
    timestamps: npt.ArrayLike | None = None,
    title: str = "Drawdown",
) -> Path:
    """Drawdown curves (``1 - equity / peak``, drawn downwards in percent).

    Args:
        series: ``{label: per-bar net returns}`` over the same bars.
        path: PNG file to write.
        timestamps: Bar start times (int64 ns UTC) for the x axis.
        title: Chart title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    n = _check_same_length(series)
    x = _x_axis(n, timestamps)
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot()
    for label, r in series.items():
        ax.plot(x, -100.0 * drawdown_curve(r), label=label, linewidth=1.2)
    ax.set_title(title)
    ax.set_xlabel("time" if timestamps is not None else "bar")
    ax.set_ylabel("drawdown (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_window_sharpe(
    per_window: Mapping[str, Sequence[float] | npt.ArrayLike],
    path: str | Path,
    *,
    window_labels: Sequence[str] | None = None,
    title: str = "Test Sharpe per walk-forward window",
) -> Path:
    """Grouped bar chart: one group per window, one bar per encoder.

    Args:
        per_window: ``{encoder: Sharpe per window}``, same window order and length.
        path: PNG file to write.
        window_labels: Tick labels of the windows (default ``w0, w1, ...``).
        title: Chart title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    n = _check_same_length(per_window)
    labels = list(window_labels) if window_labels is not None else [f"w{i}" for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"window_labels: {len(labels)} labels for {n} windows")
    k = len(per_window)
    width = 0.8 / k
    x = np.arange(n)
    fig = Figure(figsize=(max(6.0, 0.9 * n * max(k, 2) / 2), 4.5))
    ax = fig.add_subplot()
    for j, (name, values) in enumerate(per_window.items()):
        v = np.asarray(values, dtype=np.float64)
        ax.bar(x + (j - (k - 1) / 2) * width, v, width=width, label=name)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(x, labels)
    ax.set_ylabel("annualized Sharpe")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_test_forest(
    tests: Sequence[Mapping[str, object]],
    path: str | Path,
    *,
    metric: str = "sharpe",
    title: str = "Paired tests on pooled test sessions",
) -> Path:
    """Forest plot: each test's estimate with its interval; filled when Holm-significant.

    Args:
        tests: Rows of ``metrics.json["tests"]`` (keys ``strategy``, ``against``,
            ``metric``, ``estimate``, ``ci_low``, ``ci_high``, ``significant``).
        path: PNG file to write.
        metric: Which metric's tests to draw.
        title: Chart title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    rows = [t for t in tests if t["metric"] == metric]
    if not rows:
        raise ValueError(f"no test of metric {metric!r} to plot")
    fig = Figure(figsize=(8, 0.35 * len(rows) + 1.5))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    for yi, t in zip(y, rows, strict=True):
        est = float(t["estimate"])  # type: ignore[arg-type]
        low, high = float(t["ci_low"]), float(t["ci_high"])  # type: ignore[arg-type]
        color = "tab:blue" if t["significant"] else "tab:grey"
        ax.plot([low, high], [yi, yi], color=color, linewidth=1.6)
        ax.plot(
            [est],
            [yi],
            marker="o",
            color=color,
            markerfacecolor=color if t["significant"] else "white",
        )
    ax.axvline(0.0, color="black", linewidth=0.7)
    ax.set_yticks(y, [f"{t['strategy']} vs {t['against']}" for t in rows])
    unit = (
        "annualized Sharpe difference" if metric == "sharpe" else "mean session return difference"
    )
    ax.set_xlabel(f"{unit} (filled: significant after Holm)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_session_equity(
    strategies: Mapping[str, npt.ArrayLike],
    path: str | Path,
    *,
    baselines: Mapping[str, npt.ArrayLike] | None = None,
    title: str = "Cumulative net return over the pooled test sessions",
) -> Path:
    """Equity compounded session by session: strategies solid, baselines dashed."""
    base = dict(baselines or {})
    n = _check_same_length({**strategies, **base})
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    x = np.arange(1, n + 1)
    for label, r in strategies.items():
        ax.plot(x, equity_curve(r), label=label, linewidth=1.4)
    for label, r in base.items():
        ax.plot(x, equity_curve(r), label=label, linestyle="--", linewidth=1.0)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_title(title)
    ax.set_xlabel("test session (pooled over windows, in date order)")
    ax.set_ylabel("equity (start = 1)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)
