"""Cost of one YoopSAC gradient step at a preset's sizes, per mode and optimiser variant.

Usage::

    python benchmarks/bench_sac_update.py [--modes manual,transformer] [--updates 200]
                                          [--rounds 5] [--preset short|long]
                                          [--batch-size N] [--json FILE]

Decides the optimiser/Polyak implementation by measurement (issue 10): every variant is
built on the same env and replay buffer and timed over ``--updates`` calls of
``train(gradient_steps=1)``; variants are interleaved round by round (``--rounds``) so a
shared machine's load changes hit them alike, and each figure is the median over rounds of
the per-update milliseconds; ``speedup_vs_for_loop`` is the median over rounds of the
round's ``for_loop`` time over the variant's (torch's CPU default steps one tensor at a
time), paired so that load changes between rounds cancel. One torch thread.

Variants: ``for_loop`` (AdamW defaults), ``foreach`` (``foreach=True``: the multi-tensor
kernels) and ``fused`` (``fused=True``: one fused kernel per step; changes round-off).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_env import machine_info, write_result  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_sac_update.json"
VARIANTS: dict[str, dict[str, Any]] = {
    "for_loop": {},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
}


def _model(
    mode: str, variant: str, arrays: Any, preset: str = "short", batch_size: int | None = None
) -> Any:
    """A ``preset`` YoopSAC of ``mode`` whose optimisers use ``variant``, buffer filled."""
    from backend.config.experiment import resolve_experiment
    from backend.environments.intraday_env import IntradayTradingEnv
    from backend.training.train import build_model

    config = resolve_experiment(
        preset,
        overrides={
            "encoder": {"name": mode},
            "training": {
                "seed": 0,
                "learning_starts": 600,
                "tensorboard_log": None,
                **({"batch_size": batch_size} if batch_size else {}),
            },
        },
    )
    env = IntradayTradingEnv(arrays, config.env, reward=config.reward)
    model = build_model(env, config, tensorboard_log=None)
    extra = VARIANTS[variant]
    for optimizer in (model.actor.optimizer, model.critic.optimizer):
        for group in optimizer.param_groups:
            group.update({"foreach": None, "fused": None, **extra})
    if model.ent_coef_optimizer is not None:
        for group in model.ent_coef_optimizer.param_groups:
            group.update({"foreach": None, "fused": None, **extra})
    # 600 random steps, then 20 updates (not timed); one update per step here.
    model.train_freq = type(model.train_freq)(1, model.train_freq.unit)
    model.learn(total_timesteps=620)
    return model


def _time_updates(model: Any, updates: int) -> float:
    """Milliseconds per ``train(gradient_steps=1)`` over ``updates`` calls."""
    t0 = time.perf_counter()
    for _ in range(updates):
        model.train(gradient_steps=1, batch_size=model.batch_size)
    return (time.perf_counter() - t0) * 1e3 / updates


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="manual,cnn,lstm,transformer")
    parser.add_argument("--preset", default="short", help="run preset whose sizes to use")
    parser.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import torch as th

    from backend.data_download.market_arrays import synthetic_market_arrays

    th.set_num_threads(1)
    arrays = synthetic_market_arrays(120, 30, seed=0)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results: dict[str, Any] = {}
    for mode in modes:
        models = {v: _model(mode, v, arrays, args.preset, args.batch_size) for v in VARIANTS}
        runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant, model in models.items():
                runs[variant].append(_time_updates(model, args.updates))
        medians = {v: statistics.median(r) for v, r in runs.items()}
        # Paired within a round (same load): the median of the per-round speed-ups.
        speedups = {
            v: statistics.median(b / x for b, x in zip(runs["for_loop"], r, strict=True))
            for v, r in runs.items()
        }
        results[mode] = {
            "ms_per_update": medians,
            "speedup_vs_for_loop": speedups,
            "runs_ms": runs,
        }
        line = ", ".join(f"{v} {m:.2f} ms" for v, m in medians.items())
        print(f"{mode}: {line}", flush=True)
    payload = {
        "benchmark": "bench_sac_update",
        "settings": vars(args) | {"json": str(args.json)},
        "machine": machine_info(),
        "modes": results,
    }
    write_result(payload, args.json)
    return payload


if __name__ == "__main__":
    main()
