"""REST API of the live trader: status, positions/PnL, manual Halt and Resume.

The API talks to the trader only through the SQLite state file, so it works in the trader
process (a uvicorn thread) or in its own process:

* ``GET /live/status``, ``GET /live/positions``: read-only, loopback clients only;
* ``POST /live/halt``, ``POST /live/resume``: need ``Authorization: Bearer <token>`` (the
  token comes from the environment variable named in the live config, compared with
  :func:`hmac.compare_digest`); without a configured token they are disabled (503).

Halt sets the manual-halt flag, which the trader reads on its next bar or tick (then
flattens and stops entering). Resume clears the flag and bumps a sequence number; the
trader clears its latched Halt and restarts from Caution.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.execution.state_store import CASH_KEY, StateStore
from backend.utils.body_limit import DEFAULT_MAX_BODY_BYTES, harden_app
from backend.utils.text_sanitize import clean_text

LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")


MAX_REASON_CHARS = 500
"""Longest accepted halt reason (the supervisor's own ``why`` allows 2000)."""


class HaltRequest(BaseModel):
    """Body of ``POST /live/halt``: unknown fields refused, the reason normalized, bounded."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="manual halt", max_length=MAX_REASON_CHARS)

    @field_validator("reason", mode="before")
    @classmethod
    def _clean(cls, value: object) -> object:
        if not isinstance(value, str):
            return value  # pydantic reports the wrong type
        # A Halt is never refused for want of a reason: blank becomes the default.
        return clean_text(value) or "manual halt"


def create_app(
    store: StateStore,
    *,
    token: str | None,
    read_hosts: Sequence[str] = LOOPBACK_HOSTS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The live API over ``store``.

    Args:
        store: The trader's state file.
        token: Bearer token of the control endpoints (``None``/empty disables them).
        read_hosts: Client addresses allowed to read status (loopback by default).
        max_body_bytes: Larger request bodies are refused with 413 before parsing.
    """
    app = FastAPI(title="YoopRL live trader", version="1")
    harden_app(app, max_body_bytes)

    def loopback_only(request: Request) -> None:
        host = request.client.host if request.client is not None else ""
        if host not in read_hosts:
            raise HTTPException(status_code=403, detail="status is served to loopback clients only")

    def require_token(request: Request) -> None:
        if not token:
            raise HTTPException(
                status_code=503, detail="control endpoints disabled: no token configured"
            )
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )
        if not ok:
            raise HTTPException(
                status_code=401,
                detail="missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.get("/live/status", dependencies=[Depends(loopback_only)])
    def status() -> dict[str, Any]:
        return {
            "status": store.get("status") or {},
            "mode_state": store.get("mode_state") or {},
            "manual_halt": store.get("manual_halt") or {"active": False},
            "last_processed_bar": store.get("last_processed_bar"),
            "supervisor_seen": store.get("supervisor_seen"),
        }

    @app.get("/live/positions", dependencies=[Depends(loopback_only)])
    def positions() -> dict[str, Any]:
        rows = store.query("SELECT symbol, qty FROM account")
        cash = next((r["qty"] for r in rows if r["symbol"] == CASH_KEY), None)
        held = {r["symbol"]: r["qty"] for r in rows if r["symbol"] != CASH_KEY}
        costs = store.query("SELECT COALESCE(SUM(cost), 0) AS c, COUNT(*) AS n FROM fills")[0]
        pending = store.query(
            "SELECT client_order_id, symbol, bar_ts, target, qty, kind FROM orders "
            "WHERE status = 'pending' ORDER BY created_seq"
        )
        status = store.get("status") or {}
        return {
            "cash": cash,
            "positions": held,
            "equity": status.get("equity"),
            "pnl": status.get("pnl"),
            "last_price": status.get("last_price"),
            "costs": costs["c"],
            "fills": costs["n"],
            "open_orders": [dict(r) for r in pending],
        }

    @app.post("/live/halt", dependencies=[Depends(require_token)])
    def halt(body: HaltRequest | None = None) -> dict[str, Any]:
        reason = body.reason if body is not None else "manual halt"
        store.set("manual_halt", {"active": True, "reason": reason})
        return {"manual_halt": True, "reason": reason}

    @app.post("/live/resume", dependencies=[Depends(require_token)])
    def resume() -> dict[str, Any]:
        with store.transaction():
            seq = int(store.get("resume_seq", 0)) + 1
            store.set("manual_halt", {"active": False, "reason": ""})
            store.set("resume_seq", seq)
        return {"manual_halt": False, "resume_seq": seq}

    return app
