"""Append new intraday bars from Yahoo Finance into the CSV store, idempotently.

Why it is built this way:

* **Append-only.** A stored bar is never changed or dropped. If Yahoo later serves a
  different value for a bar we already hold (it does revise the last minutes' volume), the
  stored value is kept and the difference is reported as a conflict, so a re-run can never
  silently rewrite history that features or models were built on.
* **Idempotent.** Re-running with the same answer from Yahoo adds nothing and leaves every
  file byte-identical; only sessions that receive new bars are rewritten.
* **Crash-safe.** Everything is fetched before anything is written, and each session file
  is replaced atomically (``csv_store.write_csv_atomic``), so a failed fetch writes nothing
  and an interrupted write leaves every file either old or new, never torn.
* **Causal.** The bar still forming at fetch time (close time after 'now', read *before*
  the request) is dropped; its values would change.
* **~60 days.** Yahoo serves 15-minute (and 5m, 30m) history for about the last 60 days
  only, 1-minute for about 30 days (at most 7-8 days per request) and 60-minute for about
  730 days. Requests reaching further back are clamped with a message; a range entirely
  outside is refused. Older history cannot be downloaded from Yahoo at all: keep the store
  and re-run regularly, or use the synthetic market for experiments.

The network is behind one small protocol, :class:`BarSource`; :class:`YFinanceSource` is
the real implementation (``yfinance.Ticker(sym).history``), tests replay recorded Yahoo
chart responses underneath it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

import numpy as np
import pandas as pd

from backend.data_download.csv_store import (
    list_csv_files,
    read_store_csv,
    session_csv_path,
    write_csv_atomic,
)
from backend.data_download.market_calendar import expected_bar_starts, session_schedule
from backend.data_download.schema import (
    DEFAULT_INTERVAL,
    DEFAULT_SYMBOLS,
    INDEX_NAME,
    INTERVALS,
    NY_TZ,
    OHLCV_COLUMNS,
    VIX_SYMBOL,
    bar_index,
    empty_bar_frame,
    interval_to_timedelta,
)

YAHOO_SYMBOLS: Mapping[str, str] = MappingProxyType({VIX_SYMBOL: "^VIX"})
"""Store symbol -> Yahoo ticker, where they differ."""

YAHOO_MAX_LOOKBACK: Mapping[str, pd.Timedelta] = MappingProxyType(
    {
        "1m": pd.Timedelta(days=30),
        "5m": pd.Timedelta(days=60),
        "15m": pd.Timedelta(days=60),
        "30m": pd.Timedelta(days=60),
        "60m": pd.Timedelta(days=730),
    }
)
"""How far back Yahoo serves each interval (its documented limits, counted from now)."""

LOOKBACK_MARGIN = pd.Timedelta(days=1)
"""Requests stay this far inside Yahoo's limit: Yahoo rejects the whole request otherwise,
and its clock and ours need not agree to the second."""

YAHOO_MAX_SPAN: Mapping[str, pd.Timedelta] = MappingProxyType({"1m": pd.Timedelta(days=7)})
"""Longest range Yahoo accepts in one request, where shorter than the lookback."""

PRICE_RTOL = 1e-7
"""Relative tolerance when comparing a fetched value with a stored one. Stored CSVs keep 10
significant digits (error < 5e-10), a one-cent change on a $600 price is 1.7e-5."""

Clock = Callable[[], pd.Timestamp]


def utc_now() -> pd.Timestamp:
    """The real clock (tz-aware UTC); tests inject their own."""
    return pd.Timestamp.now(tz="UTC")


class DownloadError(RuntimeError):
    """Fetching one symbol failed; nothing was written for it.

    Attributes:
        symbol: The store symbol whose download failed.
    """

    def __init__(self, symbol: str, message: str) -> None:
        self.symbol = symbol
        super().__init__(f"{symbol}: {message}")


class BarSource(Protocol):
    """Where bars come from: the one piece that touches the network."""

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        extended_hours: bool,
    ) -> pd.DataFrame:
        """Bars of ``symbol`` starting in ``[start, end)`` as a bar frame.

        May include the still-forming bar, off-grid or incomplete rows: the caller filters.

        Raises:
            DownloadError: If the source cannot be reached or refuses the request.
        """
        ...


@contextmanager
def _yfinance_raises() -> Iterator[None]:
    """Make yfinance raise instead of logging and returning an empty frame.

    yfinance hides errors by default, so a network failure would look like "no new bars".
    The switch is global in yfinance; it is restored on exit (not thread-safe).
    """
    import yfinance as yf

    debug = yf.config.debug
    previous = debug.hide_exceptions
    debug.hide_exceptions = False
    try:
        yield
    finally:
        debug.hide_exceptions = previous


@dataclass(frozen=True)
class YFinanceSource:
    """Bars from Yahoo's chart API through ``yfinance.Ticker(...).history``.

    Raw prices (``auto_adjust=False``, no repair): intraday bars are not dividend-adjusted by
    Yahoo, and any adjustment would change stored history on every dividend.
    """

    timeout: float = 30.0
    """Seconds to wait for each HTTP request."""
    symbol_map: Mapping[str, str] = field(default_factory=lambda: YAHOO_SYMBOLS)
    """Store symbol -> Yahoo ticker (``VIX`` -> ``^VIX``)."""

    def yahoo_symbol(self, symbol: str) -> str:
        """Yahoo's ticker for a store symbol."""
        return self.symbol_map.get(symbol.upper(), symbol.upper())

    def fetch(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        extended_hours: bool,
    ) -> pd.DataFrame:
        """Fetch ``[start, end)``, split into requests Yahoo accepts; see :class:`BarSource`."""
        span = YAHOO_MAX_SPAN.get(interval, end - start)
        pieces = []
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(chunk_start + span, end)
            pieces.append(self._fetch_one(symbol, interval, chunk_start, chunk_end, extended_hours))
            chunk_start = chunk_end
        non_empty = [p for p in pieces if not p.empty]
        if not non_empty:
            return empty_bar_frame()
        out = pd.concat(non_empty) if len(non_empty) > 1 else non_empty[0]
        return out[~out.index.duplicated(keep="first")].sort_index()

    def _fetch_one(
        self,
        symbol: str,
        interval: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
        extended_hours: bool,
    ) -> pd.DataFrame:
        # Imported here: yfinance is slow to import and only needed when actually fetching.
        import yfinance as yf
        from yfinance.exceptions import YFPricesMissingError

        ticker = self.yahoo_symbol(symbol)
        try:
            with _yfinance_raises():
                raw = yf.Ticker(ticker).history(
                    start=start.to_pydatetime(),
                    end=end.to_pydatetime(),
                    interval=interval,
                    prepost=extended_hours,
                    actions=False,
                    auto_adjust=False,
                    back_adjust=False,
                    repair=False,
                    keepna=False,
                    rounding=False,
                    timeout=self.timeout,
                )
        except YFPricesMissingError as exc:
            if exc.yahoo_reason is None:
                # Yahoo answered with an empty chart: no bars in this window (weekend...).
                return empty_bar_frame()
            raise DownloadError(symbol, f"Yahoo refused {ticker}: {exc.yahoo_reason}") from exc
        except Exception as exc:
            # yfinance surfaces transport (curl/requests), HTTP, JSON and parsing failures as
            # many unrelated types; all mean "no trustworthy answer for this symbol".
            raise DownloadError(
                symbol, f"could not fetch {ticker} from Yahoo: {type(exc).__name__}: {exc}"
            ) from exc
        return _yahoo_to_bar_frame(raw, symbol)


