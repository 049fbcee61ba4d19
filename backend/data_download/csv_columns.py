"""Which header names of a bar CSV hold which canonical field (common spellings accepted).

A missing field is an error at line 1 that suggests the closest unrecognised header name;
two columns meaning the same field (``Close`` and ``close``) are ``ambiguous_column``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from backend.data_download.schema import OHLCV_COLUMNS, DataIssue, Severity

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


def _norm(name: str) -> str:
    """Header name compared without case, spaces or punctuation."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


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
