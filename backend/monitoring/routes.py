"""FastAPI routes of the supervisor; the response models are the trader client's contract.

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

* ``GET /supervisor/status`` -> :class:`StatusResponse`
* ``GET /supervisor/history?limit=N`` -> :class:`HistoryResponse`
* ``POST /supervisor/halt`` (:class:`HaltRequest`) -> :class:`StatusResponse`
* ``POST /supervisor/resume`` (:class:`ResumeRequest`) -> :class:`StatusResponse`
* ``POST /supervisor/override`` (:class:`OverrideRequest`) -> :class:`StatusResponse`

Auth: control endpoints (POST) always need ``Authorization: Bearer <token>``, the token
coming from the environment variable named by ``SupervisorConfig.api_token_env``;
missing -> 401, wrong -> 403 (compared with ``hmac.compare_digest``); if the variable is
unset they answer 503 to everyone (fail closed). Read-only endpoints (GET) need no token
when the client is on loopback, else the same bearer token.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backend.config.supervisor_config import SupervisorConfig
from backend.monitoring.llm_supervisor import AuditUnavailableError, Supervisor, SupervisorStatus
from backend.monitoring.risk_levels import RiskLevel
from backend.utils.body_limit import DEFAULT_MAX_BODY_BYTES, harden_app
from backend.utils.text_sanitize import clean_text

WireLevelField = Literal["OK", "Caution", "Halt"]


class OverrideInfo(BaseModel):
    """A manual override in force."""

    level: WireLevelField
    who: str
    why: str
    set_at: datetime
    expires_at: datetime | None = None


class StatusResponse(BaseModel):
    """``GET /supervisor/status``: what the trader acts on.

    ``level`` is already the effective one (override and staleness applied): the trader
    needs no other field to decide, the rest is for humans and logs.
    """

    level: WireLevelField = Field(description="Effective risk level: OK < Caution < Halt.")
    reason: str = Field(description="Why, in one line.")
    decided_at: datetime = Field(description="Time of the last decision (ISO 8601, UTC).")
    stale: bool = Field(description="No decision for longer than the configured staleness.")
    sources: list[str] = Field(description="Headlines that drove the level.")
    provider: str = Field(description="Classifiers behind the decision, e.g. 'rules+llm:x'.")
    manual_override: OverrideInfo | None = Field(description="Override in force, if any.")
    audit_ok: bool = Field(
        default=True, description="False while audit rows cannot be written (level >= Caution)."
    )
    audit_error: str | None = Field(
        default=None, description="Why the audit trail last failed, while it fails."
    )
    audit_failures: int = Field(default=0, description="Audit rows lost since it last worked.")

    @classmethod
    def from_status(cls, st: SupervisorStatus) -> StatusResponse:
        """Wire form of a :class:`SupervisorStatus`."""
        ov = st.manual_override
        return cls(
            level=st.level.wire,
            reason=st.reason,
            decided_at=st.decided_at,
            stale=st.stale,
            sources=list(st.sources),
            provider=st.provider,
            manual_override=OverrideInfo(**ov.to_json()) if ov else None,
            audit_ok=st.audit_error is None,
            audit_error=st.audit_error,
            audit_failures=st.audit_failures,
        )


class HistoryEntry(BaseModel):
    """One audit row."""

    id: int
    decided_at: datetime
    kind: str
    inputs_digest: str
    n_items: int
    provider: str
    raw_answer: str
    rule_level: str | None
    llm_level: str | None
    verdict_level: str | None
    level: WireLevelField
    reason: str
    sources: list[str]
    latency_ms: float
    error: str | None
    override: dict[str, Any] | None


class HistoryResponse(BaseModel):
    """``GET /supervisor/history``: newest first."""

    entries: list[HistoryEntry]


class ResumeRequest(BaseModel):
    """``POST /supervisor/resume``: who and why are mandatory, they go to the audit trail.

    Unknown fields are refused; text is normalized (``clean_text``) and bounded.
    """

    model_config = ConfigDict(extra="forbid")

    who: str = Field(min_length=1, max_length=200)
    why: str = Field(min_length=1, max_length=2000)

    @field_validator("who", "why", mode="before")
    @classmethod
    def _not_blank(cls, value: object) -> object:
        if not isinstance(value, str):
            return value  # pydantic reports the wrong type
        value = clean_text(value)
        if not value:
            raise ValueError("must not be blank")
        return value


class HaltRequest(ResumeRequest):
    """``POST /supervisor/halt``."""

    expires_at: datetime | None = Field(
        default=None, description="Optional expiry (ISO 8601 with timezone)."
    )


class OverrideRequest(ResumeRequest):
    """``POST /supervisor/override``: the expiry is required (no open-ended bypass)."""

    level: WireLevelField
    expires_at: datetime = Field(description="Expiry (ISO 8601 with timezone).")


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "expires_at needs a timezone")
    try:
        return dt.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "expires_at is out of range"
        ) from None


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(
    supervisor: Supervisor,
    config: SupervisorConfig,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """Build the API around ``supervisor``; the token is read from the environment now.

    Request bodies above ``max_body_bytes`` are refused with 413 before parsing
    (:class:`~backend.utils.body_limit.BodySizeLimit`); every field has a maximum length.
    """
    token = os.environ.get(config.api_token_env) or None
    app = FastAPI(
        title="YoopRL risk supervisor",
        description="Kill switch of the live trader: risk level OK < Caution < Halt.",
        version="1.0",
    )
    harden_app(app, max_body_bytes)

    def _bearer_ok(request: Request) -> None:
        if token is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"token auth disabled: set {config.api_token_env}",
            )
        header = request.headers.get("authorization")
        if not header:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "expected 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid token")

    def require_control(request: Request) -> None:
        _bearer_ok(request)

    def require_read(request: Request) -> None:
        if _is_loopback(request.client.host if request.client else None):
            return
        _bearer_ok(request)

    read = [Depends(require_read)]
    control = [Depends(require_control)]

    @app.get("/supervisor/status", dependencies=read, response_model=StatusResponse)
    def get_status() -> StatusResponse:
        """Effective risk level for the trader."""
        return StatusResponse.from_status(supervisor.status())

    @app.get("/supervisor/history", dependencies=read, response_model=HistoryResponse)
    def get_history(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> HistoryResponse:
        """Newest audit rows (decisions and manual actions)."""
        return HistoryResponse(entries=[HistoryEntry(**r) for r in supervisor.audit.recent(limit)])

    @app.post("/supervisor/halt", dependencies=control, response_model=StatusResponse)
    def post_halt(body: HaltRequest) -> StatusResponse:
        """Manual Halt (until resumed, or until ``expires_at``)."""
        try:
            st = supervisor.manual_halt(body.who, body.why, _aware(body.expires_at))
        except AuditUnavailableError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        return StatusResponse.from_status(st)

    @app.post("/supervisor/resume", dependencies=control, response_model=StatusResponse)
    def post_resume(body: ResumeRequest) -> StatusResponse:
        """Clear a Halt (manual or sticky) and any override (503 while the audit fails)."""
        try:
            return StatusResponse.from_status(supervisor.resume(body.who, body.why))
        except AuditUnavailableError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc

    @app.post("/supervisor/override", dependencies=control, response_model=StatusResponse)
    def post_override(body: OverrideRequest) -> StatusResponse:
        """Force a level until ``expires_at``."""
        try:
            st = supervisor.override(
                RiskLevel.from_wire(body.level), body.who, body.why, _aware(body.expires_at)
            )
        except AuditUnavailableError as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        return StatusResponse.from_status(st)

    return app
