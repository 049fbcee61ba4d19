"""Backends for the SAC step, measured in one run: YoopSAC, plain SB3, SBX (JAX), torch.compile.

Usage::

    python benchmarks/bench_backends.py [--steps 1000] [--rounds 3] [--json FILE]

Issue 10 item 4 asks to decide by figures whether the MLP-only mode should run on SBX (JAX)
and whether ``torch.compile`` pays for the encoders. Every case trains on the same env
(``manual``: the flat ``{"features", "account"}`` observation of the short preset; the MLP
baselines see it flattened), with the short preset's SAC settings (batch 64, net 64-64,
``train_freq`` 2), one CPU thread each:

* ``yoop_manual``: YoopSAC with the manual encoder (what the main job trains);
* ``sb3_mlp`` / ``sbx_mlp``: plain SB3 / SBX ``SAC("MlpPolicy")`` on the flattened env;
* ``yoop_transformer`` / ``yoop_transformer_compiled``: the short preset's transformer, eager
  and with ``nn.Module.compile()`` on its features extractor (compiled during warm-up).

All models are built and warmed first (random steps, then updates; JIT and compile time is
reported separately and not timed); then ``--rounds`` rounds time ``learn(--steps)`` of each
case in turn, so load changes hit all of them. Figures: median env-steps/s over rounds and
the ratio of each case to ``yoop_manual`` (``sbx_mlp`` and ``sb3_mlp``) or to the eager
transformer (the compiled one), paired per round. SBX is optional (``pip install sbx-rl``):
without it its case is reported as skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# One thread for XLA too (set before JAX is imported anywhere).
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_env import machine_info, write_result  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_backends.json"


def _config(mode: str) -> Any:
    from backend.config.experiment import resolve_experiment

    return resolve_experiment(
        "short",
        overrides={
            "encoder": {"name": mode},
            "training": {"seed": 0, "learning_starts": 500, "tensorboard_log": None},
        },
    )


def _build(case: str, arrays: Any) -> Any:
    """The model of ``case`` on a fresh env (None when its backend is not installed)."""
    from gymnasium.wrappers import FlattenObservation

    from backend.environments.intraday_env import IntradayTradingEnv
    from backend.training.train import build_model

    mode = "transformer" if case.startswith("yoop_transformer") else "manual"
    config = _config(mode)
    settings = config.training
    env: Any = IntradayTradingEnv(arrays, config.env, reward=config.reward)
    if case.startswith("yoop"):
        model = build_model(env, config, tensorboard_log=None)
        if case.endswith("compiled"):
            model.policy.actor.features_extractor.compile()
            if model.critic.features_extractor is not model.actor.features_extractor:
                model.critic.features_extractor.compile()
        return model
    common = {
        "learning_rate": settings.learning_rate,
        "buffer_size": settings.buffer_size,
        "learning_starts": settings.learning_starts,
        "batch_size": settings.batch_size,
        "train_freq": settings.train_freq,
        "gradient_steps": settings.gradient_steps,
        "policy_kwargs": {"net_arch": list(settings.net_arch)},
        "seed": 0,
        "verbose": 0,
    }
    if case == "sb3_mlp":
        from stable_baselines3 import SAC

        return SAC("MlpPolicy", FlattenObservation(env), device="cpu", **common)
    try:
        from sbx import SAC as SbxSAC
    except ImportError:
        return None
    return SbxSAC("MlpPolicy", FlattenObservation(env), **common)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="timed env steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled case")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import torch as th

    from backend.data_download.market_arrays import synthetic_market_arrays

    th.set_num_threads(1)
    arrays = synthetic_market_arrays(120, 30, seed=0)
    cases = ["yoop_manual", "sb3_mlp", "sbx_mlp", "yoop_transformer"]
    if not args.no_compile:
        cases.append("yoop_transformer_compiled")
    models: dict[str, Any] = {}
    warmup_s: dict[str, float] = {}
    skipped: list[str] = []
    for case in cases:
        t0 = time.perf_counter()
        model = _build(case, arrays)
        if model is None:
            skipped.append(case)
            continue
        model.learn(total_timesteps=700)  # 500 random steps, then updates: JIT / compile here
        warmup_s[case] = time.perf_counter() - t0
        models[case] = model
        print(f"[bench_backends] {case}: built and warmed in {warmup_s[case]:.1f} s", flush=True)

    runs: dict[str, list[float]] = {case: [] for case in models}
    for _ in range(args.rounds):
        for case, model in models.items():
            t0 = time.perf_counter()
            model.learn(total_timesteps=args.steps, reset_num_timesteps=False)
            runs[case].append(args.steps / (time.perf_counter() - t0))
    steps_per_s = {case: statistics.median(r) for case, r in runs.items()}

    def paired(case: str, reference: str) -> float | None:
        if case not in runs or reference not in runs:
            return None
        return statistics.median(a / b for a, b in zip(runs[case], runs[reference], strict=True))

    ratios = {
        "sb3_mlp_over_yoop_manual": paired("sb3_mlp", "yoop_manual"),
        "sbx_mlp_over_yoop_manual": paired("sbx_mlp", "yoop_manual"),
        "compiled_over_eager_transformer": paired("yoop_transformer_compiled", "yoop_transformer"),
    }
    for case, value in steps_per_s.items():
        print(f"[bench_backends] {case}: {value:.1f} env-steps/s", flush=True)
    payload = {
        "benchmark": "bench_backends",
        "settings": {**vars(args), "json": str(args.json)},
        "steps_per_s": steps_per_s,
        "runs_steps_per_s": runs,
        "paired_ratios": ratios,
        "warmup_s": warmup_s,
        "skipped": skipped,
        "load_average_1m_end": os.getloadavg()[0],
        "machine": machine_info(),
    }
    return write_result(payload, args.json)


if __name__ == "__main__":
    main()
