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

CASH_KEY = "$CASH"
"""``account`` row that holds the cash balance."""


class StateStore:
    """Thread-safe access to the SQLite state file.

    Args:
        path: The database file (created with its tables if missing); ``":memory:"`` for
            throw-away state.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per transaction().
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)
        self._depth = 0

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
        return json.loads(rows[0]["value"]) if rows else default

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
