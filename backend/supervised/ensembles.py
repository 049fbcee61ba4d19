"""Ensembles of the calibrated members (LSTM, CNN, transformer), fitted on validation only.

* ``ens_mean``: the plain average of the members' probabilities.
* ``ens_weighted``: weights proportional to ``1 / validation log loss`` (a member that
  fits the validation bars better counts more; no weight is 0, so no member is dropped on
  a few hundred bars' evidence).
* ``ens_stack``: a multinomial logistic regression on the members' validation
  log-probabilities (Wolpert 1992's stacking), applied to the test bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression

from backend.supervised.calibration import log_loss

ENSEMBLES: tuple[str, ...] = ("ens_mean", "ens_weighted", "ens_stack")


def ensemble_probabilities(
    val_probs: Mapping[str, np.ndarray],
    test_probs: Mapping[str, np.ndarray],
    val_labels: np.ndarray,
    members: Sequence[str],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float]]:
    """Validation and test probabilities of every ensemble, and the weighted one's weights.

    ``val_probs``/``test_probs`` hold every bar of the part; ``val_labels`` (``-1`` where
    undefined) picks the bars the weights and the stacker are fitted on.
    """
    keep = val_labels >= 0
    y = val_labels[keep]
    losses = {m: log_loss(val_probs[m][keep], y) for m in members}
    inv = {m: 1.0 / max(losses[m], 1e-9) for m in members}
    total = sum(inv.values())
    weights = {m: inv[m] / total for m in members}
    val_out: dict[str, np.ndarray] = {}
    test_out: dict[str, np.ndarray] = {}
    for out, probs in ((val_out, val_probs), (test_out, test_probs)):
        out["ens_mean"] = np.mean([probs[m] for m in members], axis=0)
        out["ens_weighted"] = np.sum([weights[m] * probs[m] for m in members], axis=0)

    def stack_x(probs: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.column_stack([np.log(np.clip(probs[m], 1e-9, 1.0)) for m in members])

    if np.unique(y).size >= 2:
        stacker = LogisticRegression(C=1.0, max_iter=2000).fit(stack_x(val_probs)[keep], y)
        for out, probs in ((val_out, val_probs), (test_out, test_probs)):
            p = np.zeros((next(iter(probs.values())).shape[0], 3))
            p[:, stacker.classes_] = stacker.predict_proba(stack_x(probs))
            out["ens_stack"] = p
    else:
        val_out["ens_stack"], test_out["ens_stack"] = val_out["ens_mean"], test_out["ens_mean"]
    return val_out, test_out, weights
