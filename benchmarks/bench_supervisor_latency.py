"""Status latency of the supervisor API while a poll reads a large news folder.

``python benchmarks/bench_supervisor_latency.py [--lines 200000] [--out FILE]`` writes a
news folder of ``--lines`` JSON lines (~45 MB at 200k), serves the real app with uvicorn
on a loopback port, and probes ``GET /supervisor/status`` every 50 ms from another thread:

* idle: no poll running (the baseline of the same run);
* poll (default budget): one ``poll_once`` with the configured byte/item/time limits;
* poll (whole folder): the budget raised so the poll reads and parses all of it.

Reports the worst and the 99th-percentile latency of each phase, failed probes, the poll
durations and the 1-minute load average around each phase (the machine may be shared), as
JSON (``benchmarks/results/bench_supervisor_latency.json`` by default).

The probe thread is stopped with ``await asyncio.to_thread(thread.join)``: joining it on the
event loop (as the first version did) blocked the very loop that serves the request the
probe may be waiting for, so the phase's last request hung until the client's 30 s timeout
and was counted as the idle phase's worst latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config.supervisor_config import SupervisorConfig  # noqa: E402
from backend.monitoring.audit_log import AuditLog  # noqa: E402
from backend.monitoring.llm_supervisor import Supervisor  # noqa: E402
from backend.monitoring.routes import create_app  # noqa: E402
from backend.utils.provenance import collect_provenance  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_supervisor_latency.json"


def write_news(folder: Path, lines: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    pad = "markets move on a day of mixed data and steady rates " * 3
    with (folder / "big.jsonl").open("w", encoding="utf-8") as fh:
        for k in range(lines):
            when = (now - timedelta(seconds=k)).isoformat()
            title = f"Headline {k}: stocks drift as traders weigh earnings"
            fh.write(json.dumps({"published": when, "source": "wire", "title": title,
                                 "summary": pad}) + "\n")  # fmt: skip
    return sum(p.stat().st_size for p in folder.glob("*.jsonl"))


def probe(url: str, stop: threading.Event, out: list[float], failures: list[str]) -> None:
    """GET ``url`` every 50 ms until ``stop``; a failed request is recorded, not raised."""
    with httpx.Client(timeout=30.0) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = client.get(url)
                r.raise_for_status()
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            else:
                out.append(time.perf_counter() - t0)
            time.sleep(0.05)


class Prober:
    """A probe thread, started and stopped without blocking the server's event loop."""

    def __init__(self, url: str) -> None:
        self.samples: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=probe, args=(url, self._stop, self.samples, self.failures), daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """Stop probing; the join runs in a worker thread so the loop keeps serving."""
        self._stop.set()
        await asyncio.to_thread(self._thread.join)


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def stats(samples: list[float], failures: list[str]) -> dict[str, Any]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")
    return {
        "n": len(samples),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "worst_s": max(samples) if samples else float("nan"),
        "p99_s": p99,
        "median_s": statistics.median(samples) if samples else float("nan"),
    }


async def run(lines: int, workdir: Path) -> dict[str, Any]:
    import uvicorn

    news = workdir / "news"
    size = write_news(news, lines)
    results: dict[str, Any] = {"news_lines": lines, "news_bytes": size}
    for label, budget in (("poll_default_budget", {}), ("poll_whole_folder", {
        "max_poll_bytes": size + 1, "max_poll_items": lines + 1, "max_poll_seconds": 600.0,
    })):  # fmt: skip
        cfg = SupervisorConfig(
            news_paths=(str(news),),
            audit_db_path=str(workdir / f"{label}.sqlite3"),
            audit_jsonl_path=str(workdir / f"{label}.jsonl"),
            **budget,  # type: ignore[arg-type]
        )
        sup = Supervisor(cfg, AuditLog(cfg.audit_db_path, cfg.audit_jsonl_path))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(create_app(sup, cfg), host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{port}/supervisor/status"
        if "idle" not in results:
            load = load_average()
            idle = Prober(url)
            await asyncio.sleep(3.0)
            await idle.stop()
            results["idle"] = stats(idle.samples, idle.failures) | {
                "load_average_1m": [load, load_average()]
            }
        load = load_average()
        prober = Prober(url)
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        status = await sup.poll_once()
        poll_s = time.perf_counter() - t0
        await asyncio.sleep(0.5)
        await prober.stop()
        row = sup.audit.last() or {}
        results[label] = stats(prober.samples, prober.failures) | {
            "load_average_1m": [load, load_average()],
            "poll_s": poll_s,
            "items_scored": row.get("n_items"),
            "truncation": row.get("error"),
            "level": status.level.wire,
        }
        server.should_exit = True
        await serving
        sup.audit.close()
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args.lines, Path(tmp)))
    result["provenance"] = collect_provenance(ROOT)
    for phase in ("poll_default_budget", "poll_whole_folder"):
        result[phase]["worst_vs_idle_worst"] = result[phase]["worst_s"] / result["idle"]["worst_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=2))
    return result


if __name__ == "__main__":
    main()
