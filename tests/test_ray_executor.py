"""Executors: local (serial, process pool) and Ray give the same walk-forward results.

The Ray tests need the optional extra (``pip install -e ".[ray]"``) and are skipped without
it. Ray 2.5x removed ``local_mode``; they start a small local Ray instance instead
(``ray.init(num_cpus=workers)``, what ``--executor ray`` does without ``--ray-address``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from backend.scripts import run_walk_forward as cli
from backend.training import executors

RESOURCE_KEYS = ("train_time_s", "peak_rss_mib", "inference_latency_ms_median", "cuda_peak_mib")


# ---------------------------------------------------------------------------------------
# The interface, without Ray
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_local_executor_yields_every_result(workers):
    out = dict(executors.run_jobs([1.0, 4.0, 9.0], math.sqrt, workers=workers))
    assert out == {1.0: 1.0, 4.0: 2.0, 9.0: 3.0}


@pytest.mark.parametrize("workers", [1, 2])
def test_local_executor_reraises_the_job_error(workers):
    with pytest.raises(ValueError, match="math domain error"):
        list(executors.run_jobs([4.0, -1.0], math.sqrt, workers=workers))


def test_serial_executor_calls_the_initializer_in_process():
    calls = []
    results = list(executors.run_jobs([1, 2], abs, initializer=lambda: calls.append(1)))
    assert results == [(1, 1), (2, 2)] and calls == [1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"executor": "dask"}, "expected one of local, ray"), ({"workers": 0}, "workers")],
)
def test_bad_executor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        executors.run_jobs([1], abs, **kwargs)


def test_missing_ray_is_a_one_line_install_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(executors.ExecutorUnavailableError, match=r'pip install -e "\.\[ray\]"'):
        executors.run_jobs([1], abs, executor="ray")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "ray" else real_find_spec(name, *a),
    )
    assert cli.main(["--executor", "ray", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert (
        err == 'error: --executor ray needs Ray, which is not installed: pip install -e ".[ray]"\n'
    )


def test_ray_address_needs_the_ray_executor(capsys):
    assert cli.main(["--ray-address", "auto", "--dry-run"]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(walk_forward_workspace):
    return walk_forward_workspace


def _run(ws: Path, name: str, *extra: str) -> Path:
    out = ws / name
    argv = [
        "--data-dir",
        str(ws / "store"),
        "--config",
        str(ws / "tiny.yaml"),
        "--sequence-encoder",
        "manual",
        "--seed",
        "5",
        "--output",
        str(out),
        *extra,
    ]
    assert cli.main(argv) == 0
    return out


def _numbers(run_dir: Path) -> list[dict]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return [{k: v for k, v in r.items() if k not in RESOURCE_KEYS} for r in metrics["per_window"]]


@pytest.mark.timeout(300)
def test_ray_executor_gives_the_local_results(workspace, capsys):
    ray = pytest.importorskip("ray")
    local = _run(workspace, "local")
    on_ray = _run(workspace, "ray", "--executor", "ray", "--workers", "2")
    assert "to run on 2 worker(s) (ray)" in capsys.readouterr().out
    assert not ray.is_initialized()  # the instance started for the run is shut down
    assert len(_numbers(local)) == 2
    assert _numbers(on_ray) == _numbers(local)


@pytest.mark.timeout(120)
def test_ray_executor_reraises_the_job_error():
    ray = pytest.importorskip("ray")
    with pytest.raises(ValueError, match="math domain error"):
        list(executors.run_jobs([4.0, -1.0], math.sqrt, executor="ray", workers=1))
    assert not ray.is_initialized()


def _worker_pid(_: int) -> int:
    import os
    import time

    time.sleep(0.05)  # keep both workers busy so each serves some jobs
    return os.getpid()


def test_reused_pool_starts_its_workers_once() -> None:
    with executors.reuse_pools():
        first = {pid for _, pid in executors.run_jobs(range(6), _worker_pid, workers=2)}
        second = {pid for _, pid in executors.run_jobs(range(6), _worker_pid, workers=2)}
        assert second <= first, "the second call must run in the workers the first started"
        with pytest.raises(ValueError, match="math domain error"):
            list(executors.run_jobs([4.0, -1.0], math.sqrt, workers=2))
        # A failed job leaves the pool usable.
        assert dict(executors.run_jobs([9.0], math.sqrt, workers=2)) == {9.0: 3.0}
    outside = {pid for _, pid in executors.run_jobs(range(4), _worker_pid, workers=2)}
    assert not outside & first, "outside the block every call starts its own workers"
