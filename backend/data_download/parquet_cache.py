"""A parquet cache of validated bar frames, so repeated loads skip parsing the CSVs.

Parsing and validating 30k CSV rows takes a good fraction of a second; reading the same
frame back from parquet takes milliseconds. The cache lives apart from the data, under
``<data_dir>/.cache/intraday/<SYMBOL>/<interval>/<variant>.parquet``, and is only ever a
copy: deleting the ``.cache`` folder is always safe, and the CSVs are never touched.

An entry is keyed by a BLAKE2 hash of the CSVs' names **and bytes** plus the parameters
that shape the result (interval, session, validation rules version, calendar version).
Hashing content rather than trusting modification times catches an edit that keeps the
size and lands within the file system's timestamp granularity; hashing a few MB costs a
few milliseconds, far less than parsing. Each entry is a single parquet file whose schema
metadata holds the key and the JSON-encoded issues and counts, written to a temporary file
and moved into place with ``os.replace``, so a reader sees either the old entry or the
new one, never a frame paired with another frame's issues.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backend.data_download.schema import NY_TZ, OHLCV_COLUMNS, DataIssue, Severity

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bump when the layout of an entry changes; older entries are then ignored."""

CACHE_DIRNAME = ".cache"
_META_KEY = b"yooprl.cache"
_CHUNK = 1 << 20


def cache_path(data_dir: str | Path, symbol: str, interval: str, variant: str) -> Path:
    """Where the entry for one symbol, interval and variant (e.g. ``regular``) lives."""
    return (
        Path(data_dir)
        / CACHE_DIRNAME
        / "intraday"
        / symbol.upper()
        / interval
        / (f"{variant}.parquet")
    )


def fingerprint(
    files: Sequence[Path], params: Mapping[str, object], max_file_bytes: int | None = None
) -> str:
    """Hash of the files' names and contents and of the parameters.

    Args:
        files: The CSV files, in the order they are read.
        params: JSON-serialisable settings that change the cached result.
        max_file_bytes: Files above this size are refused unread by the loader; only their
            size and modification time are hashed (reading 2 GB to hash it is the problem
            the limit exists to avoid).

    Returns:
        A hex digest; equal digests mean the cached result is still valid.
    """
    digest = hashlib.blake2b(digest_size=20)
    digest.update(json.dumps({"format": CACHE_FORMAT, **params}, sort_keys=True).encode())
    for path in files:
        digest.update(b"\0file\0" + path.name.encode() + b"\0")
        st = path.stat()
        if max_file_bytes is not None and st.st_size > max_file_bytes:
            digest.update(f"oversize:{st.st_size}:{st.st_mtime_ns}".encode())
            continue
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def issues_to_json(issues: Sequence[DataIssue]) -> list[dict[str, Any]]:
    """Plain dicts for JSON (severity as its string value)."""
    return [{**asdict(i), "severity": i.severity.value} for i in issues]


def issues_from_json(items: Sequence[Mapping[str, Any]]) -> list[DataIssue]:
    """Inverse of :func:`issues_to_json`."""
    return [DataIssue(**{**item, "severity": Severity(item["severity"])}) for item in items]


@dataclass
class CacheEntry:
    """A cached bar frame and the JSON-compatible facts stored with it."""

    bars: pd.DataFrame
    meta: dict[str, Any]


def read_cache(path: Path, key: str) -> CacheEntry | None:
    """The entry at ``path`` if it exists and was built for ``key``; else ``None``.

    A missing, stale, foreign or corrupt file is a miss, never an error: the cache can
    always be rebuilt from the CSVs.
    """
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        raw_meta = (table.schema.metadata or {}).get(_META_KEY)
        if raw_meta is None:
            return None
        meta = json.loads(raw_meta)
        if meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
            return None
        bars = table.to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        logger.debug("ignoring unreadable cache entry %s: %s", path, exc)
        return None
    if list(bars.columns) != list(OHLCV_COLUMNS) or not isinstance(bars.index, pd.DatetimeIndex):
        return None
    bars.index = bars.index.tz_convert(NY_TZ).as_unit("ns")
    return CacheEntry(bars=bars, meta=meta)


def write_cache(path: Path, key: str, bars: pd.DataFrame, meta: Mapping[str, Any]) -> bool:
    """Store an entry atomically; returns ``False`` (and logs) when it cannot be written.

    A read-only data folder must not break loading, so write failures are not raised.
    """
    payload = json.dumps({**meta, "key": key, "format": CACHE_FORMAT}).encode()
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(bars, preserve_index=True)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: payload})
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            pq.write_table(table, handle)
        os.replace(tmp_name, path)
        return True
    except (OSError, pa.ArrowException) as exc:
        logger.warning("could not write bar cache %s: %s", path, exc)
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        return False
