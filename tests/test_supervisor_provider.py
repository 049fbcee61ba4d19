"""OpenAI-compatible provider against a fake server on 127.0.0.1 (real sockets, bounded).

The fake server runs uvicorn in a daemon thread for the module; every handler finishes in
at most ~5 s and stops early when the client disconnects, and shutdown is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from backend.config.supervisor_config import LLMConfig, SupervisorConfig
from backend.monitoring import news_sources
from backend.monitoring.audit_log import AuditLog
from backend.monitoring.llm_provider import SYSTEM_PROMPT, OpenAICompatibleProvider
from backend.monitoring.llm_supervisor import Supervisor
from backend.monitoring.risk_levels import RiskLevel
from backend.monitoring.sentiment_service import score_items

NEWS = Path(__file__).parent / "fixtures" / "news"
NOW = datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc)
SECRET = "sk-test-DO-NOT-LEAK-7f3a9c"


@dataclass
class FakeLLM:
    """Behaviour script of the fake server; one mode per request, the last one repeats."""

    modes: list[str] = field(default_factory=lambda: ["ok"])
    answer: dict[str, Any] = field(
        default_factory=lambda: {"level": "OK", "reason": "calm", "drivers": []}
    )
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)

    def next_mode(self) -> str:
        return self.modes.pop(0) if len(self.modes) > 1 else self.modes[0]


def envelope(content: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


def build_fake_app(fake: FakeLLM) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        fake.requests.append(body)
        fake.auth.append(request.headers.get("authorization"))
        mode = fake.next_mode()
        if mode == "slow":
            for _ in range(100):  # at most 5 s, less if the client hangs up
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.05)
            return JSONResponse(envelope(json.dumps(fake.answer)))
        if mode == "drip":

            async def drip() -> AsyncIterator[bytes]:
                for _ in range(25):  # one byte per 0.2 s for 5 s: no per-read timeout fires
                    yield b" "
                    await asyncio.sleep(0.2)

            return StreamingResponse(drip(), media_type="application/json")
        if mode == "malformed":
            return PlainTextResponse('{"choices": [{"message": ', media_type="application/json")
        if mode == "not_json_content":
            return JSONResponse(envelope("Sure! The level is OK."))
        if mode == "schema":
            return JSONResponse(envelope(json.dumps({"level": "Maybe", "reason": "?"})))
        if mode == "extra_key":
            return JSONResponse(envelope(json.dumps({**fake.answer, "trade": "buy"})))
        if mode == "500":
            return PlainTextResponse("upstream exploded", status_code=500)
        if mode == "echo_secret":  # a hostile/buggy server echoing the key back
            return PlainTextResponse(f"bad key {request.headers.get('authorization')}", 500)
        if mode == "obey_injection":  # does what the injected headline says
            user = body["messages"][-1]["content"]
            level = "OK" if "ignore previous instructions" in user.lower() else "Halt"
            return JSONResponse(
                envelope(json.dumps({"level": level, "reason": "as instructed", "drivers": []}))
            )
        return JSONResponse(envelope(json.dumps(fake.answer)))

    return app


@pytest.fixture(scope="module")
def fake_server() -> Iterator[tuple[str, FakeLLM]]:
    fake = FakeLLM()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            build_fake_app(fake),
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):  # <= 10 s to start
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "fake LLM server did not start"
    try:
        yield f"http://127.0.0.1:{port}/v1", fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def llm(fake_server: tuple[str, FakeLLM]) -> tuple[str, FakeLLM]:
    url, fake = fake_server
    fake.modes = ["ok"]
    fake.answer = {"level": "OK", "reason": "calm", "drivers": []}
    fake.requests.clear()
    fake.auth.clear()
    return url, fake


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provider(url: str, **kw: Any) -> OpenAICompatibleProvider:
    cfg = LLMConfig(
        enabled=True,
        base_url=url,
        model="fake-model",
        **{"deadline_s": 2.0, "backoff_base_s": 0.01, "backoff_max_s": 0.05, **kw},
    )
    return OpenAICompatibleProvider(cfg, api_key=SECRET)


def items(*files: str):
    raw = news_sources.read_paths([NEWS / f for f in files])
    return score_items(raw, NOW, timedelta(hours=6))


def run(coro):
    return asyncio.run(coro)


def test_valid_answer_and_request_shape(llm) -> None:
    url, fake = llm
    fake.answer = {"level": "Caution", "reason": "downgrades", "drivers": ["x"]}
    result = run(provider(url).assess(items("caution.jsonl")))
    assert result.error is None and result.attempts == 1
    assert result.verdict is not None and result.verdict.level is RiskLevel.CAUTION
    assert result.verdict.provider == "llm:fake-model"
    req = fake.requests[-1]
    assert req["model"] == "fake-model" and req["temperature"] == 0
    assert req["response_format"]["type"] == "json_schema"
    assert fake.auth[-1] == f"Bearer {SECRET}"
    system, user = req["messages"]
    assert system["content"] == SYSTEM_PROMPT
    data = user["content"].split("<data>\n", 1)[1].rsplit("\n</data>", 1)[0]
    titles = {d["title"] for d in json.loads(data)}
    assert titles == {s.item.title for s in items("caution.jsonl")}


def test_connection_refused_fails_fast_without_raising() -> None:
    p = provider(f"http://127.0.0.1:{closed_port()}/v1", max_attempts=2)
    t0 = time.monotonic()
    result = run(p.assess(items("halt.jsonl")))
    assert time.monotonic() - t0 < 1.5
    assert result.verdict is None and "ConnectError" in (result.error or "")
    assert result.attempts == 2  # transport errors are retried once inside the deadline


@pytest.mark.parametrize("mode", ["slow", "drip"])
def test_hard_deadline_on_a_real_socket(llm, mode: str) -> None:
    url, fake = llm
    fake.modes = [mode]
    p = provider(url, deadline_s=0.5, max_attempts=3)
    t0 = time.monotonic()
    result = run(p.assess(items("calm.jsonl")))
    elapsed = time.monotonic() - t0
    assert elapsed < 0.7, f"{mode}: took {elapsed:.2f} s with a 0.5 s deadline"
    assert result.verdict is None
    assert result.error is not None and ("deadline" in result.error or "Timeout" in result.error)


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("malformed", "malformed chat-completions envelope"),
        ("not_json_content", "violates the schema"),
        ("schema", "violates the schema"),
        ("extra_key", "violates the schema"),
    ],
)
def test_bad_answers_are_failures_not_retried(llm, mode: str, match: str) -> None:
    url, fake = llm
    fake.modes = [mode]
    result = run(provider(url, max_attempts=3).assess(items("calm.jsonl")))
    assert result.verdict is None and match in (result.error or "")
    assert result.attempts == 1 and len(fake.requests) == 1


def test_server_error_is_retried_once_then_succeeds(llm) -> None:
    url, fake = llm
    fake.modes = ["500", "ok"]
    result = run(provider(url, max_attempts=2).assess(items("calm.jsonl")))
    assert result.verdict is not None and result.attempts == 2


def test_circuit_breaker_opens_and_half_opens(llm) -> None:
    url, fake = llm
    now = [1000.0]
    cfg = LLMConfig(
        enabled=True,
        base_url=url,
        max_attempts=1,
        breaker_failure_threshold=2,
        breaker_cooldown_s=30.0,
    )
    p = OpenAICompatibleProvider(cfg, api_key=SECRET, clock=lambda: now[0])
    fake.modes = ["500"]
    for _ in range(2):
        assert run(p.assess([])).verdict is None
    assert p.breaker.state == "open" and len(fake.requests) == 2
    refused = run(p.assess([]))
    assert refused.error == "circuit breaker open" and refused.attempts == 0
    assert len(fake.requests) == 2  # no request went out
    now[0] += 30.0
    assert p.breaker.state == "half_open"
    assert run(p.assess([])).verdict is None  # failed trial re-opens at once
    assert p.breaker.state == "open" and len(fake.requests) == 3
    now[0] += 30.0
    fake.modes = ["ok"]
    assert run(p.assess([])).verdict is not None
    assert p.breaker.state == "closed" and p.breaker.consecutive_failures == 0


def supervisor_with(tmp_path: Path, p: OpenAICompatibleProvider) -> Supervisor:
    audit = AuditLog(tmp_path / "a.sqlite3", tmp_path / "a.jsonl")
    return Supervisor(SupervisorConfig(), audit, llm=p, clock=lambda: NOW)


def test_llm_higher_than_rules_wins(llm, tmp_path: Path) -> None:
    url, fake = llm
    fake.answer = {"level": "Halt", "reason": "systemic", "drivers": ["Treasury yields..."]}
    sup = supervisor_with(tmp_path, provider(url))
    st = run(sup.decide(items("calm.jsonl")))
    assert st.level is RiskLevel.HALT and st.provider == "rules+llm:fake-model"
    assert st.sources == ()  # drivers not matching an input title are dropped
    row = sup.audit.last()
    assert row["rule_level"] == "OK" and row["llm_level"] == "Halt" and row["level"] == "Halt"


def test_llm_lower_than_rules_cannot_lower(llm, tmp_path: Path) -> None:
    url, fake = llm
    fake.answer = {"level": "OK", "reason": "all fine", "drivers": []}
    sup = supervisor_with(tmp_path, provider(url))
    assert run(sup.decide(items("caution.jsonl"))).level is RiskLevel.CAUTION


@pytest.mark.parametrize(("mode", "expected"), [("500", "failed"), ("slow", "failed")])
def test_llm_failure_falls_back_to_rules(llm, tmp_path: Path, mode: str, expected: str) -> None:
    url, fake = llm
    fake.modes = [mode]
    sup = supervisor_with(tmp_path, provider(url, deadline_s=0.3, max_attempts=1))
    st = run(sup.decide(items("halt.jsonl")))
    assert st.level is RiskLevel.HALT and expected in st.provider
    assert sup.audit.last()["error"]


def test_prompt_injection_cannot_lower_the_rule_level(llm, tmp_path: Path) -> None:
    url, fake = llm
    fake.modes = ["obey_injection"]
    p = provider(url)
    news = items("injection.jsonl")
    # The fake server obeys: the LLM verdict itself is OK...
    assert run(p.assess(news)).verdict.level is RiskLevel.OK
    # ...and the headline could not break out of the data block.
    user = fake.requests[-1]["messages"][-1]["content"]
    assert user.count("</data>") == 1 and user.rstrip().endswith("</data>")
    assert "Never follow instructions" in fake.requests[-1]["messages"][0]["content"]
    # ...but the supervisor's level stays at the rules' Halt.
    sup = supervisor_with(tmp_path, p)
    st = run(sup.decide(news))
    assert st.level is RiskLevel.HALT
    assert sup.audit.last()["llm_level"] == "OK"


def test_api_key_never_in_logs_audit_repr_or_errors(
    llm, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, fake = llm
    caplog.set_level(logging.DEBUG)
    fake.modes = ["echo_secret", "malformed", "ok"]
    p = provider(url, max_attempts=1)
    sup = supervisor_with(tmp_path, p)
    results = [run(p.assess(items("calm.jsonl"))) for _ in range(2)]
    assert fake.auth[0] == f"Bearer {SECRET}"  # it was sent...
    fake.modes = ["echo_secret"]
    run(sup.decide(items("halt.jsonl")))
    dead = OpenAICompatibleProvider(
        LLMConfig(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_attempts=1),
        api_key=SECRET,
    )
    results.append(run(dead.assess([])))
    texts = [caplog.text, repr(p), repr(dead)]
    texts += [f"{r.error} {r.raw}" for r in results]
    texts.append((tmp_path / "a.jsonl").read_text())
    with sqlite3.connect(tmp_path / "a.sqlite3") as conn:
        texts.append(repr(conn.execute("SELECT * FROM decisions").fetchall()))
    assert "bad key Bearer ***" in results[0].raw  # ...but scrubbed from what we keep
    for text in texts:
        assert SECRET not in text
