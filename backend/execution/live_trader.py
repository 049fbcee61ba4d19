"""The live (paper-first) trader process: one decision per closed 15-minute bar.

``python -m backend.api.live_service --bundle DIR --config FILE`` (or the historical
``python -m backend.execution.live_trader ...``) loads a model bundle,
builds the training observations from a bar feed (:mod:`observation_builder`), and trades
through a :class:`~backend.execution.broker.Broker` (the paper broker by default).

Per closed bar ``t`` (:meth:`LiveTrader.on_bar`)::

    duplicate / out-of-order / outside the session?  -> logged, ignored
    already processed before a restart?              -> history only (warm-up)
    new session?                                     -> supervisor query, day-start equity
    pending market orders fill at open[t] (+ costs)  -> one transaction with entry equity
    mark to close[t]; supervisor (each bar, opt.); API commands; guards -> effective level
    target: HALTED -> 0; REDUCING -> |target| never grows; last bar & flatten -> 0 (MOC)
    order (client id = hash(symbol, bar, target)); MOC fills at close[t]
    commit last processed bar + trader state             (one transaction)

A crash anywhere re-runs bar ``t`` on restart: the same observation gives the same target,
hence the same client order id, which the broker answers with the existing order; fills are
keyed by that id, so each is booked exactly once.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from backend.config.env_config import EnvConfig
from backend.config.live_config import LiveConfig
from backend.config.training_config import FeatureConfig
from backend.data_download.downloader import Clock, DownloadError, utc_now
from backend.data_download.market_calendar import expected_bar_starts, session_schedule
from backend.data_download.normalizer import FeatureNormalizer
from backend.data_download.schema import NY_TZ
from backend.environments.actions import action_to_target, apply_deadband
from backend.execution.broker import (
    Broker,
    Fill,
    Order,
    OrderKind,
    build_broker,
    client_order_id,
)
from backend.execution.feeds import BAR, Bar, LivePollingFeed
from backend.execution.guards import (
    MODE_OF_LEVEL,
    GuardTrip,
    Level,
    Mode,
    ModeController,
    RiskGuards,
)
from backend.execution.observation_builder import ObservationBuilder
from backend.execution.state_store import StateStore
from backend.execution.supervisor_client import SupervisorClient, Verdict

logger = logging.getLogger(__name__)

Policy = Callable[[dict[str, np.ndarray]], float]
"""Maps an observation to an action in ``[-1, 1]`` (deterministic)."""
FaultHook = Callable[[str], None]
"""Test hook called at named points (``after_submit``, ``after_fills``) to simulate a crash."""

MANUAL_HALT_KEY = "manual_halt"
RESUME_SEQ_KEY = "resume_seq"
STATUS_KEY = "status"
LAST_BAR_KEY = "last_processed_bar"
MODE_KEY = "mode_state"
TRADER_KEY = "trader_state"
ENTRY_KEY = "entry_equity"
LEVEL_LOG_KEY = "last_logged_level"


def bar_key(ts: pd.Timestamp) -> str:
    """Canonical bar id: the start in UTC ISO format (sorts chronologically as text)."""
    return pd.Timestamp(ts).tz_convert("UTC").isoformat()


@dataclass(frozen=True)
class Decision:
    """What :meth:`LiveTrader.on_bar` did with one bar."""

    bar: str
    mode: Mode
    level: Level
    position: float
    """Position (fraction of equity) at the bar's close, before the decision."""
    target: float | None
    """Target decided (``None``: no decision, e.g. warm-up)."""
    order: Order | None
    fills: tuple[Fill, ...]
    equity: float
    trips: tuple[GuardTrip, ...] = ()
    next_target: float | None = None
    """Position the decision aims for at the next open (after deadband and guards);
    ``None`` when no decision was possible."""
    equity_after: float | None = None
    """Equity at this bar's close after its fills (the MOC flatten included)."""
    position_after: float | None = None
    """Position (fraction of equity) at this bar's close after its fills."""


def policy_from_bundle(bundle: Any) -> Policy:
    """Deterministic policy of a :class:`~backend.models.model_manager.ModelBundle`."""

    def act(obs: dict[str, np.ndarray]) -> float:
        action, _ = bundle.model.predict(obs, deterministic=True)
        return float(np.asarray(action).reshape(-1)[0])

    return act


