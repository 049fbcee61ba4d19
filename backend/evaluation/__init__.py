"""Evaluation: metrics, cost-consistent baselines, statistics and report plots.

``plots`` is not imported here so that importing metrics does not load matplotlib; use
``from backend.evaluation.plots import plot_equity_curves``.
"""

from backend.evaluation.baselines import (
    BASELINE_NAMES,
    BaselineResult,
    SimulationResult,
    run_baselines,
    run_baselines_for_env,
    simulate_targets,
)
from backend.evaluation.metrics import (
    BARS_PER_SESSION,
    BARS_PER_YEAR,
    SESSIONS_PER_YEAR,
    PerformanceMetrics,
    compute_metrics,
)
from backend.evaluation.statistics import (
    MIN_WINDOWS_FOR_SIGNIFICANCE,
    BootstrapCI,
    PairedComparison,
    bootstrap_mean_ci,
    paired_comparison,
    per_window_from_frame,
    probabilistic_sharpe_ratio,
    significance_verdict,
    stationary_bootstrap_sharpe_ci,
)

__all__ = [
    "BARS_PER_SESSION",
    "BARS_PER_YEAR",
    "BASELINE_NAMES",
    "MIN_WINDOWS_FOR_SIGNIFICANCE",
    "SESSIONS_PER_YEAR",
    "BaselineResult",
    "BootstrapCI",
    "PairedComparison",
    "PerformanceMetrics",
    "SimulationResult",
    "bootstrap_mean_ci",
    "compute_metrics",
    "paired_comparison",
    "per_window_from_frame",
    "probabilistic_sharpe_ratio",
    "run_baselines",
    "run_baselines_for_env",
    "significance_verdict",
    "simulate_targets",
    "stationary_bootstrap_sharpe_ci",
]
