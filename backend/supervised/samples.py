"""Per walk-forward window: the env's observations, labels and baseline features of each bar.

For one symbol and one window (``backend.training.walk_forward``) this fits the normalizer
on the fit sessions only (``SymbolDataset.fit_normalizer``), builds the env's arrays, and lays
out for every bar of the fit, validation and test ranges:

* the sequence observation the env emits at that bar's close (``window`` ``(T, F)`` newest
  last, zero-padded before the first row, clipped to ``feature_clip``; ``mask`` ``(T,)``),
  exactly as ``IntradayTradingEnv._observation`` builds it (checked by a test);
* the flat features of the bar (what the manual encoder and the sklearn baselines see);
* the labels (``backend.supervised.labels``) with thresholds fitted on the fit range, and
  each label's persistence forecast.

A label is kept only if its horizon ends inside the same range as its decision bar: the
explicit purge of ``h`` bars at each range's end (labels never span sessions, and ranges are
whole sessions apart, so this drops nothing in practice; it guards any other layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from backend.data_download.dataset import SymbolDataset
from backend.data_download.market_arrays import MarketArrays
from backend.data_download.normalizer import FeatureNormalizer
from backend.supervised.labels import (
    NO_LABEL,
    TASKS,
    LabelConfig,
    Labels,
    LabelThresholds,
    class_balance,
    fit_thresholds,
    last_realized,
    make_labels,
    raw_targets,
)
from backend.training.walk_forward import SessionRange, WalkForwardWindow

PARTS: tuple[str, ...] = ("fit", "val", "test")


def observation_windows(
    features: np.ndarray, rows: np.ndarray, window: int, clip: float
) -> tuple[np.ndarray, np.ndarray]:
    """Env sequence observations at ``rows``: ``window`` ``(n, T, F)`` and ``mask`` ``(n, T)``.

    Row ``t``'s window holds feature rows ``t-T+1 .. t`` (newest last), zeros with mask 0
    before row 0, like ``IntradayTradingEnv`` with ``use_sequence_encoder=True``.
    """
    feats = np.clip(np.asarray(features, dtype=np.float32), -clip, clip)
    n_rows, n_feat = feats.shape
    padded = np.zeros((n_rows + window - 1, n_feat), dtype=np.float32)
    padded[window - 1 :] = feats
    mask_src = np.zeros(n_rows + window - 1, dtype=np.float32)
    mask_src[window - 1 :] = 1.0
    idx = np.asarray(rows, dtype=np.int64)[:, None] + np.arange(window)[None, :]  # (n, T)
    return padded[idx], mask_src[idx]


@dataclass
class PartData:
    """Every bar of one range (fit, val or test) of one or more symbols, in row order."""

    window: np.ndarray
    """(n, T, F) float32 env observations."""
    mask: np.ndarray
    """(n, T) float32 padding mask."""
    flat: np.ndarray
    """(n, F) float32 features of the decision bar (clipped like the env's)."""
    labels: dict[str, np.ndarray]
    """Task -> (n,) int64 labels, ``NO_LABEL`` where undefined or purged."""
    intensity: np.ndarray
    """(n,) standardized future log-volatility, NaN where undefined."""
    persistence: dict[str, np.ndarray]
    """Task -> (n,) last realized label known at the decision bar."""
    symbol: np.ndarray
    """(n,) symbol of each bar."""
    session: np.ndarray
    """(n,) session date (datetime64[D]) of each bar."""
    bar_in_session: np.ndarray
    """(n,) calendar slot of the bar within its session."""
    timestamp: np.ndarray
    """(n,) bar start, int64 ns UTC."""

    @property
    def n(self) -> int:
        """Number of bars."""
        return int(self.window.shape[0])

    @property
    def labelled(self) -> np.ndarray:
        """Bars with defined labels (all tasks share the definition domain)."""
        return self.labels["direction"] != NO_LABEL

    def select(self, keep: np.ndarray) -> PartData:
        """The bars where ``keep`` is true (a bool mask or indices)."""
        return PartData(
            window=self.window[keep],
            mask=self.mask[keep],
            flat=self.flat[keep],
            labels={k: v[keep] for k, v in self.labels.items()},
            intensity=self.intensity[keep],
            persistence={k: v[keep] for k, v in self.persistence.items()},
            symbol=self.symbol[keep],
            session=self.session[keep],
            bar_in_session=self.bar_in_session[keep],
            timestamp=self.timestamp[keep],
        )

    @staticmethod
    def concat(parts: Sequence[PartData]) -> PartData:
        """Stack parts of several symbols."""
        first = parts[0]
        return PartData(
            window=np.concatenate([p.window for p in parts]),
            mask=np.concatenate([p.mask for p in parts]),
            flat=np.concatenate([p.flat for p in parts]),
            labels={k: np.concatenate([p.labels[k] for p in parts]) for k in first.labels},
            intensity=np.concatenate([p.intensity for p in parts]),
            persistence={
                k: np.concatenate([p.persistence[k] for p in parts]) for k in first.persistence
            },
            symbol=np.concatenate([p.symbol for p in parts]),
            session=np.concatenate([p.session for p in parts]),
            bar_in_session=np.concatenate([p.bar_in_session for p in parts]),
            timestamp=np.concatenate([p.timestamp for p in parts]),
        )


@dataclass
class SymbolWindow:
    """One symbol's data for one window: what training, evaluation and the bundle need."""

    symbol: str
    normalizer: FeatureNormalizer
    thresholds: LabelThresholds
    arrays: MarketArrays
    parts: dict[str, PartData]
    test_rows: np.ndarray
    """Rows of ``arrays`` in the test range (for the trading view)."""
    class_balance: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """Part -> task -> class shares."""


def _part_rows(
    row_sessions: np.ndarray, sessions: pd.DatetimeIndex, part: SessionRange
) -> np.ndarray:
    first = np.datetime64(sessions[part.start].date(), "D")
    last = np.datetime64(sessions[part.stop - 1].date(), "D")
    return np.flatnonzero((row_sessions >= first) & (row_sessions <= last))


def build_symbol_window(
    dataset: SymbolDataset,
    sessions: pd.DatetimeIndex,
    window: WalkForwardWindow,
    *,
    sequence_length: int,
    feature_clip: float,
    label_config: LabelConfig,
    normalizer: FeatureNormalizer | None = None,
) -> SymbolWindow:
    """Normalizer and thresholds fitted on ``window.fit``; observations and labels of all parts.

    Args:
        dataset: The symbol's dataset (raw features).
        sessions: The session list the window positions index (``common_sessions``).
        window: The walk-forward window.
        sequence_length: ``T`` of the observation.
        feature_clip: The env's ``feature_clip``.
        label_config: Horizon and label definitions.
        normalizer: A normalizer fitted elsewhere, used instead of fitting one on
            ``window.fit`` (pretraining for the RL agent passes the RL job's, fitted on the
            RL fit range, which contains every part of ``window``).
    """
    if normalizer is None:
        fit_first, fit_last = sessions[window.fit.start], sessions[window.fit.stop - 1]
        normalizer = dataset.fit_normalizer(fit_first, fit_last)
    arrays = dataset.arrays(normalizer)
    layout = dataset.layout.iloc[dataset.warmup_rows :]
    row_sessions = layout["session"].to_numpy().astype("datetime64[D]")
    rows = {name: _part_rows(row_sessions, sessions, getattr(window, name)) for name in PARTS}
    raw = raw_targets(arrays.close, arrays.open, arrays.session_index, label_config)
    thresholds = fit_thresholds(raw, rows["fit"], label_config)
    labels = make_labels(raw, thresholds)
    persistence = {t: last_realized(labels.task(t), label_config.horizon) for t in TASKS}
    parts: dict[str, PartData] = {}
    balance: dict[str, dict[str, list[float]]] = {}
    h = label_config.horizon
    for name, part_rows in rows.items():
        parts[name] = _part(
            arrays, labels, persistence, part_rows, row_sessions, sequence_length, feature_clip, h
        )
        balance[name] = {t: class_balance(parts[name].labels[t]) for t in TASKS}
    return SymbolWindow(
        symbol=dataset.symbol,
        normalizer=normalizer,
        thresholds=thresholds,
        arrays=arrays,
        parts=parts,
        test_rows=rows["test"],
        class_balance=balance,
    )


def _part(
    arrays: MarketArrays,
    labels: Labels,
    persistence: dict[str, np.ndarray],
    rows: np.ndarray,
    row_sessions: np.ndarray,
    sequence_length: int,
    feature_clip: float,
    horizon: int,
) -> PartData:
    window, mask = observation_windows(arrays.features, rows, sequence_length, feature_clip)
    # Purge: a label whose horizon runs past the range's last row is dropped.
    last_row = int(rows[-1]) if rows.size else -1
    inside = rows + horizon <= last_row
    task_labels = {t: np.where(inside, labels.task(t)[rows], NO_LABEL) for t in TASKS}
    return PartData(
        window=window,
        mask=mask,
        flat=np.clip(arrays.features[rows], -feature_clip, feature_clip).astype(np.float32),
        labels=task_labels,
        intensity=np.where(inside, labels.intensity[rows], np.nan),
        persistence={t: persistence[t][rows] for t in TASKS},
        symbol=np.full(rows.size, arrays.symbol),
        session=row_sessions[rows],
        bar_in_session=arrays.bar_in_session[rows],
        timestamp=arrays.timestamps[rows],
    )
