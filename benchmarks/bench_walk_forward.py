"""Wall time, peak memory and ``--workers`` speed-up of the main job (the walk-forward CLI).

Usage::

    python benchmarks/bench_walk_forward.py [--workers 2] [--quick] [--out FILE]

Runs ``python -m backend.scripts.run_walk_forward --output <tmp>`` (the default run: the
ground-truth comparison, every encoder mode on the ``null``, ``momentum`` and ``sequence``
synthetic markets, the ``short`` budget; issue 9 asks for <= 10 minutes on 2 cores) as a
subprocess, once serially (``--workers 1``) and once with ``--workers N``, and reports per
case

* **wall time** of the whole command (data loading, every job, reports);
* **peak memory**: ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` taken in a fresh
  intermediate process that ran only that command, i.e. the largest resident set reached by
  *one* process of the command (the CLI or one of its workers; Linux keeps the maximum over
  waited-for descendants, not their sum);
* CPU time (user + system) of the command and all its workers, ``cores_used`` = CPU time /
  wall time (how many cores the command actually got: on a shared machine the parallel
  case cannot beat the serial one when no second core is free), and the sum of the jobs'
  own ``job_time_s`` from ``result.json``;

and the speed-up ``wall(workers=1) / wall(workers=N)`` measured in the same invocation,
plus whether both runs gave the same test metrics (they must: job seeds do not depend on
the executor).

Each command runs with a temporary working directory whose ``data`` links to the
repository's ``data`` folder, so the data are those of a default run from the repository
root, while the run directory, the experiments index and the cross-mode report the CLI
writes stay in the temporary folder (nothing in the repository changes). The synthetic
market is generated, if missing, before anything is timed.

The summary also carries the ground-truth table's three claims (``ground_truth.json``), so
the figure and what the run showed come from the same invocation.

``--parallel-only`` runs only the ``--workers N`` case (the issue's figure, the default run
on 2 cores, at half the cost). On a shared machine the wall time includes the neighbours'
load: the summary's ``idle_wall_lower_bound_s`` (CPU time over the cores the run could use)
and the load averages at start and end say how much.

``--quick`` shrinks the run for the smoke test: ``--market momentum``, ``--sequence-encoder
manual`` and a tiny ``--config`` (12-session training windows, 2 windows, 150 SAC steps).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_env import write_result  # noqa: E402
from bench_train import git_commit, machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_walk_forward.json"
CHILD_MARKER = "BENCH_WALK_FORWARD_CHILD_RESULT "
QUICK_CONFIG = """\
walk_forward:
  train_sessions: 12
  test_sessions: 3
  max_windows: 2
training:
  total_timesteps: 150
  learning_starts: 50
  batch_size: 16
  buffer_size: 1000
  eval_every_steps: 75
"""
COMPARED_METRICS = ("sharpe", "total_return", "max_drawdown", "n_trades")


# ---------------------------------------------------------------------------------------
# Child: run the CLI once and measure it
# ---------------------------------------------------------------------------------------


def _maxrss_mib(who: int) -> float:
    """``ru_maxrss`` of ``who`` (RUSAGE_SELF / RUSAGE_CHILDREN) in MiB (Linux reports KiB)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the CLI with ``spec["argv"]`` in ``spec["cwd"]`` and measure it.

    Must run in a process that started no other child, so that ``RUSAGE_CHILDREN`` is the
    command's alone.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "backend.scripts.run_walk_forward", *spec["argv"]],
        cwd=spec["cwd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=spec["timeout"],
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"CLI exit {proc.returncode}:\n{proc.stderr[-4000:]}")
    return {
        "wall_s": wall,
        "peak_rss_mib": _maxrss_mib(resource.RUSAGE_CHILDREN),
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    }


def _child_main(spec_json: str) -> None:
    result = run_case(json.loads(spec_json))
    print(CHILD_MARKER + json.dumps(result), flush=True)


