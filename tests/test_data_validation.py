"""The whole validation of one symbol: the canonical bar frame and the order of its issues."""

from __future__ import annotations

import numpy as np
from bar_csv_support import csv, row, session_rows, validate

from backend.data_download.schema import NY_TZ


def test_result_is_a_canonical_bar_frame():
    result = validate(csv(*session_rows()))
    bars = result.bars
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dt == np.float64 for dt in bars.dtypes)
    assert bars.index.name == "timestamp"
    assert str(bars.index.dtype) == f"datetime64[ns, {NY_TZ}]"
    assert bars.index.is_unique and bars.index.is_monotonic_increasing


def test_issues_are_sorted_by_file_then_line():
    a = csv(row("09:30", v=-1), row("09:45", c="x"))
    b = csv(row("09:30", h=1))
    issues = validate(a, b, names=["a.csv", "b.csv"]).issues
    keys = [(i.file, i.line) for i in issues if i.line is not None]
    assert keys == sorted(keys)
