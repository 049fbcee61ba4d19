"""Shared pieces of the console tests: serving apps on loopback, a live stack with hostile text."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fastapi import FastAPI

from backend.api import live_routes
from backend.config.supervisor_config import SupervisorConfig
from backend.execution.state_store import StateStore
from backend.monitoring import routes as supervisor_routes
from backend.monitoring.audit_log import AuditLog
from backend.monitoring.llm_supervisor import Supervisor

CONSOLE_TOKEN = "console-test-token-5d1e"
TRADER_TOKEN = "trader-test-token-8a2b"
SUPERVISOR_TOKEN = "supervisor-test-token-3c4d"
SUPERVISOR_TOKEN_ENV = "YOOPRL_CONSOLE_TEST_SUPERVISOR_TOKEN"
HOSTILE_HEADLINE = (
    "Exchange declares market-wide trading halt <script>window.__xss=1;alert(1)</script>"
    '<img src="x" onerror="window.__xss=2;alert(2)">'
)
"""A headline the rules classify as Halt, carrying markup that must stay text."""
HOSTILE_REASON = '<img src="y" onerror="window.__xss=3">halted by <b>ops</b>'


@dataclass
class LiveStack:
    """A trader state file and a supervisor that has seen the hostile headline."""

    store: StateStore
    supervisor: Supervisor
    trader_app: FastAPI
    supervisor_app: FastAPI


def build_live_stack(root: Path, setenv: Callable[[str, str], None]) -> LiveStack:
    """Trader state with a hostile halt reason in its status; supervisor at Halt."""
    store = StateStore(root / "trader.sqlite")
    store.set(
        "status",
        {
            "mode": "active",
            "level": "OK",
            "symbol": "SPY",
            "equity": 100_012.5,
            "pnl": 12.5,
            "halt_reason": HOSTILE_REASON,
        },
    )
    now = datetime.now(timezone.utc)
    news = root / "news.jsonl"
    news.write_text(
        json.dumps(
            {"published": (now - timedelta(minutes=5)).isoformat(), "title": HOSTILE_HEADLINE}
        )
        + "\n",
        encoding="utf-8",
    )
    cfg = SupervisorConfig(
        audit_db_path=str(root / "audit.sqlite3"),
        audit_jsonl_path=str(root / "audit.jsonl"),
        api_token_env=SUPERVISOR_TOKEN_ENV,
        news_paths=(str(news),),
    )
    supervisor = Supervisor(cfg, AuditLog(cfg.audit_db_path, cfg.audit_jsonl_path))
    asyncio.run(supervisor.poll_once())
    setenv(SUPERVISOR_TOKEN_ENV, SUPERVISOR_TOKEN)  # read by create_app
    return LiveStack(
        store=store,
        supervisor=supervisor,
        trader_app=live_routes.create_app(store, token=TRADER_TOKEN),
        supervisor_app=supervisor_routes.create_app(supervisor, cfg),
    )
