"""Bringing bars into the database through the loader's own validation, all or nothing.

Two sources, both validated exactly as ``loader.load_bars`` validates a store (the same
``csv_parsing`` / ``row_checks`` / ``calendar_checks`` code, regular session):

* CSV files of one symbol (:func:`ingest_files`), with the converter's reading options
  (``--time-column``, ``--stamp-offset``, ``--stamp end``, ``--source-tz``);
* a CSV store folder ``<data_dir>/intraday/<SYMBOL>/<interval>/`` as the downloader, the
  converter and the synthetic market write it (:func:`ingest_store`).

Any validation error refuses the whole ingest (:class:`IngestRefused`, one line per error
naming file, line and field); warnings (missing bars, bars outside the session, ...) are
reported and do not stop it. The symbol is always given, never taken from a file name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from backend.data_download.csv_parsing import ParsedRows
from backend.data_download.loader import load_bars_with_issues, parse_csvs
from backend.data_download.row_checks import ZERO_VOLUME_SYMBOLS
from backend.data_download.schema import (
    NY_TZ,
    DataIssue,
    DataValidationError,
    Severity,
)
from backend.data_download.validation import validate_bars
from backend.database.bar_database import (
    AddReport,
    BarDatabase,
    DatabaseError,
    check_interval_name,
    check_symbol_name,
)

MAX_LINE_CHARS = 300
"""Longest one-line message about an issue (a broken quote can make a 'cell' of many rows)."""


def one_line(issue: DataIssue | str) -> str:
    """``issue`` as one line: line breaks escaped, cut at :data:`MAX_LINE_CHARS`."""
    text = str(issue).replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= MAX_LINE_CHARS else text[: MAX_LINE_CHARS - 3] + "..."


class IngestRefused(DatabaseError):
    """Validation found errors: nothing was stored. ``errors`` holds each one."""

    def __init__(self, what: str, errors: Sequence[DataIssue]) -> None:
        self.errors = list(errors)
        first = one_line(self.errors[0]) if self.errors else "no bars"
        super().__init__(
            f"{what}: {len(self.errors)} data error(s), nothing stored; first: {first}"
        )


@dataclass
class IngestOutcome:
    """What one ingest did: the database's report and the validation warnings."""

    report: AddReport
    warnings: list[DataIssue] = field(default_factory=list)


def _zero_volume_ok(symbol: str) -> bool:
    return symbol.lstrip("^") in ZERO_VOLUME_SYMBOLS


def _locator(parsed: Sequence[ParsedRows]) -> dict[int, str]:
    """UTC nanoseconds of each parsed row -> ``file:line`` of its first copy."""
    out: dict[int, str] = {}
    for part in parsed:
        frame = part.frame
        ok = frame["timestamp"].notna().to_numpy()
        ns = frame["timestamp"].to_numpy(dtype="datetime64[ns]")[ok].astype(np.int64)
        for stamp, file, line in zip(
            ns, frame["file"].to_numpy()[ok], frame["line"].to_numpy()[ok], strict=True
        ):
            out.setdefault(int(stamp), f"{file}:{int(line)}")
    return out


def ingest_files(
    db: BarDatabase,
    paths: Sequence[str | Path],
    symbol: str,
    interval: str = "15m",
    *,
    source_tz: str = NY_TZ,
    stamp: Literal["start", "end"] = "start",
    time_column: str | None = None,
    stamp_offset: pd.Timedelta | None = None,
) -> IngestOutcome:
    """Validate CSV files of one symbol and add their bars (all or nothing).

    Raises:
        IngestRefused: A validation error in any file.
        DatabaseError: A bar conflicting with a stored one, a bad symbol or interval, a
            missing input file.
    """
    symbol, interval = check_symbol_name(symbol), check_interval_name(interval)
    files = [Path(p) for p in paths]
    for path in files:
        if not path.is_file():
            raise DatabaseError(f"{path}: no such file")
    parsed = parse_csvs(
        files,
        source_tz=source_tz,
        stamp=stamp,
        interval=interval,
        symbol=symbol,
        time_column=time_column,
        stamp_offset=stamp_offset,
    )
    names = [str(p) for p in files]
    result = validate_bars(
        parsed,
        interval,
        files=names,
        allow_zero_volume=_zero_volume_ok(symbol),
        where=", ".join(names),
    )
    if result.errors:
        raise IngestRefused(f"{symbol} {interval}", result.errors)
    where = _locator(parsed)

    def locate(ts: pd.Timestamp) -> str:
        return where.get(int(ts.as_unit("ns").value), ", ".join(names))

    report = db.add_bars(symbol, interval, result.bars, sources=names, locate=locate)
    return IngestOutcome(report, [i for i in result.issues if i.severity is Severity.WARNING])


def ingest_store(
    db: BarDatabase, data_dir: str | Path, symbol: str, interval: str = "15m"
) -> IngestOutcome:
    """Validate one symbol of a CSV store with the loader and add its bars (all or nothing).

    The store is only read: the loader's parquet cache is not used or written.

    Raises:
        IngestRefused: The loader found errors in the store.
        DatabaseError: No CSV files for the symbol, or a bar conflicting with a stored one.
    """
    symbol, interval = check_symbol_name(symbol), check_interval_name(interval)
    try:
        bars, issues = load_bars_with_issues(
            symbol, interval, data_dir=data_dir, on_error="raise", use_cache=False
        )
    except DataValidationError as exc:
        errors = [i for i in exc.issues if i.severity is Severity.ERROR]
        raise IngestRefused(f"{symbol} {interval} in {data_dir}", errors) from None
    except FileNotFoundError as exc:
        raise DatabaseError(str(exc)) from None
    folder = str(Path(data_dir) / "intraday" / symbol / interval)
    report = db.add_bars(symbol, interval, bars, sources=[folder])
    return IngestOutcome(report, list(issues))
