"""Checks on parsed rows: prices, volume, time order, the bar grid, duplicate bars.

The one-file checks (:func:`check_rows`) flag rows in place on
:class:`~backend.data_download.csv_parsing.ParsedRows`; the duplicate check runs on the
error-free rows of all files of a symbol together (:func:`combine_rows`,
:func:`check_duplicates`), because a concatenation gone wrong (two copies of a bar) is the
real danger of files that overlap. Unsorted rows are only a warning: order carries no
information the timestamps do not, so sorting loses nothing.

Codes raised here: ``non_positive_price``, ``high_below_low``, ``open_outside_range``,
``close_outside_range``, ``negative_volume``, ``zero_volume``, ``unsorted``, ``off_grid``,
``duplicate_conflict``, ``duplicate_identical``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from backend.data_download.csv_parsing import ParsedRows, empty_rows
from backend.data_download.issue_reports import format_value, row_issues, summary_issue
from backend.data_download.schema import (
    OHLCV_COLUMNS,
    PRICE_COLUMNS,
    DataIssue,
    Severity,
    interval_to_timedelta,
)

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


def _pair_message(template: str, *columns: np.ndarray) -> Callable[[int], str]:
    """Message for row ``k`` with the formatted ``columns[i][k]`` filled into ``template``."""

    def message(k: int) -> str:
        return template.format(*(format_value(col[k]) for col in columns))

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
                    value=format_value(stamps.iloc[first]),
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


# --------------------------------------------------------------------------- duplicates


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
            f"{format_value(cols_arr[row, c])} here, {format_value(ref_arr[row, c])} there); "
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
