"""Backtest/paper parity: the paper trader on a replay against the env's test rollout.

``python -m backend.execution.parity --bundle DIR --data-dir D --symbol SPY --start DATE
--end DATE [--out FILE.json]`` loads the bundle and the bars of the sessions ``start..end``
(plus enough earlier sessions for the feature warm-up), then

1. rolls the bundle's deterministic policy through the env over those sessions (one
   episode, as the walk-forward test does), and
2. replays the same bars through the live trader (paper broker, ``backtest`` accounting,
   unbounded observation history) with the supervisor fixed at OK and the local guards
   opened wide, so that only the execution model is compared,

and diffs them bar for bar: the target decided at each close, the position held after each
bar, each bar's trading cost (the fills: the next-open fill and the MOC flatten) and net
return. Exit 0 when every difference is within ``--tol`` (1e-9), 1 otherwise. The remaining
differences of the default ``shares`` accounting (shares held between bars drift in weight,
orders sized at the decision close) are a documented choice: ``LiveConfig.accounting``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backend.config.env_config import EnvConfig
from backend.config.live_config import GuardConfig, LiveConfig
from backend.config.training_config import FeatureConfig
from backend.data_download.dataset import SymbolDataset
from backend.data_download.intraday_features import max_lookback
from backend.data_download.normalizer import FeatureNormalizer
from backend.environments.intraday_env import IntradayTradingEnv
from backend.execution.feeds import bars_from_frame
from backend.execution.guards import Level, ModeController
from backend.execution.live_trader import Decision, LiveTrader, Policy, bar_key
from backend.execution.state_store import StateStore
from backend.execution.supervisor_client import Verdict

COLUMNS = ("target", "position", "trade_cost", "net_return")
"""What is compared at every bar."""


class FixedOKSupervisor:
    """The supervisor stand-in of a parity run: always OK (the kill switch is not simulated)."""

    def query(self) -> Verdict:
        """Always OK."""
        return Verdict(Level.OK, "OK", "supervisor", "parity run: supervisor fixed at OK", 0.0)

    def close(self) -> None:
        """Nothing to close."""


@dataclass(frozen=True)
class ParityReport:
    """The bar-by-bar comparison."""

    n_bars: int
    """Bars compared (steps of the env's rollout)."""
    max_abs_diff: dict[str, float]
    """Largest absolute difference per compared column."""
    tol: float
    """Tolerance of :attr:`ok`."""
    rows: list[dict[str, Any]]
    """One row per bar: timestamp, env and trader values and their differences."""
    env_total_return: float
    trader_total_return: float

    @property
    def ok(self) -> bool:
        """Every difference within ``tol``."""
        return all(v <= self.tol for v in self.max_abs_diff.values())

    def summary(self) -> str:
        """One line per column plus the verdict."""
        lines = [f"parity over {self.n_bars} bars (tolerance {self.tol:g}):"]
        for col, diff in self.max_abs_diff.items():
            lines.append(f"  max |env - trader| {col:<11} {diff:.3e}")
        lines.append(
            f"  total net return: env {self.env_total_return:+.6%}, trader "
            f"{self.trader_total_return:+.6%}"
        )
        lines.append("  OK: identical within tolerance" if self.ok else "  DIFFERENT")
        return "\n".join(lines)


def _bar_range(arrays_ts: np.ndarray, start: str, end: str) -> tuple[int, int]:
    stamps = pd.DatetimeIndex(arrays_ts.astype("datetime64[ns]")).tz_localize("UTC")
    days = stamps.tz_convert("America/New_York").tz_localize(None).normalize()
    inside = np.flatnonzero((days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end)))
    if inside.size == 0:
        raise ValueError(f"no bars between {start} and {end} after the feature warm-up")
    return int(inside[0]), int(inside[-1]) + 1