def _yahoo_to_bar_frame(raw: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """Convert yfinance's ``Open..Volume`` frame to a bar frame (NY index, float64, ns)."""
    if raw.empty:
        return empty_bar_frame()
    names = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
    missing = [c for c in names if c not in raw.columns]
    if missing:
        raise DownloadError(symbol, f"Yahoo answer lacks columns {missing}")
    index = raw.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise DownloadError(symbol, "Yahoo answer has no timezone-aware timestamps")
    frame = pd.DataFrame(
        {new: raw[old].to_numpy(dtype=np.float64, na_value=np.nan) for old, new in names.items()},
        index=index.tz_convert(NY_TZ).as_unit("ns").rename(INDEX_NAME),
    )
    return frame


# --------------------------------------------------------------------------- the window


@dataclass(frozen=True)
class DownloadWindow:
    """Bar starts to request: ``[start, end)``, tz-aware UTC."""

    start: pd.Timestamp
    end: pd.Timestamp
    note: str | None = None
    """Set when the request was clamped to what Yahoo serves; shown to the user."""


_PERIOD = re.compile(r"^(\d+)(d|wk)$")


def _parse_period(period: str) -> pd.Timedelta | None:
    """``"max"`` -> None (Yahoo's whole window), ``"10d"``/``"2wk"`` -> a Timedelta."""
    if period == "max":
        return None
    match = _PERIOD.match(period)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"bad period {period!r}: use e.g. '5d', '2wk' or 'max'")
    n, unit = int(match.group(1)), match.group(2)
    return pd.Timedelta(days=n * (7 if unit == "wk" else 1))


