"""Checks for intraday bar CSVs: pure functions from parsed text to a clean bar frame.

Nothing here touches the file system. The loader reads the CSVs as text (every cell a
string, see ``loader.read_raw_csvs``) with each row's file and line number, and hands the
rows to :func:`parse_rows` (files sharing a header are parsed together, so 500 per-session
files cost about as much as one consolidated file); :func:`validate_bars` then checks the
parsed rows of all files of one symbol together and returns a bar frame (``schema.py``)
plus every :class:`~backend.data_download.schema.DataIssue` found. Each issue names the
file, the line as a text editor shows it (the header is line 1), the column and the
offending value, so a user can jump straight to it.

Timestamps may carry a UTC offset (``2024-03-26 09:30:00-04:00``, ``...+00:00``, ``...Z``)
and are converted to New York time. **Naive timestamps are read as wall-clock time in**
``source_tz`` (America/New_York unless a caller says otherwise); a naive time that does
not exist (spring forward, 02:00-03:00) or exists twice (fall back, 01:00-02:00) on a DST
switch day cannot be placed and is an error.

Every check is vectorised over all rows; Python loops run only over files with problems,
over the sessions that have gaps, and over the (capped) issues being reported.

Severity of each check (errors stop ``load_bars(on_error="raise")``; with
``on_error="drop"`` the offending rows are dropped; warnings never stop a load):

====================  ========  =======================================================
code                  severity  meaning
====================  ========  =======================================================
empty_file            error     the file has no header (0 bytes)
unreadable            error     the file is not UTF-8 text
bad_field_count       error     a line has more cells than the header
missing_column        error     a required column is absent (with spelling suggestions)
ambiguous_column      error     two columns mean the same thing (``Close`` and ``close``)
bad_timestamp         error     a timestamp cell is not ISO-8601 date and time
date_only             error     a timestamp has no time of day (daily data?)
nonexistent_time      error     a naive time skipped by a spring-forward DST switch
ambiguous_time        error     a naive time repeated by a fall-back DST switch
missing_value         error     an empty / NaN cell in open, high, low, close or volume
bad_number            error     a cell that is not a finite number
symbol_mismatch       error     a ``Symbol`` column names another symbol
non_positive_price    error     open, high, low or close <= 0
high_below_low        error     high < low
open_outside_range    error     open outside [low, high] (beyond a 1e-6 relative slack)
close_outside_range   error     close outside [low, high] (same slack)
negative_volume       error     volume < 0
off_grid              error     a bar start not on the interval grid anchored at 09:30
duplicate_conflict    error     one timestamp twice with different values (any files)
duplicate_identical   warning   one timestamp twice with equal values; the copy is ignored
zero_volume           warning   volume == 0 (skipped for index symbols such as VIX)
unsorted              warning   rows out of time order in a file; they are sorted
outside_session       warning   bars outside the chosen session; dropped
missing_bars          warning   bars absent inside a session (one issue per session)
missing_sessions      warning   trading days with no bar between the first and last day
empty_data            warning   a file holds a header but no rows
no_files              error     the symbol has no CSV files (``check_symbol`` only)
====================  ========  =======================================================

Unsorted rows are only a warning: order carries no information the timestamps do not, so
sorting loses nothing, while the real danger of a concatenation gone wrong (two copies of
a bar) is caught by the duplicate checks. Row-level issues are reported one per row, up
to :data:`MAX_ROW_ISSUES` per file and check, followed by one summary issue with the
count of the rest; warnings about many rows (zero volume, outside session, ...) are one
issue per file with the count and the first example.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from backend.data_download.market_calendar import session_bar_layout, session_schedule
from backend.data_download.schema import (
    INDEX_NAME,
    NY_TZ,
    OHLCV_COLUMNS,
    PRICE_COLUMNS,
    DataIssue,
    Severity,
    interval_to_timedelta,
)

VALIDATION_VERSION = 1
"""Bump when a rule changes, so cached validation results are rebuilt."""

MAX_ROW_ISSUES = 50
"""Row-level issues reported per file and check before a single summary issue."""

PRICE_RTOL = 1e-6
"""Relative slack for open/close against [low, high]: vendors round OHLC separately."""

DUPLICATE_RTOL = 1e-9
"""Two duplicate rows are 'identical' when every value agrees to this relative tolerance.

