"""SAC training throughput, inference latency and memory per encoder, against plain SB3 SAC.

Usage::

    python benchmarks/bench_train.py [--steps N] [--modes manual,cnn,lstm,transformer]
                                     [--out FILE]

Every *case* runs in a fresh Python subprocess (so memory peaks never mix) on the same
synthetic ``IntradayTradingEnv`` market (``synthetic_market_arrays``, 30 features, training
env defaults of ``backend.training.train``):

* ``baseline``: the reference. Plain SB3 ``SAC("MlpPolicy", FlattenObservation(env))`` with
  SB3's default network on the flat ``{"features", "account"}`` env; only the batch size,
  ``learning_starts``, buffer size, ``train_freq=1`` and ``gradient_steps=1`` are set to the
  same values as the YoopSAC cases;
* ``<mode>.separate.sb3`` / ``<mode>.shared.sb3``: plain SB3 ``SAC("MultiInputPolicy")``
  with the policy kwargs (extractor, heads, AdamW) and sizes of the YoopSAC case, run right
  after it; ``summary.yoop_vs_sb3`` has ``yoop_steps_per_s``, ``sb3_steps_per_s`` and
  ``ratio`` per case (issue 10's target: ratio >= 1.5);
* ``<mode>.separate`` / ``<mode>.shared``: :class:`~backend.models.sac.YoopSAC` built by
  ``backend.training.train.build_model`` with ``TrainingSettings`` defaults (net_arch
  256-256, AdamW, window T=64 for sequence encoders) and ``share_features_extractor``
  False / True (True = the critic-trained shared encoder, ``shared_encoder_loss="critic"``).

For each case the child process

1. builds the env, then the model, and runs ``learn()`` over ``learning_starts`` random
   steps plus ``--warmup`` steps with gradient updates (not timed);
2. times ``learn()`` over ``--steps`` further env steps, one gradient step each
   (``train_freq=1, gradient_steps=1``): wall-clock **and** process CPU time, so a figure
   taken on a shared machine can be read both ways;
3. times ``model.predict(obs, deterministic=True)`` on one observation (batch 1)
   ``--latency-calls`` times after ``--latency-warmup`` untimed calls: median and p99;
4. reports memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's peak
   resident set, all allocators: torch, numpy, Python) just before the model is built and at
   the end; their difference is the peak RSS growth caused by the model, its replay buffer
   (sized to exactly the steps taken, so every page of it is touched), training and
   inference. ``torch.cuda.max_memory_allocated`` is added when the device is CUDA.

The baseline, ~50x faster per step than a sequence encoder on CPU, is timed over
``--baseline-steps`` so its figure is not a fraction of a second; every figure is per step.
Torch runs single-threaded by default (``--threads 1``): on a small machine shared with
other jobs, torch's default of one OpenMP thread per core made a 32x256 linear layer ~40x
slower under contention (spinning threads preempted), which swamps everything measured
here; pass ``--threads 0`` to keep torch's default.

The whole round (baseline, cases) is repeated ``--repeats`` times and the baseline is run
once more at the end, bracketing the cases; each figure is the best (min time) over its
runs. Ratios against the baseline measured in the same invocation are what to compare
between machines or commits; the absolute figures depend on the machine and its load,
which is recorded (1-minute load average before every child).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_env import machine_info as env_machine_info  # noqa: E402
from bench_env import write_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_train.json"
MODES = ("manual", "cnn", "lstm", "transformer")
BASELINE = "baseline"
CHILD_MARKER = "BENCH_TRAIN_CHILD_RESULT "


# ---------------------------------------------------------------------------------------
# Child: one case in its own process
# ---------------------------------------------------------------------------------------


def _maxrss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # macOS: bytes
    return peak / scale


def _current_rss_mib() -> float | None:
    """Current resident set size in MiB from ``/proc`` (None where there is no procfs)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _buffer_mib(model: Any) -> float:
    """Bytes SB3 allocated for the replay buffer's arrays, in MiB."""
    buf = model.replay_buffer
    total = 0
    for name in ("observations", "next_observations"):
        value = getattr(buf, name, None)
        if isinstance(value, dict):
            total += sum(v.nbytes for v in value.values())
        elif value is not None:
            total += value.nbytes
    for name in ("actions", "rewards", "dones", "timeouts"):
        value = getattr(buf, name, None)
        if value is not None:
            total += value.nbytes
    return total / 2**20


