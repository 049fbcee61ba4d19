"""Supervised targets over the ``h`` bars after each decision bar, with no look-ahead.

Every label of decision bar ``t`` is computed from bars ``t+1 .. t+h`` of the *same session*
only (the env flattens at the close, so a horizon never spans a night); bars whose horizon
would leave the session get no label (``-1``). Thresholds are fitted on the fit range only
and stored with the model (:class:`LabelThresholds`).

Definitions (``r_k = log(close_k / close_{k-1})`` inside a session, ``log(close/open)`` for a
session's first bar, so overnight gaps never enter):

* ``sigma_t``: root mean square of the last ``vol_window`` bar returns up to and including
  bar ``t`` (known at ``t``'s close).
* **direction**: ``u = log(close_{t+h} / close_t) / (sigma_t * sqrt(h))``; ``bull`` if
  ``u > k``, ``bear`` if ``u < -k``, ``sideways`` otherwise. ``k`` is the quantile of ``|u|``
  on the fit range that makes ``sideways_share`` of its labels sideways: a band scaled by the
  volatility known at ``t``.
* **volatility**: ``v = sqrt(mean(r_{t+1}^2 .. r_{t+h}^2))``, the future realized volatility;
  ``low / medium / high`` by the fit range's terciles of ``v``. The regression target
  ``intensity`` is ``log(v)`` standardized by the fit range's mean and std.
* **regime**: ``volatile`` if ``v`` is above the fit range's ``volatile_quantile`` of ``v``;
  otherwise ``trending`` if the efficiency ratio ``ER = |sum r| / sum |r|`` of the horizon is
  at least the fit range's median ER among the non-volatile bars, else ``ranging``.
  (Kaufman's efficiency ratio: 1 for a straight move, near 0 for back-and-forth.)

The *persistence* forecast of a label at ``t`` is the label of the latest decision bar ``s``
whose horizon had ended by ``t`` (``s + h <= t``, in rows): :func:`last_realized`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TASKS: tuple[str, ...] = ("direction", "volatility", "regime")
"""Classification tasks; ``volatility`` also has the ``intensity`` regression output."""

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "direction": ("bear", "sideways", "bull"),
    "volatility": ("low", "medium", "high"),
    "regime": ("ranging", "trending", "volatile"),
}
"""Class names per task, in label order (label ``i`` is ``CLASS_NAMES[task][i]``)."""

NO_LABEL = -1
"""Label of a bar whose horizon leaves its session (or runs past the data)."""


@dataclass(frozen=True)
class LabelConfig:
    """How labels are cut (saved with a model so that its targets can be recomputed)."""

    horizon: int = 4
    """Bars after the decision bar that the labels describe (4 bars = one hour)."""
    vol_window: int = 26
    """Bars of past returns in ``sigma_t``, the volatility known at ``t`` (26 = one day)."""
    sideways_share: float = 1.0 / 3.0
    """Share of fit-range direction labels inside the sideways band."""
    volatile_quantile: float = 2.0 / 3.0
    """Fit-range quantile of future volatility above which the regime is ``volatile``."""

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon: must be >= 1 bar, got {self.horizon}")
        if self.vol_window < 2:
            raise ValueError(f"vol_window: must be >= 2 bars, got {self.vol_window}")
        if not 0.0 < self.sideways_share < 1.0:
            raise ValueError(f"sideways_share: must be in (0, 1), got {self.sideways_share}")
        if not 0.0 < self.volatile_quantile < 1.0:
            raise ValueError(f"volatile_quantile: must be in (0, 1), got {self.volatile_quantile}")


@dataclass(frozen=True)
class RawTargets:
    """Per-bar quantities the labels are cut from; NaN where the horizon leaves the session."""

    direction_score: np.ndarray
    """``u``: future log return over ``h`` bars in units of ``sigma_t * sqrt(h)``."""
    future_vol: np.ndarray
    """``v``: realized volatility of the ``h`` future bar returns."""
    efficiency: np.ndarray
    """Efficiency ratio of the future ``h`` bar returns, in [0, 1]."""
    sigma: np.ndarray
    """``sigma_t``: volatility known at ``t``."""

    @property
    def valid(self) -> np.ndarray:
        """Bars with a complete in-session horizon and a defined ``sigma_t``."""
        return np.isfinite(self.direction_score) & np.isfinite(self.future_vol)


@dataclass(frozen=True)
class LabelThresholds:
    """Everything fitted on the fit range; saved with the model bundle."""

    direction_band: float
    """``k``: ``|u| <= k`` is sideways."""
    vol_terciles: tuple[float, float]
    """Fit-range 1/3 and 2/3 quantiles of future volatility."""
    volatile_level: float
    """Future volatility above which the regime is ``volatile``."""
    trend_efficiency: float
    """Efficiency ratio at or above which a non-volatile horizon is ``trending``."""
    log_vol_mean: float
    """Mean of ``log(v)`` on the fit range (intensity standardization)."""
    log_vol_std: float
    """Std of ``log(v)`` on the fit range."""
    n_fit: int
    """Fit-range bars the thresholds came from."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelThresholds:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["vol_terciles"] = tuple(values["vol_terciles"])
        return cls(**values)


