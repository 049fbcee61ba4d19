"""Per-feature scaling fitted on the training range only, saved next to the model.

The statistics come from the training window alone (Qlib's ``fit_start_time`` /
``fit_end_time``): fitting on the whole history would leak the test period's level and
volatility into every training observation. A saved normalizer carries its feature names
and fit range so that the live loop and the evaluation scale exactly as training did.

Two methods:

* ``zscore``: ``(x - mean) / std``.
* ``robust``: ``(x - median) / (IQR / 1.349)``; the IQR of a Gaussian is 1.349 sigma, so
  on Gaussian data both methods agree, while heavy tails (volume spikes, crash days) do
  not drag the scale.

Normalized values are clipped to ``[-clip, clip]`` (default 5) so one extreme bar cannot
saturate a network; a column that is constant on the training range gets scale 1, so it
maps to 0 rather than to inf (scikit-learn's ``_handle_zeros_in_scale`` does the same).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from backend.data_download.schema import to_ny
from backend.utils.atomic_io import write_text_atomic

NormalizerMethod = Literal["zscore", "robust"]
METHODS: tuple[str, ...] = ("zscore", "robust")
FORMAT_VERSION = 1
"""Bumped whenever the JSON layout changes; :meth:`FeatureNormalizer.load` refuses others."""
IQR_TO_STD = 1.349
"""IQR of a standard normal (2 * 0.6745); dividing the IQR by it estimates sigma."""


def normalizer_filename(symbol: str, agent: str) -> str:
    """File name of a saved normalizer, e.g. ``normalizer_TNA_SAC_INTRADAY_DSR.json``."""
    for label, value in (("symbol", symbol), ("agent", agent)):
        if not value or not value.strip() or any(c in value for c in "/\\ "):
            raise ValueError(f"{label} must be a non-empty name without spaces or slashes")
    return f"normalizer_{symbol.strip().upper()}_{agent.strip().upper()}.json"


@dataclass(frozen=True)
class FeatureStats:
    """Fitted statistics of one feature."""

    center: float
    """Mean (zscore) or median (robust) over the fit rows."""
    scale: float
    """Std (zscore) or IQR / 1.349 (robust); 1.0 if that was <= eps (a constant column)."""
    count: int
    """Non-NaN fit rows the statistics come from."""
    constant: bool
    """Whether the column was constant on the fit range (so its scale was replaced by 1)."""


def _to_timestamp(value: pd.Timestamp | str | None) -> pd.Timestamp | None:
    if value is None:
        return None
    return to_ny(value)


class FeatureNormalizer:
    """Scales feature columns with statistics from the training range only.

    Args:
        method: ``"zscore"`` or ``"robust"``.
        clip: Normalized values are clipped to ``[-clip, clip]``; ``None`` disables.
        eps: A fitted scale at or below this counts as a constant column (scale -> 1).
    """

    def __init__(
        self,
        method: NormalizerMethod = "zscore",
        clip: float | None = 5.0,
        eps: float = 1e-12,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        if clip is not None and not (math.isfinite(clip) and clip > 0):
            raise ValueError(f"clip must be a positive number or None, got {clip!r}")
        if not (math.isfinite(eps) and eps >= 0):
            raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
        self.method: NormalizerMethod = method
        self.clip: float | None = None if clip is None else float(clip)
        self.eps = float(eps)
        self.feature_names: list[str] = []
        self.stats: dict[str, FeatureStats] = {}
        self.fit_start: str | None = None
        self.fit_end: str | None = None
        self.n_rows: int = 0
        self._center = np.empty(0, dtype=np.float64)
        self._scale = np.empty(0, dtype=np.float64)

    # -- fitting ----------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` or :meth:`load` has set the statistics."""
        return bool(self.feature_names)

    @property
    def n_features(self) -> int:
        """Number of fitted features (the width of :meth:`transform`'s output)."""
        return len(self.feature_names)

    def fit(
        self,
        features: pd.DataFrame,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
    ) -> FeatureNormalizer:
        """Fit on the rows with ``start <= timestamp <= end`` (both inclusive, NaN skipped).

        Pass the training range's bounds: rows outside it never influence the statistics.
        Naive bounds are read as New York time. Each feature uses its own non-NaN rows,
        so a warm-up NaN in one column does not discard the others' data.

        Returns:
            ``self``, fitted.

        Raises:
            ValueError: if the frame is malformed, the range holds no rows, a column has
                no non-NaN value in it, or holds inf.
        """
        if not isinstance(features, pd.DataFrame):
            raise TypeError(f"features must be a DataFrame, got {type(features).__name__}")
        index = features.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            raise ValueError("features need a timezone-aware DatetimeIndex")
        names = [str(c) for c in features.columns]
        if not names:
            raise ValueError("features have no columns")
        if len(set(names)) != len(names):
            raise ValueError(
                f"duplicate feature names: {sorted({n for n in names if names.count(n) > 1})}"
            )
        lo, hi = _to_timestamp(start), _to_timestamp(end)
        if lo is not None and hi is not None and hi < lo:
            raise ValueError(f"fit range is empty: end {hi} is before start {lo}")
        mask = np.ones(len(index), dtype=bool)
        if lo is not None:
            mask &= np.asarray(index >= lo)
        if hi is not None:
            mask &= np.asarray(index <= hi)
        if not mask.any():
            raise ValueError(f"no rows in the fit range [{lo}, {hi}]")
        values = features.to_numpy(dtype=np.float64, na_value=np.nan)[mask]  # (N, F)
        if np.isinf(values).any():
            bad = [names[j] for j in np.flatnonzero(np.isinf(values).any(axis=0))]
            raise ValueError(f"features hold inf in the fit range: {bad}")
        counts = (~np.isnan(values)).sum(axis=0)
        empty = [names[j] for j in np.flatnonzero(counts == 0)]
        if empty:
            raise ValueError(f"features with no non-NaN value in the fit range: {empty}")

        if self.method == "zscore":
            center = np.nanmean(values, axis=0)
            spread = np.nanstd(values, axis=0)
        else:
            q25, center, q75 = np.nanpercentile(values, [25.0, 50.0, 75.0], axis=0)
            spread = (q75 - q25) / IQR_TO_STD
        constant = spread <= self.eps
        scale = np.where(constant, 1.0, spread)

        fit_index = index[mask]
        self.feature_names = names
        self.stats = {
            name: FeatureStats(
                center=float(center[j]),
                scale=float(scale[j]),
                count=int(counts[j]),
                constant=bool(constant[j]),
            )
            for j, name in enumerate(names)
        }
        self.fit_start = fit_index[0].isoformat()
        self.fit_end = fit_index[-1].isoformat()
        self.n_rows = int(mask.sum())
        self._sync_arrays()
        return self

    def _sync_arrays(self) -> None:
        self._center = np.array([self.stats[n].center for n in self.feature_names], np.float64)
        self._scale = np.array([self.stats[n].scale for n in self.feature_names], np.float64)

    # -- transforming -----------------------------------------------------------------

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("normalizer is not fitted; call fit() or load() first")

    def check_columns(self, columns: Iterable[object]) -> None:
        """Raise a ValueError listing missing and unexpected names if ``columns`` differ."""
        self._require_fitted()
        given = [str(c) for c in columns]
        given_set, fitted_set = set(given), set(self.feature_names)
        missing = [n for n in self.feature_names if n not in given_set]
        extra = [n for n in given if n not in fitted_set]
        duplicated = sorted({n for n in given if given.count(n) > 1})
        if missing or extra or duplicated:
            raise ValueError(
                "feature columns do not match the fitted normalizer: "
                f"missing {missing}, unexpected {extra}, duplicated {duplicated}; "
                f"fitted on {len(self.feature_names)} features from {self.fit_start} to "
                f"{self.fit_end}"
            )

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        """Normalize a feature frame to float32, columns in fitted order (matched by name).

        NaN stays NaN (the caller drops warm-up rows).

        Returns:
            ``(n_rows, n_features)`` float32 array.

        Raises:
            ValueError: if the column names differ from the fitted ones, or a value is inf.
        """
        self.check_columns(features.columns)
        position = {str(c): j for j, c in enumerate(features.columns)}
        order = [position[name] for name in self.feature_names]
        values = features.to_numpy(dtype=np.float64, na_value=np.nan)[:, order]
        return self._apply(values)

    def transform_array(self, rows: np.ndarray) -> np.ndarray:
        """Normalize raw feature rows already in fitted order (the live loop's hot path).

        Args:
            rows: ``(n_features,)`` or ``(n_rows, n_features)``.

        Returns:
            float32 array of the same shape.
        """
        self._require_fitted()
        values = np.asarray(rows, dtype=np.float64)
        if values.ndim not in (1, 2) or values.shape[-1] != self.n_features:
            raise ValueError(
                f"expected shape ({self.n_features},) or (n, {self.n_features}), got {values.shape}"
            )
        return self._apply(values)

    def _apply(self, values: np.ndarray) -> np.ndarray:
        if np.isinf(values).any():
            cols = np.flatnonzero(np.isinf(values.reshape(-1, self.n_features)).any(axis=0))
            raise ValueError(f"inf in features {[self.feature_names[j] for j in cols]}")
        out = (values - self._center) / self._scale
        if self.clip is not None:
            out = np.clip(out, -self.clip, self.clip)  # NaN passes through
        return out.astype(np.float32)

    # -- persistence ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state; floats survive ``json`` exactly (shortest repr round-trips)."""
        self._require_fitted()
        return {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "clip": self.clip,
            "eps": self.eps,
            "feature_names": list(self.feature_names),
            "fit_start": self.fit_start,
            "fit_end": self.fit_end,
            "n_rows": self.n_rows,
            "stats": {
                name: {
                    "center": s.center,
                    "scale": s.scale,
                    "count": s.count,
                    "constant": s.constant,
                }
                for name, s in self.stats.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureNormalizer:
        """Rebuild from :meth:`to_dict` output, validating every field.

        Raises:
            ValueError: on a wrong format version, missing or inconsistent fields, or
                non-finite / non-positive statistics.
        """
        if not isinstance(data, dict):
            raise ValueError(f"normalizer state must be a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported normalizer format_version {version!r}; expected {FORMAT_VERSION}"
            )
        required = ("method", "clip", "eps", "feature_names", "fit_start", "fit_end", "n_rows")
        missing = [k for k in (*required, "stats") if k not in data]
        if missing:
            raise ValueError(f"normalizer state lacks field(s) {missing}")
        out = cls(method=cast(NormalizerMethod, data["method"]), clip=data["clip"], eps=data["eps"])
        names = data["feature_names"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError("feature_names must be a non-empty list of strings")
        if len(set(names)) != len(names):
            raise ValueError("feature_names has duplicates")
        stats = data["stats"]
        if not isinstance(stats, dict) or set(stats) != set(names):
            raise ValueError("stats must hold exactly one entry per feature name")
        parsed: dict[str, FeatureStats] = {}
        for name in names:
            entry = stats[name]
            try:
                center, scale = float(entry["center"]), float(entry["scale"])
                count, constant = int(entry["count"]), bool(entry["constant"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"bad stats for feature {name!r}: {exc}") from None
            if not (math.isfinite(center) and math.isfinite(scale) and scale > 0):
                raise ValueError(
                    f"stats of feature {name!r} must be finite with scale > 0, got "
                    f"center={center}, scale={scale}"
                )
            parsed[name] = FeatureStats(center=center, scale=scale, count=count, constant=constant)
        for key in ("fit_start", "fit_end"):
            try:
                pd.Timestamp(data[key])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{key} is not an ISO timestamp: {data[key]!r}") from exc
        out.feature_names = list(names)
        out.stats = parsed
        out.fit_start, out.fit_end = str(data["fit_start"]), str(data["fit_end"])
        n_rows = data["n_rows"]
        if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
            raise ValueError(f"n_rows must be a positive integer, got {n_rows!r}")
        out.n_rows = n_rows
        out._sync_arrays()
        return out

    def save(self, path: str | Path) -> Path:
        """Write JSON atomically (temporary file + ``os.replace``): never a torn file."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        return write_text_atomic(path, text)

    @classmethod
    def load(cls, path: str | Path) -> FeatureNormalizer:
        """Read a normalizer written by :meth:`save`, validating it."""
        source = Path(path)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source} is not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from exc

    def __repr__(self) -> str:
        fitted = (
            f"{self.n_features} features, {self.n_rows} rows {self.fit_start}..{self.fit_end}"
            if self.is_fitted
            else "unfitted"
        )
        return f"FeatureNormalizer(method={self.method!r}, clip={self.clip}, {fitted})"
