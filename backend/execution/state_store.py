"""Crash-safe state of the live trader and the paper broker, in one SQLite file (WAL).

Tables::

    kv        key TEXT PK, value TEXT (JSON)   trader state: last processed bar, level,
                                               manual halt, latched guard trips, supervisor
                                               verdict seen, peak/day-start equity
    account   symbol TEXT PK, qty, cash        paper broker book ('$CASH' row holds cash)
    orders    client_order_id TEXT PK, ...     every order ever accepted (idempotency key)
    fills     client_order_id TEXT PK, ...     at most one fill per order (booked once)
    events    id INTEGER PK, ts, kind, message audit log (guards, duplicates, halts)

Every multi-row change runs in one transaction (:meth:`StateStore.transaction`), so a
kill at any point leaves either the old or the new state, never half of it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backend.utils.sqlite_files import SQLiteFileError, connect_checked

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS account (symbol TEXT PRIMARY KEY, qty REAL NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY,
    symbol TEXT NOT NULL,
    bar_ts TEXT NOT NULL,
    target REAL NOT NULL,
    qty REAL NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_seq INTEGER NOT NULL,
    submitted_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    client_order_id TEXT PRIMARY KEY REFERENCES orders(client_order_id),
    symbol TEXT NOT NULL,
    bar_ts TEXT NOT NULL,
    qty REAL NOT NULL,
    price REAL NOT NULL,
    cost REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

_COLUMNS: dict[str, set[str]] = {
    "kv": {"key", "value"},
    "account": {"symbol", "qty"},
    "orders": {"client_order_id", "symbol", "bar_ts", "target", "qty", "kind", "status"},
    "fills": {"client_order_id", "symbol", "bar_ts", "qty", "price", "cost"},
    "events": {"id", "ts", "kind", "message"},
}

CASH_KEY = "$CASH"
"""``account`` row that holds the cash balance."""


StateFileError = SQLiteFileError
"""Raised when the state file cannot be used; its message is the one line to show."""

STATE_FILE = "trader state file"


class StateStore:
    """Thread-safe access to the SQLite state file.

    An existing file is checked before anything is written to it
    (:func:`backend.utils.sqlite_files.check_sqlite_file`): a damaged, truncated, foreign
    or read-only file raises :class:`StateFileError` naming the path, and is left as it
    was.

    Args:
        path: The database file (created with its tables if missing); ``":memory:"`` for
            throw-away state.
        must_exist: Refuse to create a missing file (``--require-state``): a deleted state
            file must not silently become a fresh account.

    Attributes:
        created: Whether this call created the file (a new, empty account).
    """

    def __init__(self, path: str | Path, *, must_exist: bool = False) -> None:
        self.path = str(path)
        self.created = self.path == ":memory:" or not Path(self.path).exists()
        if self.path != ":memory:":
            if self.created and must_exist:
                raise StateFileError(
                    self.path,
                    "does not exist and --require-state is set (a new account would start)",
                    "restore the trader state file, or drop --require-state to start a new "
                    "paper account with the configured initial cash",
                )
            parent = Path(self.path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateFileError(
                    self.path,
                    f"its directory cannot be created ({exc.strerror or type(exc).__name__})",
                    "create it or configure another state_db",
                ) from None
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per transaction().
        self._conn = connect_checked(self.path, what=STATE_FILE)
        self._conn.row_factory = sqlite3.Row
        try:
            self._check_schema()
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StateFileError(
                self.path,
                f"cannot be initialised (SQLite: {exc})",
                "check the file, its permissions and the free disk space",
            ) from None
        self._depth = 0

    def _check_schema(self) -> None:
        """Refuse a SQLite file that is not a trader state file (before writing to it)."""
        have = {
            r[0]: {c[1] for c in self._conn.execute(f"PRAGMA table_info('{r[0]}')")}
            for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        have.pop("sqlite_sequence", None)
        if not have:
            return
        wrong = [
            f"{table} lacks {sorted(cols - have[table])}" if table in have else f"no {table}"
            for table, cols in _COLUMNS.items()
            if table not in have or not cols <= have[table]
        ]
        if wrong:
            self._conn.close()
            raise StateFileError(
                self.path,
                f"is a SQLite database but not a trader state file ({'; '.join(wrong[:3])})",
                "the file was left untouched; point state_db at the right file",
            )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception); nestable."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Run a read query and return all rows."""
        with self._lock:
            return list(self._conn.execute(sql, params).fetchall())

    # -- key/value --------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """JSON value stored under ``key`` (``default`` if absent)."""
        rows = self.query("SELECT value FROM kv WHERE key = ?", (key,))
        if not rows:
            return default
        try:
            return json.loads(rows[0]["value"])
        except (ValueError, TypeError):
            raise StateFileError(
                self.path,
                f"holds a damaged value under key {key!r} (not JSON)",
                "the file was left untouched; restore the trader state file from a backup",
            ) from None

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serializable value (joins an open transaction if any)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO kv(key, value) VALUES(?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def log_event(self, ts: str, kind: str, message: str) -> None:
        """Append to the audit log."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO events(ts, kind, message) VALUES(?, ?, ?)", (ts, kind, message)
            )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Audit log rows (optionally of one kind), oldest first."""
        if kind is None:
            rows = self.query("SELECT ts, kind, message FROM events ORDER BY id")
        else:
            rows = self.query(
                "SELECT ts, kind, message FROM events WHERE kind = ? ORDER BY id", (kind,)
            )
        return [dict(r) for r in rows]
