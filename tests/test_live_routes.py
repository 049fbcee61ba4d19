"""REST API: loopback-only status, bearer-token control endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.api.live_routes import create_app
from backend.execution.broker import Order, PaperBroker
from backend.execution.state_store import StateStore

TOKEN = "s3cret-token"


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path / "s.sqlite")
    broker = PaperBroker(store, cost_bps=1.0, slippage_bps=1.0, initial_cash=1_000.0)
    broker.submit(Order("a", "SPY", "2024-03-04T14:30:00+00:00", 0.5, 2.0))
    broker.on_bar_open("SPY", "2024-03-04T14:45:00+00:00", 100.0)
    store.set("status", {"mode": "ACTIVE", "equity": 999.98, "pnl": -0.02})
    return store


def _client(store: StateStore, host: str = "127.0.0.1", token: str | None = TOKEN) -> TestClient:
    return TestClient(create_app(store, token=token), client=(host, 50000))


def test_status_and_positions_on_loopback(store: StateStore) -> None:
    client = _client(store)
    status = client.get("/live/status").json()
    assert status["status"]["mode"] == "ACTIVE" and status["manual_halt"] == {"active": False}
    positions = client.get("/live/positions").json()
    assert positions["positions"] == {"SPY": 2.0}
    assert positions["cash"] == pytest.approx(1_000.0 - 200.0 - 0.04)
    assert positions["costs"] == pytest.approx(0.04) and positions["fills"] == 1


def test_status_refuses_non_loopback_clients(store: StateStore) -> None:
    client = _client(store, host="192.0.2.7")
    assert client.get("/live/status").status_code == 403
    assert client.get("/live/positions").status_code == 403


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
def test_control_endpoints_refuse_missing_or_wrong_tokens(
    store: StateStore, headers: dict[str, str]
) -> None:
    client = _client(store)
    for path in ("/live/halt", "/live/resume"):
        response = client.post(path, headers=headers)
        assert response.status_code == 401, path
    assert store.get("manual_halt") is None and store.get("resume_seq") is None


def test_control_endpoints_disabled_without_a_token(store: StateStore) -> None:
    client = _client(store, token=None)
    assert client.post("/live/halt", headers={"Authorization": "Bearer x"}).status_code == 503


def test_halt_and_resume_with_the_token(store: StateStore) -> None:
    client = _client(store)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    response = client.post("/live/halt", headers=auth, json={"reason": "news"})
    assert response.status_code == 200
    assert store.get("manual_halt") == {"active": True, "reason": "news"}
    assert client.get("/live/status").json()["manual_halt"]["active"] is True
    assert client.post("/live/resume", headers=auth).json() == {
        "manual_halt": False,
        "resume_seq": 1,
    }
    assert store.get("manual_halt")["active"] is False
