"""Open the stack's SQLite files (trader state, supervisor audit) or say clearly why not.

A damaged, truncated, read-only or foreign file must stop the process with one line that
names the file, what is wrong with it and what to do, never with a raw ``sqlite3``
traceback, and the file must be left exactly as it was: every check here reads only, and
nothing is written (no journal mode switch, no schema) before the file has passed them.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite 3 database file."""


class SQLiteFileError(RuntimeError):
    """A SQLite file of the stack cannot be used; the message is the one line to show."""

    def __init__(self, path: str | Path, problem: str, remedy: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{role_free(path)}: {problem}; {remedy}")


def role_free(path: str | Path) -> str:
    """The path as shown in messages (absolute, so the operator knows which file)."""
    return str(Path(path).resolve()) if str(path) != ":memory:" else ":memory:"


def check_sqlite_file(path: str | Path, *, what: str) -> None:
    """Refuse an existing file that is not a healthy, writable SQLite database.

    Args:
        path: The database file (a missing file passes: it will be created).
        what: What the file is, for the remedy text (``"trader state file"``).

    Raises:
        SQLiteFileError: Not a regular file, unreadable, read-only, empty, wrong header,
            truncated or failing SQLite's ``quick_check``.
    """
    p = Path(path)
    keep = f"the file was left untouched; restore the {what} from a backup or move it away"
    if not p.exists():
        parent = p.parent if str(p.parent) else Path(".")
        if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
            raise SQLiteFileError(
                path,
                f"directory {parent} is not writable, cannot create the {what}",
                "make the directory writable or configure another path",
            )
        return
    if not p.is_file():
        raise SQLiteFileError(path, f"is not a regular file (the {what} must be one)", keep)
    try:
        with p.open("rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise SQLiteFileError(
            path, f"cannot be read ({exc.strerror or type(exc).__name__})", keep
        ) from None
    if len(header) == 0:
        raise SQLiteFileError(path, "is empty (0 bytes), not a SQLite database", keep)
    if not header.startswith(SQLITE_MAGIC):
        raise SQLiteFileError(path, "is not a SQLite database (bad header)", keep)
    if len(header) < 100:
        raise SQLiteFileError(path, "is truncated (shorter than a SQLite header)", keep)
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    size = p.stat().st_size
    wal = Path(f"{p}-wal")
    if page_size >= 512 and pages and size < page_size * pages and not wal.exists():
        raise SQLiteFileError(
            path,
            f"is truncated ({size} bytes, its header says {pages} pages of {page_size})",
            keep,
        )
    # The permission bits count too: root may write anyway, but a file an operator made
    # read-only is not to be written.
    writable = (
        os.access(p, os.W_OK)
        and os.access(p.parent, os.W_OK | os.X_OK)
        and bool(p.stat().st_mode & stat.S_IWUSR)
    )
    if not writable:
        raise SQLiteFileError(
            path,
            "is read-only (the file or its directory); the stack must write it",
            f"make it writable (chmod u+w) or configure another path for the {what}",
        )
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SQLiteFileError(path, f"is damaged (SQLite: {exc})", keep) from None
    verdict = "; ".join(str(r[0]) for r in rows[:3])
    if verdict != "ok":
        raise SQLiteFileError(path, f"is damaged (SQLite quick_check: {verdict})", keep)


def connect_checked(path: str | Path, *, what: str) -> sqlite3.Connection:
    """:func:`check_sqlite_file`, then a read-write connection (autocommit mode).

    Raises:
        SQLiteFileError: See :func:`check_sqlite_file`; also when SQLite refuses the
            connection or the first write.
    """
    if str(path) != ":memory:":
        check_sqlite_file(path, what=what)
    try:
        return sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=10.0
        )
    except sqlite3.Error as exc:
        raise SQLiteFileError(
            path, f"cannot be opened (SQLite: {exc})", "check the path and permissions"
        ) from None
