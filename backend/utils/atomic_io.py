"""Crash-safe file writes: a temporary sibling, then ``os.replace``.

Readers see the old file or the new one, never a torn one, because ``os.replace`` is atomic
on POSIX and Windows within one directory. Every artifact a user keeps (bar CSVs, configs,
normalizers, results) goes through here.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def write_text_atomic(path: str | Path, text: str, *, durable: bool = True) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically; create parents.

    Args:
        path: Destination file.
        text: Full content.
        durable: ``fsync`` before the rename, so a power cut cannot lose a file already
            reported as written. ``False`` is for data that can be regenerated (still never
            torn for readers).

    Returns:
        ``path`` as a ``Path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def json_safe(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to ``None`` (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented strict JSON through :func:`write_text_atomic`.

    Non-finite floats are written as ``null`` (see :func:`json_safe`), so any JSON reader
    accepts the file.
    """
    text = json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n"
    return write_text_atomic(path, text)