def compare(
    market: pd.DataFrame,
    *,
    symbol: str,
    feature_config: FeatureConfig,
    normalizer: FeatureNormalizer,
    env_config: EnvConfig,
    policy: Policy,
    start: str,
    end: str,
    tol: float = 1e-9,
    accounting: str = "backtest",
) -> ParityReport:
    """Run the env rollout and the paper trader on ``market`` and diff them (module doc)."""
    env_cfg = env_config.replace(episode_sessions=0, random_start=False)
    dataset = SymbolDataset.from_market(symbol, market, feature_config)
    arrays = dataset.arrays(normalizer)
    env = IntradayTradingEnv(arrays, env_cfg, _bar_range(arrays.timestamps, start, end))
    start_bar = int(env.episode_start_bars[0])
    obs, _ = env.reset(options={"start_bar": start_bar})
    env_steps: list[dict[str, float]] = []
    decision_ts = [int(arrays.timestamps[start_bar])]
    done = False
    while not done:
        action = policy(obs)
        obs, _, terminated, truncated, info = env.step(np.array([action], dtype=np.float32))
        env_steps.append(info)
        decision_ts.append(int(info["timestamp"]))
        done = terminated or truncated

    config = LiveConfig(
        symbol=symbol,
        state_db=":memory:",
        accounting=accounting,  # type: ignore[arg-type]
        flatten_at_close=env_cfg.flatten_at_close,
        decide_at_last_close=True,
        history_bars=0,
        api_port=0,
        guards=GuardConfig(
            stale_grace_s=1e9,
            daily_loss_limit=1e9,
            max_drawdown=1e9,
            max_position=1.0,
            max_orders_per_hour=10**9,
        ),
    )
    store = StateStore(":memory:")
    trader = LiveTrader(
        config,
        feature_config=feature_config,
        normalizer=normalizer,
        env_config=env_cfg,
        policy=policy,
        store=store,
        supervisor=FixedOKSupervisor(),  # type: ignore[arg-type]
    )
    trader.controller = ModeController(supervisor_level=Level.OK)
    first = pd.Timestamp(decision_ts[0], tz="UTC")
    last = pd.Timestamp(decision_ts[-1], tz="UTC")
    decisions: dict[str, Decision] = {}
    for bar in bars_from_frame(market):
        ts = pd.Timestamp(bar.timestamp)
        if ts < first:
            trader.builder.add_bar(ts, bar.as_dict())  # warm-up: history only
            continue
        if ts > last:
            break
        decision = trader.on_bar(bar)
        if decision is not None:
            decisions[decision.bar] = decision

    rows: list[dict[str, Any]] = []
    for k, info in enumerate(env_steps):
        t0 = bar_key(pd.Timestamp(decision_ts[k], tz="UTC"))
        t1 = bar_key(pd.Timestamp(decision_ts[k + 1], tz="UTC"))
        d0, d1 = decisions.get(t0), decisions.get(t1)
        row: dict[str, Any] = {"decision_bar": t0, "bar": t1}
        trader_vals = {c: math.nan for c in COLUMNS}
        if d0 is not None and d1 is not None and d0.equity_after and d1.equity_after:
            trader_vals = {
                "target": d0.next_target if d0.next_target is not None else math.nan,
                "position": d1.position_after if d1.position_after is not None else math.nan,
                "trade_cost": sum(f.cost for f in d1.fills) / d0.equity_after,
                "net_return": d1.equity_after / d0.equity_after - 1.0,
            }
        for col in COLUMNS:
            env_val = float(info[col])
            row[f"env_{col}"] = env_val
            row[f"trader_{col}"] = trader_vals[col]
            diff = abs(env_val - trader_vals[col])
            row[f"diff_{col}"] = diff if math.isfinite(diff) else math.inf
        rows.append(row)
    max_diff = {c: max((r[f"diff_{c}"] for r in rows), default=0.0) for c in COLUMNS}
    env_total = float(np.prod([1.0 + s["net_return"] for s in env_steps]) - 1.0)
    trader_total = float(
        np.prod(
            [1.0 + r["trader_net_return"] for r in rows if math.isfinite(r["trader_net_return"])]
        )
        - 1.0
    )
    return ParityReport(len(rows), max_diff, tol, rows, env_total, trader_total)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m backend.execution.parity", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--bundle", required=True, type=Path, help="model bundle directory")
    parser.add_argument("--data-dir", default="data", type=Path, help="CSV store root")
    parser.add_argument("--symbol", default=None, help="symbol (default: the bundle's first)")
    parser.add_argument("--start", required=True, help="first session of the range (date)")
    parser.add_argument("--end", required=True, help="last session of the range (date)")
    parser.add_argument("--tol", type=float, default=1e-9, help="largest accepted difference")
    parser.add_argument("--out", type=Path, default=None, help="write the diff as JSON here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the parity check; 0 = identical within tolerance, 1 = different, 2 = bad input."""
    args = build_parser().parse_args(argv)
    from backend.data_download.loader import load_market
    from backend.execution.live_trader import policy_from_bundle
    from backend.models.model_manager import load_bundle

    try:
        bundle = load_bundle(args.bundle)
        symbols = [s.upper() for s in bundle.metadata.get("symbols", [])]
        symbol = (args.symbol or (symbols[0] if symbols else "SPY")).upper()
        warm_sessions = math.ceil(max_lookback(bundle.feature_config) / 26) + 3
        first = pd.Timestamp(args.start) - pd.Timedelta(days=int(warm_sessions * 1.6) + 7)
        market = load_market(
            symbol,
            start=first.date().isoformat(),
            end=args.end,
            data_dir=args.data_dir,
            include_vix=bundle.feature_config.use_vix,
        )
        report = compare(
            market,
            symbol=symbol,
            feature_config=bundle.feature_config,
            normalizer=bundle.normalizer,
            env_config=bundle.env_config,
            policy=policy_from_bundle(bundle),
            start=args.start,
            end=args.end,
            tol=args.tol,
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if args.out is not None:
        payload = asdict(report) | {
            "ok": report.ok,
            "bundle": str(args.bundle),
            "symbol": symbol,
            "start": args.start,
            "end": args.end,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
        print(f"diff written to {args.out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