def _ny_midnight(day: str | date) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(day)
    except ValueError as exc:
        raise ValueError(f"bad date {day!r}: expected YYYY-MM-DD") from exc
    if ts.tzinfo is not None or ts != ts.normalize():
        raise ValueError(f"bad date {day!r}: expected a date (YYYY-MM-DD), not a time")
    return ts.tz_localize(NY_TZ)


def resolve_window(
    now: pd.Timestamp,
    interval: str = DEFAULT_INTERVAL,
    period: str | None = None,
    start: str | date | None = None,
    end: str | date | None = None,
) -> DownloadWindow:
    """Turn a period or a date range into bar starts to request, within Yahoo's limits.

    Args:
        now: Current time (tz-aware).
        interval: Bar interval, e.g. ``"15m"``.
        period: ``"max"`` (everything Yahoo serves), ``"<N>d"`` or ``"<N>wk"`` back from now.
            Exclusive with ``start``/``end``; the default when neither is given is ``"max"``.
        start: First New York session date, inclusive.
        end: Last New York session date, inclusive (default: up to now).

    Returns:
        The window; ``note`` says when ``start`` was clamped to Yahoo's limit.

    Raises:
        ValueError: On malformed input, an empty range, or a range entirely older than
            Yahoo serves for ``interval``.
    """
    interval_to_timedelta(interval)
    if interval not in YAHOO_MAX_LOOKBACK:
        raise ValueError(f"Yahoo has no {interval!r} bars; use one of {list(YAHOO_MAX_LOOKBACK)}")
    if period is not None and (start is not None or end is not None):
        raise ValueError("give either a period or a start/end range, not both")
    now = pd.Timestamp(now).tz_convert("UTC")
    lookback = YAHOO_MAX_LOOKBACK[interval]
    earliest = now - lookback + LOOKBACK_MARGIN
    limit_text = (
        f"Yahoo serves {interval} bars for about the last {lookback.days} days only "
        f"(earliest now: {earliest.tz_convert(NY_TZ):%Y-%m-%d %H:%M} New York)"
    )
    if start is None and end is None:
        span = _parse_period(period or "max")
        if span is not None and span > lookback - LOOKBACK_MARGIN:
            note = f"period {period} clamped: {limit_text}"
            return DownloadWindow(earliest, now, note)
        return DownloadWindow(earliest if span is None else now - span, now)

    lo = _ny_midnight(start).tz_convert("UTC") if start is not None else earliest
    hi = (_ny_midnight(end) + pd.Timedelta(days=1)).tz_convert("UTC") if end is not None else now
    hi = min(hi, now)
    if hi <= lo:
        raise ValueError(f"empty range: start {start} is not before end {end} (and now)")
    if hi <= earliest:
        raise ValueError(
            f"the range {start}..{end} is entirely older than Yahoo allows: {limit_text}. "
            "Older intraday history cannot be downloaded from Yahoo."
        )
    if lo < earliest:
        note = f"start {start} clamped: {limit_text}"
        return DownloadWindow(earliest, hi, note)
    return DownloadWindow(lo, hi)


# --------------------------------------------------------------------------- the merge


@dataclass(frozen=True)
class BarConflict:
    """A bar Yahoo now reports differently from what the store holds (stored one kept)."""

    timestamp: pd.Timestamp
    column: str
    stored: float
    fetched: float

    def __str__(self) -> str:
        return (
            f"{self.timestamp:%Y-%m-%d %H:%M%z} {self.column}: stored {self.stored:.10g}, "
            f"Yahoo now {self.fetched:.10g} (kept stored)"
        )


@dataclass(frozen=True)
class UpdateResult:
    """What one symbol's update did."""

    symbol: str
    fetched: int
    """Rows Yahoo returned (after yfinance's own cleaning)."""
    added: int
    """New bars written."""
    sessions: tuple[str, ...]
    """Session dates (YYYY-MM-DD) whose files were created or extended."""
    conflicts: tuple[BarConflict, ...]
    """Stored bars Yahoo now reports differently (stored values kept)."""
    forming: int
    """Bars dropped because they had not closed at fetch time."""
    off_grid: int
    """Bars dropped because they are not on the session grid (holiday, extended hours when
    not asked for, VIX's 16:00 bar, unaligned stamps) or outside the window."""
    incomplete: int
    """Bars dropped because a price or the volume was missing."""
    window: DownloadWindow

    def summary(self) -> str:
        """One line for the CLI."""
        if self.sessions:
            span = (
                self.sessions[0]
                if len(self.sessions) == 1
                else (f"{self.sessions[0]}..{self.sessions[-1]}")
            )
            touched = f"{len(self.sessions)} session(s) ({span})"
        else:
            touched = "0 sessions"
        return (
            f"{self.symbol}: +{self.added} bars, {touched} touched, "
            f"{len({c.timestamp for c in self.conflicts})} conflicting bar(s); "
            f"fetched {self.fetched}, dropped {self.forming} forming, "
            f"{self.off_grid} off-grid, {self.incomplete} incomplete"
        )


