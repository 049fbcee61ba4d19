"""Issue records for many rows at once, so a file wrong on every row stays readable.

Every check reports through these helpers: one :class:`~backend.data_download.schema.DataIssue`
per offending row up to :data:`MAX_ROW_ISSUES` per file and check followed by one summary
of the rest (:func:`row_issues`), or a single issue per file with the count and the first
example for warnings about many rows (:func:`summary_issue`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from backend.data_download.schema import DataIssue, Severity

MAX_ROW_ISSUES = 50
"""Row-level issues reported per file and check before a single summary issue."""


def format_value(value: object) -> str:
    """A cell value as issues show it (10 significant digits, ISO timestamps)."""
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
                    severity,
                    code,
                    name,
                    int(lines[k]),
                    text(int(k)),
                    column,
                    format_value(values[k]),
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
                    format_value(values[pos[limit]]),
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
                format_value(values[pos[0]]),
            )
        )
    return out
