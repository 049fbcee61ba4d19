"""Start-up of the live trader process: config, state file, broker, API thread, feed.

``python -m backend.api.live_service --config FILE [--bundle DIR]`` (``python -m
backend.execution.live_trader`` is the same command). Without ``--bundle`` the trader loads
the promoted version of its model from the model registry (``registry_root`` and
``registry_model`` of the live config, or ``--registry`` / ``--model``). Bad start-up
conditions end the process with exit code 2 and one line on stderr naming what is wrong (a
damaged or read-only state file, a missing one under ``--require-state``, an unknown broker,
a bad config, no promoted model), never with a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from backend.config.live_config import LiveConfig, load_live_config
from backend.execution.broker import broker_spec, build_broker
from backend.execution.feeds import LivePollingFeed
from backend.execution.live_trader import STATUS_KEY, LiveTrader
from backend.execution.state_store import StateFileError, StateStore
from backend.models.registry import ModelRegistry, RegistryError
from backend.models.registry_evidence import EvidenceError

logger = logging.getLogger("backend.execution.live_trader")


def build_parser() -> argparse.ArgumentParser:
    """CLI of the trader process."""
    parser = argparse.ArgumentParser(
        prog="python -m backend.api.live_service", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--bundle",
        default=None,
        help="model bundle directory (default: the promoted version in the model registry)",
    )
    parser.add_argument(
        "--registry",
        default=None,
        help="model registry folder (default: the live config's registry_root, models/)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="registry name to load (default: the live config's registry_model, rl-<SYMBOL>)",
    )
    parser.add_argument("--config", required=True, help="live config YAML")
    parser.add_argument(
        "--require-state",
        action="store_true",
        help="refuse to start without an existing state file (always on for real brokers)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the trader process: load bundle and config, start the API, run the feed."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    from backend.execution.feeds import ReplayFeed
    from backend.models.model_manager import load_bundle

    try:
        config = load_live_config(args.config)
        spec = broker_spec(config.broker)
    except (OSError, ValueError, TypeError) as exc:
        return _fail(f"{args.config}: {exc}")
    if args.bundle is not None and (args.registry or args.model):
        return _fail("--bundle loads that bundle; --registry/--model choose a promoted one")
    if args.bundle is not None:
        bundle_path = Path(args.bundle)
    else:
        name = args.model or config.model_name
        registry = ModelRegistry(args.registry or config.registry_root)
        try:
            bundle_path = registry.promoted_bundle(name)
        except (RegistryError, EvidenceError) as exc:
            return _fail(f"{exc} (or pass --bundle DIR)")
        entry = registry.promoted(name) or {}
        logger.info("loading %s %s (promoted) from %s", name, entry.get("version"), registry.file)
    try:
        bundle = load_bundle(bundle_path)
    except (OSError, ValueError) as exc:
        return _fail(f"--bundle {bundle_path}: {exc}")
    require_state = args.require_state or config.require_state or spec.requires_state
    try:
        store = StateStore(config.state_db, must_exist=require_state)
    except StateFileError as exc:
        return _fail(str(exc))
    broker = build_broker(
        config.broker,
        store,
        cost_bps=bundle.env_config.cost_bps,
        slippage_bps=bundle.env_config.slippage_bps,
        initial_cash=config.initial_cash,
        accounting=config.accounting,
    )
    trader = LiveTrader.from_bundle(bundle, config, store, broker=broker)
    server = None
    if config.api_port:
        server = _start_api(config, store)
    feed_cfg = config.feed
    use_vix = bundle.feature_config.use_vix
    try:
        if feed_cfg.kind == "live":
            from backend.data_download.downloader import YFinanceSource

            feed = LivePollingFeed(YFinanceSource(), config.symbol, include_vix=use_vix)
            trader.run_live(feed, poll_interval_s=feed_cfg.poll_interval_s, stop=threading.Event())
        else:
            if feed_cfg.kind == "replay":
                replay = ReplayFeed.from_store(
                    config.symbol,
                    feed_cfg.data_dir,
                    feed_cfg.start,
                    feed_cfg.end,
                    include_vix=use_vix,
                    speed=feed_cfg.speed,
                )
            else:
                replay = ReplayFeed.from_synthetic(
                    config.symbol,
                    start=feed_cfg.start or "2024-10-01",
                    n_sessions=feed_cfg.n_sessions,
                    seed=feed_cfg.seed,
                    include_vix=use_vix,
                    speed=feed_cfg.speed,
                )
            decisions = trader.run_replay(replay)
            status = store.get(STATUS_KEY) or {}
            logger.info("replay done: %d decisions, status %s", len(decisions), status)
    except KeyboardInterrupt:
        logger.info("stopped")
    except StateFileError as exc:
        return _fail(str(exc))
    finally:
        trader.supervisor.close()
        if server is not None:
            server.should_exit = True
            time.sleep(0.2)
    return 0


def _start_api(config: LiveConfig, store: StateStore) -> Any:
    """Serve :mod:`backend.api.live_routes` in a daemon thread."""
    import uvicorn

    from backend.api.live_routes import create_app

    token = os.environ.get(config.api_token_env)
    app = create_app(store, token=token)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.api_host, port=config.api_port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True, name="live-api").start()
    return server


if __name__ == "__main__":
    raise SystemExit(main())
