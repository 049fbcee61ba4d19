r"""Convert consolidated intraday CSVs (one big file per symbol) into the per-session store.

Usage::

    python scripts/convert_newdata_intraday.py SPY_15min.csv VIX_15min.csv \\
        --data-dir data --stamp end
    python scripts/convert_newdata_intraday.py raw/SPY_15m.csv --extended-hours

Inputs may use any common column spelling (``Datetime``, ``time``, ``Open``, ``Adj Close``
ignored, an extra ``Symbol`` column, ...), any row order, UTC offsets or naive stamps.
Naive stamps are read in ``--source-tz`` (America/New_York unless told otherwise); stamps
marking bar ENDS (``--stamp end``: 09:45 for the first regular bar) are moved back one
interval to the project's bar-start convention. Every row is validated like the loader does
(``backend/data_download/validation.py``) and problems are printed with file and line.

Output: ``<data-dir>/intraday/<SYMBOL>/<interval>/<YYYY-MM-DD>.csv``, one file per session,
timestamps with their UTC offset, written atomically (``csv_store.write_csv_atomic``). A
session file that already exists with the same bars is left alone; one with different bars
is reported and skipped unless ``--overwrite``. Input files are only read.

Finer bars are aggregated: ``--input-interval 5m`` (or ``1m``) reads and validates the rows
at that interval, then builds ``--interval`` bars (``backend/data_download/resample.py``:
labelled by bar start, anchored at the session open, OHLC first/max/min/last, volume
summed; groups missing a fine bar are dropped unless ``--incomplete keep``). Sources that
name their time column unusually take ``--time-column`` (``time_utc_naive``; a column
name containing ``utc`` makes naive stamps UTC unless ``--source-tz`` says otherwise), and
sources that stamp bars a fixed time after their start take ``--stamp-offset -4min``
(added to every stamp). The symbol comes from ``--symbol`` or from a file name that is a
ticker (``SPY.csv``, ``SPY_5m.csv``, ``spy-15min.csv``); any other name (``prices.csv``,
``bars_5m.csv``) is refused rather than guessed, and an inferred symbol is always printed.

Example, 5-minute bars stamped 4 minutes after their start in naive UTC::

    python scripts/convert_newdata_intraday.py spy_5m_export.csv --symbol SPY \
        --input-interval 5m --time-column time_utc_naive --stamp-offset -4min

Exit status: 0 when everything was converted (warnings allowed; with ``--drop-bad-rows``,
rows with errors too), 1 when an input has errors (nothing of that symbol is written unless
``--drop-bad-rows``) or a differing session file was skipped, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from backend.data_download.csv_store import session_csv_path, symbol_dir, write_csv_atomic
from backend.data_download.loader import parse_csvs
from backend.data_download.resample import RULE, resample_bars
from backend.data_download.row_checks import ZERO_VOLUME_SYMBOLS
from backend.data_download.schema import (
    DEFAULT_INTERVAL,
    INTERVALS,
    NY_TZ,
    OHLCV_COLUMNS,
    Severity,
)
from backend.data_download.validation import validate_bars
from backend.database.bar_database import BarDatabase, DatabaseError

_SYMBOL_RE = re.compile(r"^\^?[A-Za-z][A-Za-z0-9.\-]{0,14}$")
_TICKER_STEM_RE = re.compile(r"^\^?[A-Z][A-Z0-9.]{0,9}$")
_INTERVAL_TAG_RE = re.compile(
    r"^(?P<ticker>\^?[A-Za-z][A-Za-z0-9.]{0,9})[_\- ](?P<n>\d+)\s*"
    r"(?P<unit>m|min|mins|minute|minutes|h|hr|hour|d|day|daily)$",
    re.IGNORECASE,
)
_NOT_TICKERS = frozenset(
    {"DATA", "BARS", "PRICES", "PRICE", "EXPORT", "OUTPUT", "INPUT", "FILE", "CSV", "TEST",
     "INTRADAY", "OHLC", "OHLCV", "CANDLES", "RAW", "NEW", "SAMPLE", "DOWNLOAD", "MINUTE"}
)  # fmt: skip
_SESSION_NAME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\.csv$")
_SAME_RTOL = 1e-9


def infer_symbol(path: str | Path) -> str | None:
    """Symbol from a file name that is a ticker, else ``None`` (then ``--symbol`` is needed).

    Accepted: an upper-case ticker stem (``SPY.csv``, ``BRK.B.csv``, ``^VIX.csv``) or a
    ticker followed by an interval tag in any case (``SPY_15m.csv``, ``spy-15min.csv``,
    ``^VIX_15min.csv``). Anything else (``prices.csv``, ``bars_5m.csv``, ``export.csv``,
    ``15m_data.csv``) is not guessed: a wrong symbol would file bars under another ticker.
    """
    stem = Path(path).stem
    tagged = _INTERVAL_TAG_RE.match(stem)
    if tagged is not None:
        ticker = tagged.group("ticker").upper().lstrip("^")
    elif _TICKER_STEM_RE.match(stem):
        ticker = stem.lstrip("^")
    else:
        return None
    return None if ticker in _NOT_TICKERS else ticker


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="Convert consolidated intraday CSVs into per-session store files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="consolidated CSV file(s)")
    parser.add_argument(
        "--symbol", help="symbol for all inputs (default: from each file name, SPY_15m.csv)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="store root")
    parser.add_argument(
        "--source-tz",
        default=None,
        help="zone of naive timestamps (stamps with a UTC offset keep their offset); default "
        f"{NY_TZ}, or UTC when --time-column names a column containing 'utc'",
    )
    parser.add_argument(
        "--time-column",
        help="header of the timestamp column when it has an unusual name (time_utc_naive)",
    )
    parser.add_argument(
        "--stamp-offset",
        default=None,
        help="added to every stamp to get the bar start, e.g. -4min for bars stamped 4 "
        "minutes after their start (must be shorter than the input interval)",
    )
    parser.add_argument(
        "--input-interval",
        choices=sorted(INTERVALS),
        default=None,
        help="interval of the input rows when finer than --interval (1m, 5m): they are "
        "validated at that interval and aggregated (default: same as --interval)",
    )
    parser.add_argument(
        "--incomplete",
        choices=("drop", "keep"),
        default="drop",
        help="resampling: drop groups missing a fine bar, or build them from the bars present",
    )
    parser.add_argument(
        "--stamp",
        choices=("start", "end"),
        default="start",
        help="whether stamps mark bar start or bar end (end: shifted back one interval)",
    )
    parser.add_argument("--interval", choices=sorted(INTERVALS), default=DEFAULT_INTERVAL)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace session files whose bars differ"
    )
    parser.add_argument(
        "--extended-hours",
        action="store_true",
        help="keep pre- and post-market bars (04:00-20:00 New York)",
    )
    parser.add_argument(
        "--database",
        type=Path,
        default=None,
        help="also add the converted bars to this bar database (backend/database; e.g. "
        "data/database): identical bars already there are skipped, differing ones refused",
    )
    parser.add_argument(
        "--drop-bad-rows",
        action="store_true",
        help="write the valid rows even when some rows have errors",
    )
    return parser


@dataclass
class SymbolOutcome:
    """What converting one symbol did.

    Attributes:
        symbol: Ticker.
        n_errors: Error issues found in the inputs.
        written: Session files created or replaced.
        unchanged: Session files that already held the same bars.
        skipped: Session files left alone because their bars differ (no ``--overwrite``).
        database_refused: ``--database`` refused the bars (they conflict with stored ones).
    """

    symbol: str
    n_errors: int = 0
    dropped_errors: bool = False
    written: int = 0
    unchanged: int = 0
    skipped: int = 0
    database_refused: bool = False

    @property
    def failed(self) -> bool:
        """Whether this symbol makes the run exit with status 1."""
        return (
            (self.n_errors > 0 and not self.dropped_errors)
            or self.skipped > 0
            or self.database_refused
        )


def _same_bars(path: Path, new: pd.DataFrame, interval: str) -> bool:
    """Whether the existing file at ``path`` holds exactly the bars of ``new``.

    Compares values rather than bytes, so a file written by another tool with different
    number formatting but the same bars counts as identical. A file with any error never
    does.
    """
    (existing,) = parse_csvs([path], interval=interval)
    if any(i.severity is Severity.ERROR for i in existing.issues) or existing.error.any():
        return False
    old = existing.frame.sort_values("timestamp")
    if len(old) != len(new):
        return False
    old_ns = pd.DatetimeIndex(old["timestamp"]).as_unit("ns").asi8  # instants, UTC ns
    if not np.array_equal(old_ns, pd.DatetimeIndex(new.index).as_unit("ns").asi8):
        return False
    return bool(
        np.allclose(
            old[list(OHLCV_COLUMNS)].to_numpy(),
            new[list(OHLCV_COLUMNS)].to_numpy(),
            rtol=_SAME_RTOL,
            atol=0.0,
        )
    )


def convert_symbol(
    symbol: str,
    inputs: Sequence[Path],
    args: argparse.Namespace,
    echo: Callable[[str], None] = print,
) -> SymbolOutcome:
    """Validate the inputs of one symbol and write its session files."""
    outcome = SymbolOutcome(symbol)
    folder = symbol_dir(args.data_dir, symbol, args.interval)
    names = ", ".join(str(p) for p in inputs)
    echo(
        f"{symbol}: {names} -> {folder} (stamps mark bar {args.stamp}; naive times in "
        f"{args.source_tz}; {'extended hours' if args.extended_hours else 'regular session'}"
        + (f"; stamps shifted by {args.stamp_offset}" if args.stamp_offset is not None else "")
        + ")"
    )
    read_interval = args.input_interval or args.interval
    parsed = parse_csvs(
        inputs,
        source_tz=args.source_tz,
        stamp=args.stamp,
        interval=read_interval,
        symbol=symbol,
        time_column=args.time_column,
        stamp_offset=args.stamp_offset,
    )
    n_rows = sum(len(p.frame) for p in parsed)
    result = validate_bars(
        parsed,
        read_interval,
        files=[str(p) for p in inputs],
        extended_hours=args.extended_hours,
        allow_zero_volume=symbol.upper().lstrip("^") in ZERO_VOLUME_SYMBOLS,
        where=names,
    )
    for issue in result.issues:
        echo(f"  {issue}")
    outcome.n_errors = len(result.errors)
    bars = result.bars
    if read_interval != args.interval:
        echo(f"  {read_interval} -> {args.interval}: {RULE.format(incomplete=args.incomplete)}")
        bars, report = resample_bars(
            bars,
            read_interval,
            args.interval,
            extended_hours=args.extended_hours,
            incomplete=args.incomplete,
        )
        echo(f"  {report.describe()}")
    echo(
        f"  rows read {n_rows}; valid bars in session {len(bars)} over {result.n_sessions} "
        f"session(s); missing bars {result.n_missing_bars}; errors {outcome.n_errors}"
    )
    if outcome.n_errors and not args.drop_bad_rows:
        echo(f"  nothing written for {symbol}: fix the errors above or pass --drop-bad-rows")
        return outcome
    outcome.dropped_errors = outcome.n_errors > 0
    if folder.is_dir():
        foreign = [p.name for p in folder.glob("*.csv") if not _SESSION_NAME_RE.match(p.name)]
        if foreign:
            echo(
                f"  note: {folder} also holds {', '.join(sorted(foreign))}; the loader reads "
                "those too, so bars in both are duplicates"
            )
    days = bars.index.strftime("%Y-%m-%d").to_numpy(dtype=str)
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]][: len(days)])
    ends = np.r_[starts[1:], len(days)].astype(np.int64)
    differing: list[str] = []
    for first, stop in zip(starts, ends, strict=True):
        part = bars.iloc[first:stop]
        path = session_csv_path(args.data_dir, symbol, days[first], args.interval)
        if path.exists():
            if _same_bars(path, part, args.interval):
                outcome.unchanged += 1
                continue
            if not args.overwrite:
                outcome.skipped += 1
                differing.append(path.name)
                continue
        write_csv_atomic(part, path)
        outcome.written += 1
    echo(
        f"  wrote {outcome.written} session file(s); {outcome.unchanged} already identical; "
        f"{outcome.skipped} skipped"
    )
    if differing:
        shown = ", ".join(differing[:10]) + (", ..." if len(differing) > 10 else "")
        echo(
            f"  {len(differing)} existing session file(s) hold different bars and were left "
            f"alone (pass --overwrite to replace them): {shown}"
        )
    if args.database is not None:
        try:
            added = BarDatabase(args.database).add_bars(
                symbol, args.interval, bars, sources=[str(p) for p in inputs]
            )
        except DatabaseError as exc:
            outcome.database_refused = True
            echo(f"  database {args.database}: refused: {exc}")
        else:
            echo(
                f"  database {args.database}: {added.added} bar(s) added, "
                f"{added.already_stored} already stored"
            )
    return outcome


def _join_negative_offset(argv: Sequence[str]) -> list[str]:
    """Let ``--stamp-offset -4min`` work (argparse would read ``-4min`` as an option)."""
    out: list[str] = []
    items = list(argv)
    k = 0
    while k < len(items):
        if items[k] == "--stamp-offset" and k + 1 < len(items):
            out.append(f"--stamp-offset={items[k + 1]}")
            k += 2
            continue
        out.append(items[k])
        k += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the conversion; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(_join_negative_offset(sys.argv[1:] if argv is None else argv))
    if args.source_tz is None:
        utc_column = args.time_column is not None and "utc" in args.time_column.lower()
        args.source_tz = "UTC" if utc_column else NY_TZ
    if args.input_interval is not None:
        fine = pd.Timedelta(INTERVALS[args.input_interval])
        coarse = pd.Timedelta(INTERVALS[args.interval])
        if fine > coarse or coarse % fine != pd.Timedelta(0):
            parser.error(
                f"--input-interval {args.input_interval} cannot be aggregated into --interval "
                f"{args.interval} (needs a whole multiple)"
            )
    if args.stamp_offset is not None:
        try:
            args.stamp_offset = pd.Timedelta(args.stamp_offset)
        except ValueError:
            parser.error(f"--stamp-offset {args.stamp_offset!r}: expected a duration like -4min")
        step = pd.Timedelta(INTERVALS[args.input_interval or args.interval])
        if abs(args.stamp_offset) >= step:
            parser.error(
                f"--stamp-offset {args.stamp_offset}: must be shorter than the input interval "
                f"({step}); use --stamp end for stamps at the bar end"
            )
    try:
        pd.Timestamp("2024-01-02").tz_localize(args.source_tz)
    except Exception as exc:  # zoneinfo and pytz raise different types for unknown zones
        parser.error(f"unknown --source-tz {args.source_tz!r}: {exc}")
    if args.symbol is not None and not _SYMBOL_RE.match(args.symbol):
        parser.error(f"--symbol {args.symbol!r} is not a ticker (letters, digits, '.', '-')")
    groups: dict[str, list[Path]] = {}
    for path in args.inputs:
        if not path.is_file():
            parser.error(f"input not found: {path}")
        symbol = args.symbol.upper().lstrip("^") if args.symbol else infer_symbol(path)
        if symbol is None:
            parser.error(
                f"cannot tell the symbol from {path.name!r} (not TICKER.csv or "
                "TICKER_<interval>.csv); pass --symbol"
            )
        if not args.symbol:
            print(f"{path.name}: symbol {symbol} taken from the file name (--symbol to override)")
        groups.setdefault(symbol, []).append(path)
    outcomes = [convert_symbol(symbol, paths, args) for symbol, paths in groups.items()]
    return 1 if any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