def _param_counts(model: Any) -> dict[str, int]:
    """Trainable parameters of the actor and the critic (a shared module counted once)."""
    seen: set[int] = set()

    def count(module: Any) -> int:
        n = 0
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n

    actor = count(model.actor)
    critic = count(model.critic)
    return {"actor": actor, "critic": critic, "total": actor + critic}


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, train and time one case (called inside the child process).

    Args:
        spec: ``mode`` (an encoder mode or ``"baseline"``), ``shared``, ``steps``,
            ``warmup``, ``learning_starts``, ``batch_size``, ``latency_calls``,
            ``latency_warmup``, ``sessions``, ``features``, ``window``, ``seed``,
            ``threads`` (0: torch's default) and ``device``.

    Returns:
        Timings, latency percentiles, memory figures and sizes of this case.
    """
    import numpy as np
    import torch as th

    if spec["threads"]:
        th.set_num_threads(int(spec["threads"]))

    from gymnasium.wrappers import FlattenObservation
    from stable_baselines3 import SAC

    from backend.config.experiment import resolve_experiment
    from backend.data_download.market_arrays import synthetic_market_arrays
    from backend.environments.intraday_env import IntradayTradingEnv
    from backend.training.train import build_model

    mode: str = spec["mode"]
    arrays = synthetic_market_arrays(spec["sessions"], spec["features"], seed=spec["seed"])
    buffer_size = spec["learning_starts"] + spec["warmup"] + spec["steps"] + 1
    config = resolve_experiment(
        overrides={
            "encoder": {"name": "manual" if mode == BASELINE else mode},
            "env": {"sequence_length": spec["window"]},
            "training": {
                "share_features_extractor": bool(spec["shared"]),
                "batch_size": spec["batch_size"],
                "learning_starts": spec["learning_starts"],
                "buffer_size": buffer_size,
                "train_freq": 1,
                "gradient_steps": 1,
                "seed": spec["seed"],
                "device": spec["device"],
                "tensorboard_log": None,
            },
        }
    )
    settings = config.training
    env: Any = IntradayTradingEnv(arrays, config.env, reward=config.reward)
    if mode == BASELINE:
        env = FlattenObservation(env)

    rss_before = _maxrss_mib()
    rss_now_before = _current_rss_mib()
    if th.cuda.is_available():
        th.cuda.reset_peak_memory_stats()
    if mode == BASELINE:
        model: Any = SAC(
            "MlpPolicy",
            env,
            learning_rate=settings.learning_rate,
            buffer_size=buffer_size,
            learning_starts=settings.learning_starts,
            batch_size=settings.batch_size,
            train_freq=1,
            gradient_steps=1,
            seed=settings.seed,
            device=settings.device,
            verbose=0,
        )
    elif spec.get("engine", "yoop") == "sb3":
        # Plain SB3 SAC with the very extractor, heads, optimiser and sizes build_model
        # gives YoopSAC (a shared extractor is then trained by the actor loss, SB3's way).
        reference = build_model(env, config, tensorboard_log=None)
        model = SAC(
            "MultiInputPolicy",
            env,
            learning_rate=settings.learning_rate,
            buffer_size=buffer_size,
            learning_starts=settings.learning_starts,
            batch_size=settings.batch_size,
            tau=settings.tau,
            gamma=settings.gamma,
            train_freq=1,
            gradient_steps=1,
            policy_kwargs=dict(reference.policy_kwargs),
            seed=settings.seed,
            device=settings.device,
            verbose=0,
        )
        del reference
    else:
        model = build_model(env, config, tensorboard_log=None)

    model.learn(total_timesteps=spec["learning_starts"] + spec["warmup"])
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=spec["steps"], reset_num_timesteps=False)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    n_updates = int(model._n_updates)

    obs, _ = env.reset(seed=spec["seed"] + 1)
    for _ in range(spec["latency_warmup"]):
        model.predict(obs, deterministic=True)
    latencies = []
    for _ in range(spec["latency_calls"]):
        t0 = time.perf_counter()
        model.predict(obs, deterministic=True)
        latencies.append(time.perf_counter() - t0)
    lat_ms = np.asarray(latencies) * 1e3

    rss_after = _maxrss_mib()
    result: dict[str, Any] = {
        "mode": mode,
        "engine": "sb3" if mode == BASELINE else spec.get("engine", "yoop"),
        "shared": bool(spec["shared"]),
        "steps": spec["steps"],
        "replay_buffer_size": buffer_size,
        "gradient_updates_total": n_updates,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps_per_second": spec["steps"] / wall,
        "cpu_ms_per_step": 1e3 * cpu / spec["steps"],
        "latency_ms_median": float(np.median(lat_ms)),
        "latency_ms_p99": float(np.percentile(lat_ms, 99)),
        "latency_ms_min": float(lat_ms.min()),
        "peak_rss_mib_before_model": rss_before,
        "peak_rss_mib_end": rss_after,
        "peak_rss_growth_mib": max(rss_after - rss_before, 0.0),
        "rss_mib_before_model": rss_now_before,
        "rss_mib_end": _current_rss_mib(),
        "replay_buffer_mib": _buffer_mib(model),
        "params": _param_counts(model),
        "device": str(model.device),
        "torch_threads": th.get_num_threads(),
        "torch_interop_threads": th.get_num_interop_threads(),
        "observation_keys": (
            ["flat"] if mode == BASELINE else sorted(env.observation_space.spaces)
        ),
    }
    if th.cuda.is_available() and model.device.type == "cuda":
        result["cuda_max_memory_allocated_mib"] = th.cuda.max_memory_allocated() / 2**20
    return result


def _child_main(spec_json: str) -> None:
    result = run_case(json.loads(spec_json))
    print(CHILD_MARKER + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------
# Parent: run every case in a subprocess and summarise
# ---------------------------------------------------------------------------------------


def _load_1m() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def spawn_case(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run :func:`run_case` in a fresh interpreter and return its result.

    Raises:
        RuntimeError: if the child fails or prints no result.
    """
    load = _load_1m()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"case {spec['mode']} shared={spec['shared']} failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len(CHILD_MARKER) :])
    result["load_average_1m_before"] = load
    return result


def case_name(mode: str, shared: bool, engine: str = "yoop") -> str:
    """Key of a case: ``baseline``, ``<mode>.<layout>`` or ``<mode>.<layout>.sb3``.

    ``layout`` is ``separate`` or ``shared``; ``.sb3`` marks plain SB3 SAC with the same
    extractor (the other cases are YoopSAC).
    """
    if mode == BASELINE:
        return BASELINE
    name = f"{mode}.{'shared' if shared else 'separate'}"
    return f"{name}.sb3" if engine == "sb3" else name


def git_commit() -> dict[str, Any]:
    """HEAD commit and dirty flag of this checkout (``backend.utils.provenance.git_state``)."""
    from backend.utils.provenance import git_state

    return git_state(REPO)


def machine_info() -> dict[str, Any]:
    """``bench_env``'s machine record plus torch and its threads."""
    import torch as th

    info = env_machine_info()
    info["torch"] = th.__version__
    info["torch_threads_default"] = th.get_num_threads()
    info["cuda_available"] = th.cuda.is_available()
    if th.cuda.is_available():
        info["cuda_device"] = th.cuda.get_device_name(0)
    return info


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the least wall time, plus every run's throughput and the spread."""
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    best["runs"] = len(runs)
    best["steps_per_second_all_runs"] = [round(r["steps_per_second"], 2) for r in runs]
    best["cpu_ms_per_step_best"] = min(r["cpu_ms_per_step"] for r in runs)
    best["latency_ms_median"] = min(r["latency_ms_median"] for r in runs)
    best["latency_ms_p99"] = min(r["latency_ms_p99"] for r in runs)
    best["peak_rss_growth_mib"] = max(r["peak_rss_growth_mib"] for r in runs)
    return best


def summarise(cases: dict[str, dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    """Tables of the headline figures and the ratios to the baseline and to sharing."""
    base = cases[BASELINE]
    r2 = lambda x: round(x, 2)  # noqa: E731
    summary: dict[str, Any] = {
        "steps_per_second": {k: r2(c["steps_per_second"]) for k, c in cases.items()},
        "time_per_step_over_baseline": {
            k: r2(base["steps_per_second"] / c["steps_per_second"]) for k, c in cases.items()
        },
        "cpu_time_per_step_over_baseline": {
            k: r2(c["cpu_ms_per_step_best"] / base["cpu_ms_per_step_best"])
            for k, c in cases.items()
        },
        "latency_ms_median": {k: round(c["latency_ms_median"], 3) for k, c in cases.items()},
        "latency_ms_p99": {k: round(c["latency_ms_p99"], 3) for k, c in cases.items()},
        "latency_median_over_baseline": {
            k: r2(c["latency_ms_median"] / base["latency_ms_median"]) for k, c in cases.items()
        },
        "peak_rss_growth_mib": {k: round(c["peak_rss_growth_mib"], 1) for k, c in cases.items()},
        "trainable_params": {k: c["params"]["total"] for k, c in cases.items()},
    }
    sharing: dict[str, Any] = {}
    for mode in modes:
        sep, sh = cases.get(case_name(mode, False)), cases.get(case_name(mode, True))
        if sep is None or sh is None:
            continue
        sharing[mode] = {
            "train_speedup": r2(sh["steps_per_second"] / sep["steps_per_second"]),
            "cpu_time_saved_fraction": r2(
                1.0 - sh["cpu_ms_per_step_best"] / sep["cpu_ms_per_step_best"]
            ),
            "params_saved": sep["params"]["total"] - sh["params"]["total"],
            "peak_rss_growth_saved_mib": round(
                sep["peak_rss_growth_mib"] - sh["peak_rss_growth_mib"], 1
            ),
        }
    summary["sharing_shared_over_separate"] = sharing
    # Issue 10's figure: YoopSAC against plain SB3 SAC with the same extractor and sizes,
    # in the separate layout (the same algorithm; SB3's shared extractor is trained by
    # the actor loss, YoopSAC's by the critic's, so "shared" compares two algorithms).
    versus: dict[str, Any] = {}
    for mode in modes:
        for shared in (False, True):
            yoop = cases.get(case_name(mode, shared))
            sb3 = cases.get(case_name(mode, shared, "sb3"))
            if yoop is None or sb3 is None:
                continue
            versus[case_name(mode, shared)] = {
                "yoop_steps_per_s": r2(yoop["steps_per_second"]),
                "sb3_steps_per_s": r2(sb3["steps_per_second"]),
                "ratio": r2(yoop["steps_per_second"] / sb3["steps_per_second"]),
            }
    summary["yoop_vs_sb3"] = versus
    if any("cuda_max_memory_allocated_mib" in c for c in cases.values()):
        summary["cuda_max_memory_allocated_mib"] = {
            k: round(c.get("cuda_max_memory_allocated_mib", 0.0), 1) for k, c in cases.items()
        }
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed env steps per case")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}"
    )
    parser.add_argument(
        "--out", "--json", dest="out", type=Path, default=DEFAULT_OUT, help="JSON output file"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed gradient steps first")
    parser.add_argument(
        "--baseline-steps",
        type=int,
        default=400,
        help="timed env steps of the (fast) baseline; at least --steps",
    )
    parser.add_argument("--learning-starts", type=int, default=1000, help="random steps first")
    parser.add_argument("--batch-size", type=int, default=256, help="SAC batch size")
    parser.add_argument("--latency-calls", type=int, default=500, help="timed predict() calls")
    parser.add_argument("--latency-warmup", type=int, default=50, help="untimed predict() calls")
    parser.add_argument("--sessions", type=int, default=200, help="26-bar synthetic sessions")
    parser.add_argument("--features", type=int, default=30, help="feature columns F")
    parser.add_argument("--window", type=int, default=64, help="sequence length T")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over all cases")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads in each case (default 1; 0 keeps torch's default)",
    )
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-shared", action="store_true", help="skip the share_features_extractor=True cases"
    )
    parser.add_argument(
        "--no-sb3",
        action="store_true",
        help="skip the plain-SB3 cases (SB3 SAC with the same extractor as each YoopSAC case)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test sizes: 64 random steps, batch 32, 5 warm-up steps, 20 predict calls",
    )
    parser.add_argument("--child-timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.learning_starts, args.batch_size, args.warmup = 64, 32, 5
        args.latency_calls, args.latency_warmup, args.sessions = 20, 5, 20
        args.baseline_steps = args.steps
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        parser.error(f"--modes: unknown {unknown}; choose from {list(MODES)}")
    args.mode_list = modes
    for name in ("steps", "batch_size", "latency_calls", "repeats", "sessions", "features"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.learning_starts < args.batch_size:
        parser.error("--learning-starts must be >= --batch-size (a full first batch)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every case, write the JSON to ``--out`` and print it; return the result."""
    args = parse_args(argv)
    if args.child is not None:
        _child_main(args.child)
        return {}

    common = {
        "steps": args.steps,
        "warmup": args.warmup,
        "learning_starts": args.learning_starts,
        "batch_size": args.batch_size,
        "latency_calls": args.latency_calls,
        "latency_warmup": args.latency_warmup,
        "sessions": args.sessions,
        "features": args.features,
        "window": args.window,
        "seed": args.seed,
        "threads": args.threads,
        "device": args.device,
    }
    plan: list[tuple[str, bool, str]] = []
    engines = ("yoop",) if args.no_sb3 else ("yoop", "sb3")
    for mode in args.mode_list:
        for shared in (False,) if args.no_shared else (False, True):
            plan.extend((mode, shared, engine) for engine in engines)  # interleaved pairs

    load_start = _load_1m()
    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {}

    def do(mode: str, shared: bool, engine: str = "yoop") -> None:
        name = case_name(mode, shared, engine)
        print(f"[bench_train] {name} ...", file=sys.stderr, flush=True)
        spec = {**common, "mode": mode, "shared": shared, "engine": engine}
        if mode == BASELINE:
            spec["steps"] = max(args.steps, args.baseline_steps)
        result = spawn_case(spec, args.child_timeout)
        print(
            f"[bench_train] {name}: {result['steps_per_second']:.1f} steps/s, "
            f"predict median {result['latency_ms_median']:.3f} ms",
            file=sys.stderr,
            flush=True,
        )
        runs.setdefault(name, []).append(result)

    for _ in range(args.repeats):
        do(BASELINE, False)
        for mode, shared, engine in plan:
            do(mode, shared, engine)
    do(BASELINE, False)  # bracket the cases: a load change shows as baseline spread

    cases = {name: _best(r) for name, r in runs.items()}
    base_sps = runs[BASELINE]
    spread = max(r["steps_per_second"] for r in base_sps) / min(
        r["steps_per_second"] for r in base_sps
    )
    first = cases[BASELINE]
    result: dict[str, Any] = {
        "benchmark": "bench_train",
        "reference": (
            "baseline = plain SB3 SAC('MlpPolicy', FlattenObservation(env)) with SB3's default "
            "network on the flat env; time_per_step_over_baseline = baseline steps/s / case "
            "steps/s (2.0 = each training step takes twice as long as plain SB3 SAC)"
        ),
        "measures": {
            "steps_per_second": (
                "env steps per wall-clock second of model.learn() after learning_starts and "
                "warm-up, one gradient step per env step (train_freq=1, gradient_steps=1); "
                "best of the case's runs"
            ),
            "cpu_ms_per_step": "process CPU time (all threads) per env step in that learn()",
            "latency_ms": (
                "model.predict(obs, deterministic=True), one observation (batch 1), "
                f"{args.latency_calls} calls after {args.latency_warmup} untimed"
            ),
            "peak_rss_growth_mib": (
                "ru_maxrss (peak resident set of the case's own fresh process) at the end "
                "minus ru_maxrss just before the model was built: model, replay buffer "
                "(sized to the steps taken), optimisers, training and inference activations"
            ),
            "cuda_max_memory_allocated_mib": "torch.cuda.max_memory_allocated, CUDA only",
        },
        "config": {
            "modes": args.mode_list,
            "shared_cases": not args.no_shared,
            "sb3_cases": not args.no_sb3,
            "steps_timed": args.steps,
            "steps_timed_baseline": max(args.steps, args.baseline_steps),
            "warmup_gradient_steps": args.warmup,
            "learning_starts": args.learning_starts,
            "batch_size": args.batch_size,
            "gradient_steps": 1,
            "train_freq": 1,
            "replay_buffer_size": "learning_starts + warm-up + timed steps + 1 (per case)",
            "sequence_length": args.window,
            "feature_count": args.features,
            "synthetic_sessions": args.sessions,
            "bars": 26 * args.sessions,
            "repeats": args.repeats,
            "baseline_runs": len(base_sps),
            "seed": args.seed,
            "quick": args.quick,
            "torch_threads": first["torch_threads"],
            "torch_interop_threads": first["torch_interop_threads"],
            "device": first["device"],
            "yoopsac_settings": (
                "TrainingSettings defaults otherwise: net_arch 256-256, AdamW, lr 3e-4, "
                "embedding 64 + account 16, shared_encoder_loss='critic'"
            ),
        },
        "summary": summarise(cases, args.mode_list),
        "baseline_steps_per_second_spread": round(spread, 3),
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
