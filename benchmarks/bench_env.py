"""Steps per second of IntradayTradingEnv, against a bare-numpy floor doing the same maths.

Usage::

    python benchmarks/bench_env.py [--steps N] [--out FILE]

Measures, on a synthetic ~20k-bar x 30-feature random walk (no data download needed):

* ``env_flat``: ``IntradayTradingEnv.step`` with the flat ``{"features", "account"}``
  observation, resetting whenever an episode (one session by default) ends;
* ``env_window``: the same with the ``(T=64, F)`` window + mask observation;
* ``floor``: the identical PnL / cost / DSR arithmetic and episode resets written as one
  plain loop over precomputed arrays, with no Gymnasium class, no dict observation, no
  ``info`` and no copies -- the cost of the maths itself. ``env / floor`` ratios say how much
  the environment's API costs on top of it; the floor's summed reward is checked against
  the environment's so the two really do the same work;
* ``sb3_dummy_vec_flat``: SB3 ``DummyVecEnv`` around the flat environment (what SB3
  algorithms actually call), with auto-reset.

Each figure is the best of ``--repeats`` timed runs (the machine may be shared, and the
minimum is the least noisy estimate of the code's own cost). Results are printed and written
as JSON together with the machine and the configuration.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
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
from backend.environments.rewards import DSRConfig  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_env.json"


def run_env(env: IntradayTradingEnv, actions: np.ndarray, seed: int) -> tuple[float, float]:
    """Step ``env`` through ``actions`` with resets; return (seconds, summed reward)."""
    total = 0.0
    start = time.perf_counter()
    env.reset(seed=seed)
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(action)
        total += reward
        if terminated or truncated:
            env.reset()
    return time.perf_counter() - start, total


def run_floor(
    arrays: MarketArrays, env: IntradayTradingEnv, actions: np.ndarray, seed: int
) -> tuple[float, float]:
    """The environment's arithmetic as one bare loop; return (seconds, summed reward).

    Episode starts are drawn from ``default_rng(seed)``, which is the generator Gymnasium
    builds for ``reset(seed=seed)``, so with one draw per reset both pick the same sessions.
    """
    cfg = env.config
    open_, close = arrays.open, arrays.close
    gap = np.zeros(arrays.n_bars)
    gap[1:] = open_[1:] / close[:-1] - 1.0
    gap_l = gap.tolist()
    intraday_l = (close / open_ - 1.0).tolist()
    is_last_l = arrays.is_last_bar_of_session.tolist()
    features = np.clip(arrays.features, -cfg.feature_clip, cfg.feature_clip)
    starts = arrays.session_starts()
    session_last = np.r_[starts[1:] - 1, arrays.n_bars - 1].tolist()
    session_of_bar = (np.searchsorted(starts, np.arange(arrays.n_bars), side="right") - 1).tolist()
    start_bars = env.episode_start_bars.tolist()
    hi = env.bar_range[1]
    n_sessions = cfg.episode_sessions
    c, deadband, max_pos = cfg.cost_rate, cfg.deadband, cfg.max_position
    reward = env.reward_config
    assert isinstance(reward, DSRConfig), "the floor re-implements the DSR reward only"
    eta, warmup, eps, scale = reward.eta, reward.warmup_steps, reward.eps, reward.scale
    ruin, flatten = cfg.ruin_equity, cfg.flatten_at_close
    action_l = actions[:, 0].astype(np.float64).tolist()

    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    total = 0.0
    t = end = 0
    pos = equity = a_m = b_m = 0.0
    k = 0
    new_episode = True
    for a in action_l:
        if new_episode:
            t = start_bars[int(rng.integers(len(start_bars)))]
            end = hi - 1
            if n_sessions:
                last_session = session_of_bar[t + 1] + n_sessions - 1
                if last_session < len(session_last):
                    end = min(end, session_last[last_session])
            pos, equity, a_m, b_m, k = 0.0, 1.0, 0.0, 0.0, 0
            _ = features[t]
            new_episode = False
        target = (-1.0 if a < -1.0 else (1.0 if a > 1.0 else a)) * max_pos
        t1 = t + 1
        delta = abs(target - pos)
        if delta < deadband:
            target, delta = pos, 0.0
        e_open = equity * (1.0 + pos * gap_l[t1])
        e_open -= c * delta * max(e_open, 0.0)
        e1 = e_open * (1.0 + target * intraday_l[t1])
        if flatten and is_last_l[t1] and target != 0.0:
            e1 -= c * abs(target) * max(e1, 0.0)
            target = 0.0
        r = e1 / equity - 1.0
        variance = max(b_m - a_m * a_m, eps)
        dsr = (b_m * (r - a_m) - 0.5 * a_m * (r * r - b_m)) / (variance * math.sqrt(variance))
        a_m += eta * (r - a_m)
        b_m += eta * (r * r - b_m)
        k += 1
        total += (0.0 if k <= warmup else dsr) * scale
        _ = features[t1]  # the observation row (a view: the floor copies nothing)
        t, pos, equity = t1, target, e1
        new_episode = e1 < ruin or e1 <= 0.0 or t1 >= end
    return time.perf_counter() - began, total


def run_dummy_vec(arrays: MarketArrays, config: EnvConfig, actions: np.ndarray, seed: int) -> float:
    """Seconds for SB3 ``DummyVecEnv`` (one flat env, auto-reset) to take every action."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    vec = DummyVecEnv([lambda: IntradayTradingEnv(arrays, config)])
    vec.seed(seed)
    batched = actions[:, None, :]  # (N, n_envs=1, 1)
    start = time.perf_counter()
    vec.reset()
    for action in batched:
        vec.step(action)
    return time.perf_counter() - start


