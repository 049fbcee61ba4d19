"""Parsing the string cells of bar CSVs into typed rows, reporting every cell that fails.

Nothing here touches the file system: the loader reads the CSVs as text (every cell a
string, see ``loader.read_raw_csvs``) with each row's file and line number and hands them
to :func:`parse_rows` (files sharing a header are parsed together, so 500 per-session files
cost about as much as one consolidated file). Each issue names the file, the line as a text
editor shows it (the header is line 1), the column and the offending value.

Timestamps may carry a UTC offset (``2024-03-26 09:30:00-04:00``, ``...+00:00``, ``...Z``)
and are converted to New York time. **Naive timestamps are read as wall-clock time in**
``source_tz`` (America/New_York unless a caller says otherwise); a naive time that does
not exist (spring forward, 02:00-03:00) or exists twice (fall back, 01:00-02:00) on a DST
switch day cannot be placed and is an error.

Codes raised here: ``missing_column`` and ``ambiguous_column`` (through
:mod:`~backend.data_download.csv_columns`), ``bad_timestamp``, ``date_only``,
``nonexistent_time``, ``ambiguous_time``, ``missing_value``, ``bad_number``,
``symbol_mismatch``, ``empty_data``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from backend.data_download.csv_columns import ColumnMap, resolve_columns
from backend.data_download.issue_reports import format_value, row_issues
from backend.data_download.schema import (
    NY_TZ,
    OHLCV_COLUMNS,
    DataIssue,
    Severity,
    interval_to_timedelta,
)

_NA_TOKENS = ("", "nan", "na", "n/a", "null", "none", "-")
_OFFSET_RE = re.compile(r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")
_TIME_RE = re.compile(r"\d{1,2}:\d{2}")


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
                f"{int(lines[k])}: {format_value(text[base].iloc[k])} vs "
                f"{format_value(text[name].iloc[k])}); keep one",
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
