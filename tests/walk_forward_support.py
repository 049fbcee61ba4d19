"""Shared pieces of the main-job tests on ``walk_forward_workspace`` (conftest.py).

The command line every end-to-end test writes (store, config file, encoders, output folder)
and the runner's job for a window of a finished run, built once here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.training import walk_forward_runner as runner


def main_job_argv(
    ws: Path, out: Path, *extra: str, config: str = "tiny.yaml", modes: str = "manual,cnn"
) -> list[str]:
    """``run_walk_forward`` arguments: the workspace's store and ``config``, ``modes``, ``out``."""
    return [
        "--data-dir",
        str(ws / "store"),
        "--config",
        str(ws / config),
        "--sequence-encoder",
        modes,
        "--output",
        str(out),
        *extra,
    ]


def window_job(window: dict[str, Any], mode: str) -> runner.Job:
    """The job of ``mode`` on one entry of a run's ``run.json`` ``windows``."""
    return runner.Job(
        window["index"], mode, tuple(window["fit"]), tuple(window["val"]), tuple(window["test"])
    )


def run_job(run_dir: Path, window: int, mode: str) -> runner.Job:
    """The job of ``mode`` on window ``window`` of the finished run in ``run_dir``."""
    windows = json.loads((run_dir / "run.json").read_text())["windows"]
    return window_job(windows[window], mode)
