"""Paths of the CSV bar store and the one way the project writes bar CSVs.

Layout: ``<data_dir>/intraday/<SYMBOL>/15m/*.csv``. A folder may hold one file per
session (``2024-03-26.csv``) or consolidated files; readers accept both. Written CSVs hold
``timestamp,open,high,low,close,volume`` with ISO-8601 timestamps carrying their UTC offset
(``2024-03-26 09:30:00-04:00``), so the zone travels with the data.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from backend.data_download.schema import INDEX_NAME, NY_TZ, OHLCV_COLUMNS

CSV_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S%z"


def symbol_dir(data_dir: str | Path, symbol: str, interval: str = "15m") -> Path:
    """Folder that holds one symbol's CSVs for one interval."""
    return Path(data_dir) / "intraday" / symbol.upper() / interval


def session_csv_path(
    data_dir: str | Path, symbol: str, session: pd.Timestamp | str, interval: str = "15m"
) -> Path:
    """Path of the per-session file for ``session`` (a date)."""
    day = pd.Timestamp(session).strftime("%Y-%m-%d")
    return symbol_dir(data_dir, symbol, interval) / f"{day}.csv"


def list_csv_files(data_dir: str | Path, symbol: str, interval: str = "15m") -> list[Path]:
    """All CSV files of a symbol, sorted by name (per-session names sort by date)."""
    folder = symbol_dir(data_dir, symbol, interval)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file())


def _format_frame(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"bar frame lacks columns {missing}; expected {list(OHLCV_COLUMNS)}")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValueError("bar frame needs a timezone-aware DatetimeIndex")
    out = frame.loc[:, list(OHLCV_COLUMNS)].copy()
    out.index = index.tz_convert(NY_TZ).strftime(CSV_TIMESTAMP_FORMAT)
    # strftime's %z gives -0400; insert the colon so the stamp is ISO-8601.
    out.index = [s[:-2] + ":" + s[-2:] for s in out.index]
    out.index.name = INDEX_NAME
    return out


def write_csv_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a bar frame to ``path`` via a temporary file and ``os.replace``.

    An interrupted write leaves either the old file or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = _format_frame(frame)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            body.to_csv(handle, float_format="%.10g")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def write_sessions(
    frame: pd.DataFrame, data_dir: str | Path, symbol: str, interval: str = "15m"
) -> list[Path]:
    """Split a bar frame by New York calendar date and write one file per session."""
    if frame.empty:
        return []
    local = frame.index.tz_convert(NY_TZ)
    written = []
    for day, part in frame.groupby(local.normalize().date):
        written.append(write_csv_atomic(part, session_csv_path(data_dir, symbol, day, interval)))
    return written
