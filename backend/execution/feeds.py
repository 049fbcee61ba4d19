"""Bar feeds for the live trader: replay (CSV store or synthetic) and live polling.

A feed hands out **closed** bars only (a bar labelled ``t`` closes at ``t + 15min``), in
New York time, regular session, each with its as-of ``vix`` when the feature config uses
VIX. The trader still guards against duplicates and out-of-order bars itself: feeds are
data, not trust.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backend.data_download.downloader import BarSource, Clock, utc_now
from backend.data_download.loader import join_vix_asof, load_market
from backend.data_download.market_calendar import session_bar_layout
from backend.data_download.schema import NY_TZ, bar_index
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)

logger = logging.getLogger(__name__)

BAR = pd.Timedelta(minutes=15)
DEFAULT_POLL_LOOKBACK = pd.Timedelta(days=5)
"""How far back a live poll fetches (enough to heal a missed poll over a weekend)."""


@dataclass(frozen=True)
class Bar:
    """One closed bar."""

    timestamp: pd.Timestamp
    """Bar start, New York time."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    vix: float = float("nan")

    @property
    def close_time(self) -> pd.Timestamp:
        """When the bar closed (start + 15 minutes)."""
        return self.timestamp + BAR

    def as_dict(self) -> dict[str, float]:
        """Market-frame columns of this bar."""
        return {
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "vix": self.vix,
        }


def bars_from_frame(market: pd.DataFrame) -> list[Bar]:
    """Convert a market frame (with or without ``vix``) to bars."""
    vix = market["vix"].to_numpy(dtype=np.float64) if "vix" in market else None
    out = []
    stamps = bar_index(market, "market frame").tz_convert(NY_TZ)
    for i, (ts, (_, row)) in enumerate(zip(stamps, market.iterrows(), strict=True)):
        out.append(
            Bar(
                ts,
                float(row["open"]),
                float(row["high"]),
                float(row["low"]),
                float(row["close"]),
                float(row["volume"]),
                float(vix[i]) if vix is not None else float("nan"),
            )
        )
    return out


class ReplayFeed:
    """Replay a market frame bar by bar, in real time scaled by ``speed`` or at once.

    Args:
        market: Market frame (bar frame plus ``vix``).
        speed: ``None`` = as fast as possible; otherwise sleep ``15 min / speed`` between bars.
        sleep: Injected for tests.
    """

    def __init__(
        self,
        market: pd.DataFrame,
        speed: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.market = market
        self.speed = speed
        self._sleep = sleep

    @classmethod
    def from_store(
        cls,
        symbol: str,
        data_dir: str,
        start: str | None = None,
        end: str | None = None,
        *,
        include_vix: bool = True,
        speed: float | None = None,
    ) -> ReplayFeed:
        """Replay the CSV store through :func:`load_market`."""
        market = load_market(
            symbol, start=start, end=end, data_dir=data_dir, include_vix=include_vix
        )
        return cls(market, speed)

    @classmethod
    def from_synthetic(
        cls,
        symbol: str,
        *,
        start: str = "2024-10-01",
        n_sessions: int = 10,
        seed: int = 25,
        include_vix: bool = True,
        speed: float | None = None,
    ) -> ReplayFeed:
        """Replay the seeded synthetic market."""
        frames = generate_synthetic_market(
            SyntheticMarketConfig(start=start, end=None, n_sessions=n_sessions, seed=seed)
        )
        market = frames[symbol.upper()]
        if include_vix:
            market = join_vix_asof(market, frames["VIX"])
        return cls(market, speed)

    def __iter__(self) -> Iterator[Bar]:
        """Yield every bar once, pacing by ``speed``."""
        delay = None if self.speed is None else BAR.total_seconds() / self.speed
        for i, bar in enumerate(bars_from_frame(self.market)):
            if delay is not None and i > 0:
                self._sleep(delay)
            yield bar


class LivePollingFeed:
    """Poll a :class:`BarSource` (the yfinance downloader's) for newly closed bars.

    Each :meth:`poll` fetches a trailing window, drops the still-forming bar (close after
    ``now``), bars off the regular-session grid and bars already handed out, and joins the
    as-of VIX close.

    Args:
        source: The bar source (``YFinanceSource()`` live; a fake in tests).
        symbol: Traded symbol.
        include_vix: Also fetch ``VIX`` and join it as-of.
        clock: Current time (tz-aware).
        lookback: How far back each poll fetches.
    """

    def __init__(
        self,
        source: BarSource,
        symbol: str,
        *,
        include_vix: bool = True,
        clock: Clock = utc_now,
        lookback: pd.Timedelta = DEFAULT_POLL_LOOKBACK,
    ) -> None:
        self.source = source
        self.symbol = symbol.upper()
        self.include_vix = include_vix
        self.clock = clock
        self.lookback = lookback
        self.last_emitted: pd.Timestamp | None = None

    def poll(self) -> list[Bar]:
        """New closed bars since the last poll, oldest first (may be empty).

        Raises:
            DownloadError: if the source fails (the caller logs it; the stale guard trips
                if it persists).
        """
        now = self.clock()
        start = now - self.lookback
        end = now + BAR
        bars = self.source.fetch(self.symbol, "15m", start, end, False)
        if bars.empty:
            return []
        bars = bars[~bars.index.duplicated(keep="first")].sort_index()
        bars.index = bars.index.tz_convert(NY_TZ)
        bars = bars[bars.index + BAR <= now]  # drop the forming bar
        if bars.empty:
            return []
        layout = session_bar_layout(bars.index)
        on_grid = (layout["bars_in_session"] > 0) & (layout["bar_in_session"] >= 0)
        on_grid &= layout["bar_in_session"] < layout["bars_in_session"]
        bars = bars[on_grid.to_numpy()]
        if self.include_vix and not bars.empty:
            vix = self.source.fetch("VIX", "15m", start, end, False)
            vix = vix[~vix.index.duplicated(keep="first")].sort_index()
            vix = vix[vix.index.tz_convert(NY_TZ) + BAR <= now]
            bars = join_vix_asof(bars, vix)
        if self.last_emitted is not None:
            bars = bars[bars.index > self.last_emitted]
        if bars.empty:
            return []
        self.last_emitted = pd.Timestamp(bars.index[-1])
        return bars_from_frame(bars)
