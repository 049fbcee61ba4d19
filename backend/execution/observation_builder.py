"""Build, bar by bar, the observation the env would emit for the same bar.

The trader keeps a rolling market frame of at least ``max_lookback + T`` bars, recomputes
the features on it causally with the training :class:`FeatureConfig`
(``compute_features``), normalizes them with the bundle's normalizer and clips them to the
env's ``feature_clip``, then lays them out like ``IntradayTradingEnv._observation``:

* flat: ``{"features": (F,), "account": (3,)}``;
* sequence: ``{"window": (T, F), "mask": (T,), "account": (3,)}``, newest last, rows still
  in feature warm-up zero with mask 0 (the env pads rows before its first row the same way).

EWM features depend (below ``FeatureConfig.ewm_residual``) on where the history starts, so
a bounded history reproduces the env's values to that tolerance; an unbounded history
(``history_bars=0``) reproduces them exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from backend.config.env_config import EnvConfig
from backend.config.training_config import FeatureConfig
from backend.data_download.intraday_features import compute_features, max_lookback
from backend.data_download.normalizer import FeatureNormalizer

MARKET_COLUMNS = ("open", "high", "low", "close", "volume", "vix")


class ObservationBuilder:
    """Rolling history of closed bars -> normalized env observations.

    Args:
        feature_config: The bundle's feature config.
        normalizer: The bundle's fitted normalizer.
        env_config: The bundle's env config (observation layout, feature clip).
        history_bars: Bars kept; ``None`` = ``max_lookback + T + 32``; ``0`` = unbounded.
    """

    def __init__(
        self,
        feature_config: FeatureConfig,
        normalizer: FeatureNormalizer,
        env_config: EnvConfig,
        history_bars: int | None = None,
    ) -> None:
        self.feature_config = feature_config
        self.normalizer = normalizer
        self.env_config = env_config
        self.sequence = env_config.use_sequence_encoder
        self.seq_len = env_config.sequence_length if self.sequence else 1
        self.lookback = max_lookback(feature_config)
        minimum = self.lookback + self.seq_len
        if history_bars is None:
            history_bars = minimum + 32
        if history_bars and history_bars < minimum:
            raise ValueError(
                f"history_bars: need at least max_lookback + T = {minimum}, got {history_bars}"
            )
        self.history_bars = history_bars
        self.columns = [c for c in MARKET_COLUMNS if c != "vix" or feature_config.use_vix]
        self._rows: list[tuple[pd.Timestamp, list[float]]] = []
        self._cache: tuple[pd.Timestamp, np.ndarray] | None = None

    @property
    def last_timestamp(self) -> pd.Timestamp | None:
        """Start of the newest bar held (``None`` if empty)."""
        return self._rows[-1][0] if self._rows else None

    def __len__(self) -> int:
        return len(self._rows)

    def add_bar(self, timestamp: pd.Timestamp, bar: dict[str, float]) -> bool:
        """Append a closed bar; returns False (and keeps nothing) for a duplicate or older one."""
        ts = pd.Timestamp(timestamp)
        last = self.last_timestamp
        if last is not None and ts <= last:
            return False
        self._rows.append((ts, [float(bar.get(c, np.nan)) for c in self.columns]))
        if self.history_bars and len(self._rows) > self.history_bars:
            del self._rows[: len(self._rows) - self.history_bars]
        self._cache = None
        return True

    def market_frame(self) -> pd.DataFrame:
        """The held history as a market frame (NY tz index named ``timestamp``)."""
        index = pd.DatetimeIndex([t for t, _ in self._rows], name="timestamp")
        values = np.array([v for _, v in self._rows], dtype=np.float64).reshape(
            -1, len(self.columns)
        )
        return pd.DataFrame(values, index=index, columns=self.columns)

    def normalized_rows(self) -> np.ndarray:
        """``(n, F)`` float32 normalized, clipped features of the held bars (NaN in warm-up)."""
        last = self.last_timestamp
        if last is None:
            return np.zeros((0, len(self.normalizer.feature_names)), dtype=np.float32)
        if self._cache is not None and self._cache[0] == last:
            return self._cache[1]
        raw = compute_features(self.market_frame(), self.feature_config)
        normalized = self.normalizer.transform(raw)
        clip = np.float32(self.env_config.feature_clip)
        normalized = np.clip(normalized, -clip, clip)  # NaN passes through
        self._cache = (last, normalized)
        return normalized

    @property
    def ready(self) -> bool:
        """Whether the newest bar has complete features (a decision is possible)."""
        rows = self.normalized_rows()
        return bool(len(rows)) and bool(np.isfinite(rows[-1]).all())

    def observation(
        self, position: float, unrealized: float, session_left: float
    ) -> dict[str, np.ndarray]:
        """The observation at the close of the newest bar.

        Args:
            position: Held position as a fraction of equity, in ``[-1, 1]``.
            unrealized: Unrealized PnL of the open position / equity (clipped to ``[-1, 1]``).
            session_left: ``(bars_in_session - 1 - bar_in_session) / bars_in_session``.

        Raises:
            RuntimeError: if the newest bar's features are still warming up.
        """
        if not self.ready:
            raise RuntimeError(
                f"observation: only {len(self)} bars of history; need {self.lookback} "
                "for complete features"
            )
        account = np.array(
            [
                min(max(position, -1.0), 1.0),
                min(max(unrealized, -1.0), 1.0),
                session_left,
            ],
            dtype=np.float32,
        )
        rows = self.normalized_rows()
        if not self.sequence:
            return {"features": rows[-1].astype(np.float32, copy=True), "account": account}
        n_feat = rows.shape[1]
        window = np.zeros((self.seq_len, n_feat), dtype=np.float32)
        mask = np.zeros(self.seq_len, dtype=np.float32)
        tail = rows[-self.seq_len :]
        valid = np.isfinite(tail).all(axis=1)
        offset = self.seq_len - len(tail)
        window[offset:][valid] = tail[valid]
        mask[offset:][valid] = 1.0
        return {"window": window, "mask": mask, "account": account}
