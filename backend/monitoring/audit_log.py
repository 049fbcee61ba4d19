"""Append-only audit trail of supervisor decisions: SQLite (WAL) plus a JSON-lines mirror.

One row per decision or manual action. SQLite is the queryable record the API reads and
the supervisor boots from; the JSON-lines file is the greppable copy that survives a
corrupted database. Rows are only ever inserted: triggers make ``UPDATE`` and ``DELETE``
fail, so a bug (or a hurried operator) cannot rewrite history through this connection.

Never put secrets in a record: callers pass scrubbed strings, and nothing here reads the
environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from backend.utils.sqlite_files import SQLiteFileError, connect_checked
from backend.utils.text_sanitize import clean_text

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    decided_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    inputs_digest TEXT NOT NULL,
    n_items INTEGER NOT NULL,
    provider TEXT NOT NULL,
    raw_answer TEXT NOT NULL,
    rule_level TEXT,
    llm_level TEXT,
    verdict_level TEXT,
    level TEXT NOT NULL,
    reason TEXT NOT NULL,
    sources TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    error TEXT,
    override TEXT
);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


def inputs_digest(items: Sequence[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON of the items, sorted: same inputs, same digest."""
    canon = sorted(json.dumps(i, sort_keys=True, ensure_ascii=False) for i in items)
    return hashlib.sha256("\n".join(canon).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    """One audit row (``id`` is assigned by the database)."""

    decided_at: str
    """ISO 8601 UTC time of the decision or manual action."""

    kind: str
    """``decision`` (a poll), ``halt``, ``resume``, ``override`` or ``expire``."""

    inputs_digest: str
    """sha256 of the sorted input items (empty-list digest for manual actions)."""

    n_items: int
    """Number of input items."""

    provider: str
    """Providers consulted (``rules``, ``rules+llm:<model>``, ``manual``)."""

    raw_answer: str
    """The LLM's raw answer, truncated (empty when none)."""

    rule_level: str | None
    """Rule classifier verdict (wire name), if any."""

    llm_level: str | None
    """Validated LLM verdict (wire name), if any."""

    verdict_level: str | None
    """Merged verdict of this poll, before the state machine (wire name)."""

    level: str
    """Level in force after this record (the state machine's output, wire name)."""

    reason: str
    """Human-readable reason."""

    sources: tuple[str, ...]
    """Headlines that drove the verdict."""

    latency_ms: float
    """Wall-clock time of the decision (LLM call included)."""

    error: str | None = None
    """Provider error (secret-free), if any."""

    override: dict[str, Any] | None = None
    """Manual override in force or applied: level, who, why, expiry."""


class AuditWriteError(RuntimeError):
    """The audit row could not be stored in SQLite (the decision it records is not durable)."""


AUDIT_FILE = "supervisor audit database"

MAX_TEXT_CHARS = 4000
"""Longest text field stored (reasons, raw answers, errors); longer text is cut."""


def clean_record(record: AuditRecord) -> AuditRecord:
    """Every text of ``record`` normalized and bounded (``clean_text``), nested ones too.

    An audit row must always be writable: a lone surrogate or a control character from a
    headline, an LLM answer or an operator's ``why`` would otherwise fail the insert.
    """

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return clean_text(value, MAX_TEXT_CHARS)
        if isinstance(value, dict):
            return {clean_text(k, 200): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(clean(v) for v in value)
        return value

    changes = {
        f.name: clean(getattr(record, f.name))
        for f in fields(record)
        if isinstance(getattr(record, f.name), (str, dict, list, tuple))
    }
    return replace(record, **changes)


class AuditLog:
    """Thread-safe appender/reader over one SQLite file and one JSON-lines file."""

    def __init__(self, db_path: str | Path, jsonl_path: str | Path) -> None:
        """Open (creating if needed) both files; WAL keeps readers off the writer's back.

        Raises:
            SQLiteFileError: The database exists but is damaged, foreign or read-only
                (the message names the path; the file is not modified).
        """
        self.db_path = Path(db_path)
        self.jsonl_path = Path(jsonl_path)
        self.mirror_error: str | None = None
        """Why the last JSON-lines mirror write failed (``None`` when it worked)."""
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SQLiteFileError(
                self.db_path,
                f"its directory cannot be created ({exc.strerror or type(exc).__name__})",
                "create it or configure other audit paths",
            ) from None
        self._lock = threading.Lock()
        self._conn = connect_checked(self.db_path, what=AUDIT_FILE)
        self._conn.row_factory = sqlite3.Row
        try:
            tables = {
                r[0]
                for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            } - {"sqlite_sequence"}
            if tables and "decisions" not in tables:
                raise SQLiteFileError(
                    self.db_path,
                    f"is a SQLite database but not an audit log (tables {sorted(tables)[:5]})",
                    "the file was left untouched; configure the right audit_db_path",
                )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._conn.close()
            raise SQLiteFileError(
                self.db_path,
                f"cannot be initialised (SQLite: {exc})",
                "check the file, its permissions and the free disk space",
            ) from None
        except SQLiteFileError:
            self._conn.close()
            raise

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def append(self, record: AuditRecord) -> int:
        """Insert one row in a transaction, then mirror it to the JSON-lines file.

        Every text is normalized first (:func:`clean_record`). When SQLite refuses the
        row, it is still written to the JSON-lines mirror (with ``id: null`` and the
        error), so the level is not lost at a restart, and :class:`AuditWriteError` is
        raised. A failing mirror alone is logged and kept in :attr:`mirror_error`.

        Returns:
            The row id.

        Raises:
            AuditWriteError: SQLite did not store the row.
        """
        record = clean_record(record)
        row = asdict(record)
        values = dict(row)
        values["sources"] = json.dumps(list(record.sources), ensure_ascii=False)
        values["override"] = (
            json.dumps(record.override, ensure_ascii=False) if record.override else None
        )
        cols = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        with self._lock:
            failure: str | None = None
            row_id: int | None = None
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    cur = self._conn.execute(
                        f"INSERT INTO decisions ({cols}) VALUES ({marks})", values
                    )
                    row_id = int(cur.lastrowid or 0)
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, ValueError, OSError) as exc:
                failure = f"audit database {self.db_path}: {type(exc).__name__}: {exc}"
            row["id"] = row_id
            row["sources"] = list(record.sources)
            if failure is not None:
                row["audit_error"] = clean_text(failure, 500)
            self._mirror(row)
        if failure is not None:
            raise AuditWriteError(failure)
        assert row_id is not None
        return row_id

    def _mirror(self, row: dict[str, Any]) -> None:
        try:
            with self.jsonl_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self.mirror_error = None
        except (OSError, ValueError) as exc:
            self.mirror_error = f"audit mirror {self.jsonl_path}: {type(exc).__name__}: {exc}"
            logger.error("%s", self.mirror_error)

    def last_mirrored(self) -> dict[str, Any] | None:
        """The newest parseable row of the JSON-lines mirror (read from its end), or None."""
        try:
            with self.jsonl_path.open("rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(size - 262144, 0))
                tail = fh.read()
        except OSError:
            return None
        for line in reversed(tail.splitlines()):
            try:
                row = json.loads(line.decode("utf-8", "replace"))
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("level"), str):
                return row
        return None

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` rows, newest first, as dicts (JSON fields decoded)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM decisions ORDER BY id DESC LIMIT ?", (int(limit),)
            ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["sources"] = json.loads(d["sources"])
            d["override"] = json.loads(d["override"]) if d["override"] else None
            out.append(d)
        return out

    def last(self) -> dict[str, Any] | None:
        """The newest row, or ``None`` for an empty log."""
        rows = self.recent(1)
        return rows[0] if rows else None

    def count(self) -> int:
        """Number of rows."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
