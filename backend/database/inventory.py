"""What the database holds: per symbol and interval, first/last bar, sessions and gaps.

Counts come from one DuckDB aggregate over every partition (bars per session); the gaps
are judged against the exchange calendar (``market_calendar``), like the loader's
``missing_bars`` / ``missing_sessions`` warnings: a session with fewer bars than its
schedule has missing bars; a trading day between the first and last session without any
bar is a missing session.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from backend.data_download.market_calendar import session_schedule
from backend.data_download.schema import NY_TZ, interval_to_timedelta
from backend.database.bar_database import BarDatabase


@dataclass(frozen=True)
class Holding:
    """One symbol and interval in the database.

    Attributes:
        symbol: Ticker.
        interval: Bar length.
        first_bar: Start of the first bar (New York time, ISO-8601).
        last_bar: Start of the last bar.
        bars: Bars stored.
        sessions: Sessions with at least one bar.
        missing_bars: Bars absent inside those sessions (against the calendar).
        missing_sessions: Trading days between the first and last session with no bar.
        years: Partitions (New York years).
    """

    symbol: str
    interval: str
    first_bar: str
    last_bar: str
    bars: int
    sessions: int
    missing_bars: int
    missing_sessions: int
    years: list[int]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields."""
        return asdict(self)


def describe(db: BarDatabase) -> list[Holding]:
    """Every holding of the database, sorted by symbol and interval (empty when none)."""
    pairs = db.holdings()
    if not pairs:
        return []
    per_session = db.sql(
        "SELECT symbol, interval, session, count(*) AS n, min(epoch_ns(timestamp)) AS first_ns, "
        "max(epoch_ns(timestamp)) AS last_ns FROM bars GROUP BY ALL ORDER BY ALL"
    )
    out = []
    for (symbol, interval), rows in per_session.groupby(["symbol", "interval"], sort=True):
        days = pd.DatetimeIndex(pd.to_datetime(rows["session"]))
        sched = session_schedule(days.min(), days.max())
        step_ns = interval_to_timedelta(str(interval)).value
        length_ns = pd.DatetimeIndex(sched["close"]).asi8 - pd.DatetimeIndex(sched["open"]).asi8
        expected = pd.Series(length_ns // step_ns, index=sched.index)
        present = expected.reindex(days).fillna(0).astype(np.int64).to_numpy()
        counts = rows["n"].to_numpy(dtype=np.int64)
        first = pd.Timestamp(int(rows["first_ns"].min()), tz="UTC").tz_convert(NY_TZ)
        last = pd.Timestamp(int(rows["last_ns"].max()), tz="UTC").tz_convert(NY_TZ)
        out.append(
            Holding(
                symbol=str(symbol),
                interval=str(interval),
                first_bar=first.isoformat(sep=" "),
                last_bar=last.isoformat(sep=" "),
                bars=int(counts.sum()),
                sessions=len(days),
                missing_bars=int(np.clip(present - counts, 0, None).sum()),
                missing_sessions=int(len(sched.index.difference(days))),
                years=db.years(str(symbol), str(interval)),
            )
        )
    return out
