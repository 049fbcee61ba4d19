"""End-to-end smoke test of ``python -m backend.monitoring.llm_supervisor`` on loopback.

Starts the real service (uvicorn + poll loop) as a subprocess on 127.0.0.1, polls its API
for at most 20 s, and always stops it (SIGINT, then kill after 10 s).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
NEWS = Path(__file__).parent / "fixtures" / "news"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_service_entry_point_serves_and_polls(tmp_path: Path) -> None:
    news = tmp_path / "news.jsonl"
    line = json.loads((NEWS / "halt.jsonl").read_text())
    line["published"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    news.write_text(json.dumps(line) + "\n")
    port = free_port()
    cfg = tmp_path / "sup.yaml"
    cfg.write_text(
        f"news_paths: ['{news}']\npoll_interval_s: 3600\nport: {port}\n"
        f"audit_db_path: '{tmp_path / 'a.sqlite3'}'\naudit_jsonl_path: '{tmp_path / 'a.jsonl'}'\n"
        "api_token_env: SUP_SMOKE_TOKEN\n"
    )
    env = {**os.environ, "SUP_SMOKE_TOKEN": "smoke-token"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.monitoring.llm_supervisor", "--config", str(cfg)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        status = None
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            for _ in range(80):  # <= 20 s for start-up and the first poll
                try:
                    r = client.get(f"{base}/supervisor/status")
                    if r.status_code == 200 and r.json()["provider"] != "boot":
                        status = r.json()
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.25)
            assert status is not None, "service did not answer within 20 s"
            assert status["level"] == "Halt" and status["sources"]
            r = client.post(
                f"{base}/supervisor/resume",
                json={"who": "smoke", "why": "test"},
                headers={"Authorization": "Bearer smoke-token"},
            )
            assert r.status_code == 200 and r.json()["level"] == "Caution"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert (tmp_path / "a.jsonl").read_text().count("\n") == 2
