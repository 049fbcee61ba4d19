"""One broker interface for the live trader: the paper broker (default) and a real-broker stub.

Orders carry a deterministic **client order id** (:func:`client_order_id`, a hash of symbol,
decision bar and target) so that a trader restarted after a crash re-submits the *same* id
and the broker answers with the existing order instead of placing a second one.

Paper fills follow the env exactly (``backend/environments/intraday_env.py``):

* ``market`` orders decided at the close of bar ``t`` fill at the **open of the next bar**;
* ``moc`` (market-on-close) orders fill at the close of the bar they were decided on (the
  flatten at the session's last bar);
* each fill pays ``(cost_bps + slippage_bps) * 1e-4 * |qty * price|`` in cash.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, TypeVar

from backend.execution.state_store import CASH_KEY, StateStore

logger = logging.getLogger(__name__)

OrderKind = Literal["market", "moc"]
OrderStatus = Literal["pending", "filled", "cancelled"]


def client_order_id(symbol: str, bar_ts: str, target: float, kind: str = "market") -> str:
    """Deterministic id of the order for ``target`` decided at the close of ``bar_ts``.

    The target is rounded to 1e-6 so that the same decision always hashes the same; a
    market-on-close flatten and the next-open order decided at the same close get
    different ids (``kind``).
    """
    key = f"{symbol.upper()}|{bar_ts}|{round(float(target), 6):+.6f}"
    if kind != "market":
        key += f"|{kind}"
    return "yoop-" + hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Order:
    """An order as the broker knows it."""

    client_order_id: str
    symbol: str
    bar_ts: str
    """Decision bar (ISO start time, New York)."""
    target: float
    """Target position (fraction of equity) the order moves to."""
    qty: float
    """Signed shares to trade."""
    kind: OrderKind = "market"
    status: OrderStatus = "pending"
    duplicate: bool = False
    """True when :meth:`Broker.submit` found this id already present (nothing placed)."""


@dataclass(frozen=True)
class Fill:
    """A booked execution."""

    client_order_id: str
    symbol: str
    bar_ts: str
    """Bar whose open (market) or close (moc) was the fill price."""
    qty: float
    price: float
    cost: float


class Broker(Protocol):
    """What the live trader needs from any broker."""

    def cash(self) -> float:
        """Cash balance."""
        ...

    def position(self, symbol: str) -> float:
        """Signed shares held."""
        ...

    def submit(self, order: Order) -> Order:
        """Place an order (idempotent on ``client_order_id``).

        An already-known id returns the existing order with ``duplicate=True`` and places
        nothing.
        """
        ...

    def open_orders(self, symbol: str) -> list[Order]:
        """Pending orders of ``symbol``, oldest first."""
        ...

    def cancel_open(self, symbol: str, keep: str | None = None) -> list[str]:
        """Cancel pending orders of ``symbol`` except ``keep``; returns the cancelled ids."""
        ...

    def on_bar_open(self, symbol: str, bar_ts: str, price: float) -> list[Fill]:
        """A new bar opened at ``price``: fill pending market orders decided before it."""
        ...

    def on_bar_close(self, symbol: str, bar_ts: str, price: float) -> list[Fill]:
        """Bar ``bar_ts`` closed at ``price``: fill pending moc orders decided on it."""
        ...

    def mark(self, symbol: str, price: float) -> None:
        """Revalue the book at ``price`` (the backtest-accounting paper broker; else no-op)."""
        ...

    def book_weight(self, symbol: str) -> tuple[float, float] | None:
        """``(equity, weight)`` of a constant-weight book, or None for a share book."""
        ...


Accounting = Literal["shares", "backtest"]
"""How the paper broker books positions (``LiveConfig.accounting``):

* ``shares``: shares are held between bars (their weight drifts with the price) and an
  order's share count is fixed at the decision close (``target * equity / close``);
  costs are charged on the traded notional. What a real broker does.
