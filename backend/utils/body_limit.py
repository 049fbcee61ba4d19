"""A pure ASGI middleware that refuses request bodies above a size, before parsing them.

Both control APIs (the trader's ``/live/*`` and the supervisor's ``/supervisor/*``) sit
behind it: a client that declares a large ``Content-Length`` gets ``413`` at once, and one
that streams more than the limit without declaring it is cut off at the limit, so no
endpoint ever holds more than ``max_bytes`` of a request in memory. Field lengths are
bounded separately by the request models (``max_length``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 16_384
"""Largest request body the control APIs accept (their bodies are a few hundred bytes)."""


class BodySizeLimit:
    """Refuse bodies over ``max_bytes`` with ``413 Payload Too Large`` (JSON ``detail``)."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass non-HTTP scopes through; buffer and bound an HTTP request's body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await self._refuse(send, 400, "invalid Content-Length")
                return
            if size > self.max_bytes:
                await self._refuse(send, 413, self._message(size))
                return
        # Read the whole body here (it is small by construction), refusing it at the limit,
        # then hand the app a receive that replays it.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            if message["type"] != "http.request":
                continue
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(send, 413, self._message(seen))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes"

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _safe(value: Any) -> Any:
    """JSON-safe copy of a validation error's parts (no lone surrogates, bounded text)."""
    from backend.utils.text_sanitize import clean_text

    if isinstance(value, str):
        return clean_text(value, 200)
    if isinstance(value, dict):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return clean_text(repr(value), 200)


def harden_app(app: Any, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    r"""Bound request bodies and make 422 answers safe for any input.

    FastAPI's default 422 echoes the offending input; an input holding a lone surrogate
    (valid JSON: ``"\ud800"``) then fails to encode and the answer becomes a 500. The
    handler installed here echoes a normalized, bounded copy instead.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    async def _validation_error(request: Any, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _safe(list(exc.errors()))})

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
