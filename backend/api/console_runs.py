"""Runs started from the console: background subprocesses, their progress, cancel and resume.

A run is the project's own CLI (``python -m backend.scripts.run_walk_forward`` and, when
installed, the supervised and tuning scripts) started as a subprocess in its own process
group, with ``--output <root>/<name>``; its stdout and stderr go to ``console.log`` in the
run directory and the console records how it was started in ``console_run.json``.

Progress is read from what the runner writes atomically: ``run.json`` (the windows and
modes, hence the job total) and one ``windows/wNN/<mode>/result.json`` per finished job; the
current job is the first unfinished one in the runner's window-major order. Nothing here
trusts a file's content for more than display: names, paths and text go through the
templates' escaping.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.utils.atomic_io import write_text_atomic

CONSOLE_RUN_FILE = "console_run.json"
LOG_FILE = "console.log"
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
"""Run and config names: one path component, no dot-dot, no separators."""


@dataclass(frozen=True)
class RunKind:
    """A kind of run the console can start: the module and how it reads its options."""

    name: str
    module: str
    title: str
    encoder_flag: str | None = "--sequence-encoder"
    """The flag that takes the encoder mode(s), if any."""
    resumable: bool = True
    """Accepts ``--resume RUN_DIR``."""
    fixed_args: tuple[str, ...] = ()
    """Arguments every run of this kind gets (e.g. the tuner's track and trial count)."""
    needs_config: bool = False
    """Refuse a run without a saved config (the tuner reads its search space from it)."""
    takes_symbols: bool = True
    """Accepts ``--symbols``."""

    @property
    def available(self) -> bool:
        """Whether the module is installed (the supervised lab and tuning may not be)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False


RUN_KINDS: dict[str, RunKind] = {
    k.name: k
    for k in (
        RunKind("walk_forward", "backend.scripts.run_walk_forward", "main job (walk-forward)"),
        RunKind(
            "supervised",
            "backend.scripts.run_supervised",
            "supervised pretraining",
            encoder_flag="--model",
            resumable=False,
        ),
        RunKind(
            "tuning",
            "backend.scripts.tune",
            "hyper-parameter tuning (RL, 20 trials, validation ranges only)",
            encoder_flag=None,
            resumable=False,
            fixed_args=("--track", "rl", "--trials", "20"),
            needs_config=True,
            takes_symbols=False,
        ),
    )
}
"""Run kinds by name; a kind whose module is absent is shown as unavailable."""


class RunError(ValueError):
    """A run request the console refuses (bad name, unknown kind, run already active)."""


def check_name(name: str, what: str = "run name") -> str:
    """``name`` when it is one safe path component, else :class:`RunError`."""
    if not RUN_NAME.match(name) or ".." in name:
        raise RunError(
            f"{what} {name!r}: use 1-100 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit"
        )
    return name


@dataclass
class RunRequest:
    """What the Run page posts."""

    kind: str = "walk_forward"
    config: str | None = None
    """Name of a saved config under ``<root>/configs`` (without ``.yaml``)."""
    preset: str = "short"
    encoders: str = "all"
    seed: int = 0
    data_dir: str | None = None
    symbols: str | None = None
    extra_args: Sequence[str] = field(default_factory=tuple)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when it is missing, unreadable or not an object.

    Run folders are written by other processes and may be mid-write or hand-edited: the
    console shows what it can instead of failing.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunManager:
    """Starts, watches, cancels and resumes console runs under one output root.

    Args:
        output_root: Where run directories (and ``configs/``) live.
        workdir: Working directory of the runs (the CLI's relative defaults, such as
            ``data/``, resolve against it).
        python: Interpreter of the runs.
        env: Extra environment of the runs.
    """

    def __init__(
        self,
        output_root: Path,
        *,
        workdir: Path,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.output_root = Path(output_root)
        self.workdir = Path(workdir)
        self.python = python
        self.env = dict(env or {})
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    @property
    def configs_dir(self) -> Path:
        """Saved configs (``<root>/configs/<name>.yaml``)."""
        return self.output_root / "configs"

    def run_dir(self, name: str) -> Path:
        """The directory of run ``name`` (checked to be one component below the root)."""
        return self.output_root / check_name(name)

    # -- starting -------------------------------------------------------------------------

    def command(self, req: RunRequest, run_dir: Path) -> list[str]:
        """The argv of a new run."""
        kind = RUN_KINDS.get(req.kind)
        if kind is None:
            raise RunError(f"kind {req.kind!r}: expected one of {', '.join(RUN_KINDS)}")
        if not kind.available:
            raise RunError(f"kind {req.kind!r}: {kind.module} is not installed in this checkout")
        if kind.needs_config and not req.config:
            raise RunError(
                f"kind {req.kind!r}: choose a saved config (its 'search' section is the space)"
            )
        argv = [self.python, "-m", kind.module, "--output", str(run_dir.resolve())]
        argv += list(kind.fixed_args)
        argv += ["--mode", req.preset, "--seed", str(int(req.seed))]
        if kind.encoder_flag and req.encoders and req.encoders != "all":
            argv += [kind.encoder_flag, req.encoders]
        elif kind.encoder_flag == "--sequence-encoder" and req.encoders:
            argv += [kind.encoder_flag, req.encoders]
        if req.config:
            path = self.configs_dir / f"{check_name(req.config, 'config name')}.yaml"
            if not path.is_file():
                raise RunError(f"config {req.config!r}: no saved config {path.name}")
            argv += ["--config", str(path.resolve())]
        if req.data_dir:
            argv += ["--data-dir", req.data_dir]
        if req.symbols:
            if not kind.takes_symbols:
                raise RunError(f"kind {req.kind!r}: takes no symbols (it uses the config's)")
            argv += ["--symbols", req.symbols]
        argv += list(req.extra_args)
        return argv

    def start(self, req: RunRequest, name: str | None = None) -> str:
        """Start a new run in the background; returns its name."""
        if name is None:
            stamp = dt.datetime.now().strftime("%Y-%m-%d_%H%M%S")
            name = f"{stamp}_{req.kind}"
        run_dir = self.run_dir(name)
        if run_dir.exists():
            raise RunError(f"run {name!r} already exists")
        argv = self.command(req, run_dir)
        run_dir.mkdir(parents=True)
        self._launch(name, argv, {"kind": req.kind, "request": req.__dict__ | {}})
        return name

    def resume(self, name: str) -> str:
        """Continue run ``name`` with ``--resume`` (finished jobs are kept)."""
        run_dir = self.run_dir(name)
        record = read_json_object(run_dir / CONSOLE_RUN_FILE) or {}
        kind = RUN_KINDS.get(str(record.get("kind", "walk_forward")), RUN_KINDS["walk_forward"])
        if not kind.resumable:
            raise RunError(f"run {name!r}: {kind.module} has no --resume; start a new run")
        if not (run_dir / "run.json").is_file():
            raise RunError(f"run {name!r}: no run.json yet, nothing to resume; start it again")
        if self.is_running(name):
            raise RunError(f"run {name!r} is still running")
        argv = [self.python, "-m", kind.module, "--resume", str(run_dir.resolve())]
        self._launch(name, argv, {**record, "kind": kind.name}, resumed=True)
        return name

    def _launch(
        self, name: str, argv: list[str], record: dict[str, Any], *, resumed: bool = False
    ) -> None:
        run_dir = self.run_dir(name)
        with self._lock:
            if self.is_running(name):
                raise RunError(f"run {name!r} is already running")
            log = (run_dir / LOG_FILE).open("ab")
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=self.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
                    start_new_session=True,
                )
            finally:
                log.close()
            self._procs[name] = proc
        history = list(record.get("history", []))
        history.append({"started_utc": _now(), "argv": argv, "resumed": resumed})
        record = {
            **record,
            "name": name,
            "history": history,
            "started_utc": history[0]["started_utc"],
            "launched_epoch": time.time(),
            "pid": proc.pid,
            "status": "running",
            "returncode": None,
        }
        write_text_atomic(run_dir / CONSOLE_RUN_FILE, json.dumps(record, indent=1) + "\n")
        threading.Thread(target=self._watch, args=(name, proc), daemon=True).start()

    def _watch(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        path = self.run_dir(name) / CONSOLE_RUN_FILE
        record = read_json_object(path) or {}
        if record.get("pid") == proc.pid:
            cancelled = record.get("status") == "cancelling"
            record["status"] = "cancelled" if cancelled else ("finished" if code == 0 else "failed")
            record["returncode"] = code
            record["ended_utc"] = _now()
            write_text_atomic(path, json.dumps(record, indent=1) + "\n")

    # -- watching -------------------------------------------------------------------------

    def is_running(self, name: str) -> bool:
        """Whether this console started run ``name`` and its process is alive."""
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def cancel(self, name: str, *, grace_s: float = 10.0) -> bool:
        """SIGTERM the run's process group, SIGKILL after ``grace_s``; False if not running."""
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            return False
        path = self.run_dir(name) / CONSOLE_RUN_FILE
        record = read_json_object(path) or {}
        record["status"] = "cancelling"
        write_text_atomic(path, json.dumps(record, indent=1) + "\n")
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        return True

    def stop_all(self) -> None:
        """Cancel every run still alive (console shutdown)."""
        for name in list(self._procs):
            self.cancel(name, grace_s=5.0)

    def progress(self, name: str) -> dict[str, Any]:
        """Jobs done / total, current job, elapsed seconds and status of run ``name``."""
        run_dir = self.run_dir(name)
        record = read_json_object(run_dir / CONSOLE_RUN_FILE) or {}
        run = read_json_object(run_dir / "run.json")
        jobs: list[str] = []
        modes: list[str] = []
        if run is not None:
            modes = list(run.get("spec", {}).get("modes", []))
            for w in run.get("windows", []):
                jobs += [f"w{int(w['index']):02d}/{m}" for m in modes]
        done = [j for j in jobs if self._job_done(run_dir, j)]
        pending = [j for j in jobs if j not in done]
        status = str(record.get("status", ""))
        if status in ("running", "cancelling") and not self.is_running(name):
            # Started by an earlier console process, or its watcher has not written yet.
            status = "stopped" if name not in self._procs else status
        if not status:
            status = "finished" if (run_dir / "report.md").is_file() else "external"
        started = record.get("launched_epoch")
        ended = record.get("ended_utc")
        elapsed = None
        if isinstance(started, (int, float)):
            end_time = time.time()
            if ended:
                try:
                    end_time = dt.datetime.fromisoformat(str(ended)).timestamp()
                except ValueError:
                    pass
            elapsed = max(0.0, end_time - float(started))
        return {
            "name": name,
            "kind": record.get("kind", "walk_forward"),
            "status": status,
            "returncode": record.get("returncode"),
            "jobs_total": len(jobs),
            "jobs_done": len(done),
            "current_job": pending[0] if pending and status == "running" else None,
            "elapsed_s": elapsed,
            "has_report": (run_dir / "report.md").is_file(),
            "modes": modes,
            "log_tail": self.log_tail(name),
        }

    @staticmethod
    def _job_done(run_dir: Path, job: str) -> bool:
        data = read_json_object(run_dir / "windows" / job / "result.json")
        return bool(data and data.get("complete") is True)

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last lines of the run's ``console.log``."""
        path = self.run_dir(name) / LOG_FILE
        try:
            with path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - 8_000))
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        # rich redraws its bar with carriage returns; keep the last state of each line.
        cleaned = [part.rsplit("\r", 1)[-1] for part in text.splitlines()]
        return "\n".join(cleaned[-lines:])

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run directory under the root (those with ``run.json`` or a console record)."""
        if not self.output_root.is_dir():
            return []
        out = []
        for path in sorted(self.output_root.iterdir(), reverse=True):
            if not path.is_dir() or not RUN_NAME.match(path.name):
                continue
            if not ((path / "run.json").is_file() or (path / CONSOLE_RUN_FILE).is_file()):
                continue
            info = self.progress(path.name)
            run = read_json_object(path / "run.json") or {}
            spec = run.get("spec", {})
            info["symbols"] = list(spec.get("symbols", []))
            info["preset"] = spec.get("preset")
            out.append(info)
        return out


__all__ = [
    "CONSOLE_RUN_FILE",
    "LOG_FILE",
    "RUN_KINDS",
    "RunError",
    "RunKind",
    "RunManager",
    "RunRequest",
    "check_name",
    "read_json_object",
]