* ``backtest``: the env's book, exactly: a position is a constant fraction of equity
  (drift rebalanced for free at every open and close, as the backtest assumes), the
  order is sized at the fill from the equity at the open, and costs are
  ``c * |new weight - old weight| * equity``. The paper trader then matches the env's
  test rollout bar for bar (``python -m backend.execution.parity``).
"""

BrokerFactory = Callable[..., Broker]
"""``factory(store, *, cost_bps, slippage_bps, initial_cash) -> Broker``."""


@dataclass(frozen=True)
class BrokerSpec:
    """A registered broker: how to build it and how careful its start-up must be."""

    name: str
    factory: BrokerFactory
    requires_state: bool
    """Refuse to start without an existing state file (``--require-state`` forced on):
    true for anything holding real money, where a fresh account would hide a mistake."""


BROKERS: dict[str, BrokerSpec] = {}
"""Name -> spec; the only source of broker names (``LiveConfig.broker``)."""


_F = TypeVar("_F", bound=Callable[..., Any])


def register_broker(name: str, *, requires_state: bool = True) -> Callable[[_F], _F]:
    """Register a broker class/factory under ``name`` (``LiveConfig.broker``).

    ``requires_state`` defaults to True: only simulated brokers may start a new account.
    """

    def deco(factory: _F) -> _F:
        if name in BROKERS:
            raise ValueError(f"broker {name!r} is already registered")
        BROKERS[name] = BrokerSpec(name, factory, requires_state)
        return factory

    return deco


def broker_spec(name: str) -> BrokerSpec:
    """The registered broker ``name``.

    Raises:
        ValueError: For an unknown name (the message lists the registered ones).
    """
    try:
        return BROKERS[name]
    except KeyError:
        raise ValueError(
            f"broker: unknown {name!r}; registered brokers: {sorted(BROKERS)}"
        ) from None


def build_broker(
    name: str,
    store: StateStore,
    *,
    cost_bps: float,
    slippage_bps: float,
    initial_cash: float,
    accounting: Accounting = "shares",
) -> Broker:
    """Build the registered broker ``name`` on ``store``.

    ``accounting`` is passed only when it is not the default ``shares`` (a real broker
    books shares; asking one for ``backtest`` accounting fails at its constructor).
    """
    extra = {} if accounting == "shares" else {"accounting": accounting}
    return broker_spec(name).factory(
        store, cost_bps=cost_bps, slippage_bps=slippage_bps, initial_cash=initial_cash, **extra
    )


@register_broker("paper", requires_state=False)
class PaperBroker:
    """Simulated broker whose book lives in the :class:`StateStore` (survives restarts).

    Args:
        store: The state file.
        cost_bps: Commission in basis points of traded notional (the env's ``cost_bps``).
        slippage_bps: Slippage in basis points, charged like ``cost_bps``.
        initial_cash: Cash of a new account (ignored when the store already has one).
        accounting: ``shares`` or ``backtest`` (see :data:`Accounting`).
    """

    def __init__(
        self,
        store: StateStore,
        *,
        cost_bps: float,
        slippage_bps: float,
        initial_cash: float = 100_000.0,
        accounting: Accounting = "shares",
    ) -> None:
        if accounting not in ("shares", "backtest"):
            raise ValueError(f"accounting: expected 'shares' or 'backtest', got {accounting!r}")
        self.store = store
        self.accounting: Accounting = accounting
        self.cost_rate = (float(cost_bps) + float(slippage_bps)) * 1e-4
        with store.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO account(symbol, qty) VALUES(?, ?)",
                (CASH_KEY, float(initial_cash)),
            )
        if cur.rowcount == 1 and store.path != ":memory:":
            # A new account is never silent: a deleted state file must be noticed.
            logger.warning(
                "new paper account: state file %s created with initial cash %.2f "
                "(use --require-state to refuse starting without an existing state file)",
                store.path,
                float(initial_cash),
            )

    # -- book -------------------------------------------------------------------------
    def cash(self) -> float:
        """Cash balance."""
        return float(
            self.store.query("SELECT qty FROM account WHERE symbol = ?", (CASH_KEY,))[0][0]
        )

    def position(self, symbol: str) -> float:
        """Signed shares held."""
        rows = self.store.query("SELECT qty FROM account WHERE symbol = ?", (symbol.upper(),))
        return float(rows[0][0]) if rows else 0.0

    def orders(self, symbol: str | None = None) -> list[Order]:
        """Every order (optionally of one symbol), in submission order."""
        sql = "SELECT * FROM orders" + (" WHERE symbol = ?" if symbol else "")
        params = (symbol.upper(),) if symbol else ()
        rows = self.store.query(sql + " ORDER BY created_seq", params)
        return [_order(r) for r in rows]

    def fills(self, symbol: str | None = None) -> list[Fill]:
        """Every fill (optionally of one symbol), in booking order."""
        sql = "SELECT * FROM fills" + (" WHERE symbol = ?" if symbol else "")
        params = (symbol.upper(),) if symbol else ()
        rows = self.store.query(sql + " ORDER BY rowid", params)
        return [
            Fill(r["client_order_id"], r["symbol"], r["bar_ts"], r["qty"], r["price"], r["cost"])
            for r in rows
        ]

    def open_orders(self, symbol: str) -> list[Order]:
        """Pending orders of ``symbol``, oldest first."""
        return [o for o in self.orders(symbol) if o.status == "pending"]

    # -- orders -----------------------------------------------------------------------
    def submit(self, order: Order) -> Order:
        """Accept an order, or return the existing one for a known ``client_order_id``."""
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT * FROM orders WHERE client_order_id = ?", (order.client_order_id,)
            ).fetchone()
            if row is not None:
                return replace(_order(row), duplicate=True)
            seq = conn.execute("SELECT COALESCE(MAX(created_seq), 0) + 1 FROM orders").fetchone()[0]
            conn.execute(
                "INSERT INTO orders(client_order_id, symbol, bar_ts, target, qty, kind, status,"
                " created_seq, submitted_at) VALUES(?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (
                    order.client_order_id,
                    order.symbol.upper(),
                    order.bar_ts,
                    float(order.target),
                    float(order.qty),
                    order.kind,
                    int(seq),
                    order.bar_ts,
                ),
            )
        return replace(order, status="pending", duplicate=False)

    def cancel_open(self, symbol: str, keep: str | None = None) -> list[str]:
        """Cancel pending orders of ``symbol`` except ``keep``; returns the cancelled ids."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT client_order_id FROM orders WHERE symbol = ? AND status = 'pending'",
                (symbol.upper(),),
            ).fetchall()
            ids = [r[0] for r in rows if r[0] != keep]
            conn.executemany(
                "UPDATE orders SET status = 'cancelled' WHERE client_order_id = ?",
                [(i,) for i in ids],
            )
        return ids

    def on_bar_open(self, symbol: str, bar_ts: str, price: float) -> list[Fill]:
        """Fill pending market orders decided before ``bar_ts`` at its open."""
        with self.store.transaction():
            self.mark(symbol, price)
            pending = [
                o for o in self.open_orders(symbol) if o.kind == "market" and o.bar_ts < bar_ts
            ]
            return [self._fill(o, bar_ts, price) for o in pending]

    def on_bar_close(self, symbol: str, bar_ts: str, price: float) -> list[Fill]:
        """Fill pending moc orders decided on ``bar_ts`` (or earlier) at its close."""
        with self.store.transaction():
            self.mark(symbol, price)
            pending = [
                o for o in self.open_orders(symbol) if o.kind == "moc" and o.bar_ts <= bar_ts
            ]
            return [self._fill(o, bar_ts, price) for o in pending]

    # -- backtest accounting ----------------------------------------------------------
    def _book_key(self, symbol: str) -> str:
        return f"paper_book:{symbol.upper()}"

    def book_weight(self, symbol: str) -> tuple[float, float] | None:
        """``(equity, weight)`` of the constant-weight book (``backtest``), else None."""
        if self.accounting != "backtest":
            return None
        book = self.store.get(self._book_key(symbol))
        if book is None:
            return self.cash() + 0.0, 0.0
        return float(book["equity"]), float(book["weight"])

    def mark(self, symbol: str, price: float) -> None:
        """Revalue a ``backtest`` book at ``price`` (weight constant, drift rebalanced free).

        The account rows are kept in step (shares = weight * equity / price, cash = the
        rest), so cash, position and the API read the same book. No-op for ``shares``.
        """
        if self.accounting != "backtest":
            return
        key = self._book_key(symbol)
        with self.store.transaction() as conn:
            book = self.store.get(key)
            if book is None:
                book = {"equity": self.cash(), "weight": 0.0, "price": float(price)}
            equity = float(book["equity"])
            weight = float(book["weight"])
            if book["price"]:
                equity *= 1.0 + weight * (float(price) / float(book["price"]) - 1.0)
            self._set_book(conn, symbol, equity, weight, float(price))

    def _set_book(
        self, conn: object, symbol: str, equity: float, weight: float, price: float
    ) -> None:
        qty = weight * equity / price if price > 0 else 0.0
        self.store.set(self._book_key(symbol), {"equity": equity, "weight": weight, "price": price})
        c = conn  # sqlite3.Connection
        c.execute(  # type: ignore[attr-defined]
            "INSERT INTO account(symbol, qty) VALUES(?, ?) "
            "ON CONFLICT(symbol) DO UPDATE SET qty = excluded.qty",
            (symbol.upper(), qty),
        )
        c.execute(  # type: ignore[attr-defined]
            "UPDATE account SET qty = ? WHERE symbol = ?", (equity - qty * price, CASH_KEY)
        )

    def _fill(self, order: Order, bar_ts: str, price: float) -> Fill:
        """Book one fill atomically: fill row, order status, position and cash."""
        if self.accounting == "backtest":
            return self._fill_at_weight(order, bar_ts, price)
        cost = self.cost_rate * abs(order.qty * price)
        fill = Fill(order.client_order_id, order.symbol, bar_ts, order.qty, float(price), cost)
        with self.store.transaction() as conn:
            _record_fill(conn, fill)
            conn.execute(
                "INSERT INTO account(symbol, qty) VALUES(?, ?) "
                "ON CONFLICT(symbol) DO UPDATE SET qty = qty + excluded.qty",
                (order.symbol.upper(), order.qty),
            )
            conn.execute(
                "UPDATE account SET qty = qty - ? WHERE symbol = ?",
                (order.qty * price + cost, CASH_KEY),
            )
        return fill

    def _fill_at_weight(self, order: Order, bar_ts: str, price: float) -> Fill:
        """``backtest`` fill: move the book's weight to the order's target at ``price``.

        Sized at the fill from the equity at the fill (already marked), cost on the change
        of weight, as the env books it.
        """
        with self.store.transaction() as conn:
            equity, weight = self.book_weight(order.symbol) or (self.cash(), 0.0)
            target = float(order.target)
            cost = self.cost_rate * abs(target - weight) * max(equity, 0.0)
            qty_before = self.position(order.symbol)
            equity -= cost
            qty_after = target * equity / price if price > 0 else 0.0
            fill = Fill(
                order.client_order_id,
                order.symbol,
                bar_ts,
                qty_after - qty_before,
                float(price),
                cost,
            )
            _record_fill(conn, fill)
            self._set_book(conn, order.symbol, equity, target, float(price))
        return fill