def bar_returns(close: np.ndarray, open_: np.ndarray, session_index: np.ndarray) -> np.ndarray:
    """Intraday log return of every bar: close-to-close, open-to-close on a session's first."""
    close = np.asarray(close, dtype=np.float64)
    r = np.log(close / np.asarray(open_, dtype=np.float64))
    same = np.zeros(close.shape, dtype=bool)
    same[1:] = session_index[1:] == session_index[:-1]
    r[same] = np.log(close[1:][same[1:]] / close[:-1][same[1:]])
    return r


def trailing_sigma(returns: np.ndarray, window: int) -> np.ndarray:
    """RMS of the last ``window`` returns up to and including each bar; NaN before that."""
    sq = np.asarray(returns, dtype=np.float64) ** 2
    csum = np.concatenate([[0.0], np.cumsum(sq)])
    out = np.full(sq.shape, np.nan)
    if sq.size >= window:
        out[window - 1 :] = np.sqrt((csum[window:] - csum[:-window]) / window)
    return out


def raw_targets(
    close: np.ndarray, open_: np.ndarray, session_index: np.ndarray, config: LabelConfig
) -> RawTargets:
    """Future-horizon quantities per bar from the bars ``t+1 .. t+h`` of ``t``'s session."""
    h = config.horizon
    n = len(close)
    r = bar_returns(close, open_, session_index)
    sigma = trailing_sigma(r, config.vol_window)
    score = np.full(n, np.nan)
    vol = np.full(n, np.nan)
    eff = np.full(n, np.nan)
    if n > h:
        sid = np.asarray(session_index)
        ok = sid[h:] == sid[:-h]  # (n - h,): t+h in t's session, so t+1..t+h all are
        future = np.stack([r[j + 1 : n - h + j + 1] for j in range(h)], axis=1)  # (n-h, h)
        move = future.sum(axis=1)
        path = np.abs(future).sum(axis=1)
        v = np.sqrt((future**2).mean(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            u = move / (sigma[: n - h] * math.sqrt(h))
            e = np.where(path > 0, np.abs(move) / path, 0.0)
        good = ok & np.isfinite(u) & (v > 0)
        score[: n - h] = np.where(good, u, np.nan)
        vol[: n - h] = np.where(good, v, np.nan)
        eff[: n - h] = np.where(good, e, np.nan)
    return RawTargets(direction_score=score, future_vol=vol, efficiency=eff, sigma=sigma)


def fit_thresholds(raw: RawTargets, fit_rows: np.ndarray, config: LabelConfig) -> LabelThresholds:
    """Fit every threshold on the labelled bars among ``fit_rows`` (indices or a bool mask).

    Raises:
        ValueError: if the fit range holds fewer than 30 labelled bars.
    """
    rows = np.zeros(raw.valid.shape, dtype=bool)
    rows[fit_rows] = True
    rows &= raw.valid
    n_fit = int(rows.sum())
    if n_fit < 30:
        raise ValueError(
            f"fit range holds {n_fit} labelled bars; need >= 30 to fit label thresholds"
        )
    u = raw.direction_score[rows]
    v = raw.future_vol[rows]
    band = float(np.quantile(np.abs(u), config.sideways_share))
    low, high = (float(q) for q in np.quantile(v, [1.0 / 3.0, 2.0 / 3.0]))
    volatile = float(np.quantile(v, config.volatile_quantile))
    calm = v <= volatile
    trend = float(np.median(raw.efficiency[rows][calm])) if calm.any() else 0.5
    log_v = np.log(v)
    return LabelThresholds(
        direction_band=band,
        vol_terciles=(low, high),
        volatile_level=volatile,
        trend_efficiency=trend,
        log_vol_mean=float(log_v.mean()),
        log_vol_std=float(max(log_v.std(), 1e-12)),
        n_fit=n_fit,
    )


@dataclass(frozen=True)
class Labels:
    """Integer labels per bar (``NO_LABEL`` where undefined) and the intensity target."""

    direction: np.ndarray
    volatility: np.ndarray
    regime: np.ndarray
    intensity: np.ndarray
    """Standardized ``log(v)``; NaN where undefined."""

    def task(self, name: str) -> np.ndarray:
        """Labels of one classification task."""
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; choose from {list(TASKS)}")
        out: np.ndarray = getattr(self, name)
        return out

    @property
    def valid(self) -> np.ndarray:
        """Bars with every label defined."""
        return self.direction != NO_LABEL


def make_labels(raw: RawTargets, thresholds: LabelThresholds) -> Labels:
    """Cut the raw targets with fitted thresholds."""
    valid = raw.valid
    u = np.where(valid, raw.direction_score, 0.0)
    v = np.where(valid, raw.future_vol, 1.0)
    e = np.where(valid, raw.efficiency, 0.0)
    k = thresholds.direction_band
    direction = np.where(u > k, 2, np.where(u < -k, 0, 1))
    low, high = thresholds.vol_terciles
    volatility = np.where(v > high, 2, np.where(v > low, 1, 0))
    regime = np.where(
        v > thresholds.volatile_level, 2, np.where(e >= thresholds.trend_efficiency, 1, 0)
    )
    intensity = (np.log(v) - thresholds.log_vol_mean) / thresholds.log_vol_std
    return Labels(
        direction=np.where(valid, direction, NO_LABEL).astype(np.int64),
        volatility=np.where(valid, volatility, NO_LABEL).astype(np.int64),
        regime=np.where(valid, regime, NO_LABEL).astype(np.int64),
        intensity=np.where(valid, intensity, np.nan),
    )


def last_realized(labels: np.ndarray, horizon: int) -> np.ndarray:
    """Persistence forecast: at row ``t``, the label of the latest row ``s <= t - h`` that has one.

    That label's horizon ``s+1 .. s+h`` had closed by ``t``, so it is known at ``t``; the label
    of ``t - 1`` is not (its horizon runs to ``t - 1 + h``). ``NO_LABEL`` before the first one.
    """
    labels = np.asarray(labels)
    shifted = np.full(labels.shape, NO_LABEL, dtype=np.int64)
    if labels.size > horizon:
        shifted[horizon:] = labels[:-horizon]
    has = shifted != NO_LABEL
    idx = np.where(has, np.arange(labels.size), 0)
    np.maximum.accumulate(idx, out=idx)
    out = shifted[idx]
    out[: int(np.argmax(has)) if has.any() else labels.size] = NO_LABEL
    return out


def class_balance(labels: np.ndarray, n_classes: int = 3) -> list[float]:
    """Share of each class among the defined labels (zeros when there are none)."""
    y = labels[labels != NO_LABEL]
    if y.size == 0:
        return [0.0] * n_classes
    counts = np.bincount(y, minlength=n_classes)[:n_classes]
    return [float(c) / y.size for c in counts]
