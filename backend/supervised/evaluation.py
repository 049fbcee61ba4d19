"""Scores of forecasts on the test bars: classification, calibration, sessions, trading.

* Classification: accuracy, macro-F1, per-class precision and recall, confusion matrix,
  log loss, hit rate by time of day (``bar_in_session``).
* Calibration: ECE and Brier score.
* Per session: accuracy of each (symbol, session), the unit of the paired tests: every
  model against the best baseline (chosen on the *validation* accuracy, never the test),
  two-sided Wilcoxon signed-rank (``backend.evaluation.statistics.wilcoxon_test``), Holm's
  step-down correction (``backend.evaluation.session_stats.holm_adjust``) over every
  comparison of the run.
* Trading view: position = +1 bull / -1 bear / 0 sideways decided at bar ``t``'s close and
  held over bar ``t+1`` (optionally times the confidence), accounted exactly like the env
  (``backend.evaluation.baselines.simulate_targets``: fills at the next open, costs on
  every change, flat at the close) and scored with the RL report's metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from backend.data_download.market_arrays import MarketArrays
from backend.evaluation.baselines import simulate_targets
from backend.evaluation.session_stats import holm_adjust
from backend.evaluation.statistics import wilcoxon_test
from backend.supervised.calibration import brier_score, expected_calibration_error, log_loss


def classification_scores(
    probs: np.ndarray, labels: np.ndarray, bar_in_session: np.ndarray, n_bins: int = 15
) -> dict[str, Any]:
    """Scores over the bars with a label (``labels >= 0``)."""
    keep = labels >= 0
    p, y = probs[keep], labels[keep]
    pred = p.argmax(axis=1)
    precision, recall, _, support = precision_recall_fscore_support(
        y, pred, labels=[0, 1, 2], zero_division=0
    )
    hits = pd.Series(pred == y).groupby(bar_in_session[keep]).mean()
    return {
        "n": int(y.size),
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0)),
        "precision": [float(v) for v in precision],
        "recall": [float(v) for v in recall],
        "support": [int(v) for v in support],
        "confusion": confusion_matrix(y, pred, labels=[0, 1, 2]).tolist(),
        "log_loss": log_loss(p, y),
        "ece": expected_calibration_error(p, y, n_bins),
        "brier": brier_score(p, y),
        "hit_rate_by_bar": dict(
            zip(hits.index.astype(int).tolist(), hits.to_numpy(float).tolist(), strict=True)
        ),
    }


def session_accuracy(probs: np.ndarray, labels: np.ndarray, keys: np.ndarray) -> pd.Series:
    """Accuracy per session key over labelled bars, sorted by key."""
    keep = labels >= 0
    hit = probs[keep].argmax(axis=1) == labels[keep]
    return pd.Series(hit.astype(float)).groupby(keys[keep]).mean().sort_index()


def holm_adjust_finite(p_values: Sequence[float]) -> list[float]:
    """Holm (1979) adjustment of the finite p-values as one family.

    The adjustment is ``backend.evaluation.session_stats.holm_adjust``; a NaN (a comparison
    without paired sessions) stays NaN and is not counted in the family.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = holm_adjust(p[finite].tolist())
    return out.tolist()


def paired_session_tests(
    per_session: Mapping[str, pd.Series], candidates: Sequence[str], reference: str
) -> list[dict[str, Any]]:
    """Each candidate's per-session accuracy minus the reference's: Wilcoxon p (unadjusted)."""
    ref = per_session[reference]
    rows = []
    for name in candidates:
        joined = pd.concat([per_session[name], ref], axis=1, join="inner").dropna()
        d = (joined.iloc[:, 0] - joined.iloc[:, 1]).to_numpy()
        stat, p = wilcoxon_test(d) if d.size else (np.nan, np.nan)
        rows.append(
            {
                "model": name,
                "reference": reference,
                "n_sessions": int(d.size),
                "mean_difference": float(d.mean()) if d.size else float("nan"),
                "wilcoxon_statistic": stat,
                "p_value": p,
            }
        )
    return rows


def direction_targets(probs: np.ndarray, confidence: np.ndarray | None = None) -> np.ndarray:
    """Position decided at each bar: +1 bull, -1 bear, 0 sideways, optionally x confidence."""
    side = np.array([-1.0, 0.0, 1.0])[probs.argmax(axis=1)]
    return side * confidence if confidence is not None else side


def trading_view(
    arrays: MarketArrays, rows: np.ndarray, positions: np.ndarray, cost_rate: float
) -> dict[str, Any]:
    """Env-exact accounting of positions decided at ``rows`` (held over the next bar).

    Returns:
        Per-bar ``net_returns``, ``positions``, ``end_positions``, ``turnover``,
        ``trade_costs`` and ``session_ids``: the inputs of ``compute_metrics``.
    """
    targets = np.zeros(rows.size)
    targets[1:] = positions[:-1]  # decided at the close of row i-1, filled at open of row i
    same = np.r_[False, arrays.session_index[rows][1:] == arrays.session_index[rows][:-1]]
    targets = np.where(same, targets, 0.0)  # the first bar of a session starts flat
    result = simulate_targets(
        arrays.open[rows], arrays.close[rows], arrays.session_index[rows], targets, cost_rate
    )
    return {
        "net_returns": result.net_returns,
        "positions": result.positions,
        "end_positions": result.end_positions,
        "turnover": result.turnover,
        "trade_costs": result.trade_costs,
        "session_ids": result.session_ids,
    }