def _record_fill(conn: sqlite3.Connection, fill: Fill) -> None:
    """Book the fill row and mark its order filled (inside the caller's transaction).

    The fills primary key makes a second booking of the same order impossible.
    """
    conn.execute(
        "INSERT INTO fills(client_order_id, symbol, bar_ts, qty, price, cost)"
        " VALUES(?, ?, ?, ?, ?, ?)",
        (fill.client_order_id, fill.symbol, fill.bar_ts, fill.qty, fill.price, fill.cost),
    )
    conn.execute(
        "UPDATE orders SET status = 'filled' WHERE client_order_id = ?", (fill.client_order_id,)
    )


def _order(row: object) -> Order:
    r = row  # sqlite3.Row
    return Order(
        client_order_id=r["client_order_id"],  # type: ignore[index]
        symbol=r["symbol"],  # type: ignore[index]
        bar_ts=r["bar_ts"],  # type: ignore[index]
        target=float(r["target"]),  # type: ignore[index]
        qty=float(r["qty"]),  # type: ignore[index]
        kind=r["kind"],  # type: ignore[index]
        status=r["status"],  # type: ignore[index]
    )


class RealBrokerAdapter:
    """Skeleton of an adapter to a real broker (Interactive Brokers, Alpaca, ...). Not wired.

    This is the interface only. An implementation must satisfy :class:`Broker` with these
    guarantees, which the trader relies on for crash safety:

    * ``submit`` passes ``Order.client_order_id`` as the broker's client order id (IB
      ``orderRef``, Alpaca ``client_order_id``) and, on a "duplicate id" rejection, looks the
      existing order up and returns it with ``duplicate=True``;
    * ``on_bar_open``/``on_bar_close`` do not simulate: they reconcile executions reported by
      the broker since the last call and book each exactly once into the
      :class:`StateStore` (keyed by client order id), returning the new ones;
    * ``cash``/``position`` come from the broker's account endpoint, reconciled against the
      store at start-up (stop with an error on a mismatch rather than trade on it);
    * ``moc`` orders map to the broker's market-on-close order type, submitted before its
      cut-off (15:50 NY for NYSE, 12:50 on half days).

    Every method raises :class:`NotImplementedError`: live trading with real money needs a
    reviewed implementation and paper validation first. A finished adapter is registered
    with ``@register_broker("<name>")`` (``requires_state`` stays True, so a deleted state
    file can never start a fresh account against real money) and selected with
    ``broker: <name>`` in the live config.
    """

    _MESSAGE = (
        "RealBrokerAdapter is an interface skeleton; implement it for your broker (see the "
        "class docstring) and validate it against PaperBroker before trading real money"
    )

    def cash(self) -> float:
        """Cash balance from the broker's account."""
        raise NotImplementedError(self._MESSAGE)

    def position(self, symbol: str) -> float:
        """Signed shares held, from the broker."""
        raise NotImplementedError(self._MESSAGE)

    def submit(self, order: Order) -> Order:
        """Place the order under its client order id (idempotent)."""
        raise NotImplementedError(self._MESSAGE)

    def open_orders(self, symbol: str) -> list[Order]:
        """Working orders at the broker."""
        raise NotImplementedError(self._MESSAGE)

    def cancel_open(self, symbol: str, keep: str | None = None) -> list[str]:
        """Cancel working orders at the broker except ``keep``."""
        raise NotImplementedError(self._MESSAGE)

    def on_bar_open(self, symbol: str, bar_ts: str, price: float) -> list[Fill]:
        """Reconcile executions reported since the last call."""
        raise NotImplementedError(self._MESSAGE)

    def on_bar_close(self, symbol: str, bar_ts: str, price: float) -> list[Fill]:
        """Reconcile executions reported since the last call."""
        raise NotImplementedError(self._MESSAGE)

    def mark(self, symbol: str, price: float) -> None:
        """A real book is revalued by the broker: nothing to do."""

    def book_weight(self, symbol: str) -> tuple[float, float] | None:
        """A real broker books shares."""
        return None