def _load_1m() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def spawn_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`run_case` in a fresh interpreter and return its result.

    Raises:
        RuntimeError: if the child fails or prints no result.
    """
    load = _load_1m()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=spec["timeout"] + 60,
        cwd=REPO,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"case workers={spec['workers']} failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len(CHILD_MARKER) :])
    result["load_average_1m_before"] = load
    return result


# ---------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Jobs, their summed ``job_time_s`` and the test metrics compared across cases."""
    results = sorted(run_dir.glob("**/windows/w*/*/result.json"))
    job_times = []
    metrics: dict[str, dict[str, Any]] = {}
    for path in results:
        data = json.loads(path.read_text(encoding="utf-8"))
        job_times.append(float(data["job_time_s"]))
        rel = path.relative_to(run_dir).parts  # ([market,] windows, wNN, job, result.json)
        market = rel[0] if len(rel) == 5 else ""
        for symbol, entry in data["symbols"].items():
            name = f"{market}/w{data['window']:02d}/{path.parent.name}/{symbol}".lstrip("/")
            metrics[name] = {k: entry["metrics"][k] for k in COMPARED_METRICS}
    table = run_dir / "ground_truth.json"
    claims = json.loads(table.read_text(encoding="utf-8"))["claims"] if table.is_file() else None
    return {
        "jobs": len(results),
        "job_time_s_sum": sum(job_times),
        "metrics": metrics,
        "ground_truth_claims": claims,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", type=int, default=2, help="workers of the parallel case (default 2)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="manual encoder only and a tiny config (smoke test), not the default run",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per CLI run")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the run directories under DIR instead of a deleted temporary folder",
    )
    parser.add_argument(
        "--parallel-only",
        action="store_true",
        help="run only the --workers N case (the issue's figure: the default run on 2 cores); "
        "no speed-up and no serial comparison",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be >= 2 (the serial case always runs)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child is not None:
        _child_main(args.child)
        return {}

    from backend.config.experiment import resolve_experiment
    from backend.data_download.synthetic_market import MARKET_NAMES
    from backend.training.train import resolve_data_dir

    cwd = Path.cwd()
    os.chdir(REPO)  # the job's data paths are relative to the repository root
    try:
        for market in MARKET_NAMES:  # generated before anything is timed
            resolve_data_dir(resolve_experiment(overrides={"data": {"market": market}}))
    finally:
        os.chdir(cwd)

    started = time.perf_counter()
    load_start = _load_1m()
    with tempfile.TemporaryDirectory(prefix="bench_wf_") as tmp:
        root = args.keep.resolve() if args.keep is not None else Path(tmp)
        extra: list[str] = []
        if args.quick:
            config = root / "quick.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(QUICK_CONFIG, encoding="utf-8")
            extra = [
                "--market",
                "momentum",
                "--sequence-encoder",
                "manual",
                "--config",
                str(config),
            ]
        cases: dict[str, dict[str, Any]] = {}
        summaries: dict[str, dict[str, Any]] = {}
        for workers in (args.workers,) if args.parallel_only else (1, args.workers):
            name = f"workers_{workers}"
            cwd = root / name
            cwd.mkdir(parents=True, exist_ok=False)
            (cwd / "data").symlink_to(REPO / "data", target_is_directory=True)
            run_dir = cwd / "run"
            argv_cli = ["--output", str(run_dir), "--workers", str(workers), *extra]
            spec = {"argv": argv_cli, "cwd": str(cwd), "timeout": args.timeout, "workers": workers}
            case = spawn_case(spec)
            summary = run_summary(run_dir)
            summaries[name] = summary
            case.update(
                workers=workers,
                jobs=summary["jobs"],
                job_time_s_sum=round(summary["job_time_s_sum"], 2),
                wall_s=round(case["wall_s"], 2),
                cpu_s=round(case["cpu_s"], 2),
                peak_rss_mib=round(case["peak_rss_mib"], 1),
                cores_used=round(case["cpu_s"] / case["wall_s"], 2),
                command="python -m backend.scripts.run_walk_forward " + " ".join(argv_cli),
            )
            cases[name] = case
            print(f"{name}: {case['wall_s']:.1f} s, peak RSS {case['peak_rss_mib']:.0f} MiB")

    parallel_name = f"workers_{args.workers}"
    parallel = cases[parallel_name]
    serial = cases.get("workers_1")
    first = summaries["workers_1" if serial else parallel_name]
    cpu_count = os.cpu_count() or 1
    result: dict[str, Any] = {
        "benchmark": "bench_walk_forward",
        "config": {
            "quick": args.quick,
            "workers": args.workers,
            "run": "momentum, manual, tiny config"
            if args.quick
            else "default: ground-truth comparison (3 markets x all modes, short, SPY)",
            "quick_config": QUICK_CONFIG if args.quick else None,
            "peak_rss_meaning": "largest single process (CLI or one worker), RUSAGE_CHILDREN",
        },
        "summary": {
            f"speedup_workers_{args.workers}_over_1": (
                round(serial["wall_s"] / parallel["wall_s"], 3) if serial else None
            ),
            "wall_s": {k: c["wall_s"] for k, c in cases.items()},
            "peak_rss_mib": {k: c["peak_rss_mib"] for k, c in cases.items()},
            "cores_used": {k: c["cores_used"] for k, c in cases.items()},
            "same_results": (
                summaries["workers_1"]["metrics"] == summaries[parallel_name]["metrics"]
                if serial
                else None
            ),
            "ground_truth_claims": first["ground_truth_claims"],
            # On a shared machine the wall time measures the neighbours too: the CPU time
            # spread over the cores the run could use is what an idle machine would need
            # at best (a lower bound: it ignores the serial parts and uneven job lengths).
            "idle_wall_lower_bound_s": {
                k: round(c["cpu_s"] / min(c["workers"], cpu_count), 1) for k, c in cases.items()
            },
        },
        "cases": cases,
        "load_average_1m_start": load_start,
        "load_average_1m_end": _load_1m(),
        "total_wall_s": round(time.perf_counter() - started, 1),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_commit(),
        "machine": machine_info(),
    }
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
