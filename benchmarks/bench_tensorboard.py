"""What TensorBoard logging costs a walk-forward job: job time with it off and on.

Usage::

    python benchmarks/bench_tensorboard.py [--steps N] [--modes manual,transformer]
                                           [--repeats 2] [--out FILE]

Each *case* is one job of the default run's training, timed end to end with
``backend.training.train.train_on_range``: the ``short`` preset's settings of the mode
(T=16, width 16, shared encoder, validation every 500 steps, attention probes at every
validation as the runner does), ``--steps`` SAC steps, on 70 sessions of the embedded
synthetic market (60 fit, 10 val), with ``tensorboard_log=None`` (off) and a temporary
folder (on). The same seed gives the same computation, so the difference is the logging
itself: SB3's TensorBoard writer at every logger dump (the attention probe runs in both
cases; it is part of the callback, not of the writer).

Off and on alternate (off, on, on, off, ...) so drift in the machine's load hits both;
per mode the figure is the median over ``--repeats`` pairs, and
``overhead = median(on) / median(off) - 1`` (the issue's bar: <= 5% of job time). On a
shared machine that difference is buried in load noise, so the "on" cases also time the
writer itself: every call of SB3's ``TensorBoardOutputFormat.write`` / ``close`` is
wrapped with a clock, and ``writer_share = writer seconds / job seconds`` is the direct,
load-robust figure of what TensorBoard costs a job. Torch runs single-threaded, as the
runner's workers do.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_env import write_result  # noqa: E402
from bench_train import git_commit, machine_info  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_tensorboard.json"


def _dataset() -> Any:
    from backend.config.training_config import FeatureConfig
    from backend.data_download.dataset import SymbolDataset
    from backend.data_download.loader import join_vix_asof
    from backend.data_download.synthetic_market import (
        SyntheticMarketConfig,
        generate_synthetic_market,
    )

    features = FeatureConfig.for_agent("SAC_INTRADAY_DSR")
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start="2024-01-02", end=None, n_sessions=110, seed=11)
    )
    return SymbolDataset.from_market("SPY", join_vix_asof(frames["SPY"], frames["VIX"]), features)


def _settings(mode: str, steps: int, tensorboard_log: str | None) -> Any:
    from backend.config.training_config import TrainingSettings, config_from_dict
    from backend.training.walk_forward import RUN_PRESETS

    base = config_from_dict(TrainingSettings, RUN_PRESETS["short"].training_overrides(mode))
    # No early stop: every case runs exactly ``steps`` steps.
    return replace(
        base,
        total_timesteps=steps,
        early_stop_window=10_000,
        tensorboard_log=tensorboard_log,
        seed=3,
        device="cpu",
    )


def time_case(dataset: Any, mode: str, steps: int, tensorboard: bool) -> dict[str, Any]:
    """Wall and CPU seconds of one ``train_on_range`` with TensorBoard off or on."""
    import torch as th

    from backend.training.train import TRAINING_ENV_DEFAULTS, train_on_range

    ready = dataset.ready_sessions
    fit = (ready[-70], ready[-12])
    val = (ready[-10], ready[-1])
    from stable_baselines3.common.logger import TensorBoardOutputFormat

    writer_s = [0.0]
    originals = {name: getattr(TensorBoardOutputFormat, name) for name in ("write", "close")}

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                writer_s[0] += time.perf_counter() - t0

        return wrapper

    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(mode, steps, str(Path(tmp) / "tb") if tensorboard else None)
        th.manual_seed(0)
        for name, fn in originals.items():
            setattr(TensorBoardOutputFormat, name, timed(fn))
        try:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            result = train_on_range(
                dataset,
                fit,
                val,
                settings,
                TRAINING_ENV_DEFAULTS,
                run_name=f"bench_{mode}",
                attention_probe_every=settings.eval_every_steps,
            )
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        finally:
            for name, fn in originals.items():
                setattr(TensorBoardOutputFormat, name, fn)
        event_bytes = sum(p.stat().st_size for p in Path(tmp).rglob("events.out.tfevents.*"))
    return {
        "tensorboard": tensorboard,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps": int(result.metrics.get("timesteps", steps)),
        "event_file_bytes": event_bytes,
        "writer_s": writer_s[0],
        "writer_share": writer_s[0] / wall,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1_500, help="SAC steps per case")
    parser.add_argument("--modes", default="manual,transformer")
    parser.add_argument("--repeats", type=int, default=2, help="off/on pairs per mode")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import torch as th

    th.set_num_threads(1)
    dataset = _dataset()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for i in range(args.repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        for mode in modes:
            for tb in order:
                runs[mode].append(time_case(dataset, mode, args.steps, tb))
    summary = {}
    for mode, cases in runs.items():
        off = statistics.median(c["wall_s"] for c in cases if not c["tensorboard"])
        on = statistics.median(c["wall_s"] for c in cases if c["tensorboard"])
        off_cpu = statistics.median(c["cpu_s"] for c in cases if not c["tensorboard"])
        on_cpu = statistics.median(c["cpu_s"] for c in cases if c["tensorboard"])
        shares = [c["writer_share"] for c in cases if c["tensorboard"]]
        summary[mode] = {
            "writer_share_max": max(shares),
            "job_wall_s_off": off,
            "job_wall_s_on": on,
            "overhead_wall": on / off - 1.0,
            "overhead_cpu": on_cpu / off_cpu - 1.0,
            # The writer is the only code TensorBoard adds (SB3 records the values either
            # way), so its share is the overhead; the wall ratio is reported for context.
            "within_5_percent": max(shares) <= 0.05,
        }
    result = {
        "benchmark": "bench_tensorboard",
        "config": {"steps": args.steps, "modes": modes, "repeats": args.repeats},
        "summary": summary,
        "runs": runs,
        "git": git_commit(),
        "machine": machine_info(),
    }
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
