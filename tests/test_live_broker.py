"""Paper broker and state store: next-open fills with the env's costs, idempotent order ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.execution.broker import Order, PaperBroker, RealBrokerAdapter, client_order_id
from backend.execution.state_store import StateStore

T0 = "2024-03-04T14:30:00+00:00"
T1 = "2024-03-04T14:45:00+00:00"
T2 = "2024-03-04T15:00:00+00:00"


@pytest.fixture
def broker(tmp_path: Path) -> PaperBroker:
    return PaperBroker(
        StateStore(tmp_path / "s.sqlite"), cost_bps=1.0, slippage_bps=2.0, initial_cash=10_000.0
    )


def test_client_order_id_is_deterministic() -> None:
    a = client_order_id("spy", T0, 0.5)
    assert a == client_order_id("SPY", T0, 0.5000000001)
    assert a != client_order_id("SPY", T0, 0.4)
    assert a != client_order_id("SPY", T1, 0.5)
    assert a != client_order_id("QQQ", T0, 0.5)


def test_market_order_fills_at_next_open_with_costs(broker: PaperBroker) -> None:
    cid = client_order_id("SPY", T0, 0.5)
    order = broker.submit(Order(cid, "SPY", T0, 0.5, 10.0))
    assert order.status == "pending" and not order.duplicate
    assert broker.on_bar_open("SPY", T0, 99.0) == []  # not on the decision bar itself
    assert broker.on_bar_close("SPY", T0, 99.0) == []  # market orders never fill at close
    (fill,) = broker.on_bar_open("SPY", T1, 100.0)
    assert fill.price == 100.0 and fill.qty == 10.0
    assert fill.cost == pytest.approx(3e-4 * 10 * 100.0)
    assert broker.position("SPY") == 10.0
    assert broker.cash() == pytest.approx(10_000.0 - 1_000.0 - 0.3)
    assert broker.on_bar_open("SPY", T2, 101.0) == []  # booked once
    assert broker.orders()[0].status == "filled"


def test_moc_order_fills_at_the_decision_bar_close(broker: PaperBroker) -> None:
    broker.submit(Order(client_order_id("SPY", T0, 1.0), "SPY", T0, 1.0, 5.0))
    broker.on_bar_open("SPY", T1, 100.0)
    broker.submit(Order(client_order_id("SPY", T1, 0.0), "SPY", T1, 0.0, -5.0, kind="moc"))
    (fill,) = broker.on_bar_close("SPY", T1, 102.0)
    assert fill.price == 102.0 and broker.position("SPY") == 0.0
    expected = 10_000.0 - 500.0 - 0.15 + 510.0 - 3e-4 * 510.0
    assert broker.cash() == pytest.approx(expected)


def test_duplicate_client_order_id_returns_the_existing_order(broker: PaperBroker) -> None:
    cid = client_order_id("SPY", T0, 0.5)
    broker.submit(Order(cid, "SPY", T0, 0.5, 10.0))
    again = broker.submit(Order(cid, "SPY", T0, 0.5, 11.0))
    assert again.duplicate and again.qty == 10.0
    assert len(broker.orders()) == 1
    broker.on_bar_open("SPY", T1, 100.0)
    assert len(broker.fills()) == 1 and broker.position("SPY") == 10.0


def test_state_survives_reopen_and_rolls_back_failed_transactions(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = StateStore(path)
    broker = PaperBroker(store, cost_bps=1.0, slippage_bps=1.0, initial_cash=1_000.0)
    broker.submit(Order("id-1", "SPY", T0, 0.5, 2.0))
    store.set("k", {"a": 1})
    with pytest.raises(RuntimeError), store.transaction():
        store.set("k", {"a": 2})
        raise RuntimeError("crash inside the transaction")
    store.close()
    reopened = StateStore(path)
    assert reopened.get("k") == {"a": 1}
    assert reopened.query("PRAGMA journal_mode")[0][0] == "wal"
    again = PaperBroker(reopened, cost_bps=1.0, slippage_bps=1.0, initial_cash=5.0)
    assert again.cash() == 1_000.0  # initial cash applies to a new account only
    assert [o.client_order_id for o in again.open_orders("SPY")] == ["id-1"]


def test_real_broker_adapter_is_an_interface_only() -> None:
    with pytest.raises(NotImplementedError, match="interface skeleton"):
        RealBrokerAdapter().submit(Order("x", "SPY", T0, 0.0, 0.0))
