"""Check the intraday CSV store and print, per symbol, what is there and what is wrong.

Usage::

    python scripts/tmp_dataset_check.py                      # every symbol under data/
    python scripts/tmp_dataset_check.py --data-dir D --symbols SPY,VIX --extended-hours

For each symbol: first and last bar (New York time), bar count, sessions, missing bars and
sessions, then every problem found, each naming file and line (``validation.py`` lists the
checks and which are errors). ``--data-dir`` holds ``intraday/<SYMBOL>/<interval>/``.

The check only reads: nothing is written into ``--data-dir`` unless ``--use-cache`` asks
for the parquet cache under ``<data-dir>/.cache/`` to be read and refreshed.

Exit status: 0 when no file has an error (warnings allowed), 1 when any file has one or a
symbol has no bars at all (a header-only file is not data), 2 for bad arguments or when
there is nothing to check.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from backend.data_download.loader import (
    SessionKind,
    SymbolReport,
    available_symbols,
    check_symbol,
)
from backend.data_download.schema import DEFAULT_INTERVAL, INTERVALS


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="Validate the intraday CSV store and report problems by file and line.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="folder holding intraday/"
    )
    parser.add_argument(
        "--symbols",
        default=None,
        help="comma-separated symbols (default: every symbol folder found)",
    )
    parser.add_argument("--interval", choices=sorted(INTERVALS), default=DEFAULT_INTERVAL)
    parser.add_argument(
        "--extended-hours",
        action="store_true",
        help="check 04:00-20:00 bars instead of the regular session",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--use-cache",
        action="store_true",
        help="read and refresh the parquet cache under <data-dir>/.cache/ (writes there)",
    )
    cache.add_argument(
        "--no-cache",
        action="store_true",
        help="re-parse every CSV and write nothing (the default; kept for old scripts)",
    )
    return parser


def format_report(report: SymbolReport) -> list[str]:
    """Human-readable lines for one symbol."""
    status = "ERRORS" if report.errors else ("warnings" if report.issues else "ok")
    lines = [
        f"== {report.symbol} {report.interval} ({report.session} session): {status}; "
        f"{len(report.files)} file(s)"
    ]
    if report.first is not None and report.last is not None:
        lines.append(
            f"   first {report.first:%Y-%m-%d %H:%M %Z}   last {report.last:%Y-%m-%d %H:%M %Z}"
            "   (New York time, bar start)"
        )
    lines.append(
        f"   bars {report.n_bars}   sessions {report.n_sessions}   missing bars "
        f"{report.n_missing_bars}   missing sessions {report.n_missing_sessions}   "
        f"errors {len(report.errors)}   warnings {len(report.warnings)}"
    )
    lines += [f"   {issue}" for issue in report.issues]
    return lines


def main(argv: Sequence[str] | None = None, echo: Callable[[str], None] = print) -> int:
    """Run the check; returns the exit status."""
    args = build_parser().parse_args(argv)
    session: SessionKind = "extended" if args.extended_hours else "regular"
    if args.symbols:
        symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    else:
        symbols = available_symbols(args.data_dir, args.interval)
    if not symbols:
        echo(
            f"nothing to check: no {args.interval} symbol folders under "
            f"{args.data_dir / 'intraday'} (expected intraday/<SYMBOL>/{args.interval}/*.csv)"
        )
        return 2
    failed = []
    for symbol in symbols:
        report = check_symbol(
            symbol, args.interval, args.data_dir, session, use_cache=args.use_cache
        )
        for line in format_report(report):
            echo(line)
        if report.errors:
            failed.append(symbol)
        elif report.n_bars == 0:
            echo(f"   no bars: {symbol} has no {args.interval} bars in the {session} session")
            failed.append(symbol)
    summary = f"checked {len(symbols)} symbol(s): "
    summary += f"errors in {', '.join(failed)}" if failed else "no errors"
    echo(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
