"""The direction accuracy a planted AR(1) momentum process allows (Bayes-optimal).

The synthetic market's standardized bar shocks follow ``z_k = phi z_{k-1} + sqrt(1 - phi^2)
e_k`` within a session (``backend.data_download.synthetic_market``). An oracle that knows
``z_t`` and the bar volatility exactly sees the ``h``-bar future sum ``S = z_{t+1} + ... +
z_{t+h}`` as normal with

* mean ``a z_t``, ``a = phi + phi^2 + ... + phi^h``;
* variance ``s^2 = (1 - phi^2) sum_{i=1..h} ((1 - phi^(h-i+1)) / (1 - phi))^2``.

The direction label cuts ``u = S / sqrt(h)`` at ``+-k``, with ``k`` the quantile of ``|u|``
that leaves ``sideways_share`` of labels sideways (``u`` is ``N(0, (a^2 + s^2) / h)``). The
Bayes classifier picks the most probable class given ``z_t``; its accuracy, averaged over
``z_t ~ N(0, 1)`` by Gauss-Hermite quadrature, is the reference for the models. It is the
exact ceiling only under its idealizations: volatility constant over the horizon and known,
``z_t`` observed without error, the band applied to ``S`` itself. The lab's labels scale the
band by a *trailing* volatility, so (i) sideways becomes partly predictable from the time of
day (the intraday U-shape), which this figure ignores, and (ii) which bars count as trending
shifts toward larger moves, whose sign is easier; measured accuracies can therefore exceed
it by a little, beyond their sampling error.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def bayes_direction_accuracy(phi: float, horizon: int, sideways_share: float) -> float:
    """Accuracy of the Bayes-optimal 3-class direction forecast under AR(1) momentum ``phi``.

    At ``phi = 0`` it is the best constant guess, ``max(sideways_share, (1 - share) / 2)``.

    Raises:
        ValueError: for ``phi`` outside ``[0, 1)``, ``horizon < 1`` or a share outside (0, 1).
    """
    if not 0.0 <= phi < 1.0:
        raise ValueError(f"phi: must be in [0, 1), got {phi}")
    if horizon < 1:
        raise ValueError(f"horizon: must be >= 1, got {horizon}")
    if not 0.0 < sideways_share < 1.0:
        raise ValueError(f"sideways_share: must be in (0, 1), got {sideways_share}")
    h = horizon
    a = sum(phi**j for j in range(1, h + 1))
    tail = [sum(phi**m for m in range(h - i + 1)) for i in range(1, h + 1)]
    s = math.sqrt((1.0 - phi**2) * sum(t * t for t in tail))
    total_sd = math.sqrt(a * a + s * s)
    band = total_sd * float(stats.norm.ppf(0.5 + sideways_share / 2.0))  # on S, not u
    nodes, weights = np.polynomial.hermite_e.hermegauss(121)  # probabilists' Hermite
    mean = a * nodes
    bear = stats.norm.cdf((-band - mean) / s)
    bull = stats.norm.sf((band - mean) / s)
    side = 1.0 - bear - bull
    best = np.maximum(np.maximum(bear, bull), side)
    return float(np.sum(weights * best) / math.sqrt(2.0 * math.pi))


def bayes_sign_accuracy(phi: float, horizon: int, sideways_share: float) -> float:
    """Bayes-optimal accuracy of bull-vs-bear on the bars whose label is not sideways.

    The sign forecast ``sign(z_t)`` does not depend on where the sideways band sits or on
    the volatility estimate, so this ceiling is robust to the idealizations above that the
    3-class figure relies on (a trailing volatility that misjudges the intraday U-shape makes
    *sideways* partly predictable from the time of day, which no momentum oracle counts).
    It is 0.5 at ``phi = 0``.
    """
    bayes_direction_accuracy(phi, horizon, sideways_share)  # validates the arguments
    h = horizon
    a = sum(phi**j for j in range(1, h + 1))
    tail = [sum(phi**m for m in range(h - i + 1)) for i in range(1, h + 1)]
    s = math.sqrt((1.0 - phi**2) * sum(t * t for t in tail))
    band = math.sqrt(a * a + s * s) * float(stats.norm.ppf(0.5 + sideways_share / 2.0))
    nodes, weights = np.polynomial.hermite_e.hermegauss(121)
    mean = a * np.abs(nodes)  # by symmetry, condition on a positive forecast
    right = stats.norm.sf((band - mean) / s)
    wrong = stats.norm.cdf((-band - mean) / s)
    w = weights / math.sqrt(2.0 * math.pi)
    return float(np.sum(w * right) / np.sum(w * (right + wrong)))