def write_result(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write a benchmark's JSON to ``out`` and print it; every benchmark ends here."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def machine_info() -> dict[str, Any]:
    """Interpreter, library versions and CPU, so figures can be compared across runs."""
    import gymnasium
    import stable_baselines3

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per timed run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    parser.add_argument("--sessions", type=int, default=770, help="26-bar sessions (~20k bars)")
    parser.add_argument("--features", type=int, default=30, help="feature columns F")
    parser.add_argument("--window", type=int, default=64, help="sequence length T")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sb3", action="store_true", help="skip the DummyVecEnv figure")
    args = parser.parse_args(argv)

    arrays = synthetic_market_arrays(args.sessions, args.features, seed=args.seed)
    flat_cfg = EnvConfig()
    window_cfg = EnvConfig(use_sequence_encoder=True, sequence_length=args.window)
    actions = (
        np.random.default_rng(args.seed).uniform(-1.0, 1.0, (args.steps, 1)).astype(np.float32)
    )
    flat_env = IntradayTradingEnv(arrays, flat_cfg)
    window_env = IntradayTradingEnv(arrays, window_cfg)

    def best(fn: Any) -> tuple[float, float]:
        runs = [fn() for _ in range(args.repeats)]
        return min(r[0] for r in runs), runs[0][1]

    floor_s, floor_reward = best(lambda: run_floor(arrays, flat_env, actions, args.seed))
    flat_s, flat_reward = best(lambda: run_env(flat_env, actions, args.seed))
    window_s, _ = best(lambda: run_env(window_env, actions, args.seed))
    if not math.isclose(floor_reward, flat_reward, rel_tol=1e-9, abs_tol=1e-9):
        raise RuntimeError(
            f"floor and env disagree (reward sums {floor_reward} vs {flat_reward}); "
            "the floor no longer mirrors the env's arithmetic"
        )

    sps = {
        "floor": args.steps / floor_s,
        "env_flat": args.steps / flat_s,
        "env_window": args.steps / window_s,
    }
    if not args.no_sb3:
        vec_s = min(
            run_dummy_vec(arrays, flat_cfg, actions, args.seed) for _ in range(args.repeats)
        )
        sps["sb3_dummy_vec_flat"] = args.steps / vec_s
    result = {
        "benchmark": "bench_env",
        "steps_per_run": args.steps,
        "repeats": args.repeats,
        "data": {
            "bars": arrays.n_bars,
            "features": arrays.n_features,
            "sessions": args.sessions,
            "window": args.window,
        },
        "steps_per_second": {k: round(v, 1) for k, v in sps.items()},
        "microseconds_per_step": {k: round(1e6 / v, 2) for k, v in sps.items()},
        "env_over_floor_time": {
            k: round(sps["floor"] / v, 2) for k, v in sps.items() if k != "floor"
        },
        "floor_matches_env_reward_sum": True,
        "config_flat": flat_cfg.to_dict(),
        "config_window": window_cfg.to_dict(),
        "machine": machine_info(),
    }
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
