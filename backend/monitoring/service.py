"""Start-up of the supervisor service: wire the pieces, run the API and the poll loop.

``python -m backend.monitoring.service --config FILE`` (``python -m
backend.monitoring.llm_supervisor`` is the same command). The domain modules
(:mod:`llm_supervisor`, :mod:`routes`) do not import each other's start-up code; this
module is the only place that knows about both and about uvicorn.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence

from backend.config.supervisor_config import SupervisorConfig, load_supervisor_config
from backend.monitoring.audit_log import AuditLog
from backend.monitoring.llm_provider import OpenAICompatibleProvider
from backend.monitoring.llm_supervisor import Supervisor, run_poll_loop
from backend.monitoring.routes import create_app
from backend.utils.sqlite_files import SQLiteFileError

logger = logging.getLogger("backend.monitoring.llm_supervisor")


def build_supervisor(config: SupervisorConfig) -> Supervisor:
    """Wire the audit log, rules and (if enabled) the LLM provider from ``config``."""
    audit = AuditLog(config.audit_db_path, config.audit_jsonl_path)
    llm = OpenAICompatibleProvider(config.llm) if config.llm.enabled else None
    return Supervisor(config, audit, llm=llm)


async def serve(config: SupervisorConfig) -> None:
    """Run the API (uvicorn) and the poll loop together until uvicorn is told to stop."""
    import uvicorn

    supervisor = build_supervisor(config)
    app = create_app(supervisor, config)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port))
    stop = asyncio.Event()
    poller = asyncio.create_task(run_poll_loop(supervisor, config.poll_interval_s, stop))
    try:
        await server.serve()
    finally:
        stop.set()
        await asyncio.wait_for(poller, timeout=config.llm.deadline_s + config.feed_timeout_s + 5)
        supervisor.audit.close()


def main(argv: Sequence[str] | None = None) -> None:
    """CLI entry point: ``python -m backend.monitoring.service --config FILE``."""
    parser = argparse.ArgumentParser(
        prog="python -m backend.monitoring.service", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", required=True, help="supervisor YAML file")
    parser.add_argument("--host", help="override the bind address (default from config)")
    parser.add_argument("--port", type=int, help="override the port (default from config)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_supervisor_config(args.config)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        config = dataclasses.replace(config, **overrides)
    try:
        asyncio.run(serve(config))
    except SQLiteFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        # uvicorn re-raises the captured SIGINT once it has shut down; `serve` has
        # already stopped the poll loop and closed the audit log by then.
        logger.info("supervisor stopped")


if __name__ == "__main__":
    main()
