"""Run provenance: which code, which packages and which data produced a model.

A model file without its provenance cannot be reproduced or trusted: a result from a dirty
working tree, another torch release or a silently edited CSV looks exactly like any other.
:func:`collect_provenance` records the code (git commit and whether the tree had
uncommitted changes), the interpreter, the versions of the packages that change numbers
(:data:`PROVENANCE_PACKAGES`), the platform and a UTC timestamp; :func:`hash_bars`
fingerprints the bars a model saw, so "same data" can be checked rather than assumed.

Nothing here raises because provenance is unavailable: outside a git checkout (an
installed wheel, a container without ``git``) the commit reads ``"unknown"``, and a package
that is not installed reads ``None``. Provenance must never be the reason a run fails.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "BAR_HASH_COLUMNS",
    "PROVENANCE_PACKAGES",
    "UNKNOWN",
    "collect_provenance",
    "data_range",
    "git_state",
    "hash_bars",
    "package_versions",
    "sha256_file",
]

UNKNOWN = "unknown"
"""Value of the git fields when they cannot be determined."""

PROVENANCE_PACKAGES: tuple[str, ...] = (
    "numpy",
    "pandas",
    "torch",
    "stable-baselines3",
    "gymnasium",
    "pyarrow",
    "exchange-calendars",
)
"""Distributions whose versions can change a run's numbers (or its data calendar)."""

BAR_HASH_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
"""Columns fingerprinted by :func:`hash_bars`, in this order."""

_BAR_HASH_TAG = b"yooprl-bars-v1"
"""Prefix of every bar hash; change it whenever the hashed byte layout changes."""

_GIT_TIMEOUT_S = 10.0
"""A hung ``git`` (network filesystem, huge untracked tree) must not stall a save."""

_REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout this package was imported from (the default place to ask git)."""


def _git(args: list[str], cwd: Path) -> str | None:
    """Output of ``git <args>`` in ``cwd``, or None if git is missing or fails."""
    try:
        done = subprocess.run(
            # --no-optional-locks: `status` would otherwise take index.lock to refresh
            # stat info, which can collide with a concurrent commit in the same checkout.
            ["git", "--no-optional-locks", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout


def git_state(repo_dir: str | Path | None = None) -> dict[str, Any]:
    """The git commit checked out at ``repo_dir`` and whether the tree is dirty.

    Only read-only commands run (``rev-parse`` and ``status --porcelain`` without optional
    locks), so this is safe while someone else commits in the same checkout.

    Args:
        repo_dir: Any directory inside the checkout; defaults to the one this package
            was imported from.

    Returns:
        ``{"commit": sha or "unknown", "dirty": bool or None}``; ``dirty`` counts
        untracked files too (a new, uncommitted module changes what ran) and is None when
        it cannot be determined.
    """
    cwd = Path(repo_dir) if repo_dir is not None else _REPO_ROOT
    if not cwd.is_dir():
        return {"commit": UNKNOWN, "dirty": None}
    head = _git(["rev-parse", "HEAD"], cwd)
    if head is None or not head.strip():
        return {"commit": UNKNOWN, "dirty": None}
    status = _git(["status", "--porcelain"], cwd)
    return {"commit": head.strip(), "dirty": None if status is None else bool(status.strip())}


def package_versions(packages: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed).

    Read from the installed metadata (:mod:`importlib.metadata`) rather than by importing
    the packages, so asking is cheap and has no side effects.
    """
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect_provenance(repo_dir: str | Path | None = None) -> dict[str, Any]:
    """Everything needed to say which code and environment produced a run.

    Args:
        repo_dir: Directory inside the git checkout; defaults to this package's checkout.

    Returns:
        JSON-ready ``{"git_commit", "git_dirty", "python", "packages", "platform",
        "timestamp_utc"}``.
    """
    git = git_state(repo_dir)
    return {
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": package_versions(),
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "byteorder": sys.byteorder,
        },
        "timestamp_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _select(
    frame: pd.DataFrame, start: pd.Timestamp | str | None, end: pd.Timestamp | str | None
) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """Rows of a tz-aware bar frame with ``start <= index <= end`` (naive bounds: frame tz).

    Returns:
        The rows and their index (typed, so callers need not check it again).
    """
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValueError("bar frame needs a timezone-aware DatetimeIndex (Docs/CONTRACTS.md)")
    mask = np.ones(len(frame), dtype=bool)
    for bound, keep in ((start, index.__ge__), (end, index.__le__)):
        if bound is None:
            continue
        ts = pd.Timestamp(bound)
        ts = ts.tz_localize(index.tz) if ts.tzinfo is None else ts
        mask &= np.asarray(keep(ts))
    return frame.loc[mask], index[mask]


def hash_bars(
    frame: pd.DataFrame,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> str:
    """SHA-256 of the bars in ``[start, end]``: their timestamps and OHLCV values.

    The digest covers a format tag, the row count, the bar starts as int64 nanoseconds
    since the epoch (UTC, so the frame's display timezone does not matter) and the
    :data:`BAR_HASH_COLUMNS` as little-endian float64, column by column. Extra columns
    (``vix``, features) are ignored: the hash identifies the *market data*, and two frames
    hash equal exactly when those bytes are equal, so one changed price or one missing bar
    changes it.

    Args:
        frame: Bar or market frame (``Docs/CONTRACTS.md``), tz-aware index.
        start: First bar start to include (inclusive); None for the first row.
        end: Last bar start to include (inclusive); None for the last row.

    Returns:
        64 hex characters.

    Raises:
        ValueError: if the index is not tz-aware or an OHLCV column is missing.
    """
    missing = [c for c in BAR_HASH_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"bar frame lacks column(s) {missing} needed for its hash")
    rows, index = _select(frame, start, end)
    stamps = index.tz_convert("UTC").tz_localize(None).as_unit("ns")
    digest = hashlib.sha256(_BAR_HASH_TAG)
    digest.update(np.int64(len(rows)).tobytes())
    digest.update(np.ascontiguousarray(stamps.to_numpy().view(np.int64), dtype="<i8").tobytes())
    for column in BAR_HASH_COLUMNS:
        values = rows[column].to_numpy(dtype=np.float64, na_value=np.nan)
        digest.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks: the fingerprint bundles record per file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_range(
    frame: pd.DataFrame,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
) -> dict[str, Any]:
    """First/last bar start, bar count and :func:`hash_bars` of ``frame`` in ``[start, end]``.

    Raises:
        ValueError: if the range holds no bar, or as :func:`hash_bars`.
    """
    rows, _ = _select(frame, start, end)
    if rows.empty:
        raise ValueError(f"no bars between {start} and {end}")
    return {
        "first_bar": rows.index[0].isoformat(),
        "last_bar": rows.index[-1].isoformat(),
        "n_bars": len(rows),
        "sha256": hash_bars(rows),
    }
