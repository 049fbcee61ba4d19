"""Mode logic (hysteresis, Halt latch, boot level), guards and the supervisor client."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from backend.config.live_config import GuardConfig, LiveConfig
from backend.execution.guards import Level, ModeController, RiskGuards
from backend.execution.state_store import StateStore
from backend.execution.supervisor_client import SupervisorClient


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        time.sleep(self.server.delay)
        body = json.dumps(self.server.payload).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (deadline)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    delay = 0.0
    payload: dict[str, object] = {}


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: _Server) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}"


def test_de_escalation_needs_two_consecutive_lower_verdicts() -> None:
    mc = ModeController.boot(None)
    assert mc.supervisor_level == Level.CAUTION  # boot: never OK
    assert mc.observe_supervisor(Level.OK) == Level.CAUTION
    assert mc.observe_supervisor(Level.CAUTION) == Level.CAUTION  # resets the count
    assert mc.observe_supervisor(Level.OK) == Level.CAUTION
    assert mc.observe_supervisor(Level.OK) == Level.OK
    assert mc.observe_supervisor(Level.CAUTION) == Level.CAUTION  # escalation immediate
    assert mc.effective(manual_halt=False, guard_trips=[]) == Level.CAUTION


def test_halt_latches_until_a_human_resumes() -> None:
    mc = ModeController.boot({"supervisor_level": "OK"})
    assert mc.supervisor_level == Level.CAUTION  # persisted OK still boots at Caution
    mc.observe_supervisor(Level.HALT)
    assert mc.effective(manual_halt=False, guard_trips=[]) == Level.HALT
    for _ in range(5):
        mc.observe_supervisor(Level.OK)
        assert mc.effective(manual_halt=False, guard_trips=[]) == Level.HALT
    restored = ModeController.boot(mc.to_dict())
    assert restored.effective(manual_halt=False, guard_trips=[]) == Level.HALT
    restored.resume()
    assert restored.effective(manual_halt=False, guard_trips=[]) == Level.CAUTION


def test_guards_trip() -> None:
    guards = RiskGuards(GuardConfig(daily_loss_limit=0.02, max_drawdown=0.05, max_position=0.5))
    assert guards.check_account(100.0, 100.0, 100.0, 0.5) == []
    names = {t.guard for t in guards.check_account(94.0, 97.0, 100.0, 0.9)}
    assert names == {"daily_loss", "max_drawdown", "max_position"}
    due = pd.Timestamp("2024-03-04 10:00", tz="America/New_York")
    assert guards.check_stale(due + pd.Timedelta(seconds=60), due) is None
    assert guards.check_stale(due + pd.Timedelta(seconds=121), due) is not None
    times = [due - pd.Timedelta(minutes=m) for m in range(12)]
    assert guards.check_order_rate(due, times) is not None
    assert guards.check_order_rate(due, times[:11]) is None


def test_supervisor_ok_is_read_and_persisted(server: _Server, tmp_path: Path) -> None:
    server.payload = {
        "level": "Halt",
        "reason": "drawdown",
        "decided_at": "2024-03-04T15:00:00Z",
        "stale": False,
        "extra": {"ignored": True},
    }
    store = StateStore(tmp_path / "s.sqlite")
    verdict = SupervisorClient(_url(server), store, 2.0).query()
    assert verdict.level == Level.HALT and verdict.source == "supervisor"
    server.payload = {"level": "OK", "reason": "", "decided_at": None, "stale": True}
    stale = SupervisorClient(_url(server), store, 2.0).query()
    assert stale.level == Level.CAUTION and stale.reported == "OK"  # stale -> at least Caution


def test_slow_supervisor_falls_back_within_the_deadline(server: _Server, tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s.sqlite")
    server.payload = {"level": "OK", "reason": "", "stale": False}
    client = SupervisorClient(_url(server), store, deadline_s=2.0)
    assert client.query().level == Level.OK  # persisted: last seen OK
    server.delay = 5.0
    start = time.monotonic()
    verdict = client.query()
    elapsed = time.monotonic() - start
    assert elapsed < 2.5, elapsed  # hard deadline, not per-phase timeouts
    assert verdict.source == "persisted" and verdict.level == Level.CAUTION  # OK floored
    store.set("supervisor_seen", {"level": "Halt", "reason": "x", "stale": False})
    assert client.query().level == Level.HALT  # a persisted Halt is kept
    client.close()


def test_down_supervisor_falls_back_to_caution(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = StateStore(tmp_path / "s.sqlite")
    start = time.monotonic()
    verdict = SupervisorClient(f"http://127.0.0.1:{port}", store, 2.0).query()
    assert time.monotonic() - start < 2.5
    assert verdict.source == "default" and verdict.level == Level.CAUTION
    assert SupervisorClient(None, store).query().level == Level.CAUTION


def test_live_config_from_dict_validates() -> None:
    cfg = LiveConfig.from_dict({"symbol": "spy", "guards": {"max_position": 0.5}})
    assert cfg.symbol == "SPY" and cfg.guards.max_position == 0.5
    with pytest.raises(ValueError, match="unknown keys"):
        LiveConfig.from_dict({"symbl": "SPY"})
    with pytest.raises(ValueError, match="max_position"):
        GuardConfig(max_position=2.0)