def _clean(
    fetched: pd.DataFrame,
    interval: str,
    window: DownloadWindow,
    extended_hours: bool,
    now: pd.Timestamp,
) -> tuple[pd.DataFrame, int, int, int]:
    """Keep closed, on-grid, complete bars in the window; count what was dropped."""
    frame = fetched.sort_index()
    frame = frame[~frame.index.duplicated(keep="first")]
    step = interval_to_timedelta(interval)
    closed = frame.index + step <= now
    forming = int((~closed).sum())
    frame = frame[closed]
    in_window = (frame.index >= window.start) & (frame.index < window.end)
    if len(frame):
        days = frame.index.tz_convert(NY_TZ).tz_localize(None).normalize()
        grid = expected_bar_starts(
            session_schedule(days.min(), days.max()), interval, extended_hours
        )
        on_grid = frame.index.isin(grid) & in_window
    else:
        on_grid = np.zeros(0, dtype=bool)
    off_grid = int((~on_grid).sum())
    frame = frame[on_grid]
    complete = frame[list(OHLCV_COLUMNS)].notna().all(axis=1).to_numpy()
    incomplete = int((~complete).sum())
    return frame[complete], forming, off_grid, incomplete


def _is_session_file(path: Path) -> bool:
    try:
        date.fromisoformat(path.stem)
    except ValueError:
        return False
    return True


