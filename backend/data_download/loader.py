"""Load validated intraday bars (and VIX-joined market frames) from the CSV store.

The store is ``<data_dir>/intraday/<SYMBOL>/<interval>/*.csv`` (``csv_store.py``): one file
per session or consolidated files, in any common column spelling. Loading reads every file
of the symbol, validates the rows (``validation.py``: which problems are errors and which
are warnings), keeps the chosen session, and returns the canonical bar frame
(``schema.py``): New York time, labels at bar start, float64 OHLCV.

* **CSV files are only ever read.** The parsed, validated frame is cached as parquet under
  ``<data_dir>/.cache/`` (``parquet_cache.py``) and rebuilt automatically when any CSV's
  content, a file name, or the validation rules change.
* **Naive timestamps in the store are New York wall-clock time.** Timestamps with a UTC
  offset are converted. Naive times made ambiguous or impossible by a DST switch are
  errors naming file and line.
* **Issues concern the whole store**, not only the requested window: a store with an error
  anywhere is refused under ``on_error="raise"`` until the file is fixed, because silently
  training on a store with a corrupt region is worse than a loud failure. ``on_error=
  "drop"`` drops offending rows and carries on. Warnings (and, under ``"drop"``, the errors
  that caused drops) are emitted as one :class:`DataQualityWarning` per load, whose
  ``issues`` attribute lists them all; :func:`load_bars_with_issues` returns them instead.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeAlias

import exchange_calendars
import numpy as np
import pandas as pd

from backend.data_download import parquet_cache
from backend.data_download.csv_columns import TIMESTAMP_ALIASES
from backend.data_download.csv_parsing import ParsedRows, empty_rows, parse_rows
from backend.data_download.csv_store import list_csv_files, symbol_dir
from backend.data_download.issue_reports import row_issues
from backend.data_download.row_checks import ZERO_VOLUME_SYMBOLS
from backend.data_download.schema import (
    DEFAULT_INTERVAL,
    NY_TZ,
    VIX_SYMBOL,
    DataIssue,
    DataValidationError,
    Severity,
    bar_index,
    empty_bar_frame,
    interval_to_timedelta,
    to_ny,
)
from backend.data_download.validation import VALIDATION_VERSION, ValidationResult, validate_bars

SessionKind = Literal["regular", "extended"]
OnError = Literal["raise", "drop"]
TimeLike: TypeAlias = str | date | pd.Timestamp | np.datetime64
"""A date (whole session) or a timestamp; naive values are New York time."""

DEFAULT_MAX_CSV_BYTES = 512 * 1024 * 1024
"""Largest CSV file the loader reads (a consolidated decade of 15m bars is ~5 MB)."""
MAX_CSV_BYTES_ENV = "YOOPRL_MAX_CSV_BYTES"
"""Environment variable that overrides :data:`DEFAULT_MAX_CSV_BYTES` (bytes)."""


def max_csv_bytes() -> int:
    """The configured size limit of one CSV file (``YOOPRL_MAX_CSV_BYTES`` or the default).

    Raises:
        ValueError: If the variable is set to something that is not a positive integer.
    """
    raw = os.environ.get(MAX_CSV_BYTES_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_CSV_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{MAX_CSV_BYTES_ENV}: expected a positive number of bytes, got {raw!r}")
    return value


def _too_large(path: str | Path, limit: int) -> DataIssue | None:
    """An error issue when ``path`` is larger than ``limit`` bytes (checked before reading)."""
    try:
        size = Path(path).stat().st_size
    except OSError:
        return None  # the reader reports unreadable files its own way
    if size <= limit:
        return None
    return DataIssue(
        Severity.ERROR,
        "file_too_large",
        str(path),
        None,
        f"file is {size} bytes, above the limit of {limit} bytes; not read (raise the limit "
        f"with {MAX_CSV_BYTES_ENV}, or split it by session with "
        "scripts/convert_newdata_intraday.py)",
    )


_SESSIONS: tuple[str, ...] = ("regular", "extended")
_ON_ERROR: tuple[str, ...] = ("raise", "drop")
_SHOWN_IN_WARNING = 10


class DataQualityWarning(UserWarning):
    """Data problems that did not stop a load; ``issues`` holds every one of them.

    Filter it like any warning (``warnings.simplefilter("error", DataQualityWarning)`` in a
    test makes every data warning fatal) or catch it to inspect ``issues``.
    """

    def __init__(self, message: str, issues: Sequence[DataIssue] = ()) -> None:
        super().__init__(message)
        self.issues = list(issues)


# --------------------------------------------------------------------------- reading


@dataclass
class RawCsv:
    """CSV rows as text: every cell a string, with each row's file and line number.

    One ``RawCsv`` holds one file, or several files that share a header exactly (read in
    one pass, see :func:`read_raw_csvs`).

    Attributes:
        files: Names used in issues.
        frame: The cells, header names as in the files.
        row_file: Index into ``files`` of each row.
        lines: 1-based line of each row in its file (the header is line 1).
        issues: Problems reading the files (unreadable, malformed lines).
    """

    files: list[str]
    frame: pd.DataFrame
    row_file: np.ndarray
    lines: np.ndarray
    issues: list[DataIssue] = field(default_factory=list)


def _no_rows(file: str, issue: DataIssue) -> RawCsv:
    return RawCsv([file], pd.DataFrame(), np.zeros(0, np.int64), np.zeros(0, np.int64), [issue])


def read_raw_csv(path: str | Path) -> RawCsv:
    """Read one CSV as strings without interpreting anything, never modifying the file.

    The fast path is pandas' C parser with blank lines kept, so row ``k`` is line
    ``k + 2``. A file with a line holding more cells than the header makes that parser
    give up; such files are re-read line by line with :mod:`csv` so the bad lines can be
    reported by number and the rest still used.

    Args:
        path: The CSV file.

    Returns:
        The raw table; unreadable files give an empty table and an error issue.
    """
    file = str(path)
    big = _too_large(path, max_csv_bytes())
    if big is not None:
        return _no_rows(file, big)
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig"
        )
    except pd.errors.EmptyDataError:
        return _no_rows(
            file, DataIssue(Severity.ERROR, "empty_file", file, None, "file is empty (no header)")
        )
    except (UnicodeDecodeError, OSError) as exc:
        return _no_rows(
            file, DataIssue(Severity.ERROR, "unreadable", file, None, f"cannot read file: {exc}")
        )
    except pd.errors.ParserError:
        return _read_raw_csv_by_line(Path(path), file)
    n = len(frame)
    return RawCsv([file], frame, np.zeros(n, np.int64), np.arange(2, n + 2, dtype=np.int64))


def _mangle_duplicates(header: Sequence[str]) -> list[str]:
    """Rename repeated header names ``x``, ``x`` to ``x``, ``x.1`` (as pandas does)."""
    seen: dict[str, int] = {}
    out = []
    for name in header:
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append(name if k == 0 else f"{name}.{k}")
    return out


def _read_raw_csv_by_line(path: Path, file: str) -> RawCsv:
    rows: list[list[str]] = []
    lines: list[int] = []
    bad_lines: list[int] = []
    bad_counts: list[int] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        width = len(header)
        for row in reader:
            if len(row) > width:
                bad_lines.append(reader.line_num)
                bad_counts.append(len(row))
                continue
            rows.append(row + [""] * (width - len(row)))
            lines.append(reader.line_num)
    issues = row_issues(
        Severity.ERROR,
        "bad_field_count",
        file,
        np.asarray(bad_lines),
        bad_counts,
        f"line has more cells than the {width}-column header; line ignored",
    )
    frame = pd.DataFrame(rows, columns=_mangle_duplicates(header), dtype=str)
    n = len(frame)
    return RawCsv([file], frame, np.zeros(n, np.int64), np.asarray(lines, np.int64), issues)


def read_raw_csvs(paths: Sequence[str | Path], max_file_bytes: int | None = None) -> list[RawCsv]:
    """Read many CSVs, parsing all files that share a header in a single pandas call.

    A store of one file per session holds hundreds of small files; reading them one by one
    costs milliseconds of pandas overhead each. Here each file is read as text, files with
    the same header line are concatenated, and the result is split back by counting each
    file's lines. Whenever that count cannot be trusted (the parser disagrees, e.g. for
    quoted line breaks or a malformed line), the group falls back to
    :func:`read_raw_csv` per file, so the outcome is always the same as reading each file
    on its own.

    Args:
        paths: The CSV files.
        max_file_bytes: Files above this size are not read and give a ``file_too_large``
            error (default: :func:`max_csv_bytes`), so a huge or sparse file cannot
            exhaust memory.

    Returns:
        One :class:`RawCsv` per header group (and per file that needed the slow path).
    """
    out: list[RawCsv] = []
    groups: dict[str, list[tuple[str, str]]] = {}
    limit = max_csv_bytes() if max_file_bytes is None else int(max_file_bytes)
    for path in paths:
        file = str(path)
        big = _too_large(path, limit)
        if big is not None:
            out.append(_no_rows(file, big))
            continue
        try:
            text = Path(path).read_bytes().decode("utf-8-sig")
        except (OSError, UnicodeDecodeError):
            out.append(read_raw_csv(path))  # reports the problem its own way
            continue
        header, _, body = text.partition("\n")
        header = header.rstrip("\r")
        if not header.strip() or "\r" in body.replace("\r\n", "\n"):
            out.append(read_raw_csv(path))
            continue
        if body and not body.endswith("\n"):
            body += "\n"
        groups.setdefault(header, []).append((file, body))
    for header, members in groups.items():
        files = [file for file, _ in members]
        counts = np.asarray([body.count("\n") for _, body in members], dtype=np.int64)
        text = header + "\n" + "".join(body for _, body in members)
        try:
            frame = pd.read_csv(
                io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False
            )
        except (pd.errors.ParserError, ValueError):
            frame = None
        if frame is None or len(frame) != counts.sum():
            out += [read_raw_csv(file) for file in files]
            continue
        row_file = np.repeat(np.arange(len(files), dtype=np.int64), counts)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        lines = np.arange(len(frame), dtype=np.int64) - starts + 2
        out.append(RawCsv(files, frame, row_file, lines))
    return out


def parse_csvs(
    paths: Sequence[str | Path],
    *,
    source_tz: str = NY_TZ,
    stamp: Literal["start", "end"] = "start",
    interval: str = DEFAULT_INTERVAL,
    symbol: str | None = None,
    time_column: str | None = None,
    stamp_offset: pd.Timedelta | None = None,
) -> list[ParsedRows]:
    """Read CSVs (:func:`read_raw_csvs`) and parse them (``csv_parsing.parse_rows``).

    Args:
        paths: The CSV files.
        source_tz: Zone of naive timestamps.
        stamp: Whether stamps mark bar ``"start"`` or ``"end"``.
        interval: Bar length.
        symbol: Expected symbol, checked against a ``Symbol`` column if there is one.
        time_column: Header name of the timestamp column when it is not one of the
            accepted spellings (``time_utc_naive``); other timestamp-like columns are then
            ignored. A file without it gets a ``missing_column`` error at line 1.
        stamp_offset: Added to every parsed stamp to get the bar start, for sources that
            stamp bars a fixed time after (``-4min``) or before their start.

    Returns:
        Parsed rows per group of files, reading issues included.
    """
    parsed = []
    for raw in read_raw_csvs(paths):
        if raw.frame.columns.empty:
            parsed.append(empty_rows(raw.files, raw.issues))
            continue
        if time_column is not None:
            renamed = _use_time_column(raw, time_column)
            if renamed is None:
                header = [str(c) for c in raw.frame.columns]
                issue = DataIssue(
                    Severity.ERROR,
                    "missing_column",
                    raw.files[0],
                    1,
                    f"no column {time_column!r} (--time-column); header is {header}",
                    column=time_column,
                )
                parsed.append(empty_rows(raw.files, [*raw.issues, issue]))
                continue
            raw = renamed
        part = parse_rows(
            raw.frame,
            raw.files,
            raw.row_file,
            raw.lines,
            source_tz=source_tz,
            stamp=stamp,
            interval=interval,
            symbol=symbol,
        )
        part.issues = raw.issues + part.issues
        if stamp_offset is not None and len(part.frame):
            part.frame["timestamp"] = part.frame["timestamp"] + pd.Timedelta(stamp_offset)
        parsed.append(part)
    return parsed


def _use_time_column(raw: RawCsv, time_column: str) -> RawCsv | None:
    """``raw`` with ``time_column`` renamed to ``timestamp`` and rival time columns dropped."""
    names = [str(c) for c in raw.frame.columns]
    if time_column not in names:
        return None
    rivals = set(TIMESTAMP_ALIASES)
    drop = [
        c
        for c in names
        if c != time_column and "".join(ch for ch in c.lower() if ch.isalnum()) in rivals
    ]
    frame = raw.frame.drop(columns=drop).rename(columns={time_column: "timestamp"})
    return RawCsv(raw.files, frame, raw.row_file, raw.lines, list(raw.issues))


# --------------------------------------------------------------------------- store


def available_symbols(data_dir: str | Path = "data", interval: str = DEFAULT_INTERVAL) -> list[str]:
    """Symbols with a folder for ``interval`` under ``<data_dir>/intraday``, sorted."""
    root = Path(data_dir) / "intraday"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / interval).is_dir())


def _is_zero_volume_symbol(symbol: str) -> bool:
    return symbol.upper().lstrip("^") in ZERO_VOLUME_SYMBOLS


def _check_args(session: str, on_error: str = "raise") -> None:
    if session not in _SESSIONS:
        raise ValueError(f"session must be one of {_SESSIONS}, got {session!r}")
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")


@dataclass
class _Store:
    files: list[Path]
    result: ValidationResult


def _load_store(
    symbol: str,
    interval: str,
    data_dir: str | Path,
    *,
    session: str,
    use_cache: bool,
    allow_zero_volume: bool,
) -> _Store:
    """Validated bars of every file of the symbol, from the cache when still valid."""
    interval_to_timedelta(interval)  # unknown intervals fail here, before any I/O
    folder = symbol_dir(data_dir, symbol, interval)
    files = list_csv_files(data_dir, symbol, interval)
    if not files:
        found = available_symbols(data_dir, interval)
        raise FileNotFoundError(
            f"no CSV files for {symbol.upper()} {interval}: expected {folder}/*.csv "
            f"(layout <data_dir>/intraday/<SYMBOL>/<interval>/); symbols with {interval} "
            f"data in {data_dir}: {', '.join(found) if found else 'none'}"
        )
    params = {
        "folder": str(folder.resolve()),
        "interval": interval,
        "session": session,
        "allow_zero_volume": allow_zero_volume,
        "validation": VALIDATION_VERSION,
        "calendar": exchange_calendars.__version__,
        "max_csv_bytes": max_csv_bytes(),
    }
    path = parquet_cache.cache_path(data_dir, symbol, interval, session)
    key = parquet_cache.fingerprint(files, params, max_csv_bytes()) if use_cache else ""
    if use_cache:
        entry = parquet_cache.read_cache(path, key)
        if entry is not None:
            meta = entry.meta
            result = ValidationResult(
                bars=entry.bars,
                issues=parquet_cache.issues_from_json(meta["issues"]),
                n_missing_bars=int(meta["n_missing_bars"]),
                n_sessions=int(meta["n_sessions"]),
                n_missing_sessions=int(meta["n_missing_sessions"]),
            )
            return _Store(files, result)
    parsed = parse_csvs(files, interval=interval, symbol=symbol)
    result = validate_bars(
        parsed,
        interval,
        files=[str(p) for p in files],
        extended_hours=session == "extended",
        allow_zero_volume=allow_zero_volume,
        where=str(folder),
    )
    if use_cache:
        facts: dict[str, Any] = {
            "issues": parquet_cache.issues_to_json(result.issues),
            "n_missing_bars": result.n_missing_bars,
            "n_sessions": result.n_sessions,
            "n_missing_sessions": result.n_missing_sessions,
        }
        parquet_cache.write_cache(path, key, result.bars, facts)
    return _Store(files, result)


def select_window(
    bars: pd.DataFrame, start: TimeLike | None = None, end: TimeLike | None = None
) -> pd.DataFrame:
    """Rows of a bar frame between ``start`` and ``end``.

    ``start`` keeps bars starting at or after it. ``end`` given as a date (or a midnight
    timestamp) keeps that whole day; with a time of day it keeps bars starting at or
    before it, like ``DataFrame.loc`` slicing. Naive values are New York time. An empty
    selection is an empty bar frame, not an error.
    """
    keep = np.ones(len(bars), dtype=bool)
    if start is not None:
        keep &= np.asarray(bars.index >= to_ny(start))
    if end is not None:
        hi = to_ny(end)
        if hi == hi.normalize():
            next_day = (hi.tz_localize(None) + pd.Timedelta(days=1)).tz_localize(NY_TZ)
            keep &= np.asarray(bars.index < next_day)
        else:
            keep &= np.asarray(bars.index <= hi)
    if not keep.any():
        empty = empty_bar_frame()
        empty.index = bar_index(empty).as_unit("ns")
        return empty
    return bars.loc[keep]


def _load(
    symbol: str,
    interval: str,
    start: TimeLike | None,
    end: TimeLike | None,
    data_dir: str | Path,
    *,
    session: str,
    on_error: str,
    use_cache: bool,
    allow_zero_volume: bool,
) -> tuple[pd.DataFrame, list[DataIssue]]:
    _check_args(session, on_error)
    store = _load_store(
        symbol,
        interval,
        data_dir,
        session=session,
        use_cache=use_cache,
        allow_zero_volume=allow_zero_volume,
    )
    issues = store.result.issues
    if on_error == "raise" and store.result.errors:
        raise DataValidationError(issues)
    return select_window(store.result.bars, start, end), issues


def _warn(symbol: str, interval: str, issues: Sequence[DataIssue]) -> None:
    if not issues:
        return
    n_err = sum(i.severity is Severity.ERROR for i in issues)
    head = f"{symbol.upper()} {interval}: {len(issues) - n_err} data warning(s)"
    if n_err:
        head += f", {n_err} error(s) whose rows were dropped"
    shown = "\n".join(f"  {i}" for i in issues[:_SHOWN_IN_WARNING])
    more = len(issues) - _SHOWN_IN_WARNING
    tail = f"\n  ... and {more} more (see DataQualityWarning.issues)" if more > 0 else ""
    warnings.warn(DataQualityWarning(f"{head}\n{shown}{tail}", issues), stacklevel=3)


def load_bars_with_issues(
    symbol: str,
    interval: str = DEFAULT_INTERVAL,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    data_dir: str | Path = "data",
    *,
    session: SessionKind = "regular",
    on_error: OnError = "raise",
    use_cache: bool = True,
) -> tuple[pd.DataFrame, list[DataIssue]]:
    """:func:`load_bars` without emitting warnings: returns the issues alongside.

    For callers that report issues themselves (scripts, UIs).
    """
    return _load(
        symbol,
        interval,
        start,
        end,
        data_dir,
        session=session,
        on_error=on_error,
        use_cache=use_cache,
        allow_zero_volume=_is_zero_volume_symbol(symbol),
    )


def load_bars(
    symbol: str,
    interval: str = DEFAULT_INTERVAL,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    data_dir: str | Path = "data",
    *,
    session: SessionKind = "regular",
    on_error: OnError = "raise",
    use_cache: bool = True,
) -> pd.DataFrame:
    """Validated bars of one symbol as a bar frame (``schema.py``).

    Args:
        symbol: Ticker; its folder is ``<data_dir>/intraday/<SYMBOL>/<interval>``.
        interval: Bar length, e.g. ``"15m"``.
        start: First date or timestamp kept (bars starting at or after it).
        end: Last date kept (whole session, inclusive), or a timestamp (bars starting at
            or before it). Naive values are New York time.
        data_dir: Root of the store.
        session: ``"regular"`` (09:30-16:00, half days, holidays from the exchange
            calendar) or ``"extended"`` (04:00-20:00 on trading days). Bars outside are
            dropped with a warning.
        on_error: ``"raise"`` raises on any error in the store; ``"drop"`` drops the
            offending rows and reports them as warnings.
        use_cache: Read and refresh the parquet cache under ``<data_dir>/.cache``.

    Returns:
        The bars; an empty bar frame when the window selects nothing.

    Raises:
        FileNotFoundError: The symbol has no CSV files (the message names the path).
        DataValidationError: ``on_error="raise"`` and the store has errors; ``issues``
            lists every problem.
        ValueError: An unknown interval, session or ``on_error``.

    Warns:
        DataQualityWarning: Once per call when there are warnings (or dropped errors).
    """
    bars, issues = load_bars_with_issues(
        symbol,
        interval,
        start,
        end,
        data_dir,
        session=session,
        on_error=on_error,
        use_cache=use_cache,
    )
    _warn(symbol, interval, issues)
    return bars


# --------------------------------------------------------------------------- reports


@dataclass
class SymbolReport:
    """Facts and problems of one symbol's files, for the dataset check.

    Attributes:
        symbol: Ticker.
        interval: Bar length.
        session: ``"regular"`` or ``"extended"``.
        files: The CSV files read.
        first: Start of the first valid bar, New York time (``None`` when there is none).
        last: Start of the last valid bar.
        n_bars: Valid bars inside the session.
        n_sessions: Sessions with at least one bar.
        n_missing_bars: Bars absent inside those sessions.
        n_missing_sessions: Trading days without any bar between the first and last.
        issues: Every problem found.
    """

    symbol: str
    interval: str
    session: str
    files: list[Path]
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    n_bars: int
    n_sessions: int
    n_missing_bars: int
    n_missing_sessions: int = 0
    issues: list[DataIssue] = field(default_factory=list)

    @property
    def errors(self) -> list[DataIssue]:
        """Issues with error severity."""
        return [i for i in self.issues if i.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[DataIssue]:
        """Issues with warning severity."""
        return [i for i in self.issues if i.severity is Severity.WARNING]


def check_symbol(
    symbol: str,
    interval: str = DEFAULT_INTERVAL,
    data_dir: str | Path = "data",
    session: SessionKind = "regular",
    *,
    use_cache: bool = True,
) -> SymbolReport:
    """Validate one symbol's files and summarise them; data problems never raise.

    A missing folder is reported as an error issue (``no_files``) rather than raised, so
    a dataset check can go through every symbol.
    """
    _check_args(session)
    try:
        store = _load_store(
            symbol,
            interval,
            data_dir,
            session=session,
            use_cache=use_cache,
            allow_zero_volume=_is_zero_volume_symbol(symbol),
        )
    except FileNotFoundError as exc:
        where = str(symbol_dir(data_dir, symbol, interval))
        issue = DataIssue(Severity.ERROR, "no_files", where, None, str(exc))
        return SymbolReport(symbol.upper(), interval, session, [], None, None, 0, 0, 0, 0, [issue])
    bars, res = store.result.bars, store.result
    return SymbolReport(
        symbol=symbol.upper(),
        interval=interval,
        session=session,
        files=store.files,
        first=bars.index[0] if len(bars) else None,
        last=bars.index[-1] if len(bars) else None,
        n_bars=len(bars),
        n_sessions=res.n_sessions,
        n_missing_bars=res.n_missing_bars,
        n_missing_sessions=res.n_missing_sessions,
        issues=list(res.issues),
    )


# --------------------------------------------------------------------------- market


def vix_read_start(
    start: TimeLike | None, interval: str, vix_tolerance: pd.Timedelta | str | None
) -> TimeLike | None:
    """Where to start reading VIX for bars from ``start``: early enough for the as-of join.

    With a staleness limit, a bar at ``start`` may take a VIX close up to ``vix_tolerance``
    before its own close, so reading starts that far (and one bar) earlier. Without a limit
    any earlier close may be the one joined, so VIX is read from its first bar (``None``).
    """
    if start is None or vix_tolerance is None:
        return None
    return to_ny(start) - pd.Timedelta(vix_tolerance) - interval_to_timedelta(interval)


def join_vix_asof(
    bars: pd.DataFrame,
    vix_bars: pd.DataFrame,
    interval: str = DEFAULT_INTERVAL,
    tolerance: pd.Timedelta | str | None = None,
    *,
    vix_interval: str | None = None,
) -> pd.DataFrame:
    """Add column ``vix``: the close of the last VIX bar that had closed when each bar closed.

    Bars are labelled by their start, so the join is made on close times
    (``start + interval``) with ``merge_asof(direction="backward")``: a bar closing at
    10:00 gets the close of the VIX bar closing at 10:00, or an earlier one, never a later
    one, which would leak the future into the observation.

    Args:
        bars: Bar frame to extend (not modified).
        vix_bars: VIX bar frame.
        interval: Bar length of ``bars``.
        tolerance: Oldest VIX close still used, as a distance from the bar's close; older
            gives NaN. ``None``: no limit.
        vix_interval: Bar length of ``vix_bars`` (default: ``interval``).

    Returns:
        A copy of ``bars`` with a float64 ``vix`` column, NaN before the first VIX close.

    Raises:
        ValueError: An input is not a bar frame, or ``bars`` already has ``vix``.
    """
    indexes: list[pd.DatetimeIndex] = []
    for name, frame in (("bars", bars), ("vix_bars", vix_bars)):
        index = bar_index(frame, name)
        if not index.is_monotonic_increasing or not index.is_unique:
            raise ValueError(f"{name} index must be strictly increasing")
        indexes.append(index)
    bars_index, vix_index = indexes
    if "close" not in vix_bars.columns:
        raise ValueError("vix_bars needs a 'close' column")
    if "vix" in bars.columns:
        raise ValueError("bars already has a 'vix' column")
    step = interval_to_timedelta(interval)
    vix_step = interval_to_timedelta(vix_interval or interval)
    left = pd.DataFrame({"close_time": (bars_index.tz_convert(NY_TZ) + step).as_unit("ns")})
    right = pd.DataFrame(
        {
            "close_time": (vix_index.tz_convert(NY_TZ) + vix_step).as_unit("ns"),
            "vix": vix_bars["close"].to_numpy(dtype="float64"),
        }
    )
    merged = pd.merge_asof(
        left,
        right,
        on="close_time",
        direction="backward",
        allow_exact_matches=True,
        tolerance=pd.Timedelta(tolerance) if tolerance is not None else None,
    )
    out = bars.copy()
    out["vix"] = merged["vix"].to_numpy(dtype="float64")
    return out


def load_market(
    symbol: str,
    interval: str = DEFAULT_INTERVAL,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    data_dir: str | Path = "data",
    *,
    vix_symbol: str = VIX_SYMBOL,
    include_vix: bool = True,
    vix_tolerance: pd.Timedelta | str | None = None,
    **load_kwargs: Any,
) -> pd.DataFrame:
    """Bars of ``symbol`` plus the as-of VIX close (Docs/CONTRACTS.md, market frame).

    VIX is loaded with the same interval and ``load_kwargs`` (session, on_error,
    use_cache) from ``<data_dir>/intraday/<vix_symbol>/<interval>``, reaching back before
    ``start`` (by ``vix_tolerance``, or without limit when it is ``None``) so the first
    bars see the last VIX close before the window. Zero VIX volume is expected and not
    reported.

    Args:
        symbol: Ticker.
        interval: Bar length.
        start: See :func:`load_bars`.
        end: See :func:`load_bars`.
        data_dir: Root of the store.
        vix_symbol: Folder name of the VIX data.
        include_vix: ``False`` returns the bars alone, without a ``vix`` column.
        vix_tolerance: Staleness limit of the VIX value (see :func:`join_vix_asof`).
        **load_kwargs: ``session``, ``on_error``, ``use_cache`` for both loads.

    Returns:
        The market frame: bar frame plus float64 ``vix``.

    Raises:
        FileNotFoundError: No VIX data although ``include_vix`` (the message names the
            path and the way out), or no bars for ``symbol``.
    """
    bars = load_bars(symbol, interval, start, end, data_dir, **load_kwargs)
    if not include_vix:
        return bars
    vix_dir = symbol_dir(data_dir, vix_symbol, interval)
    if not list_csv_files(data_dir, vix_symbol, interval):
        raise FileNotFoundError(
            f"no {vix_symbol} {interval} data: expected CSV files in {vix_dir}; add them "
            f"(python scripts/convert_newdata_intraday.py FILE --symbol {vix_symbol}), or run "
            "without VIX features: --no-vix on the main job (python -m "
            "backend.scripts.run_walk_forward), use_vix: false in the features config"
        )
    session = load_kwargs.get("session", "regular")
    vix, issues = _load(
        vix_symbol,
        interval,
        vix_read_start(start, interval, vix_tolerance),
        end,
        data_dir,
        session=session,
        on_error=load_kwargs.get("on_error", "raise"),
        use_cache=load_kwargs.get("use_cache", True),
        allow_zero_volume=True,
    )
    _warn(vix_symbol, interval, issues)
    return join_vix_asof(bars, vix, interval, vix_tolerance)


__all__ = [
    "DataQualityWarning",
    "RawCsv",
    "SymbolReport",
    "available_symbols",
    "check_symbol",
    "join_vix_asof",
    "load_bars",
    "load_bars_with_issues",
    "load_market",
    "parse_csvs",
    "read_raw_csv",
    "read_raw_csvs",
    "select_window",
    "vix_read_start",
]
