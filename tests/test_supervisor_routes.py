"""FastAPI routes: status schema, loopback-only reads, bearer-token control endpoints."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from backend.config.supervisor_config import SupervisorConfig
from backend.monitoring.audit_log import AuditLog
from backend.monitoring.llm_supervisor import Supervisor
from backend.monitoring.risk_levels import RiskLevel, Verdict
from backend.monitoring.routes import HistoryResponse, StatusResponse, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's "use httpx2" notice, not ours to fix
    from fastapi.testclient import TestClient

TOKEN = "route-test-token-1b2c"
ENV = "YOOPRL_SUPERVISOR_TOKEN_TEST"
LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.7", 50000)


@pytest.fixture
def sup(tmp_path: Path) -> Supervisor:
    cfg = SupervisorConfig(
        audit_db_path=str(tmp_path / "a.sqlite3"),
        audit_jsonl_path=str(tmp_path / "a.jsonl"),
        api_token_env=ENV,
    )
    return Supervisor(cfg, AuditLog(cfg.audit_db_path, cfg.audit_jsonl_path))


def client(sup: Supervisor, monkeypatch, *, token: str | None = TOKEN, peer=LOOPBACK):
    if token is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, token)
    return TestClient(create_app(sup, sup.config), client=peer)


AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"who": "alice", "why": "drill"}


def test_status_schema_from_loopback_without_token(sup, monkeypatch) -> None:
    c = client(sup, monkeypatch)
    r = c.get("/supervisor/status")
    assert r.status_code == 200
    st = StatusResponse.model_validate(r.json())
    assert st.level == "Caution" and st.stale is False and st.manual_override is None
    assert set(r.json()) == {
        "level",
        "reason",
        "decided_at",
        "stale",
        "sources",
        "provider",
        "manual_override",
        "audit_ok",
        "audit_error",
        "audit_failures",
    }
    assert r.json()["decided_at"].endswith("Z") or "+00:00" in r.json()["decided_at"]
    assert "/supervisor/status" in c.get("/openapi.json").json()["paths"]


def test_reads_from_remote_need_token(sup, monkeypatch) -> None:
    c = client(sup, monkeypatch, peer=REMOTE)
    assert c.get("/supervisor/status").status_code == 401
    assert c.get("/supervisor/history").status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert c.get("/supervisor/status", headers=bad).status_code == 403
    assert c.get("/supervisor/status", headers=AUTH).status_code == 200


@pytest.mark.parametrize("path", ["/supervisor/halt", "/supervisor/resume", "/supervisor/override"])
@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": "Bearer wrong-token"}, 403),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403),
    ],
)
def test_control_endpoints_refuse_missing_or_wrong_token(
    sup, monkeypatch, path: str, headers: dict[str, str], code: int
) -> None:
    c = client(sup, monkeypatch)  # loopback does not exempt control endpoints
    body = {**BODY, "level": "OK", "expires_at": "2099-01-01T00:00:00Z"}
    assert c.post(path, json=body, headers=headers).status_code == code
    assert sup.audit.count() == 0  # nothing happened


def test_control_disabled_when_token_env_unset(sup, monkeypatch) -> None:
    c = client(sup, monkeypatch, token=None)
    r = c.post("/supervisor/halt", json=BODY, headers={"Authorization": "Bearer "})
    assert r.status_code == 503 and ENV in r.json()["detail"]
    assert c.get("/supervisor/status").status_code == 200  # loopback reads still work


def test_halt_resume_override_history_flow(sup, monkeypatch) -> None:
    c = client(sup, monkeypatch)
    sup.apply_verdict(Verdict(RiskLevel.OK, "calm"), sup._clock(), "rules")
    sup.apply_verdict(Verdict(RiskLevel.OK, "calm"), sup._clock(), "rules")
    r = c.post("/supervisor/halt", json=BODY, headers=AUTH)
    assert r.status_code == 200
    st = r.json()
    assert st["level"] == "Halt" and st["manual_override"]["who"] == "alice"
    assert c.get("/supervisor/status").json()["level"] == "Halt"
    r = c.post("/supervisor/resume", json={"who": "bob", "why": "all clear"}, headers=AUTH)
    assert r.json()["level"] == "OK" and r.json()["manual_override"] is None
    expiry = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    r = c.post(
        "/supervisor/override",
        json={**BODY, "level": "Caution", "expires_at": expiry},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json()["level"] == "Caution"
    hist = HistoryResponse.model_validate(c.get("/supervisor/history?limit=2").json())
    assert [e.kind for e in hist.entries] == ["override", "resume"]
    assert hist.entries[1].override["who"] == "bob"


@pytest.mark.parametrize(
    "body",
    [
        {"who": "", "why": "x"},
        {"who": "   ", "why": "x"},
        {"who": "a"},
        {"who": "a", "why": "b", "level": "OK"},  # override without expiry
        {"who": "a", "why": "b", "level": "Panic", "expires_at": "2099-01-01T00:00:00Z"},
        {"who": "a", "why": "b", "level": "OK", "expires_at": "2099-01-01T00:00:00"},  # naive
        {"who": "a", "why": "b", "level": "OK", "expires_at": "2000-01-01T00:00:00Z"},  # past
    ],
)
def test_override_validation(sup, monkeypatch, body) -> None:
    c = client(sup, monkeypatch)
    assert c.post("/supervisor/override", json=body, headers=AUTH).status_code == 422
    assert sup.audit.count() == 0


def test_history_limit_bounds(sup, monkeypatch) -> None:
    c = client(sup, monkeypatch)
    assert c.get("/supervisor/history?limit=0").status_code == 422
    assert c.get("/supervisor/history?limit=5000").status_code == 422
    assert c.get("/supervisor/history").json() == {"entries": []}