def _stored_bars(
    data_dir: Path, symbol: str, interval: str, days: Sequence[str]
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Existing per-session files for ``days`` and every consolidated file of the symbol.

    Only files that can hold those days are read: per-session files by name, and any file
    not named like a session (a consolidated CSV, which the layout allows).
    """
    per_session: dict[str, pd.DataFrame] = {}
    for day in days:
        path = session_csv_path(data_dir, symbol, day, interval)
        if path.is_file():
            per_session[day] = read_store_csv(path)
    others = [
        read_store_csv(p)
        for p in list_csv_files(data_dir, symbol, interval)
        if not _is_session_file(p)
    ]
    frames = [f for f in (*per_session.values(), *others) if not f.empty]
    if not frames:
        return per_session, empty_bar_frame()
    everything = pd.concat(frames) if len(frames) > 1 else frames[0]
    return per_session, everything[~everything.index.duplicated(keep="first")]


def _conflicts(stored: pd.DataFrame, fetched: pd.DataFrame) -> list[BarConflict]:
    """Bars present in both whose values differ beyond storage rounding."""
    common = stored.index.intersection(fetched.index)
    out: list[BarConflict] = []
    if common.empty:
        return out
    old = stored.loc[common, list(OHLCV_COLUMNS)]
    new = fetched.loc[common, list(OHLCV_COLUMNS)]
    differs = ~np.isclose(old.to_numpy(), new.to_numpy(), rtol=PRICE_RTOL, atol=0.0)
    for row, col in zip(*np.nonzero(differs), strict=True):
        out.append(
            BarConflict(
                timestamp=common[row],
                column=OHLCV_COLUMNS[col],
                stored=float(old.iat[row, col]),
                fetched=float(new.iat[row, col]),
            )
        )
    return out


def update_symbol(
    symbol: str,
    source: BarSource,
    data_dir: str | Path,
    window: DownloadWindow,
    interval: str = DEFAULT_INTERVAL,
    extended_hours: bool = False,
    clock: Clock = utc_now,
) -> UpdateResult:
    """Fetch one symbol and append the bars the store does not hold yet.

    Args:
        symbol: Store symbol (``VIX`` for Yahoo's ``^VIX``).
        source: Where bars come from.
        data_dir: Root of the store (``<data_dir>/intraday/<SYMBOL>/<interval>/``).
        window: Bar starts to request, see :func:`resolve_window`.
        interval: Bar interval.
        extended_hours: Keep pre/post-market bars (04:00-20:00) instead of regular hours.
        clock: Current time; read once, before the request, so a bar that closed while the
            request was in flight is still treated as forming.

    Returns:
        What was added, skipped and found conflicting.

    Raises:
        DownloadError: If the fetch failed; nothing was written.
        ValueError: If an existing file of the symbol is not in the store's format (it is
            left untouched).
        OSError: If writing failed; files already replaced are complete, the rest untouched.
    """
    symbol = symbol.upper()
    now = clock()
    fetched = source.fetch(symbol, interval, window.start, window.end, extended_hours)
    bars, forming, off_grid, incomplete = _clean(fetched, interval, window, extended_hours, now)

    days = bar_index(bars).tz_convert(NY_TZ).strftime("%Y-%m-%d")
    day_list = sorted(set(days))
    per_session, stored = _stored_bars(Path(data_dir), symbol, interval, day_list)
    conflicts = _conflicts(stored, bars)
    new = bars[~bars.index.isin(stored.index)]
    new_days = new.index.tz_convert(NY_TZ).strftime("%Y-%m-%d")

    # Build every file first, then write in time order: a failure mid-way leaves a store
    # whose files are each complete, and a re-run fills in the rest.
    writes: list[tuple[Path, pd.DataFrame]] = []
    for day in sorted(set(new_days)):
        fresh = new[new_days == day]
        old = per_session.get(day)
        merged = fresh if old is None or old.empty else pd.concat([old, fresh]).sort_index()
        writes.append((session_csv_path(data_dir, symbol, day, interval), merged))
    for path, frame in writes:
        write_csv_atomic(frame, path)

    return UpdateResult(
        symbol=symbol,
        fetched=len(fetched),
        added=len(new),
        sessions=tuple(sorted(set(new_days))),
        conflicts=tuple(conflicts),
        forming=forming,
        off_grid=off_grid,
        incomplete=incomplete,
        window=window,
    )


# --------------------------------------------------------------------------- CLI

_HELP_EPILOG = """\
Yahoo limits: 15m (also 5m, 30m) history reaches back about 60 days only; 1m about 30
days; 60m about 730 days. Longer requests are clamped to what Yahoo serves, with a note;
a range entirely older than that is refused. Run this regularly to build a longer store:
it only ever appends (existing bars are never changed; differing values from Yahoo are
reported as conflicts and the stored value is kept).

Store layout: <data-dir>/intraday/<SYMBOL>/<interval>/YYYY-MM-DD.csv (see Docs/DATA.md).
VIX is fetched as Yahoo's ^VIX.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m backend.data_download.downloader`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m backend.data_download.downloader",
        description="Append new intraday bars from Yahoo Finance into the CSV store.",
        epilog=_HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--symbols",
        nargs="+",
        default=[*DEFAULT_SYMBOLS, VIX_SYMBOL],
        help="store symbols, space or comma separated (default: %(default)s)",
    )
    parser.add_argument("--data-dir", default="data", help="store root (default: %(default)s)")
    parser.add_argument(
        "--interval",
        default=DEFAULT_INTERVAL,
        choices=[i for i in INTERVALS if i in YAHOO_MAX_LOOKBACK],
        help="bar interval (default: %(default)s)",
    )
    parser.add_argument(
        "--period",
        default=None,
        help="how far back from now: 'max' (all Yahoo serves, ~60 days for 15m), '<N>d' or "
        "'<N>wk'; default 'max' when no --start/--end is given",
    )
    parser.add_argument("--start", default=None, help="first session date YYYY-MM-DD")
    parser.add_argument("--end", default=None, help="last session date YYYY-MM-DD (inclusive)")
    parser.add_argument(
        "--extended-hours",
        action="store_true",
        help="keep pre/post-market bars (04:00-20:00 New York) instead of 09:30-16:00",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    source: BarSource | None = None,
    clock: Clock = utc_now,
) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a symbol failed, 2 bad arguments)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    symbols = [s.upper() for item in args.symbols for s in item.split(",") if s.strip()]
    if not symbols:
        parser.error("no symbols given")
    try:
        window = resolve_window(clock(), args.interval, args.period, args.start, args.end)
    except ValueError as exc:
        parser.error(str(exc))
    if window.note:
        print(f"note: {window.note}")
    source = source or YFinanceSource()
    failed = 0
    for symbol in symbols:
        try:
            result = update_symbol(
                symbol, source, args.data_dir, window, args.interval, args.extended_hours, clock
            )
        except (DownloadError, ValueError, OSError) as exc:
            failed += 1
            message = str(exc) if str(exc).startswith(f"{symbol}:") else f"{symbol}: {exc}"
            print(f"FAILED {message}", file=sys.stderr)
            continue
        print(result.summary())
        for conflict in result.conflicts[:5]:
            print(f"  conflict {conflict}")
        if len(result.conflicts) > 5:
            print(f"  ... and {len(result.conflicts) - 5} more conflicting values")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
