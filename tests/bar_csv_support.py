"""Helpers for the validation tests: CSV text for bars, parsing it, picking issues by code."""

from __future__ import annotations

import io

import pandas as pd

from backend.data_download.csv_parsing import parse_bars
from backend.data_download.schema import DataIssue
from backend.data_download.validation import ValidationResult, validate_bars

HEADER = "timestamp,open,high,low,close,volume"


def row(
    time: str = "09:30",
    o: object = 100,
    h: object = 101,
    lo: object = 99,
    c: object = 100.5,
    v: object = 1000,
    day: str = "2024-03-26",
    offset: str = "-04:00",
) -> str:
    return f"{day} {time}:00{offset},{o},{h},{lo},{c},{v}"


def session_rows(day: str = "2024-03-26", offset: str = "-04:00", n: int = 26) -> list[str]:
    times = pd.date_range(f"{day} 09:30", periods=n, freq="15min").strftime("%H:%M")
    return [row(t, day=day, offset=offset) for t in times]


def raw_frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skip_blank_lines=False)


def csv(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def validate(
    *texts: str, names: list[str] | None = None, symbol: str | None = None, **kwargs: object
) -> ValidationResult:
    names = names or [f"f{k}.csv" for k in range(len(texts))]
    parsed = [parse_bars(raw_frame(t), n, symbol=symbol) for t, n in zip(texts, names, strict=True)]
    return validate_bars(parsed, "15m", where="store", **kwargs)  # type: ignore[arg-type]


def only(issues: list[DataIssue], code: str) -> list[DataIssue]:
    return [i for i in issues if i.code == code]


def one(issues: list[DataIssue], code: str) -> DataIssue:
    found = only(issues, code)
    assert len(found) == 1, f"expected one {code}, got {[str(i) for i in issues]}"
    return found[0]
