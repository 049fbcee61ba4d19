"""The decision loop: crash-restart idempotency, bad bars, calendar, halts, stale data."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backend.config.env_config import EnvConfig
from backend.config.live_config import GuardConfig, LiveConfig, SupervisorConfig
from backend.config.training_config import FeatureConfig
from backend.data_download.dataset import SymbolDataset
from backend.data_download.market_calendar import session_schedule
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)
from backend.execution.broker import PaperBroker
from backend.execution.feeds import Bar, LivePollingFeed, bars_from_frame
from backend.execution.guards import Level, Mode
from backend.execution.live_trader import (
    MANUAL_HALT_KEY,
    RESUME_SEQ_KEY,
    STATUS_KEY,
    LiveTrader,
)
from backend.execution.state_store import StateStore
from backend.execution.supervisor_client import Verdict

FEATURES = FeatureConfig(
    use_returns=False, use_technical=False, use_volume=False, use_vix=False, use_range_gap=False
)
"""Bar + calendar features only: a one-session (26-bar) warm-up keeps these tests fast."""
NY = "America/New_York"


class ScriptedSupervisor:
    """Stands in for SupervisorClient: returns ``script(call_number)``."""

    def __init__(self, script: Callable[[int], Level] = lambda _: Level.OK) -> None:
        self.script = script
        self.calls = 0

    def query(self) -> Verdict:
        self.calls += 1
        level = self.script(self.calls)
        return Verdict(level, level.label, "supervisor", "scripted", 0.0)

    def close(self) -> None:
        pass


def _market(start: str, n_sessions: int, seed: int = 3) -> pd.DataFrame:
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start=start, end=None, n_sessions=n_sessions, seed=seed)
    )
    return frames["SPY"]


def _feature_policy(obs: dict[str, np.ndarray]) -> float:
    """A deterministic policy that depends on the observation (so restarts must rebuild it)."""
    return float(np.tanh(3.0 * obs["features"][:4].mean()))


def _trader(
    path: Path,
    market: pd.DataFrame,
    *,
    policy: Callable[[dict[str, np.ndarray]], float] = _feature_policy,
    sup: ScriptedSupervisor | None = None,
    fault_hook: Callable[[str], None] | None = None,
    **config: object,
) -> LiveTrader:
    dataset = SymbolDataset.from_market("SPY", market, FEATURES)
    normalizer = dataset.fit_normalizer(dataset.sessions[0], dataset.sessions[-1])
    values: dict[str, object] = {
        "state_db": str(path),
        "initial_cash": 100_000.0,
        "guards": GuardConfig(daily_loss_limit=0.5, max_drawdown=0.5, max_orders_per_hour=12),
    }
    values.update(config)
    cfg = LiveConfig(**values)  # type: ignore[arg-type]
    return LiveTrader(
        cfg,
        feature_config=FEATURES,
        normalizer=normalizer,
        env_config=EnvConfig(),
        policy=policy,
        store=StateStore(cfg.state_db),
        supervisor=sup or ScriptedSupervisor(),  # type: ignore[arg-type]
        fault_hook=fault_hook,
    )


def _book(trader: LiveTrader) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]], float]:
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    orders = [(o.client_order_id, o.status, round(o.qty, 9)) for o in broker.orders()]
    fills = [(f.client_order_id, f.bar_ts) for f in broker.fills()]
    return orders, fills, round(broker.cash(), 6)


class Crash(RuntimeError):
    pass


@pytest.fixture(scope="module")
def week() -> pd.DataFrame:
    return _market("2024-10-01", 5)


def _check_books(trader: LiveTrader) -> None:
    """No duplicate order per decision, each fill booked once, cash/position from fills.

    A session's last close may place two different orders: the market-on-close flatten
    and the next-open order of the decision taken at that close (as the env does).
    """
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    fills, orders = broker.fills(), broker.orders()
    assert len({f.client_order_id for f in fills}) == len(fills)
    live = [o for o in orders if o.status != "cancelled"]
    assert len({(o.bar_ts, o.kind) for o in live}) == len(live)
    assert {o.client_order_id for o in orders if o.status == "filled"} == {
        f.client_order_id for f in fills
    }
    cash = trader.config.initial_cash - sum(f.qty * f.price + f.cost for f in fills)
    assert broker.cash() == pytest.approx(cash, rel=1e-12)
    assert broker.position("SPY") == pytest.approx(sum(f.qty for f in fills), abs=1e-9)


def _crash_once(trader_ref: dict[str, LiveTrader], point: str, when: Callable[[PaperBroker], bool]):
    state = {"done": False}

    def hook(name: str) -> None:
        broker = trader_ref["t"].broker
        assert isinstance(broker, PaperBroker)
        if name == point and not state["done"] and when(broker):
            state["done"] = True
            raise Crash(name)

    return hook


def test_kill_between_halt_flatten_order_and_fill(tmp_path: Path, week: pd.DataFrame) -> None:
    bars = bars_from_frame(week)
    ref: dict[str, LiveTrader] = {}
    path = tmp_path / "s.sqlite"
    first = _trader(path, week, policy=lambda _: 1.0)
    ref["t"] = first
    halt_at = 26 * 2 + 10
    first.run_replay(bars[:halt_at])
    first.store.set(MANUAL_HALT_KEY, {"active": True, "reason": "test"})
    first.fault_hook = _crash_once(ref, "after_submit", lambda b: True)
    with pytest.raises(Crash):  # killed after the flatten order was placed, before its fill
        first.run_replay(bars[halt_at:])
    broker = first.broker
    assert isinstance(broker, PaperBroker)
    (flatten,) = broker.open_orders("SPY")
    assert flatten.target == 0.0 and broker.fills()[-1].client_order_id != flatten.client_order_id
    first.store.close()

    restarted = _trader(path, week, policy=lambda _: 1.0)  # a fresh process, same state file
    restarted.run_replay(bars)  # the feed replays from the start; processed bars warm up
    rb = restarted.broker
    assert isinstance(rb, PaperBroker)
    assert len(restarted.store.events("duplicate_order")) == 1
    assert [o.client_order_id for o in rb.orders()].count(flatten.client_order_id) == 1
    assert [f.client_order_id for f in rb.fills()].count(flatten.client_order_id) == 1
    assert rb.fills()[-1].bar_ts == bars[halt_at + 1].timestamp.tz_convert("UTC").isoformat()
    assert rb.position("SPY") == 0.0
    _check_books(restarted)


@pytest.mark.parametrize("point", ["after_submit", "after_fills"])
def test_kill_then_restart_never_duplicates_orders_or_fills(
    tmp_path: Path, week: pd.DataFrame, point: str
) -> None:
    bars = bars_from_frame(week)
    ref: dict[str, LiveTrader] = {}
    path = tmp_path / "s.sqlite"
    if point == "after_submit":  # the market-on-close flatten: placed, not yet filled
        when: Callable[[PaperBroker], bool] = lambda b: b.orders()[-1].kind == "moc"  # noqa: E731
    else:  # a fill booked, the trader's bar not yet committed
        when = lambda b: len(b.fills()) >= 3  # noqa: E731
    first = _trader(path, week)
    ref["t"] = first
    first.fault_hook = _crash_once(ref, point, when)
    with pytest.raises(Crash):
        first.run_replay(bars)
    broker = first.broker
    assert isinstance(broker, PaperBroker)
    n_fills = len(broker.fills())
    crashed_order = broker.orders()[-1]
    first.store.close()

    restarted = _trader(path, week)
    restarted.run_replay(bars)
    rb = restarted.broker
    assert isinstance(rb, PaperBroker)
    assert len(rb.fills()) > n_fills  # it went on trading
    ids = [o.client_order_id for o in rb.orders()]
    assert ids.count(crashed_order.client_order_id) == 1
    if point == "after_submit":
        assert len(restarted.store.events("duplicate_order")) == 1
        fills = [f for f in rb.fills() if f.client_order_id == crashed_order.client_order_id]
        assert len(fills) == 1 and fills[0].bar_ts == crashed_order.bar_ts  # at that close
    _check_books(restarted)


def test_duplicate_and_out_of_order_bars_are_ignored(tmp_path: Path, week: pd.DataFrame) -> None:
    bars = bars_from_frame(week)
    clean = _trader(tmp_path / "clean.sqlite", week)
    clean_decisions = clean.run_replay(bars)
    noisy = [*bars[:40], bars[39], bars[30], *bars[40:80], bars[79], *bars[80:]]
    trader = _trader(tmp_path / "noisy.sqlite", week)
    decisions = trader.run_replay(noisy)
    assert [d.bar for d in decisions] == [d.bar for d in clean_decisions]
    assert len(trader.store.events("duplicate_bar")) == 2
    assert len(trader.store.events("out_of_order_bar")) == 1
    assert _book(trader) == _book(clean)


@pytest.mark.parametrize(
    ("start", "n_sessions", "special"),
    [("2024-03-05", 7, "2024-03-11"), ("2024-11-25", 5, "2024-11-29")],
    ids=["dst-week", "half-day"],
)
def test_calendar_dst_and_half_day_flatten_at_last_bar(
    tmp_path: Path, start: str, n_sessions: int, special: str
) -> None:
    market = _market(start, n_sessions)
    trader = _trader(tmp_path / "s.sqlite", market, policy=lambda _: 1.0)
    outside = [
        Bar(pd.Timestamp(f"{start} 08:00", tz=NY), 1.0, 1.0, 1.0, 1.0, 1.0),
        Bar(pd.Timestamp(f"{start} 16:00", tz=NY), 1.0, 1.0, 1.0, 1.0, 1.0),
    ]
    bars = bars_from_frame(market)
    decisions = trader.run_replay([outside[0], bars[0], outside[1], *bars[1:]])
    assert len(trader.store.events("outside_session")) == 2
    sched = session_schedule(market.index[0], market.index[-1])
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    moc = {f.bar_ts: f for f in broker.fills() if f.qty < 0}
    traded_days = 0
    for day, row in sched.iterrows():
        last_bar = row["close"] - pd.Timedelta(minutes=15)  # 15:45, or 12:45 on a half day
        mine = [
            d
            for d in decisions
            if pd.Timestamp(d.bar).tz_convert(NY).normalize().date() == day.date()
        ]
        if not any(d.order is not None for d in mine):
            continue  # warm-up day
        traded_days += 1
        assert pd.Timestamp(mine[-1].bar) == last_bar
        assert mine[-1].target == 0.0
        assert mine[-1].order is not None and mine[-1].order.kind == "moc"
        assert last_bar.tz_convert("UTC").isoformat() in moc  # filled at that bar's close
    assert traded_days >= n_sessions - 2
    assert broker.position("SPY") == 0.0  # nothing held overnight
    special_day = sched.loc[special]
    if special == "2024-11-29":
        assert special_day["close"].hour == 13
    else:  # DST began on 2024-03-10: same local open, one hour earlier in UTC
        assert special_day["open"].tz_convert("UTC").hour == 13


def test_halt_mid_session_flattens_and_blocks_new_entries(
    tmp_path: Path, week: pd.DataFrame
) -> None:
    bars = bars_from_frame(week)
    trader = _trader(tmp_path / "s.sqlite", week, policy=lambda _: 1.0)
    halt_at = 26 * 2 + 10  # 10 bars into the third session
    trader.run_replay(bars[:halt_at])
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    assert broker.position("SPY") > 0
    n_orders = len(broker.orders())
    trader.store.set(MANUAL_HALT_KEY, {"active": True, "reason": "test"})  # what the API does
    decisions = trader.run_replay(bars[halt_at:])
    assert decisions[0].mode == Mode.HALTED and decisions[0].target == 0.0
    new = broker.orders()[n_orders:]
    assert len(new) == 1 and new[0].target == 0.0 and new[0].kind == "market"
    assert broker.position("SPY") == 0.0  # filled at the next open
    assert all(d.mode == Mode.HALTED for d in decisions)
    assert trader.store.get(STATUS_KEY)["mode"] == "HALTED"

    # A human resumes: Caution first (REDUCING, no new entries), then two OK verdicts.
    trader.store.set(MANUAL_HALT_KEY, {"active": False, "reason": ""})
    trader.store.set(RESUME_SEQ_KEY, 1)
    more = _market("2024-10-01", 7)
    after = trader.run_replay(bars_from_frame(more.loc[more.index > week.index[-1]]))
    assert after[0].mode == Mode.REDUCING
    assert any(d.mode == Mode.ACTIVE for d in after)
    assert broker.orders()[-1].bar_ts > new[0].bar_ts  # trading again


def test_halt_at_day_boundary_places_no_order_that_day(tmp_path: Path, week: pd.DataFrame) -> None:
    # Queried once per session: OK, OK (ACTIVE on day 2), then Halt before day 3.
    supervisor = ScriptedSupervisor(lambda n: Level.OK if n <= 2 else Level.HALT)
    trader = _trader(
        tmp_path / "s.sqlite",
        week,
        policy=lambda _: 1.0,
        sup=supervisor,
        supervisor=SupervisorConfig(query_each_bar=False),
    )
    decisions = trader.run_replay(bars_from_frame(week))
    assert supervisor.calls == 5  # once per session
    days = sorted({pd.Timestamp(d.bar).tz_convert(NY).date() for d in decisions})
    by_day = {
        day: [d for d in decisions if pd.Timestamp(d.bar).tz_convert(NY).date() == day]
        for day in days
    }
    assert any(d.order is not None for d in by_day[days[1]])
    for day in days[2:]:
        assert all(d.mode == Mode.HALTED and d.order is None for d in by_day[day])


def test_stale_feed_trips_flatten(tmp_path: Path, week: pd.DataFrame) -> None:
    clock = {"now": pd.Timestamp("2024-10-03 11:07", tz=NY)}
    cutoff = {"ts": pd.Timestamp("2024-10-03 12:00", tz=NY)}

    class FakeSource:
        def fetch(
            self,
            symbol: str,
            interval: str,
            start: pd.Timestamp,
            end: pd.Timestamp,
            extended_hours: bool,
        ) -> pd.DataFrame:
            # Everything up to the forming bar (start <= now), as Yahoo returns it.
            frame = week.loc[(week.index >= start) & (week.index <= min(end, clock["now"]))]
            return frame.loc[frame.index <= cutoff["ts"]]

    trader = _trader(tmp_path / "s.sqlite", week, policy=lambda _: 1.0)
    feed = LivePollingFeed(
        FakeSource(),
        "SPY",
        include_vix=False,
        clock=lambda: clock["now"],
        lookback=pd.Timedelta(days=10),
    )
    stop = threading.Event()
    trader.run_live(feed, poll_interval_s=0.0, stop=stop, clock=lambda: clock["now"], max_polls=1)
    # The 11:00 bar is forming at 11:07: dropped; the last processed bar is 10:45.
    assert trader.builder.last_timestamp == pd.Timestamp("2024-10-03 10:45", tz=NY)
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    clock["now"] = pd.Timestamp("2024-10-03 12:16", tz=NY)
    trader.run_live(feed, poll_interval_s=0.0, stop=stop, clock=lambda: clock["now"], max_polls=1)
    assert trader.builder.last_timestamp == pd.Timestamp("2024-10-03 12:00", tz=NY)
    assert broker.position("SPY") > 0
    assert trader.store.get(STATUS_KEY)["mode"] != "HALTED"
    # The source stops delivering; the 12:15 bar was due at 12:30 (+120 s grace).
    clock["now"] = pd.Timestamp("2024-10-03 12:31:30", tz=NY)
    trader.run_live(feed, poll_interval_s=0.0, stop=stop, clock=lambda: clock["now"], max_polls=1)
    assert trader.store.get(STATUS_KEY)["mode"] != "HALTED"  # within the grace
    clock["now"] = pd.Timestamp("2024-10-03 12:33", tz=NY)
    trader.run_live(feed, poll_interval_s=0.0, stop=stop, clock=lambda: clock["now"], max_polls=1)
    assert trader.store.get(STATUS_KEY)["mode"] == "HALTED"
    assert len(trader.store.events("guard_stale_data")) == 1
    (flatten,) = [o for o in broker.open_orders("SPY")]
    assert flatten.target == 0.0 and flatten.qty == -broker.position("SPY")
    # Data comes back: the flatten fills at the next open and nothing new is entered.
    cutoff["ts"] = pd.Timestamp("2024-10-03 13:00", tz=NY)
    clock["now"] = pd.Timestamp("2024-10-03 13:16", tz=NY)
    trader.run_live(feed, poll_interval_s=0.0, stop=stop, clock=lambda: clock["now"], max_polls=1)
    assert broker.position("SPY") == 0.0 and broker.open_orders("SPY") == []


def test_boot_level_is_persisted_and_never_ok(tmp_path: Path, week: pd.DataFrame) -> None:
    trader = _trader(tmp_path / "s.sqlite", week)
    decisions = trader.run_replay(bars_from_frame(week)[:40])
    assert decisions[-1].level == Level.OK
    trader.store.close()
    again = _trader(tmp_path / "s.sqlite", week)
    assert again.controller.supervisor_level == Level.CAUTION
    assert dataclasses.asdict(again.config.guards)["max_orders_per_hour"] == 12


def test_caution_never_grows_or_flips_and_blocks_entries(
    tmp_path: Path, week: pd.DataFrame
) -> None:
    knobs = {"action": 0.5, "level": Level.OK}
    supervisor = ScriptedSupervisor(lambda _: knobs["level"])
    trader = _trader(tmp_path / "s.sqlite", week, policy=lambda _: knobs["action"], sup=supervisor)
    bars = bars_from_frame(week)
    trader.run_replay(bars[:40])  # session 2, ACTIVE, long 0.5
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    held = broker.position("SPY")
    assert held > 0
    n_orders = len(broker.orders())
    knobs.update(action=1.0, level=Level.CAUTION)
    grown = trader.run_replay(bars[40:43])
    assert all(d.mode == Mode.REDUCING for d in grown)
    assert len(broker.orders()) == n_orders and broker.position("SPY") == held  # never grows
    knobs["action"] = -1.0
    flipped = trader.run_replay(bars[43:45])
    assert flipped[0].target == 0.0  # reduce to flat, never flip short
    assert broker.position("SPY") == 0.0
    knobs["action"] = 0.5
    trader.run_replay(bars[45:50])
    assert len(broker.orders()) == n_orders + 1  # no new entry from flat


def test_order_rate_guard_halts_and_flattens(tmp_path: Path, week: pd.DataFrame) -> None:
    flip = {"n": 0}

    def churn(_: dict[str, np.ndarray]) -> float:
        flip["n"] += 1
        return 1.0 if flip["n"] % 2 else 0.2

    trader = _trader(
        tmp_path / "s.sqlite",
        week,
        policy=churn,
        guards=GuardConfig(daily_loss_limit=0.5, max_drawdown=0.5, max_orders_per_hour=3),
    )
    decisions = trader.run_replay(bars_from_frame(week)[:60])
    broker = trader.broker
    assert isinstance(broker, PaperBroker)
    assert len(trader.store.events("guard_order_rate")) == 1
    tripped = next(i for i, d in enumerate(decisions) if d.mode == Mode.HALTED)
    assert decisions[tripped].order is not None and decisions[tripped].order.target == 0.0
    assert all(d.order is None for d in decisions[tripped + 1 :])
    assert broker.position("SPY") == 0.0
    assert "order_rate" in trader.controller.halt_reason
