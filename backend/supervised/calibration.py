"""Calibration: temperature scaling, ECE, Brier score, reliability and coverage curves.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") divides
a head's logits by one scalar ``T`` fitted by minimizing the validation log loss; it
changes confidence, never the predicted class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` over the last axis."""
    out: np.ndarray = softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)
    return out


def log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true classes."""
    p = np.clip(probs[np.arange(labels.size), labels], eps, 1.0)
    return float(-np.log(p).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature in [0.05, 20] minimizing the log loss of ``labels`` (validation only)."""
    z = np.asarray(logits, dtype=np.float64)
    rows = np.arange(labels.size)

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / np.exp(log_t), axis=-1)[rows, labels].mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier score: mean squared distance to the one-hot label (0 best, 2 worst)."""
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


@dataclass(frozen=True)
class Reliability:
    """Top-label reliability table over equal-width confidence bins."""

    bin_edges: np.ndarray
    confidence: np.ndarray
    """Mean confidence per bin (NaN if empty)."""
    accuracy: np.ndarray
    """Accuracy per bin (NaN if empty)."""
    counts: np.ndarray
    ece: float
    """Expected calibration error: count-weighted mean |accuracy - confidence|."""


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> Reliability:
    """Reliability table and ECE (Naeini et al. 2015) of top-label ``confidence``."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(counts > 0, conf_sum / counts, np.nan)
        acc = np.where(counts > 0, acc_sum / counts, np.nan)
    total = max(int(counts.sum()), 1)
    ece = float(np.nansum(np.abs(acc - conf) * counts) / total)
    return Reliability(edges, conf, acc, counts, ece)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the predicted class's probability."""
    pred = probs.argmax(axis=1)
    return reliability(probs.max(axis=1), pred == labels, n_bins).ece


def coverage_curve(
    confidence: np.ndarray, correct: np.ndarray, coverages: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of the most confident ``c`` share of predictions, for each coverage ``c``.

    Returns:
        ``(coverage, accuracy)``; accuracy is NaN where no prediction is kept.
    """
    if coverages is None:
        coverages = np.linspace(0.1, 1.0, 10)
    order = np.argsort(-confidence, kind="stable")
    hits = correct[order].astype(np.float64)
    cum = np.cumsum(hits)
    out = []
    for c in coverages:
        k = int(round(c * hits.size))
        out.append(cum[k - 1] / k if k > 0 else np.nan)
    return np.asarray(coverages, dtype=np.float64), np.asarray(out)
