"""Validating one symbol's bar CSVs: every check in order, then the clean bar frame.

Nothing here touches the file system. The loader reads the CSVs as text and parses them
(``csv_parsing.parse_rows``, with the header mapped by ``csv_columns``);
:func:`validate_bars` then runs, on the parsed rows of all files of one symbol together,
the row checks (``row_checks``: prices, volume, order, bar grid, duplicates) and the
calendar checks (``calendar_checks``: session, missing bars, missing days) and returns a
bar frame (``schema.py``) plus every :class:`~backend.data_download.schema.DataIssue`
found, each naming the file, the line as a text editor shows it (the header is line 1),
the column and the offending value. Every check is vectorised over all rows; Python loops
run only over files with problems, over the sessions that have gaps, and over the
(capped, ``issue_reports``) issues being reported.

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

The file-level codes (``empty_file``, ``unreadable``, ``bad_field_count``, ``no_files``)
come from the loader, which reads the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from backend.data_download.calendar_checks import (
    check_missing_bars,
    check_missing_sessions,
    check_session,
)
from backend.data_download.csv_parsing import ParsedRows
from backend.data_download.row_checks import check_duplicates, check_rows, combine_rows
from backend.data_download.schema import INDEX_NAME, NY_TZ, OHLCV_COLUMNS, DataIssue, Severity

VALIDATION_VERSION = 1
"""Bump when a rule changes, so cached validation results are rebuilt."""


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
