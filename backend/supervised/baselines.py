"""Baselines on the same bars: majority class, persistence, logistic regression, boosting.

All are fitted on the fit range's labelled bars only. The sklearn models read the flat
features of the decision bar (the manual encoder's observation), already normalized on the
fit range. Persistence predicts the last realized label (``labels.last_realized``) and falls
back to the majority class before the first one; its probabilities are that one-hot,
smoothed by 1e-3 so that its log loss is finite.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from backend.config.supervised import BaselineSection
from backend.supervised.labels import NO_LABEL
from backend.supervised.samples import PartData

BASELINES: tuple[str, ...] = ("majority", "persistence", "logreg", "hgb")
N_CLASSES = 3


def _full_proba(model: object, x: np.ndarray) -> np.ndarray:
    """``predict_proba`` with a column for every class, even one absent from the fit."""
    proba = model.predict_proba(x)  # type: ignore[attr-defined]
    out = np.zeros((x.shape[0], N_CLASSES))
    out[:, model.classes_] = proba  # type: ignore[attr-defined]
    return out


def fit_predict_baselines(
    task: str,
    fit: PartData,
    parts: Mapping[str, PartData],
    settings: BaselineSection,
    seed: int,
) -> dict[str, dict[str, np.ndarray]]:
    """Probabilities ``(n, 3)`` of every baseline on every part in ``parts``.

    Returns:
        ``{baseline: {part name: probs}}``.
    """
    keep = fit.labels[task] != NO_LABEL
    x_fit, y_fit = fit.flat[keep], fit.labels[task][keep]
    shares = np.bincount(y_fit, minlength=N_CLASSES) / y_fit.size
    majority = int(shares.argmax())
    logreg = LogisticRegression(C=settings.logreg_c, max_iter=2000).fit(x_fit, y_fit)
    hgb = HistGradientBoostingClassifier(
        max_iter=settings.hgb_max_iter,
        learning_rate=settings.hgb_learning_rate,
        early_stopping=False,
        random_state=seed,
    ).fit(x_fit, y_fit)
    out: dict[str, dict[str, np.ndarray]] = {name: {} for name in BASELINES}
    for name, part in parts.items():
        n = part.n
        out["majority"][name] = np.tile(shares, (n, 1))
        last = part.persistence[task]
        last = np.where(last == NO_LABEL, majority, last)
        onehot = np.eye(N_CLASSES)[last]
        out["persistence"][name] = onehot * (1.0 - 3e-3) + 1e-3
        out["logreg"][name] = _full_proba(logreg, part.flat)
        out["hgb"][name] = _full_proba(hgb, part.flat)
    return out
