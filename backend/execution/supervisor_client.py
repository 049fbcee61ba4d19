"""Ask the supervisor service for its verdict, with a hard total deadline and fallbacks.

``GET {url}/supervisor/status`` answers ``{"level": "OK"|"Caution"|"Halt", "reason": str,
"decided_at": ISO UTC, "stale": bool, ...}`` (extra fields are ignored). httpx timeouts are
per phase (connect, each read), so a server that trickles bytes could hold a request far
longer than its timeout; the request therefore runs in a worker thread and the caller waits
at most ``deadline_s`` in total. On any failure the last persisted verdict is used, floored
at Caution (an unreachable supervisor is itself a reason for caution); with none, Caution.
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict

from backend.execution.guards import Level
from backend.execution.state_store import StateStore

SUPERVISOR_KEY = "supervisor_seen"
"""Store key of the last verdict actually received."""


class SupervisorStatus(BaseModel):
    """The part of the supervisor's answer the trader reads."""

    model_config = ConfigDict(extra="ignore")

    level: Literal["OK", "Caution", "Halt"]
    reason: str = ""
    decided_at: datetime | None = None
    stale: bool = False


@dataclass(frozen=True)
class Verdict:
    """What the trader acts on."""

    level: Level
    """Level to feed the mode controller (already floored at Caution if stale/fallback)."""
    reported: str | None
    """The supervisor's own level, ``None`` when it could not be asked."""
    source: Literal["supervisor", "persisted", "default"]
    reason: str
    elapsed_s: float


class SupervisorClient:
    """Query the supervisor; never blocks longer than ``deadline_s``.

    Args:
        url: Base URL (``None``: always fall back).
        store: Where the last received verdict is persisted.
        deadline_s: Hard total deadline per query.
    """

    def __init__(self, url: str | None, store: StateStore, deadline_s: float = 2.0) -> None:
        self.url = url.rstrip("/") if url else None
        self.store = store
        self.deadline_s = float(deadline_s)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="supervisor"
        )

    def close(self) -> None:
        """Stop the worker pool without waiting for hung requests."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _fetch(self) -> SupervisorStatus:
        assert self.url is not None
        timeout = httpx.Timeout(self.deadline_s)
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.get(f"{self.url}/supervisor/status")
            response.raise_for_status()
            return SupervisorStatus.model_validate(response.json())

    def query(self) -> Verdict:
        """One verdict within the deadline (falls back on any failure)."""
        start = time.monotonic()
        error = "no supervisor url configured"
        if self.url is not None:
            future = self._pool.submit(self._fetch)
            try:
                status = future.result(timeout=self.deadline_s)
            except concurrent.futures.TimeoutError:
                future.cancel()
                error = f"supervisor did not answer within {self.deadline_s:.1f}s"
            except Exception as exc:  # noqa: BLE001 - any failure means "no verdict"
                error = f"supervisor query failed: {type(exc).__name__}: {exc}"
            else:
                elapsed = time.monotonic() - start
                self.store.set(
                    SUPERVISOR_KEY,
                    {"level": status.level, "reason": status.reason, "stale": status.stale},
                )
                level = Level.parse(status.level)
                if status.stale:
                    level = max(level, Level.CAUTION)
                return Verdict(level, status.level, "supervisor", status.reason, elapsed)
        elapsed = time.monotonic() - start
        seen = self.store.get(SUPERVISOR_KEY)
        if seen:
            level = max(Level.parse(seen["level"]), Level.CAUTION)
            return Verdict(level, None, "persisted", f"{error}; last seen {seen['level']}", elapsed)
        return Verdict(Level.CAUTION, None, "default", error, elapsed)
