"""Aggregated steps per second of the batched VecEnv against DummyVecEnv, the env and the floor.

Usage::

    python benchmarks/bench_vec_env.py [--steps N] [--envs 1,4,16,64] [--repeats R] [--out FILE]

On ``bench_env``'s synthetic ~20k-bar x 30-feature walk (no data download), every case takes
the same ``--steps`` transitions (``steps // N`` calls of ``N`` envs), with auto-reset:

* ``floor``: ``bench_env``'s bare-numpy loop doing the env's maths (the reference);
* ``env_flat`` / ``env_window``: one ``IntradayTradingEnv``, flat or ``(T, F)`` window
  observations, stepped in a Python loop;
* ``batched_<obs>_n<N>``: :class:`~backend.training.vec_env.BatchedIntradayVecEnv` of ``N``
  envs (what ``training.n_envs: N`` trains on);
* ``dummy_<obs>_n<N>``: SB3's ``DummyVecEnv`` over ``N`` single envs (what SB3 builds from
  ``N`` env factories), the same numbers step for step (``tests/test_vec_env.py``).

The cases run interleaved, round after round (``--repeats``), and each keeps its best round:
on a shared machine the minimum is the least noisy estimate of the code's own cost, and
interleaving gives every case the same share of the load. ``time_over_floor`` is the
floor's steps/s over the case's (the issue's target for the vec env: <= 3) and
``batched_over_dummy`` the speed-up over DummyVecEnv at the same ``N``.

``--train-modes`` (default ``manual,transformer``; empty to skip) adds what ``training.n_envs``
buys a training run: SAC env-steps (transitions) per second of ``learn()`` at the ``short``
preset's sizes and schedule (tiny shared encoder, T=16, batch 64, ``train_freq`` 2), built by
``backend.training.train.build_model`` on one env (SB3 wraps it in ``DummyVecEnv``) or on
``VecMonitor(BatchedIntradayVecEnv)`` of ``N`` envs (``--train-envs``), the same updates per
transition. Each case first runs ``learning_starts`` random steps plus ``--train-warmup``
transitions with updates (untimed), then ``--train-steps`` timed transitions; cases are
interleaved round after round as above, and ``train_over_n1`` is each case's speed-up over
``n_envs: 1`` of its mode. Torch runs on one thread, as training does by default.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.data_download.market_arrays import (  # noqa: E402
    MarketArrays,
    synthetic_market_arrays,
)
from backend.environments.env_config import EnvConfig  # noqa: E402
from backend.environments.intraday_env import IntradayTradingEnv  # noqa: E402
from backend.training.vec_env import BatchedIntradayVecEnv  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_vec_env.json"


def _bench_env() -> Any:
    """``benchmarks/bench_env.py`` as a module (the floor, the env loop, the JSON writer)."""
    spec = importlib.util.spec_from_file_location(
        "bench_env", Path(__file__).resolve().parent / "bench_env.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_vec(vec: Any, actions: np.ndarray, seed: int) -> float:
    """Seconds for a VecEnv to take ``actions`` ``(calls, N, 1)``, from a seeded reset."""
    vec.seed(seed)
    start = time.perf_counter()
    vec.reset()
    for batch in actions:
        vec.step(batch)
    return time.perf_counter() - start


def train_case(mode: str, n_envs: int, args: argparse.Namespace) -> Callable[[], tuple[float, int]]:
    """A timed ``learn()`` of ``args.train_steps`` transitions, after the untimed warm-up."""
    from stable_baselines3.common.vec_env import VecMonitor

    from backend.config.experiment import resolve_experiment
    from backend.training.train import build_model

    config = resolve_experiment(
        "short",
        overrides={
            "encoder": {"name": mode},
            "training": {"n_envs": n_envs, "seed": args.seed, "tensorboard_log": None},
        },
    )
    settings = config.training
    arrays = synthetic_market_arrays(args.train_sessions, args.features, seed=args.seed)
    env: Any
    if n_envs > 1:
        env = VecMonitor(
            BatchedIntradayVecEnv(arrays, config.env, num_envs=n_envs, reward=config.reward)
        )
    else:
        env = IntradayTradingEnv(arrays, config.env, reward=config.reward)
    model = build_model(env, config, tensorboard_log=None)
    model.learn(settings.learning_starts + args.train_warmup)

    def timed() -> tuple[float, int]:
        before = model.num_timesteps
        start = time.perf_counter()
        model.learn(args.train_steps, reset_num_timesteps=False)
        return time.perf_counter() - start, model.num_timesteps - before

    return timed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32_768, help="transitions per timed run")
    parser.add_argument("--envs", default="1,4,16,64", help="comma-separated N")
    parser.add_argument("--obs", default="flat,window", help="observation layouts")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    parser.add_argument("--sessions", type=int, default=770, help="26-bar sessions (~20k bars)")
    parser.add_argument("--features", type=int, default=30, help="feature columns F")
    parser.add_argument("--window", type=int, default=64, help="sequence length T")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; best kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sb3", action="store_true", help="skip the DummyVecEnv cases")
    parser.add_argument("--train-modes", default="manual,transformer", help="'' to skip")
    parser.add_argument("--train-envs", default="1,4", help="n_envs of the training cases")
    parser.add_argument("--train-steps", type=int, default=1_024, help="timed transitions")
    parser.add_argument("--train-warmup", type=int, default=64, help="untimed, with updates")
    parser.add_argument("--train-sessions", type=int, default=200, help="26-bar sessions")
    args = parser.parse_args(argv)
    bench_env = _bench_env()
    from stable_baselines3.common.vec_env import DummyVecEnv

    ns = [int(n) for n in args.envs.split(",") if n]
    layouts = [o for o in args.obs.split(",") if o]
    arrays: MarketArrays = synthetic_market_arrays(args.sessions, args.features, seed=args.seed)
    configs = {
        "flat": EnvConfig(),
        "window": EnvConfig(use_sequence_encoder=True, sequence_length=args.window),
    }
    rng = np.random.default_rng(args.seed)
    actions = rng.uniform(-1.0, 1.0, (args.steps, 1)).astype(np.float32)
    floor_env = IntradayTradingEnv(arrays, configs["flat"])

    # name -> () -> (seconds, transitions)
    cases: dict[str, Callable[[], tuple[float, int]]] = {
        "floor": lambda: (
            bench_env.run_floor(arrays, floor_env, actions, args.seed)[0],
            args.steps,
        ),
    }
    for layout in layouts:
        cfg = configs[layout]
        env = IntradayTradingEnv(arrays, cfg)
        cases[f"env_{layout}"] = lambda env=env: (
            bench_env.run_env(env, actions, args.seed)[0],
            args.steps,
        )
        for n in ns:
            calls = args.steps // n
            shaped = actions[: calls * n].reshape(calls, n, 1)
            batched = BatchedIntradayVecEnv(arrays, cfg, num_envs=n)
            cases[f"batched_{layout}_n{n}"] = lambda v=batched, a=shaped: (
                run_vec(v, a, args.seed),
                a.shape[0] * a.shape[1],
            )
            if not args.no_sb3:
                dummy = DummyVecEnv([lambda cfg=cfg: IntradayTradingEnv(arrays, cfg)] * n)
                cases[f"dummy_{layout}_n{n}"] = lambda v=dummy, a=shaped: (
                    run_vec(v, a, args.seed),
                    a.shape[0] * a.shape[1],
                )

    train_modes = [m for m in args.train_modes.split(",") if m]
    train_ns = [int(n) for n in args.train_envs.split(",") if n]
    if train_modes:
        import torch as th

        th.set_num_threads(1)
        for mode in train_modes:
            for n in train_ns:
                cases[f"train_{mode}_n{n}"] = train_case(mode, n, args)

    best: dict[str, float] = {}  # the best (smallest) seconds per transition
    loads: list[float] = []
    for _ in range(args.repeats):
        loads.append(round(bench_env.os.getloadavg()[0], 2))
        for name, fn in cases.items():
            seconds, transitions = fn()
            per = seconds / transitions
            best[name] = min(per, best.get(name, per))
    sps = {name: 1.0 / best[name] for name in cases}
    floor = sps["floor"]
    result = {
        "benchmark": "bench_vec_env",
        "transitions_per_run": args.steps,
        "repeats": args.repeats,
        "envs": ns,
        "data": {
            "bars": arrays.n_bars,
            "features": arrays.n_features,
            "sessions": args.sessions,
            "window": args.window,
        },
        "steps_per_second": {k: round(v, 1) for k, v in sps.items()},
        "microseconds_per_step": {k: round(1e6 / v, 3) for k, v in sps.items()},
        "time_over_floor": {
            k: round(floor / v, 2)
            for k, v in sps.items()
            if k != "floor" and not k.startswith("train_")
        },
        "batched_over_dummy": {
            f"{layout}_n{n}": round(sps[f"batched_{layout}_n{n}"] / sps[f"dummy_{layout}_n{n}"], 2)
            for layout in layouts
            for n in ns
            if f"dummy_{layout}_n{n}" in sps
        },
        "batched_over_env": {
            f"{layout}_n{n}": round(sps[f"batched_{layout}_n{n}"] / sps[f"env_{layout}"], 2)
            for layout in layouts
            for n in ns
        },
        "train_over_n1": {
            f"{mode}_n{n}": round(sps[f"train_{mode}_n{n}"] / sps[f"train_{mode}_n1"], 3)
            for mode in train_modes
            for n in train_ns
            if f"train_{mode}_n1" in sps
        },
        "train_preset": "short",
        "load_average_1m_per_round": loads,
        "config_flat": configs["flat"].to_dict(),
        "config_window": configs["window"].to_dict(),
        "machine": bench_env.machine_info(),
    }
    return bench_env.write_result(result, args.out)


if __name__ == "__main__":
    main()
