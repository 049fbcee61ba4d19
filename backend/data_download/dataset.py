"""From the bar store to what the env consumes: one symbol's market, features and layout.

This is the only place the pieces meet, so training, evaluation and the live trader build
observations the same way::

    load_market ─► compute_features ─► FeatureNormalizer (fit on the fit range only)
        │                                   │
        └── session_bar_layout ─────────────┴─► MarketArrays ─► IntradayTradingEnv
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from backend.data_download.feature_config import FeatureConfig
from backend.data_download.intraday_features import (
    compute_features,
    feature_names,
    first_valid_row,
)
from backend.data_download.loader import load_market
from backend.data_download.market_arrays import MarketArrays
from backend.data_download.market_calendar import session_bar_layout
from backend.data_download.normalizer import FeatureNormalizer
from backend.data_download.schema import DEFAULT_INTERVAL, bar_index


@dataclass(frozen=True)
class SymbolDataset:
    """One symbol's validated market frame, raw (unnormalized) features and session layout.

    Rows whose features are still warming up (NaN) are kept here and dropped only when
    arrays are built, so row positions line up with the market frame.
    """

    symbol: str
    market: pd.DataFrame
    features: pd.DataFrame
    layout: pd.DataFrame
    feature_config: FeatureConfig
    interval: str = DEFAULT_INTERVAL

    @classmethod
    def load(
        cls,
        symbol: str,
        data_dir: str | Path,
        feature_config: FeatureConfig,
        *,
        interval: str = DEFAULT_INTERVAL,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
        session: str = "regular",
        on_error: str = "raise",
    ) -> SymbolDataset:
        """Load, validate and featurize one symbol from the store under ``data_dir``."""
        market = load_market(
            symbol,
            interval,
            start,
            end,
            data_dir,
            include_vix=feature_config.use_vix,
            session=session,
            on_error=on_error,
        )
        if market.empty:
            raise ValueError(
                f"{symbol}: no bars in {data_dir} between {start or 'the first bar'} and "
                f"{end or 'the last bar'}"
            )
        return cls.from_market(
            symbol, market, feature_config, interval=interval, extended_hours=session == "extended"
        )

    @classmethod
    def from_market(
        cls,
        symbol: str,
        market: pd.DataFrame,
        feature_config: FeatureConfig,
        *,
        interval: str = DEFAULT_INTERVAL,
        extended_hours: bool = False,
    ) -> SymbolDataset:
        """Featurize a market frame already in memory (the live trader's path too)."""
        features = compute_features(market, feature_config)
        layout = session_bar_layout(
            bar_index(market, "market frame"), interval, extended_hours=extended_hours
        )
        return cls(symbol.upper(), market, features, layout, feature_config, interval)

    @property
    def feature_names(self) -> list[str]:
        """Feature columns in observation order."""
        return feature_names(self.feature_config)

    @property
    def warmup_rows(self) -> int:
        """Rows at the start whose features are still warming up (dropped from the arrays).

        Raises:
            ValueError: if a feature is not finite after the warm-up (e.g. a VIX hole).
        """
        return first_valid_row(self.features)

    @property
    def sessions(self) -> pd.DatetimeIndex:
        """Sessions present in the data, in order (naive dates)."""
        return pd.DatetimeIndex(self.layout["session"].unique(), name="session")

    @property
    def ready_sessions(self) -> pd.DatetimeIndex:
        """Sessions whose every bar is past the feature warm-up: the ones windows may use."""
        first = self.warmup_rows
        days = self.layout["session"]
        if first >= len(days):
            return pd.DatetimeIndex([], name="session")
        starts_session = first == 0 or days.iloc[first - 1] != days.iloc[first]
        sessions = self.sessions
        if starts_session:
            return sessions[sessions >= days.iloc[first]]
        return sessions[sessions > days.iloc[first]]

    @property
    def bars_per_session(self) -> np.ndarray:
        """Scheduled bars of each session in :attr:`sessions` (26 full day, 14 half day)."""
        per = self.layout.groupby("session", sort=True)["bars_in_session"].first()
        return per.reindex(self.sessions).to_numpy(dtype=np.int64)

    def session_bounds(
        self, first: pd.Timestamp, last: pd.Timestamp
    ) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First bar start and last bar start (NY time) of the sessions ``first..last``."""
        days = self.layout["session"]
        inside = (days >= first) & (days <= last)
        if not inside.any():
            raise ValueError(
                f"{self.symbol}: no bars between sessions {first.date()} and {last.date()}"
            )
        index = self.market.index[inside.to_numpy()]
        return index[0], index[-1]

    def fit_normalizer(
        self,
        first_session: pd.Timestamp,
        last_session: pd.Timestamp,
        *,
        method: str = "zscore",
        clip: float | None = 5.0,
    ) -> FeatureNormalizer:
        """Fit a normalizer on the sessions ``first..last`` only (the fit range)."""
        start, end = self.session_bounds(first_session, last_session)
        normalizer = FeatureNormalizer(method=method, clip=clip)  # type: ignore[arg-type]
        return normalizer.fit(self.features, start, end)

    def arrays(self, normalizer: FeatureNormalizer) -> MarketArrays:
        """Normalized numpy arrays for the env, warm-up rows dropped."""
        first = self.warmup_rows
        if first >= len(self.features):
            raise ValueError(
                f"{self.symbol}: all {len(self.features)} rows are still in feature warm-up; "
                "load more history"
            )
        keep = np.arange(len(self.features)) >= first
        normalized = normalizer.transform(self.features.loc[keep])
        frame = self.market.loc[keep, ["open", "high", "low", "close", "volume"]].copy()
        names = list(normalizer.feature_names)  # transform's column order
        if names != self.feature_names:
            raise ValueError(
                f"{self.symbol}: normalizer was fitted on features {names}, the dataset has "
                f"{self.feature_names}; refit it or use the matching FeatureConfig"
            )
        for j, name in enumerate(names):
            frame[name] = normalized[:, j]
        return MarketArrays.from_frame(frame, names, self.layout.loc[keep], self.symbol)


def bar_range(
    arrays: MarketArrays, first_bar: pd.Timestamp, last_bar: pd.Timestamp
) -> tuple[int, int]:
    """Half-open row range of ``arrays`` covering bars that start in ``[first_bar, last_bar]``."""
    ts = arrays.timestamps
    lo = int(np.searchsorted(ts, pd.Timestamp(first_bar).value, side="left"))
    hi = int(np.searchsorted(ts, pd.Timestamp(last_bar).value, side="right"))
    return lo, hi