class LiveTrader:
    """Decide once per closed bar; see the module docstring.

    Args:
        config: Live config.
        feature_config: The bundle's feature config.
        normalizer: The bundle's normalizer.
        env_config: The bundle's env config (layout, costs, deadband, long_only).
        policy: Observation -> action.
        store: State file.
        broker: Defaults to the configured broker (``config.broker``, the paper one by
            default) on ``store`` with the env's costs.
        supervisor: Defaults to a :class:`SupervisorClient` from the config.
        fault_hook: Tests only.
    """

    def __init__(
        self,
        config: LiveConfig,
        *,
        feature_config: FeatureConfig,
        normalizer: FeatureNormalizer,
        env_config: EnvConfig,
        policy: Policy,
        store: StateStore,
        broker: Broker | None = None,
        supervisor: SupervisorClient | None = None,
        fault_hook: FaultHook | None = None,
    ) -> None:
        self.config = config
        self.symbol = config.symbol
        self.env_config = env_config
        self.policy = policy
        self.store = store
        self.broker: Broker = broker or build_broker(
            config.broker,
            store,
            cost_bps=env_config.cost_bps,
            slippage_bps=env_config.slippage_bps,
            initial_cash=config.initial_cash,
            accounting=config.accounting,
        )
        self.supervisor = supervisor or SupervisorClient(
            config.supervisor.url, store, config.supervisor.deadline_s
        )
        self.guards = RiskGuards(config.guards)
        self.builder = ObservationBuilder(
            feature_config, normalizer, env_config, config.history_bars
        )
        self.fault_hook = fault_hook
        self.controller = ModeController.boot(store.get(MODE_KEY))
        state = store.get(TRADER_KEY) or {}
        self._session: str | None = state.get("session")
        self._day_start_equity = float(state.get("day_start_equity", 0.0))
        self._peak_equity = float(state.get("peak_equity", 0.0))
        self._entry_equity = float(store.get(ENTRY_KEY, 0.0))
        self._resume_seen = int(state.get("resume_seen", store.get(RESUME_SEQ_KEY, 0)))
        self._order_times = [pd.Timestamp(t) for t in state.get("order_times", [])]
        self.last_verdict: Verdict | None = None
        self._last_price = float(state.get("last_price", float("nan")))
        self._layout_cache: dict[pd.Timestamp, tuple[pd.Timestamp, int] | None] = {}

    @classmethod
    def from_bundle(
        cls, bundle: Any, config: LiveConfig, store: StateStore | None = None, **kwargs: Any
    ) -> LiveTrader:
        """A trader for a loaded :class:`~backend.models.model_manager.ModelBundle`."""
        symbols = [s.upper() for s in bundle.metadata.get("symbols", [])]
        if symbols and config.symbol not in symbols:
            raise ValueError(f"symbol {config.symbol} is not one of the bundle's {symbols}")
        return cls(
            config,
            feature_config=bundle.feature_config,
            normalizer=bundle.normalizer,
            env_config=bundle.env_config,
            policy=policy_from_bundle(bundle),
            store=store or StateStore(config.state_db),
            **kwargs,
        )

    # ------------------------------------------------------------------ helpers
    def _hook(self, point: str) -> None:
        if self.fault_hook is not None:
            self.fault_hook(point)

    def _event(self, ts: str, kind: str, message: str) -> None:
        logger.info("%s %s: %s", ts, kind, message)
        self.store.log_event(ts, kind, message)

    def _note_level(self, ts: str, level: Level) -> None:
        """Log a ``level_change`` event when the effective level differs from the last one.

        The last logged level is persisted, so a restart does not log a spurious change.
        """
        previous = self.store.get(LEVEL_LOG_KEY)
        if previous == level.label:
            return
        mode = MODE_OF_LEVEL[level]
        self._event(ts, "level_change", f"{previous or 'boot'} -> {level.label} ({mode.value})")
        self.store.set(LEVEL_LOG_KEY, level.label)

    def _session_slot(self, ts: pd.Timestamp) -> tuple[pd.Timestamp, int, int] | None:
        """``(session date, bar_in_session, bars_in_session)`` or None outside the session."""
        day = ts.tz_localize(None).normalize()
        if day not in self._layout_cache:
            sched = session_schedule(day, day)
            self._layout_cache[day] = (
                None if sched.empty else (sched["open"].iloc[0], len(expected_bar_starts(sched)))
            )
        layout = self._layout_cache[day]
        if layout is None:  # not a session day
            return None
        opening, bars = layout
        offset = ts - opening
        if offset % BAR != pd.Timedelta(0):
            return None
        slot = int(offset // BAR)
        if not 0 <= slot < bars:
            return None
        return day, slot, bars

    def _account(self, price: float) -> tuple[float, float, float, float]:
        """``(cash, shares, equity, position fraction)`` marked at ``price``.

        With ``backtest`` accounting the book's constant weight is the position and its
        equity is revalued at ``price`` (nothing is written).
        """
        cash = self.broker.cash()
        qty = self.broker.position(self.symbol)
        book = self.broker.book_weight(self.symbol)
        if book is not None:
            equity, weight = book
            state = self.store.get(f"paper_book:{self.symbol}") or {}
            marked_at = state.get("price")
            if marked_at:
                equity *= 1.0 + weight * (price / float(marked_at) - 1.0)
            return cash, qty, equity, weight if qty != 0 else 0.0
        equity = cash + qty * price
        position = qty * price / equity if equity > 0 else 0.0
        return cash, qty, equity, position

    def _apply_commands(self) -> bool:
        """Read the API's manual halt and resume requests; returns the manual-halt flag."""
        seq = int(self.store.get(RESUME_SEQ_KEY, 0))
        if seq > self._resume_seen:
            self._resume_seen = seq
            self.controller.resume()
            logger.warning("resumed by operator (resume #%d)", seq)
        manual = self.store.get(MANUAL_HALT_KEY) or {}
        return bool(manual.get("active", False))

    def _book_entry(self, qty_before: float, fills: list[Fill]) -> None:
        """Track the equity at which the current position was opened (unrealized PnL)."""
        qty = qty_before
        for fill in fills:
            after = qty + fill.qty
            if abs(after) < 1e-12:
                self._entry_equity = 0.0
            elif qty == 0 or (after > 0) != (qty > 0):
                self._entry_equity = (
                    self.broker.cash() + self.broker.position(self.symbol) * fill.price
                )
            qty = after

    def _save(
        self, key: str, session: str, mode: Mode, level: Level, extra: dict[str, Any]
    ) -> None:
        """Commit the trader's state for bar ``key`` (one transaction)."""
        with self.store.transaction():
            self.store.set(MODE_KEY, self.controller.to_dict())
            self.store.set(
                TRADER_KEY,
                {
                    "session": session,
                    "day_start_equity": self._day_start_equity,
                    "peak_equity": self._peak_equity,
                    "resume_seen": self._resume_seen,
                    "order_times": [t.isoformat() for t in self._order_times[-200:]],
                    "last_price": self._last_price,
                },
            )
            self.store.set(
                STATUS_KEY,
                {"mode": mode.value, "level": level.label, "symbol": self.symbol, **extra},
            )
            if key:
                self.store.set(LAST_BAR_KEY, key)

    # ------------------------------------------------------------------ the bar
    def on_bar(self, bar: Bar, now: pd.Timestamp | None = None) -> Decision | None:
        """Process one closed bar; returns None when the bar is ignored or only warms up."""
        ts = pd.Timestamp(bar.timestamp).tz_convert(NY_TZ)
        key = bar_key(ts)
        now = now if now is not None else ts + BAR
        last_seen = self.builder.last_timestamp
        if last_seen is not None and ts <= last_seen:
            kind = "duplicate_bar" if ts == last_seen else "out_of_order_bar"
            self._event(
                key, kind, f"ignored bar {ts.isoformat()} (newest is {last_seen.isoformat()})"
            )
            return None
        slot = self._session_slot(ts)
        if slot is None:
            self._event(key, "outside_session", f"ignored bar {ts.isoformat()} outside the session")
            return None
        self.builder.add_bar(ts, bar.as_dict())
        processed = self.store.get(LAST_BAR_KEY)
        if processed is not None and key <= processed:
            return None  # replayed after a restart: history only
        day, bar_in, bars_in = slot
        session = day.date().isoformat()
        self._last_price = bar.close

        # Fills at this bar's open (orders decided at the previous close).
        qty_before = self.broker.position(self.symbol)
        with self.store.transaction():
            fills = list(self.broker.on_bar_open(self.symbol, key, bar.open))
            self._book_entry(qty_before, fills)
            self.store.set(ENTRY_KEY, self._entry_equity)
        self._hook("after_fills")

        new_session = session != self._session
        if new_session:
            self._day_start_equity = self._account(bar.open)[2]
            self._session = session
        self.broker.mark(self.symbol, bar.close)
        cash, qty, equity, position = self._account(bar.close)
        self._peak_equity = max(self._peak_equity, equity)

        if new_session or self.config.supervisor.query_each_bar:
            self.last_verdict = self.supervisor.query()
            self.controller.observe_supervisor(self.last_verdict.level)
        manual_halt = self._apply_commands()
        trips = self.guards.check_account(
            equity, self._day_start_equity, self._peak_equity, position
        )
        for trip in trips:
            self._event(key, f"guard_{trip.guard}", trip.message)
        level = self.controller.effective(manual_halt=manual_halt, guard_trips=trips)
        self._note_level(key, level)
        mode = MODE_OF_LEVEL[level]

        is_last = bar_in == bars_in - 1
        flatten_close = is_last and self.config.flatten_at_close
        order = None
        if flatten_close and qty != 0:
            # Market-on-close flatten of what was held during the session's last bar...
            order = self._maybe_order(key, now, mode, 0.0, position, qty, equity, bar.close, True)
            if order is not None and order.status == "pending" and order.kind == "moc":
                with self.store.transaction():
                    qty_now = self.broker.position(self.symbol)
                    moc = list(self.broker.on_bar_close(self.symbol, key, bar.close))
                    self._book_entry(qty_now, moc)
                    self.store.set(ENTRY_KEY, self._entry_equity)
                fills += moc
            cash, qty, equity, position = self._account(bar.close)
        # ... then, like the env, the decision at this close (flat after an MOC flatten):
        # its order fills at the next bar's open, the next session's first bar included.
        next_target = None
        if flatten_close and not self.config.decide_at_last_close:
            target: float | None = 0.0  # flat overnight; the first order waits for the open bar
            next_target = 0.0
        else:
            target = self._target(mode, position, bars_in, bar_in, qty)
        if target is not None and next_target is None:
            target = apply_deadband(target, position, self.env_config.deadband)
            next_target = target
            placed = self._maybe_order(
                key, now, mode, target, position, qty, equity, bar.close, False
            )
            order = placed if placed is not None else order
        if order is not None:
            level = self.controller.effective(manual_halt=manual_halt, guard_trips=[])
            self._note_level(key, level)
            mode = MODE_OF_LEVEL[level]
        # Orders left pending by a crash while deciding this bar, for another target (the
        # restarted trader may decide differently, e.g. it boots at Caution): cancel them.
        keep = order.client_order_id if order is not None else None
        for cid in self.broker.cancel_open(self.symbol, keep=keep):
            self._event(key, "cancel_stale_order", f"{cid} superseded by this decision")
        cash, qty_after, equity_after, position_after = self._account(bar.close)
        self._save(
            key,
            session,
            mode,
            level,
            {
                "last_bar": ts.isoformat(),
                "last_price": bar.close,
                "cash": cash,
                "shares": qty_after,
                "equity": equity_after,
                "position": position_after,
                "initial_cash": self.config.initial_cash,
                "pnl": equity_after - self.config.initial_cash,
                "halt_reason": self.controller.halt_reason,
                "supervisor": None
                if self.last_verdict is None
                else dataclasses.asdict(self.last_verdict)
                | {"level": self.last_verdict.level.label},
                "updated_at": now.isoformat(),
            },
        )
        return Decision(
            key,
            mode,
            level,
            position,
            target,
            order,
            tuple(fills),
            equity,
            tuple(trips),
            next_target=next_target,
            equity_after=equity_after,
            position_after=position_after,
        )

    def _target(
        self, mode: Mode, position: float, bars_in: int, bar_in: int, qty: float
    ) -> float | None:
        """The target position decided at this bar's close (before the deadband)."""
        if mode == Mode.HALTED:
            return 0.0
        if not self.builder.ready:
            return None
        frac_left = (bars_in - 1 - bar_in) / bars_in
        unrealized = 0.0
        if qty != 0:
            equity = self._account(self._last_price)[2]
            unrealized = (equity - self._entry_equity) / equity if equity > 0 else -1.0
        obs = self.builder.observation(position, unrealized, frac_left)
        target = action_to_target(self.policy(obs), self.env_config)
        limit = self.config.guards.max_position
        if mode == Mode.REDUCING:
            if self.config.caution_halve_limits:
                limit /= 2
            if position == 0.0:
                if self.config.caution_no_new_entries:
                    return 0.0
            elif target * position <= 0:
                target = 0.0  # never flip: reduce to flat at most
            elif abs(target) > abs(position):
                target = position  # |position| never grows
        return float(min(max(target, -limit), limit))

    def _maybe_order(
        self,
        key: str,
        now: pd.Timestamp,
        mode: Mode,
        target: float,
        position: float,
        qty: float,
        equity: float,
        price: float,
        flatten_close: bool,
    ) -> Order | None:
        """Submit the order moving ``position`` to ``target`` if it is worth trading."""
        # The deadband is applied by the caller (apply_deadband, as in the env); an MOC
        # flatten always trades. The exact target is kept: the id rounds it itself.
        delta = abs(target - position)
        flatten = target == 0.0
        if flatten and qty == 0:
            return None
        if not flatten and delta < 1e-12:
            return None
        if mode == Mode.HALTED and not flatten:
            raise AssertionError("no order but a flatten may be placed while halted")
        if not flatten:
            trip = self.guards.check_order_rate(now, self._order_times)
            if trip is not None:
                self._event(key, f"guard_{trip.guard}", trip.message)
                self.controller.effective(manual_halt=False, guard_trips=[trip])
                target, flatten = 0.0, True
                if qty == 0:
                    return None
        shares = -qty if flatten else target * equity / price - qty
        kind: OrderKind = "moc" if flatten_close else "market"
        cid = client_order_id(self.symbol, key, target, kind)
        order = self.broker.submit(Order(cid, self.symbol, key, target, shares, kind))
        if order.duplicate:
            self._event(key, "duplicate_order", f"{cid} already submitted; not placed again")
        else:
            self._order_times.append(now)
        self._hook("after_submit")
        return order

    # ------------------------------------------------------------------ no bar
    def next_bar_close(self) -> pd.Timestamp | None:
        """Close time of the next bar the calendar expects after the newest one processed."""
        last = self.builder.last_timestamp
        if last is None:
            return None
        day = last.tz_localize(None).normalize()
        sched = session_schedule(day, day + pd.Timedelta(days=10))
        starts = expected_bar_starts(sched)
        later = starts[starts > last]
        return None if len(later) == 0 else pd.Timestamp(later[0]) + BAR

    def tick(self, now: pd.Timestamp) -> list[GuardTrip]:
        """Between bars (live loop): stale-data guard, operator commands, halt flatten."""
        manual_halt = self._apply_commands()
        trips = []
        stale = self.guards.check_stale(now, self.next_bar_close())
        if stale is not None:
            trips.append(stale)
            if not self.controller.halt_latched:  # once, not on every poll while stale
                self._event(now.isoformat(), "guard_stale_data", stale.message)
        level = self.controller.effective(manual_halt=manual_halt, guard_trips=trips)
        self._note_level(now.isoformat(), level)
        qty = self.broker.position(self.symbol)
        last = self.builder.last_timestamp
        if level == Level.HALT and qty != 0 and last is not None:
            pending = [o for o in self.broker.open_orders(self.symbol) if o.target == 0.0]
            if not pending:
                key = bar_key(last)
                order = Order(client_order_id(self.symbol, key, 0.0), self.symbol, key, 0.0, -qty)
                if not self.broker.submit(order).duplicate:
                    self._event(now.isoformat(), "halt_flatten", f"flatten {-qty:g} at next open")
        status = dict(self.store.get(STATUS_KEY) or {})
        status.update(
            mode=MODE_OF_LEVEL[level].value, level=level.label, updated_at=now.isoformat()
        )
        status["halt_reason"] = self.controller.halt_reason
        with self.store.transaction():
            self.store.set(MODE_KEY, self.controller.to_dict())
            self.store.set(STATUS_KEY, status)
        return trips

    # ------------------------------------------------------------------ loops
    def run_replay(self, bars: Iterable[Bar]) -> list[Decision]:
        """Process every bar of a replay feed (the replay clock is each bar's close)."""
        return [d for bar in bars if (d := self.on_bar(bar)) is not None]

    def run_live(
        self,
        feed: LivePollingFeed,
        *,
        poll_interval_s: float,
        stop: threading.Event,
        clock: Clock = utc_now,
        max_polls: int | None = None,
    ) -> None:
        """Poll ``feed`` until ``stop`` is set (or ``max_polls`` polls)."""
        polls = 0
        while not stop.is_set() and (max_polls is None or polls < max_polls):
            polls += 1
            try:
                bars = feed.poll()
            except DownloadError as exc:
                logger.warning("feed poll failed: %s", exc)
                bars = []
            for bar in bars:
                self.on_bar(bar, now=clock())
            self.tick(clock())
            stop.wait(poll_interval_s)


def main(argv: list[str] | None = None) -> int:
    """Thin shim for ``python -m backend.execution.live_trader`` (see ``api.live_service``).

    The process start-up lives in the API layer; it is imported by name here so that
    this domain module does not depend on the layer that starts it.
    """
    import importlib

    app = importlib.import_module("backend.api.live_service")
    return int(app.main(argv))


if __name__ == "__main__":
    raise SystemExit(main())