CSVs written by ``csv_store`` keep 10 significant digits, so a re-written copy of a bar
differs from the original in the 11th digit at most."""

SESSION_ANCHOR = pd.Timedelta(hours=9, minutes=30)
"""The bar grid is anchored at the regular open, 09:30 New York."""

ZERO_VOLUME_SYMBOLS: frozenset[str] = frozenset({"VIX", "VIX9D", "VIX3M", "VVIX", "VXN"})
"""Index symbols that never trade, so zero volume is normal for them."""

# Header spellings, compared after lower-casing and dropping everything but [a-z0-9].
TIMESTAMP_ALIASES: tuple[str, ...] = ("timestamp", "datetime", "date", "time", "dt", "ts")
VALUE_ALIASES: dict[str, tuple[str, ...]] = {
    "open": ("open", "o", "openprice"),
    "high": ("high", "h", "highprice"),
    "low": ("low", "l", "lowprice"),
    "close": ("close", "c", "closeprice", "last"),
    "volume": ("volume", "vol", "v"),
}
SYMBOL_ALIASES: tuple[str, ...] = ("symbol", "ticker")
IGNORED_COLUMNS: frozenset[str] = frozenset(
    {
        "adjclose",
        "adjustedclose",
        "vwap",
        "trades",
        "transactions",
        "barcount",
        "count",
        "dividends",
        "stocksplits",
        "capitalgains",
        "index",
        "unnamed0",
    }
)
"""Known extra columns, ignored on purpose (``Adj Close`` mixes in dividend adjustment)."""

_NA_TOKENS = ("", "nan", "na", "n/a", "null", "none", "-")
_OFFSET_RE = re.compile(r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")
_TIME_RE = re.compile(r"\d{1,2}:\d{2}")
_NS_PER_MINUTE = 60 * 1_000_000_000


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


# --------------------------------------------------------------------------- columns


@dataclass(frozen=True)
class ColumnMap:
    """Which raw header names hold which canonical field.

    Attributes:
        timestamp: One raw column, or two (date, time) to be joined with a space.
        values: Canonical OHLCV name -> raw column name.
        symbol: Raw name of a ``Symbol``/``Ticker`` column, if the file has one.
    """

    timestamp: tuple[str, ...]
    values: dict[str, str]
    symbol: str | None = None


def resolve_columns(columns: Sequence[str], file: str) -> tuple[ColumnMap | None, list[DataIssue]]:
    """Map a header to the canonical fields, accepting common spellings case-insensitively.

    Accepted: ``timestamp``/``datetime``/``date``/``time`` (or a ``Date`` plus a ``Time``
    column), ``open``/``high``/``low``/``close``/``volume`` in any case (also ``o``,
    ``vol``, ``last``, ...). ``Adj Close`` and other known extras are ignored. A missing
    field is an error at line 1 that suggests the closest unrecognised header name, so a
    typo such as ``closing`` is pointed out rather than silently ignored.

    Args:
        columns: Header names as read.
        file: File name for the issues.

    Returns:
        The mapping (``None`` when a required field is missing) and the issues found.
    """
    by_norm: dict[str, list[str]] = {}
    for raw in columns:
        by_norm.setdefault(_norm(raw), []).append(str(raw))
    issues: list[DataIssue] = []
    used: set[str] = set()

    def pick(canonical: str, aliases: Sequence[str]) -> str | None:
        found = [raw for alias in aliases for raw in by_norm.get(alias, [])]
        if len(found) > 1:
            issues.append(
                DataIssue(
                    Severity.ERROR,
                    "ambiguous_column",
                    file,
                    1,
                    f"columns {found} all mean {canonical!r}; keep one",
                    column=canonical,
                    value=", ".join(found),
                )
            )
        if found:
            used.update(_norm(f) for f in found)
            return found[0]
        return None

    timestamp: tuple[str, ...] | None = None
    for alias in ("timestamp", "datetime"):
        col = pick("timestamp", (alias,))
        if col is not None:
            timestamp = (col,)
            break
    if timestamp is None:
        date_col, time_col = by_norm.get("date"), by_norm.get("time")
        if date_col and time_col:
            timestamp = (date_col[0], time_col[0])
            used.update({"date", "time"})
        else:
            other = [a for a in TIMESTAMP_ALIASES if a not in ("timestamp", "datetime")]
            col = pick("timestamp", other)
            timestamp = (col,) if col else None

    values: dict[str, str] = {}
    for canonical, aliases in VALUE_ALIASES.items():
        col = pick(canonical, aliases)
        if col is not None:
            values[canonical] = col
    symbol = next((by_norm[a][0] for a in SYMBOL_ALIASES if a in by_norm), None)
    if symbol is not None:
        used.add(_norm(symbol))

    unknown = [raw for raw in map(str, columns) if _norm(raw) not in used]
    unknown = [raw for raw in unknown if _norm(raw) not in IGNORED_COLUMNS]
    missing = [c for c in OHLCV_COLUMNS if c not in values]
    if timestamp is None:
        missing.insert(0, "timestamp")
    for canonical in missing:
        aliases = TIMESTAMP_ALIASES if canonical == "timestamp" else VALUE_ALIASES[canonical]
        hint = ""
        close = [
            u for u in unknown if difflib.get_close_matches(_norm(u), aliases, n=1, cutoff=0.5)
        ]
        if close:
            hint = f"; found {close[0]!r}: rename it to {canonical!r}"
        elif canonical == "close" and "adjclose" in by_norm:
            hint = "; 'Adj Close' is ignored on purpose (adjusted prices), add the raw close"
        issues.append(
            DataIssue(
                Severity.ERROR,
                "missing_column",
                file,
                1,
                f"no {canonical!r} column; accepted spellings (any case): "
                f"{', '.join(aliases)}; header is {list(map(str, columns))}{hint}",
                column=canonical,
                value=close[0] if close else None,
            )
        )
    if missing or any(i.code == "ambiguous_column" for i in issues):
        return None, issues
    assert timestamp is not None
    return ColumnMap(timestamp=timestamp, values=values, symbol=symbol), issues


# --------------------------------------------------------------------------- issues


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.10g}"
    if isinstance(value, pd.Timestamp):
        return value.isoformat(sep=" ")
    return str(value)


FileNames = str | np.ndarray
"""One file name for all rows, or an array with the file name of each row."""


def _by_file(file: FileNames, n: int) -> list[tuple[str, np.ndarray]]:
    """Positions ``0..n-1`` grouped by file name, files in order of first appearance."""
    if n == 0:
        return []
    if isinstance(file, str):
        return [(file, np.arange(n))]
    codes, names = pd.factorize(pd.Series(file, dtype=object), sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(names)))[:-1]
    return [(str(name), pos) for name, pos in zip(names, np.split(order, bounds), strict=True)]


def row_issues(
    severity: Severity,
    code: str,
    file: FileNames,
    lines: np.ndarray,
    values: Sequence[object] | np.ndarray,
    message: str | Callable[[int], str],
    column: str | None = None,
    limit: int = MAX_ROW_ISSUES,
) -> list[DataIssue]:
    """One issue per offending row, the first ``limit`` per file plus a summary of the rest.

    Capping keeps a file that is wrong on every one of 30k rows readable (and cheap to
    report) while the summary still says how many rows and where the next one is.

    Args:
        severity: Error or warning.
        code: Short machine-readable name of the check.
        file: File name, or the file name of each offending row.
        lines: Line numbers of the offending rows.
        values: The offending value of each row (same length as ``lines``).
        message: One text for all rows, or a function of the row's position in ``lines``
            that is only called for the rows actually reported.
        column: Column the value comes from.
        limit: Rows reported one by one per file.
    """
    n = len(lines)
    if n == 0:
        return []
    text = (lambda _: message) if isinstance(message, str) else message
    out: list[DataIssue] = []
    for name, pos in _by_file(file, n):
        for k in pos[:limit]:
            out.append(
                DataIssue(
                    severity, code, name, int(lines[k]), text(int(k)), column, _fmt(values[k])
                )
            )
        if len(pos) > limit:
            rest = [int(lines[k]) for k in pos[limit : limit + 5]]
            more = len(pos) - limit
            out.append(
                DataIssue(
                    severity,
                    code,
                    name,
                    rest[0],
                    f"... and {more} more row(s) with the same problem "
                    f"(lines {', '.join(map(str, rest))}{', ...' if more > 5 else ''})",
                    column,
                    _fmt(values[pos[limit]]),
                )
            )
    return out


def summary_issue(
    severity: Severity,
    code: str,
    file: FileNames,
    lines: np.ndarray,
    values: Sequence[object] | np.ndarray,
    what: str | Callable[[int], str],
    column: str | None = None,
) -> list[DataIssue]:
    """One issue per file for many rows: the count, the first example, a few more lines.

    ``what`` describes the rows; as a function it gets the position (in ``lines``) of the
    file's first row, for messages that point at a related place.
    """
    text = (lambda _: what) if isinstance(what, str) else what
    out: list[DataIssue] = []
    for name, pos in _by_file(file, len(lines)):
        shown = ", ".join(str(int(lines[k])) for k in pos[:5]) + (", ..." if len(pos) > 5 else "")
        out.append(
            DataIssue(
                severity,
                code,
                name,
                int(lines[pos[0]]),
                f"{len(pos)} row(s) {text(int(pos[0]))} (lines {shown})",
                column,
                _fmt(values[pos[0]]),
            )
        )
    return out


# --------------------------------------------------------------------------- parsing


@dataclass
class ParsedRows:
    """The rows of one or more CSV files after parsing, before any row is dropped.

    Files with the same header are parsed together: a store of 500 per-session files is
    then a handful of vectorised operations instead of 500 rounds of pandas overhead.

    Attributes:
        files: The files the rows come from, in reading order (including files that
            turned out to have no rows).
        frame: Columns ``timestamp`` (datetime64[ns, America/New_York], NaT where
            unparsable), ``open, high, low, close, volume`` (float64, NaN where missing or
            unparsable), ``line`` (int64, the line in its file) and ``file`` (its name).
        error: Boolean per row: the row has an error and must not be used.
        issues: Problems found so far.
    """

    files: list[str]
    frame: pd.DataFrame
    error: np.ndarray
    issues: list[DataIssue] = field(default_factory=list)

    def flag(self, mask: np.ndarray) -> None:
        """Mark rows as erroneous (in place)."""
        self.error = self.error | np.asarray(mask, dtype=bool)

    @property
    def names(self) -> np.ndarray:
        """File name of each row (object array)."""
        return self.frame["file"].to_numpy(dtype=object)


def empty_rows(files: Sequence[str], issues: list[DataIssue]) -> ParsedRows:
    """Parsed rows without any row, for files that could not be read or used at all."""
    frame = pd.DataFrame(
        {
            "timestamp": pd.Series(pd.DatetimeIndex([], tz=NY_TZ).as_unit("ns")),
            **{c: pd.Series(dtype="float64") for c in OHLCV_COLUMNS},
            "line": pd.Series(dtype="int64"),
            "file": pd.Series(dtype=object),
        }
    )
    return ParsedRows(list(files), frame, np.zeros(0, dtype=bool), issues)


def _to_datetime(values: np.ndarray, *, utc: bool) -> tuple[pd.Series, np.ndarray]:
    """ISO-8601 strings to datetimes (NaT where unparseable), and an out-of-range mask.

    The vectorized parse is tried first; when pandas refuses the column as a whole (a year
    outside 1677-2262, a mix of offsets and naive times that pandas reads differently from
    the offset pattern), each string is parsed on its own so that only the bad rows fail.
    A naive parse that comes back with a timezone is unparseable (its offset is not one
    the offset pattern recognises).
    """
    series = pd.Series(values, dtype=object)
    try:
        parsed = pd.to_datetime(series, format="ISO8601", utc=utc, errors="coerce")
        if utc or not isinstance(parsed.dtype, pd.DatetimeTZDtype):
            return _in_ns_range(parsed, np.zeros(len(values), dtype=bool), utc)
    except (ValueError, TypeError, OverflowError, pd.errors.OutOfBoundsDatetime):
        pass
    out: list[pd.Timestamp] = []
    oob = np.zeros(len(values), dtype=bool)
    for k, value in enumerate(values):
        try:
            ts = pd.to_datetime(value, format="ISO8601", utc=utc)
            if not utc and ts.tzinfo is not None:
                ts = pd.NaT
        except (pd.errors.OutOfBoundsDatetime, OverflowError):
            ts = pd.NaT
            oob[k] = True
        except (ValueError, TypeError):
            ts = pd.NaT
        out.append(ts)
    series = pd.Series(out, dtype=object)
    try:
        parsed = pd.to_datetime(series, utc=utc, errors="coerce")
    except (ValueError, TypeError, OverflowError, pd.errors.OutOfBoundsDatetime):
        parsed = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns]")
        parsed = parsed.dt.tz_localize("UTC") if utc else parsed
    return _in_ns_range(parsed, oob, utc)


def _in_ns_range(parsed: pd.Series, oob: np.ndarray, utc: bool) -> tuple[pd.Series, np.ndarray]:
    """Datetimes outside nanosecond range become NaT (flagged in ``oob``); unit ns."""
    lo, hi = pd.Timestamp.min.ceil("s"), pd.Timestamp.max.floor("s")
    if utc:
        lo, hi = lo.tz_localize("UTC"), hi.tz_localize("UTC")
    if len(parsed) and parsed.notna().any():
        outside = np.asarray(parsed.notna() & ((parsed < lo) | (parsed > hi)), dtype=bool)
        if outside.any():
            oob = oob | outside
            parsed = parsed.where(~outside)
    return parsed.dt.as_unit("ns"), oob


def parse_timestamps(
    text: pd.Series, source_tz: str = NY_TZ
) -> tuple[pd.Series, dict[str, np.ndarray]]:
    """Parse ISO-8601 timestamp strings into New York time, with a status per row.

    A string with a UTC offset (or ``Z``) is converted from that offset; a naive string is
    wall-clock time in ``source_tz``. Mixed files (some rows with an offset, some without)
    are parsed row by row under those same two rules.

    Args:
        text: Timestamp strings (already stripped).
        source_tz: Zone of naive strings.

    Returns:
        The parsed series (datetime64[ns, America/New_York], NaT where not placed) and
        boolean masks ``empty``, ``bad``, ``date_only``, ``nonexistent``, ``ambiguous``.
    """
    n = len(text)
    values = text.to_numpy(dtype=object)
    empty = np.asarray(text.str.lower().isin(_NA_TOKENS), dtype=bool)
    has_time = np.asarray(text.str.contains(_TIME_RE, regex=True), dtype=bool)
    aware = np.asarray(text.str.contains(_OFFSET_RE, regex=True), dtype=bool) & ~empty
    naive = ~aware & ~empty
    out = np.full(n, np.datetime64("NaT", "ns"), dtype="datetime64[ns]")  # UTC wall values
    out_of_range = np.zeros(n, dtype=bool)
    if aware.any():
        parsed, oob = _to_datetime(values[aware], utc=True)
        out_of_range[np.flatnonzero(aware)[oob]] = True
        out[aware] = parsed.dt.tz_localize(None).dt.as_unit("ns").to_numpy()
    nonexistent = np.zeros(n, dtype=bool)
    ambiguous = np.zeros(n, dtype=bool)
    if naive.any():
        wall, oob = _to_datetime(values[naive], utc=False)
        out_of_range[np.flatnonzero(naive)[oob]] = True
        wall = wall.dt.as_unit("ns")
        local = wall.dt.tz_localize(source_tz, ambiguous="NaT", nonexistent="NaT")
        unplaced = local.isna().to_numpy() & wall.notna().to_numpy()
        if unplaced.any():
            # A second pass that resolves ambiguity tells the two DST failures apart.
            forced = wall.dt.tz_localize(
                source_tz, ambiguous=np.ones(len(wall), dtype=bool), nonexistent="NaT"
            )
            gap = unplaced & forced.isna().to_numpy()
            nonexistent[np.flatnonzero(naive)[gap]] = True
            ambiguous[np.flatnonzero(naive)[unplaced & ~gap]] = True
        out[naive] = local.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    parsed_ok = ~np.isnat(out)
    date_only = parsed_ok & ~has_time
    bad = ~empty & ~parsed_ok & ~nonexistent & ~ambiguous & ~out_of_range
    out[date_only] = np.datetime64("NaT", "ns")
    stamps = pd.DatetimeIndex(out).tz_localize("UTC").tz_convert(NY_TZ)
    masks = {
        "empty": empty,
        "bad": bad,
        "date_only": date_only,
        "nonexistent": nonexistent,
        "ambiguous": ambiguous,
        "out_of_range": out_of_range,
    }
    return pd.Series(stamps, index=text.index), masks


def parse_rows(
    raw: pd.DataFrame,
    files: Sequence[str],
    row_file: np.ndarray,
    lines: np.ndarray,
    *,
    source_tz: str = NY_TZ,
    stamp: Literal["start", "end"] = "start",
    interval: str = "15m",
    symbol: str | None = None,
) -> ParsedRows:
    """Parse the string cells of one or more CSVs sharing a header, reporting what fails.

    Args:
        raw: The rows as read, every cell a string, header names as in the files.
        files: Names of the files, for the issues.
        row_file: Index into ``files`` of each row of ``raw``.
        lines: Line number in its file of each row (the header is line 1).
        source_tz: Zone of naive timestamps.
        stamp: ``"end"`` when the source labels bars by their end time; labels are then
            moved back one interval so they follow the project's bar-start convention.
        interval: Bar length, for ``stamp="end"``.
        symbol: Expected symbol; rows of a ``Symbol`` column naming another are errors.

    Returns:
        The parsed rows, an error flag per row, and the issues.
    """
    files = list(files)
    row_file = np.asarray(row_file, dtype=np.int64)
    lines = np.asarray(lines, dtype=np.int64)
    if not len(lines) == len(row_file) == len(raw):
        raise ValueError(f"{len(lines)} lines and {len(row_file)} files for {len(raw)} rows")
    columns, header_issues = resolve_columns(list(raw.columns), files[0] if files else "")
    issues = [replace(i, file=f) for f in files for i in header_issues]
    if columns is None:
        return empty_rows(files, issues)
    text = raw.astype(str).apply(lambda s: s.str.strip())
    dup_issues = _duplicate_column_issues(text, columns, files, row_file, lines)
    if dup_issues:
        return empty_rows(files, issues + dup_issues)
    # Fully blank lines carry nothing; dropping them keeps the other rows' line numbers.
    keep = ~np.asarray((text == "").all(axis=1), dtype=bool)
    text, lines, row_file = text.loc[keep].reset_index(drop=True), lines[keep], row_file[keep]
    per_file = np.bincount(row_file, minlength=len(files))
    for k in np.flatnonzero(per_file == 0):
        issues.append(DataIssue(Severity.WARNING, "empty_data", files[k], None, "no data rows"))
    names = np.asarray(files, dtype=object)[row_file] if len(files) else np.zeros(0, object)

    stamp_text = text[columns.timestamp[0]]
    if len(columns.timestamp) == 2:
        stamp_text = stamp_text + " " + text[columns.timestamp[1]]
    stamp_text = stamp_text.str.strip()
    ts, masks = parse_timestamps(stamp_text, source_tz)
    if stamp == "end":
        ts = ts - interval_to_timedelta(interval)
    stamp_col = " + ".join(columns.timestamp)
    raw_stamps = stamp_text.to_numpy(dtype=object)
    error = np.zeros(len(text), dtype=bool)
    for key, code, msg in (
        ("empty", "missing_value", "empty timestamp"),
        (
            "bad",
            "bad_timestamp",
            "cannot parse the timestamp; expected ISO-8601 such as 2024-03-26 09:30:00-04:00",
        ),
        ("date_only", "date_only", "timestamp has no time of day; intraday bars need one"),
        (
            "out_of_range",
            "bad_timestamp",
            "timestamp outside the supported range (years 1678-2261); check the year",
        ),
        (
            "nonexistent",
            "nonexistent_time",
            f"naive time does not exist in {source_tz} (DST spring-forward gap); "
            "write the UTC offset into the file",
        ),
        (
            "ambiguous",
            "ambiguous_time",
            f"naive time occurs twice in {source_tz} (DST fall-back); "
            "write the UTC offset into the file",
        ),
    ):
        mask = masks[key]
        error |= mask
        issues += row_issues(
            Severity.ERROR,
            code,
            names[mask],
            lines[mask],
            raw_stamps[mask],
            msg,
            column=stamp_col,
        )

    data: dict[str, object] = {"timestamp": ts.dt.as_unit("ns")}
    for canonical in OHLCV_COLUMNS:
        raw_col = columns.values[canonical]
        cells = text[raw_col]
        number = pd.to_numeric(cells, errors="coerce").astype("float64")
        missing = np.asarray(cells.str.lower().isin(_NA_TOKENS), dtype=bool)
        bad = ~missing & ~np.isfinite(number.to_numpy())
        cells_arr = cells.to_numpy(dtype=object)
        issues += row_issues(
            Severity.ERROR,
            "missing_value",
            names[missing],
            lines[missing],
            cells_arr[missing],
            f"empty or NaN {canonical}",
            column=raw_col,
        )
        issues += row_issues(
            Severity.ERROR,
            "bad_number",
            names[bad],
            lines[bad],
            cells_arr[bad],
            f"{canonical} is not a finite number",
            column=raw_col,
        )
        error |= missing | bad
        data[canonical] = number.where(~(missing | bad)).to_numpy()

    if columns.symbol is not None and symbol is not None:
        found = text[columns.symbol].str.upper().str.lstrip("^")
        other = np.asarray(found != symbol.upper().lstrip("^"), dtype=bool)
        issues += row_issues(
            Severity.ERROR,
            "symbol_mismatch",
            names[other],
            lines[other],
            text[columns.symbol].to_numpy(dtype=object)[other],
            f"row is for another symbol than {symbol.upper()}",
            column=columns.symbol,
        )
        error |= other
    data["line"] = lines
    data["file"] = pd.Series(names, dtype=object)
    return ParsedRows(files, pd.DataFrame(data), error, issues)


_MANGLED = re.compile(r"^(?P<base>.+)\.(?P<k>\d+)$")


def _duplicate_column_issues(
    text: pd.DataFrame,
    columns: ColumnMap,
    files: Sequence[str],
    row_file: np.ndarray,
    lines: np.ndarray,
) -> list[DataIssue]:
    """``ambiguous_column`` errors for a used column repeated with different values.

    A header such as ``...,close,volume,close`` reaches here as ``close`` and ``close.1``
    (pandas renames repeats). Identical copies are harmless and ignored; copies that
    disagree anywhere make the file ambiguous: which close is the close?
    """
    used = set(columns.timestamp) | set(columns.values.values())
    names = [str(c) for c in text.columns]
    issues: list[DataIssue] = []
    for name in names:
        match = _MANGLED.match(name)
        if match is None or match.group("base") not in used or match.group("base") not in names:
            continue
        base = match.group("base")
        differ = np.asarray(text[base] != text[name], dtype=bool)
        if not differ.any():
            continue
        k = int(np.flatnonzero(differ)[0])
        file = files[int(row_file[k])] if len(files) else ""
        issues.append(
            DataIssue(
                Severity.ERROR,
                "ambiguous_column",
                file,
                1,
                f"column {base!r} appears twice with different values (first at line "
                f"{int(lines[k])}: {_fmt(text[base].iloc[k])} vs {_fmt(text[name].iloc[k])}); "
                "keep one",
                column=base,
                value=f"{text[base].iloc[k]}, {text[name].iloc[k]}",
            )
        )
    return issues


def parse_bars(
    raw: pd.DataFrame,
    file: str,
    lines: np.ndarray | None = None,
    *,
    source_tz: str = NY_TZ,
    stamp: Literal["start", "end"] = "start",
    interval: str = "15m",
    symbol: str | None = None,
) -> ParsedRows:
    """:func:`parse_rows` for a single file.

    Args:
        raw: The CSV as read with every cell a string.
        file: File name for the issues.
        lines: Line of each row; defaults to ``2..n+1`` (header on line 1, no blank lines
            skipped by the reader).
        source_tz: Zone of naive timestamps.
        stamp: ``"start"`` or ``"end"`` (see :func:`parse_rows`).
        interval: Bar length, for ``stamp="end"``.
        symbol: Expected symbol for a ``Symbol`` column.
    """
    if lines is None:
        lines = np.arange(2, len(raw) + 2, dtype=np.int64)
    return parse_rows(
        raw,
        [file],
        np.zeros(len(raw), dtype=np.int64),
        lines,
        source_tz=source_tz,
        stamp=stamp,
        interval=interval,
        symbol=symbol,
    )


# --------------------------------------------------------------------------- row checks


def _pair_message(template: str, *columns: np.ndarray) -> Callable[[int], str]:
    """Message for row ``k`` with the formatted ``columns[i][k]`` filled into ``template``."""

    def message(k: int) -> str:
        return template.format(*(_fmt(col[k]) for col in columns))

    return message


def check_values(parsed: ParsedRows, *, allow_zero_volume: bool = False) -> None:
    """Price and volume sanity per row (in place: adds issues and error flags).

    Errors: prices <= 0, high < low, open or close outside [low, high] beyond
    :data:`PRICE_RTOL` (each row reported for the first of these that applies), negative
    volume. Warning: zero volume (one issue per file), unless ``allow_zero_volume`` (index
    symbols such as VIX report no volume at all).
    """
    f, names = parsed.frame, parsed.names
    usable = ~np.asarray(f[list(OHLCV_COLUMNS)].isna().any(axis=1), dtype=bool)
    lines = f["line"].to_numpy()
    o, h, lo, c, v = (f[col].to_numpy() for col in OHLCV_COLUMNS)
    for col, arr in zip(PRICE_COLUMNS, (o, h, lo, c), strict=True):
        bad = usable & (arr <= 0)
        parsed.issues += row_issues(
            Severity.ERROR,
            "non_positive_price",
            names[bad],
            lines[bad],
            arr[bad],
            f"{col} must be > 0",
            column=col,
        )
        parsed.flag(bad)
    # Range checks only on rows whose prices are all positive: a negative close is
    # reported once, not also as "outside [low, high]".
    positive = usable & (o > 0) & (h > 0) & (lo > 0) & (c > 0)
    inverted = positive & (h < lo)
    parsed.issues += row_issues(
        Severity.ERROR,
        "high_below_low",
        names[inverted],
        lines[inverted],
        h[inverted],
        _pair_message("high {} < low {}", h[inverted], lo[inverted]),
        column="high",
    )
    parsed.flag(inverted)
    slack = PRICE_RTOL * np.maximum(np.abs(h), np.abs(lo))
    for col, arr in (("open", o), ("close", c)):
        out = positive & ~inverted & ((arr > h + slack) | (arr < lo - slack))
        parsed.issues += row_issues(
            Severity.ERROR,
            f"{col}_outside_range",
            names[out],
            lines[out],
            arr[out],
            _pair_message(col + " {} outside [low {}, high {}]", arr[out], lo[out], h[out]),
            column=col,
        )
        parsed.flag(out)
    negative = usable & (v < 0)
    parsed.issues += row_issues(
        Severity.ERROR,
        "negative_volume",
        names[negative],
        lines[negative],
        v[negative],
        "volume must be >= 0",
        column="volume",
    )
    parsed.flag(negative)
    if not allow_zero_volume:
        zero = usable & (v == 0)
        parsed.issues += summary_issue(
            Severity.WARNING,
            "zero_volume",
            names[zero],
            lines[zero],
            v[zero],
            "with zero volume",
            column="volume",
        )


def check_order(parsed: ParsedRows) -> None:
    """Warn when a file's rows are not in increasing time order (they get sorted).

    A file entirely in descending order (some vendors write newest first) gets one clear
    warning; otherwise the count of rows earlier than their predecessor and the first one.
    Rows of one file must be contiguous in ``parsed`` (as :func:`parse_rows` gives them).
    """
    ts = parsed.frame["timestamp"]
    ok = ts.notna().to_numpy()
    if ok.sum() < 2:
        return
    ns = ts.to_numpy(dtype="datetime64[ns]")[ok].astype("int64")
    lines = parsed.frame["line"].to_numpy()[ok]
    names = parsed.names[ok]
    codes, files = pd.factorize(pd.Series(names, dtype=object), sort=False)
    step = np.diff(ns)
    same = codes[1:] == codes[:-1]
    down, up = same & (step < 0), same & (step > 0)
    if not down.any():
        return
    files_up = set(codes[1:][up].tolist())
    stamps = ts[ok].reset_index(drop=True)
    for code in np.unique(codes[1:][down]):
        name = str(files[code])
        if code not in files_up:
            first = int(np.argmax(codes == code))
            parsed.issues.append(
                DataIssue(
                    Severity.WARNING,
                    "unsorted",
                    name,
                    int(lines[first]),
                    "rows are in descending time order (newest first); they are sorted",
                    column="timestamp",
                    value=_fmt(stamps.iloc[first]),
                )
            )
            continue
        idx = np.flatnonzero(down & (codes[1:] == code)) + 1
        parsed.issues += summary_issue(
            Severity.WARNING,
            "unsorted",
            name,
            lines[idx],
            stamps.iloc[idx].tolist(),
            "earlier than the row before them; rows are sorted",
            column="timestamp",
        )


def check_grid(parsed: ParsedRows, interval: str = "15m") -> None:
    """Error for bar starts off the interval grid (in place).

    The grid is anchored at 09:30 New York, the regular open, so for 15m bars starts must
    fall on :00, :15, :30 or :45 with zero seconds. An off-grid bar usually means another
    interval's data in this folder, or bar-end stamps shifted by a partial bar.
    """
    ts = parsed.frame["timestamp"]
    ok = ts.notna().to_numpy()
    if not ok.any():
        return
    local = ts.dt.tz_localize(None)
    tod = (local - local.dt.normalize()).to_numpy(dtype="timedelta64[ns]").astype("int64")
    step = interval_to_timedelta(interval).value
    off = ok & (np.mod(tod - SESSION_ANCHOR.value, step) != 0)
    parsed.issues += row_issues(
        Severity.ERROR,
        "off_grid",
        parsed.names[off],
        parsed.frame["line"].to_numpy()[off],
        ts[off].tolist(),
        f"bar start is not on the {interval} grid (anchored at 09:30)",
        column="timestamp",
    )
    parsed.flag(off)


def check_rows(
    parsed: ParsedRows, interval: str = "15m", *, allow_zero_volume: bool = False
) -> ParsedRows:
    """Run every check that looks at one file at a time (in place) and return ``parsed``."""
    check_values(parsed, allow_zero_volume=allow_zero_volume)
    check_order(parsed)
    check_grid(parsed, interval)
    return parsed


# --------------------------------------------------------------------------- across files


def combine_rows(parsed: Sequence[ParsedRows], files: Sequence[str]) -> pd.DataFrame:
    """Error-free rows of all files in one frame, with a ``file_rank`` column.

    Sorted by timestamp, then by file rank (position in ``files``) and line, so "first"
    means the first copy read.
    """
    parts = [p.frame.loc[~p.error] for p in parsed]
    frame = pd.concat(parts, ignore_index=True) if parts else empty_rows([], []).frame
    rank = {name: k for k, name in enumerate(files)}
    frame["file_rank"] = frame["file"].map(rank).fillna(len(rank)).astype("int64")
    return frame.sort_values(["timestamp", "file_rank", "line"], kind="stable").reset_index(
        drop=True
    )


def check_duplicates(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[DataIssue]]:
    """Resolve repeated timestamps within and across files.

    Identical copies (equal to :data:`DUPLICATE_RTOL`) are a warning and the first copy is
    kept. Copies that disagree are an error: nobody can tell which one is right, so every
    copy is dropped.

    Args:
        rows: Output of :func:`combine_rows` (sorted by timestamp, file rank, line).

    Returns:
        The rows without duplicates, and the issues.
    """
    dup = rows["timestamp"].duplicated(keep=False).to_numpy()
    if not dup.any():
        return rows, []
    sub = rows.loc[dup]
    cols = list(OHLCV_COLUMNS)
    first = sub.groupby("timestamp", sort=False)[[*cols, "file", "line"]].transform("first")
    differs = ~np.isclose(sub[cols].to_numpy(), first[cols].to_numpy(), rtol=DUPLICATE_RTOL, atol=0)
    conflict = (
        pd.Series(differs.any(axis=1), index=sub.index)
        .groupby(sub["timestamp"])
        .transform("any")
        .to_numpy()
    )
    is_first = ~sub["timestamp"].duplicated(keep="first").to_numpy()
    copies, ref = sub.loc[~is_first], first.loc[~is_first]
    copy_diff, copy_conflict = differs[~is_first], conflict[~is_first]
    names = copies["file"].to_numpy(dtype=object)
    lines = copies["line"].to_numpy()
    stamps = copies["timestamp"].tolist()
    ref_at = [f"{f}:{int(n)}" for f, n in zip(ref["file"], ref["line"], strict=True)]
    ident = ~copy_conflict
    ident_at = np.asarray(ref_at, dtype=object)[ident]
    issues = summary_issue(
        Severity.WARNING,
        "duplicate_identical",
        names[ident],
        lines[ident],
        [stamps[k] for k in np.flatnonzero(ident)],
        lambda k: (
            f"repeat bars already read (first at {ident_at[k]}) with identical values; "
            "the repeats are ignored"
        ),
        column="timestamp",
    )
    bad = np.flatnonzero(copy_conflict)
    cols_arr = copies[cols].to_numpy()
    ref_arr = ref[cols].to_numpy()

    def describe(k: int) -> str:
        row = bad[k]
        if not copy_diff[row].any():
            return (
                f"also at {ref_at[row]}, and another copy differs; "
                "conflicting copies are all dropped"
            )
        c = int(np.argmax(copy_diff[row]))
        return (
            f"also at {ref_at[row]} with different values ({cols[c]} "
            f"{_fmt(cols_arr[row, c])} here, {_fmt(ref_arr[row, c])} there); "
            "conflicting copies are all dropped"
        )

    issues += row_issues(
        Severity.ERROR,
        "duplicate_conflict",
        names[bad],
        lines[bad],
        [stamps[k] for k in bad],
        describe,
        column="timestamp",
    )
    keep = ~dup
    keep[np.flatnonzero(dup)[is_first & ~conflict]] = True
    return rows.loc[keep].reset_index(drop=True), issues


SESSION_TEXT = {
    False: "the regular session (09:30-16:00 New York, 13:00 on half days, none on holidays)",
    True: "extended hours (04:00-20:00 New York on trading days)",
}


def _session_layout(index: pd.DatetimeIndex, interval: str, extended_hours: bool) -> pd.DataFrame:
    """``session_bar_layout`` for any bars, computed on the bars of trading days only.

    Bars on weekends and holidays get ``bars_in_session == 0`` without reaching
    ``session_bar_layout`` (which cannot handle a set of bars with no trading day at all),
    and restricting it to trading days also spares it work.
    """
    days = index.tz_convert(NY_TZ).tz_localize(None).normalize()
    layout = pd.DataFrame(
        {
            "session": days,
            "bar_in_session": np.full(len(index), -1, dtype=np.int64),
            "bars_in_session": np.zeros(len(index), dtype=np.int64),
        }
    )
    if len(index) == 0:
        return layout
    on_day = np.asarray(days.isin(session_schedule(days.min(), days.max()).index))
    if on_day.any():
        part = session_bar_layout(index[on_day], interval, extended_hours=extended_hours)
        for column in ("bar_in_session", "bars_in_session"):
            values = layout[column].to_numpy().copy()
            values[on_day] = part[column].to_numpy()
            layout[column] = values
    return layout


def check_session(
    rows: pd.DataFrame, interval: str = "15m", *, extended_hours: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, list[DataIssue]]:
    """Drop bars outside the session, with one warning per file.

    Holidays, half days and DST come from the exchange calendar (``market_calendar``).
    When a file has bars starting at the close and none at the open, the warning suggests
    that its stamps are bar ends.

    Args:
        rows: Unique, sorted rows with ``timestamp``, ``file``, ``line``.
        interval: Bar length.
        extended_hours: Keep pre- and post-market bars (04:00-20:00).

    Returns:
        The rows inside the session, their session layout (``session_bar_layout``), and
        the issues.
    """
    index = pd.DatetimeIndex(rows["timestamp"])
    layout = _session_layout(index, interval, extended_hours)
    bar_in = layout["bar_in_session"].to_numpy()
    bars_in = layout["bars_in_session"].to_numpy()
    inside = (bars_in > 0) & (bar_in >= 0) & (bar_in < bars_in)
    issues: list[DataIssue] = []
    if not inside.all():
        codes, files = pd.factorize(rows["file"].astype(object), sort=False)
        # Per file: any bar labelled at the close, any at the open (bar-end stamps?).
        at_close = np.bincount(codes[bar_in == bars_in], minlength=len(files)) > 0
        at_open = np.bincount(codes[inside & (bar_in == 0)], minlength=len(files)) > 0
        suspicious = at_close & ~at_open & (not extended_hours)
        hint = (
            "; the file has bars starting at the close but none at the open: are its "
            "stamps bar END times? (convert with --stamp end)"
        )
        out_codes = codes[~inside]
        issues = summary_issue(
            Severity.WARNING,
            "outside_session",
            np.asarray(files, dtype=object)[out_codes],
            rows["line"].to_numpy()[~inside],
            rows["timestamp"].loc[~inside].tolist(),
            lambda k: (
                f"outside {SESSION_TEXT[extended_hours]}, dropped"
                + (hint if suspicious[out_codes[k]] else "")
            ),
            column="timestamp",
        )
    keep = rows.loc[inside].reset_index(drop=True)
    return keep, layout.loc[inside].reset_index(drop=True), issues


def check_missing_bars(
    rows: pd.DataFrame, layout: pd.DataFrame, interval: str = "15m"
) -> tuple[list[DataIssue], int, int]:
    """Warn about bars absent inside each session present (one issue per session).

    Args:
        rows: In-session, unique, sorted rows with ``timestamp``, ``file``, ``line``.
        layout: Their ``session_bar_layout`` rows (same order).
        interval: Bar length.

    Returns:
        The issues, the number of missing bars, and the number of sessions present.
    """
    if len(rows) == 0:
        return [], 0, 0
    sessions = layout["session"].to_numpy()
    bar_in = layout["bar_in_session"].to_numpy()
    bars_in = layout["bars_in_session"].to_numpy()
    starts = np.r_[0, np.flatnonzero(sessions[1:] != sessions[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(rows)])
    expected = bars_in[starts]
    missing = expected - counts
    step = interval_to_timedelta(interval)
    issues: list[DataIssue] = []
    ts = rows["timestamp"]
    for k in np.flatnonzero(missing > 0):
        lo, hi = starts[k], starts[k] + counts[k]
        present = np.zeros(expected[k], dtype=bool)
        present[bar_in[lo:hi]] = True
        holes = np.flatnonzero(~present)
        first_bar = ts.iloc[lo] - int(bar_in[lo]) * step
        times = [(first_bar + int(h) * step).strftime("%H:%M") for h in holes]
        after = np.searchsorted(bar_in[lo:hi], holes[0])  # first present bar after the hole
        row = rows.iloc[lo + min(after, counts[k] - 1)]
        shown = ", ".join(times[:10]) + (", ..." if len(times) > 10 else "")
        day = pd.Timestamp(sessions[lo]).strftime("%Y-%m-%d")
        issues.append(
            DataIssue(
                Severity.WARNING,
                "missing_bars",
                str(row["file"]),
                int(row["line"]),
                f"session {day}: {missing[k]} of {expected[k]} bars missing ({shown})",
                column="timestamp",
                value=f"{day} {times[0]}",
            )
        )
    return issues, int(missing.sum()), len(starts)


def check_missing_sessions(
    rows: pd.DataFrame, layout: pd.DataFrame, where: str
) -> tuple[list[DataIssue], int]:
    """Warn once about trading days without any bar between the first and last day present.

    Args:
        rows: In-session rows.
        layout: Their ``session_bar_layout`` rows.
        where: What to name in the issue (the symbol's folder).

    Returns:
        The issues and the number of missing sessions.
    """
    if len(rows) == 0:
        return [], 0
    days = pd.DatetimeIndex(layout["session"].unique())
    sched = session_schedule(days.min(), days.max())
    absent = sched.index.difference(days)
    if len(absent) == 0:
        return [], 0
    shown = ", ".join(d.strftime("%Y-%m-%d") for d in absent[:10])
    more = ", ..." if len(absent) > 10 else ""
    issue = DataIssue(
        Severity.WARNING,
        "missing_sessions",
        where,
        None,
        f"{len(absent)} trading day(s) without any bar between "
        f"{days.min():%Y-%m-%d} and {days.max():%Y-%m-%d}: {shown}{more}",
        value=absent[0].strftime("%Y-%m-%d"),
    )
    return [issue], len(absent)


# --------------------------------------------------------------------------- whole store


@dataclass
class ValidationResult:
    """What validating one symbol's files gives.

    Attributes:
        bars: The clean bar frame (``schema.py``): rows with errors, duplicate copies and
            bars outside the session removed.
        issues: Every problem found, errors and warnings, sorted by file and line.
        n_missing_bars: Bars absent inside the sessions present.
        n_sessions: Sessions with at least one bar.
        n_missing_sessions: Trading days without any bar between the first and last.
    """

    bars: pd.DataFrame
    issues: list[DataIssue]
    n_missing_bars: int = 0
    n_sessions: int = 0
    n_missing_sessions: int = 0

    @property
    def errors(self) -> list[DataIssue]:
        """The issues with error severity."""
        return [i for i in self.issues if i.severity is Severity.ERROR]


def to_bar_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Turn checked rows into the canonical bar frame (ns-resolution New York index)."""
    index = pd.DatetimeIndex(rows["timestamp"], name=INDEX_NAME).tz_convert(NY_TZ).as_unit("ns")
    data = {c: rows[c].to_numpy(dtype="float64") for c in OHLCV_COLUMNS}
    return pd.DataFrame(data, index=index)


def validate_bars(
    parsed: Sequence[ParsedRows],
    interval: str = "15m",
    *,
    files: Sequence[str] | None = None,
    extended_hours: bool = False,
    allow_zero_volume: bool = False,
    where: str = "",
) -> ValidationResult:
    """Check the parsed rows of one symbol's files together and build its bar frame.

    Runs the one-file-at-a-time checks (:func:`check_rows`), then across files:
    duplicates, session membership, missing bars and missing sessions.

    Args:
        parsed: Output of :func:`parse_rows` / :func:`parse_bars`.
        interval: Bar length.
        files: Every file in reading order (file-name order in the store): decides which
            copy of an identical duplicate is kept and how issues are sorted. Default: the
            order of ``parsed``.
        extended_hours: Keep 04:00-20:00 bars instead of the regular session.
        allow_zero_volume: Do not warn about zero volume (index symbols).
        where: Name for issues about the symbol as a whole (its folder).

    Returns:
        The bar frame, issues and gap counts.
    """
    order = list(files) if files is not None else [f for p in parsed for f in p.files]
    for part in parsed:
        check_rows(part, interval, allow_zero_volume=allow_zero_volume)
    issues = [i for p in parsed for i in p.issues]
    rows = combine_rows(parsed, order)
    rows, dup_issues = check_duplicates(rows)
    rows, layout, session_issues = check_session(rows, interval, extended_hours=extended_hours)
    gap_issues, n_missing, n_sessions = check_missing_bars(rows, layout, interval)
    day_issues, n_missing_days = check_missing_sessions(rows, layout, where)
    issues += dup_issues + session_issues + gap_issues + day_issues
    rank = {name: k for k, name in enumerate(order)}
    issues.sort(key=lambda i: (rank.get(i.file, len(rank)), i.line or 0))
    return ValidationResult(
        bars=to_bar_frame(rows),
        issues=issues,
        n_missing_bars=n_missing,
        n_sessions=n_sessions,
        n_missing_sessions=n_missing_days,
    )
