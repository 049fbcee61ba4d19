r"""Command line of the bar database: ingest, list what it holds, export a range.

Usage::

    python -m backend.database.db_manager ingest --store data --symbols SPY,VIX
    python -m backend.database.db_manager ingest SPY_15m.csv --symbol SPY --time-column ts
    python -m backend.database.db_manager list [--json]
    python -m backend.database.db_manager export --symbol SPY --start 2024-01-02 \
        --end 2024-06-28 --out spy.csv          # or .parquet, or --store DIR (per session)

``--db`` chooses the database folder (default ``data/database``). The downloader and the
converter feed it: the downloader writes the CSV store, ``ingest --store`` takes it in;
``scripts/convert_newdata_intraday.py --database DIR`` ingests what it converts.

Exit status: 0 done; 1 refused (validation errors, a bar conflicting with a stored one, an
output that exists): every reason is one line naming the file, line or bar and field, and
nothing stored is changed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from backend.data_download.csv_store import list_csv_files, session_csv_path, write_csv_atomic
from backend.data_download.loader import available_symbols
from backend.data_download.schema import DEFAULT_INTERVAL, INTERVALS, NY_TZ, DataIssue, bar_index
from backend.database.bar_database import DEFAULT_DATABASE_DIR, BarDatabase, DatabaseError
from backend.database.ingest import (
    IngestOutcome,
    IngestRefused,
    ingest_files,
    ingest_store,
    one_line,
)
from backend.database.inventory import describe

MAX_ISSUES_SHOWN = 20
"""Issue lines printed per ingest before a count of the rest."""


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m backend.database.db_manager",
        description="Bar database: ingest validated bars, list holdings, export a range.",
    )
    parser.add_argument("--db", type=Path, default=DEFAULT_DATABASE_DIR, help="database folder")
    sub = parser.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="validate and add bars (all or nothing per symbol)")
    ing.add_argument("inputs", nargs="*", type=Path, help="CSV files of one symbol")
    ing.add_argument("--symbol", help="symbol of the input files (required with files)")
    ing.add_argument("--store", type=Path, help="a CSV store root (data/) to take in")
    ing.add_argument("--symbols", help="with --store: comma-separated symbols (default: all)")
    ing.add_argument("--interval", choices=sorted(INTERVALS), default=DEFAULT_INTERVAL)
    ing.add_argument("--source-tz", default=NY_TZ, help="zone of naive timestamps in files")
    ing.add_argument("--stamp", choices=("start", "end"), default="start")
    ing.add_argument("--time-column", help="header of an unusually named timestamp column")
    ing.add_argument("--stamp-offset", help="added to every stamp, e.g. -4min")

    sub.add_parser("list", help="what the database holds").add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )

    exp = sub.add_parser("export", help="write a range of one symbol's bars")
    exp.add_argument("--symbol", required=True)
    exp.add_argument("--interval", choices=sorted(INTERVALS), default=DEFAULT_INTERVAL)
    exp.add_argument("--start", help="first date or timestamp (New York time)")
    exp.add_argument("--end", help="last date (whole day) or timestamp")
    target = exp.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="a new .csv or .parquet file")
    target.add_argument("--store", type=Path, help="a CSV store root: one file per session")
    return parser


def _print_outcome(outcome: IngestOutcome) -> None:
    r = outcome.report
    print(
        f"{r.symbol} {r.interval}: {r.added} bar(s) added, {r.already_stored} already stored "
        f"(identical), years written {r.years_written or 'none'}; from {', '.join(r.sources)}"
    )
    _print_issues(outcome.warnings)


def _print_issues(issues: Sequence[DataIssue]) -> None:
    for issue in issues[:MAX_ISSUES_SHOWN]:
        print(f"  {one_line(issue)}")
    if len(issues) > MAX_ISSUES_SHOWN:
        print(f"  ... and {len(issues) - MAX_ISSUES_SHOWN} more")


def _ingest(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    db = BarDatabase(args.db)
    if args.store is not None:
        if args.inputs or args.symbol:
            parser.error("ingest: give either --store (with --symbols) or files with --symbol")
        symbols = (
            [s.strip() for s in args.symbols.split(",") if s.strip()]
            if args.symbols
            else available_symbols(args.store, args.interval)
        )
        if not symbols:
            parser.error(f"ingest: no {args.interval} symbols in {args.store}/intraday/")
        failed = False
        for symbol in symbols:
            try:
                _print_outcome(ingest_store(db, args.store, symbol, args.interval))
            except IngestRefused as exc:
                print(f"refused: {exc}", file=sys.stderr)
                _print_issues(exc.errors)
                failed = True
            except DatabaseError as exc:
                print(f"refused: {exc}", file=sys.stderr)
                failed = True
        return 1 if failed else 0
    if not args.inputs:
        parser.error("ingest: give CSV files (with --symbol) or --store DIR")
    if not args.symbol:
        parser.error("ingest: --symbol is required with files (it is never taken from a name)")
    offset = None
    if args.stamp_offset is not None:
        try:
            offset = pd.Timedelta(args.stamp_offset)
        except ValueError:
            parser.error(f"--stamp-offset {args.stamp_offset!r}: expected a duration like -4min")
    try:
        pd.Timestamp("2024-01-02").tz_localize(args.source_tz)
    except Exception as exc:  # zoneinfo and pytz raise different types for unknown zones
        parser.error(f"unknown --source-tz {args.source_tz!r}: {exc}")
    try:
        outcome = ingest_files(
            db,
            args.inputs,
            args.symbol,
            args.interval,
            source_tz=args.source_tz,
            stamp=args.stamp,
            time_column=args.time_column,
            stamp_offset=offset,
        )
    except IngestRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        _print_issues(exc.errors)
        return 1
    _print_outcome(outcome)
    return 0


def _list(args: argparse.Namespace) -> int:
    holdings = describe(BarDatabase(args.db))
    if args.json:
        print(json.dumps([h.to_dict() for h in holdings], indent=2))
        return 0
    if not holdings:
        print(f"{args.db}: empty")
        return 0
    head = (
        "symbol",
        "interval",
        "first bar",
        "last bar",
        "bars",
        "sessions",
        "missing bars",
        "missing sessions",
    )
    rows = [
        (
            h.symbol,
            h.interval,
            h.first_bar,
            h.last_bar,
            str(h.bars),
            str(h.sessions),
            str(h.missing_bars),
            str(h.missing_sessions),
        )
        for h in holdings
    ]
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    for name in ("start", "end"):
        value = getattr(args, name)
        if value is not None:
            try:
                pd.Timestamp(value)
            except ValueError:
                parser.error(f"export: --{name} {value!r}: expected a date or timestamp")
    bars = BarDatabase(args.db).load_bars(args.symbol, args.interval, args.start, args.end)
    if len(bars) == 0:
        raise DatabaseError(
            f"{args.symbol.upper()} {args.interval}: no bars between {args.start or 'the first'}"
            f" and {args.end or 'the last'}; nothing written"
        )
    if args.out is not None:
        suffix = args.out.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            parser.error(f"export: --out {args.out}: expected a .csv or .parquet file")
        if args.out.exists():
            raise DatabaseError(f"{args.out}: exists; exports never overwrite, choose a new name")
        if suffix == ".csv":
            write_csv_atomic(bars, args.out)
        else:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            bars.to_parquet(args.out)
        print(f"{len(bars)} bar(s) {bars.index[0]} .. {bars.index[-1]} -> {args.out}")
        return 0
    symbol = args.symbol.upper()
    labels = bar_index(bars).strftime("%Y-%m-%d")
    days = sorted(set(labels))
    clash = [
        p for d in days if (p := session_csv_path(args.store, symbol, d, args.interval)).exists()
    ]
    if clash:
        raise DatabaseError(
            f"{clash[0]}: exists ({len(clash)} of the {len(days)} session file(s)); exports "
            "never overwrite a store, export into an empty one"
        )
    for day, part in bars.groupby(labels):
        write_csv_atomic(part, session_csv_path(args.store, symbol, str(day), args.interval))
    n_files = len(list_csv_files(args.store, symbol, args.interval))
    print(f"{len(bars)} bar(s) in {len(days)} session file(s) -> {args.store} ({n_files} in all)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    # ``--stamp-offset -4min``: argparse would take ``-4min`` for an option.
    for k in range(len(raw) - 1):
        if raw[k] == "--stamp-offset":
            raw[k : k + 2] = [f"--stamp-offset={raw[k + 1]}"]
            break
    args = parser.parse_args(raw)
    try:
        if args.command == "ingest":
            return _ingest(args, parser)
        if args.command == "list":
            return _list(args)
        return _export(args, parser)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
