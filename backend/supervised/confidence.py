"""Confidence sources of a prediction and their combination, fitted on validation only.

* ``softmax``: the temperature-scaled probability of the predicted class.
* ``mc``: Monte Carlo dropout (Gal & Ghahramani 2016): ``1 - H(mean p) / log(3)`` from the
  predictive entropy of the mean of N stochastic passes; the variance of the predicted
  class's probability across passes is reported beside it.
* ``similarity``: how typical the trunk embedding is of the fit range: one minus the
  fit-range empirical CDF of its Mahalanobis distance to the fit embeddings (Lee et al. 2018;
  Ledoit-Wolf covariance, so a 16-d embedding of a few thousand bars is well conditioned).
* ``attention``: ``1 - H / log(T)`` of the newest bar's attention over the window, averaged
  over layers and heads (transformer only): focused attention reads as confident.
* ``combined``: a logistic regression from these sources to "the prediction was right",
  fitted on the validation range; its probability is the combined confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression

from backend.supervised.calibration import probabilities

SOURCES: tuple[str, ...] = ("softmax", "mc", "similarity", "attention")


@dataclass
class MahalanobisScorer:
    """Distance of embeddings to the fit-range embedding distribution, as a [0, 1] score."""

    mean: np.ndarray
    precision: np.ndarray
    reference: np.ndarray
    """Sorted fit-range distances (for the empirical CDF)."""

    @classmethod
    def fit(cls, embeddings: np.ndarray) -> MahalanobisScorer:
        """Fit on the fit range's embeddings."""
        lw = LedoitWolf().fit(embeddings)
        scorer = cls(lw.location_, lw.precision_, np.empty(0))
        scorer.reference = np.sort(scorer.distance(embeddings))
        return scorer

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row."""
        d = embeddings - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))

    def similarity(self, embeddings: np.ndarray) -> np.ndarray:
        """``1 - CDF_fit(distance)``: 1 for the most typical, 0 beyond every fit bar."""
        rank = np.searchsorted(self.reference, self.distance(embeddings), side="right")
        return 1.0 - rank / max(self.reference.size, 1)


def mc_confidence(mc_logits: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """``(1 - normalized predictive entropy, variance of the top class prob)`` from N passes."""
    p = probabilities(mc_logits, temperature)  # (N, n, 3)
    mean = p.mean(axis=0)  # (n, 3)
    entropy = -(mean * np.log(np.clip(mean, 1e-12, 1.0))).sum(axis=1)
    top = mean.argmax(axis=1)
    variance = p[:, np.arange(top.size), top].var(axis=0)
    return 1.0 - entropy / np.log(mean.shape[1]), variance


def attention_confidence(attention: np.ndarray) -> np.ndarray:
    """``1 - H / log(T)`` of the newest bar's attention rows ``(n, L, H, T)``, layer/head mean."""
    w = np.clip(attention, 1e-12, 1.0)
    entropy = -(attention * np.log(w)).sum(axis=-1)  # (n, L, H)
    return 1.0 - entropy.mean(axis=(1, 2)) / np.log(attention.shape[-1])


@dataclass
class ConfidenceCombiner:
    """Logistic regression from confidence sources to correctness, fitted on validation."""

    sources: tuple[str, ...]
    model: LogisticRegression | None = None
    weights: dict[str, float] = field(default_factory=dict)

    def fit(self, features: dict[str, np.ndarray], correct: np.ndarray) -> ConfidenceCombiner:
        """Fit on validation; a constant outcome leaves the softmax confidence as is."""
        if np.unique(correct).size < 2:
            self.model = None
            return self
        x = np.column_stack([features[s] for s in self.sources])
        self.model = LogisticRegression(C=1.0, max_iter=1000).fit(x, correct.astype(int))
        self.weights = {s: float(c) for s, c in zip(self.sources, self.model.coef_[0], strict=True)}
        self.weights["intercept"] = float(self.model.intercept_[0])
        return self

    def predict(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Combined confidence in [0, 1]."""
        if self.model is None:
            return features["softmax"]
        x = np.column_stack([features[s] for s in self.sources])
        out: np.ndarray = self.model.predict_proba(x)[:, 1]
        return out
