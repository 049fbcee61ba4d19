"""Bar feeds: replay pacing and the live polling feed (forming bars, duplicates, VIX)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)
from backend.execution.feeds import LivePollingFeed, ReplayFeed

NY = "America/New_York"


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return generate_synthetic_market(
        SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=2, seed=1)
    )


def test_replay_speed_factor_and_as_fast_as_possible(frames: dict[str, pd.DataFrame]) -> None:
    sleeps: list[float] = []
    bars = list(ReplayFeed(frames["SPY"].iloc[:4], speed=60.0, sleep=sleeps.append))
    assert len(bars) == 4 and sleeps == [15.0, 15.0, 15.0]  # 15 min / 60
    sleeps.clear()
    assert len(list(ReplayFeed(frames["SPY"].iloc[:4], speed=None, sleep=sleeps.append))) == 4
    assert sleeps == []
    synthetic = list(ReplayFeed.from_synthetic("SPY", start="2024-10-01", n_sessions=2, seed=1))
    assert len(synthetic) == 52 and np.isfinite(synthetic[-1].vix)


class _FakeSource:
    """Returns stored bars up to ``now`` (the forming bar included), duplicated and shuffled."""

    def __init__(self, frames: dict[str, pd.DataFrame], clock: dict[str, pd.Timestamp]) -> None:
        self.frames = frames
        self.clock = clock
        self.calls: list[str] = []

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        extended_hours: bool,
    ) -> pd.DataFrame:
        self.calls.append(symbol)
        frame = self.frames[symbol]
        frame = frame.loc[(frame.index >= start) & (frame.index <= self.clock["now"])]
        off_grid = frame.iloc[-1:].copy()
        off_grid.index = off_grid.index + pd.Timedelta(minutes=7)
        return pd.concat([frame.iloc[::-1], frame.iloc[-3:], off_grid])


def test_live_feed_drops_forming_duplicate_and_seen_bars(frames: dict[str, pd.DataFrame]) -> None:
    clock = {"now": pd.Timestamp("2024-10-01 10:40", tz=NY)}
    source = _FakeSource(frames, clock)
    feed = LivePollingFeed(source, "SPY", include_vix=True, clock=lambda: clock["now"])
    first = feed.poll()
    # 09:30..10:15 are closed; the 10:30 bar is forming at 10:40.
    assert [b.timestamp.strftime("%H:%M") for b in first] == ["09:30", "09:45", "10:00", "10:15"]
    assert source.calls == ["SPY", "VIX"]
    vix = frames["VIX"]
    assert first[-1].vix == vix.loc[pd.Timestamp("2024-10-01 10:15", tz=NY), "close"]
    assert feed.poll() == []  # nothing new: nothing re-emitted
    clock["now"] = pd.Timestamp("2024-10-01 11:01", tz=NY)
    second = feed.poll()
    assert [b.timestamp.strftime("%H:%M") for b in second] == ["10:30", "10:45"]
