"""SAC env-steps/s with a pretrained trunk: frozen vs fine-tuned vs from scratch vs manual.

``python benchmarks/bench_pretrained.py [--steps 1500] [--size base] [--window 64] [--quick]``
writes a synthetic market (``write_synthetic_market``, SPY + VIX), pretrains a transformer
trunk with the supervised lab on the fit range only (``backend.supervised.pretrain``), then
trains SAC with ``backend.training.train.train_on_range`` in this one process, one case after
the other, on the same fit sessions, with the same settings:

* ``manual``: the flat MLP encoder, from scratch (the reference of every ratio);
* ``transformer_scratch``: the transformer encoder, from scratch;
* ``transformer_finetune``: the pretrained trunk, trained further (its own learning rate);
* ``transformer_frozen``: the pretrained trunk frozen: its embeddings of every bar are
  computed once (batched) and SAC trains on them. ``steps_per_s`` is SAC's training loop;
  ``steps_per_s_incl_embedding`` also charges the one-off embedding pass to it.

Each case runs ``--steps`` env steps (``learning_starts`` random steps included, one gradient
step per env step after them, no validation evaluation inside the timed loop). The cases
run interleaved, ``--repeats`` (3) rounds in alternating order (forward, then reversed), and
each figure is the median of its repeats (every run, with the load average before it, is
kept under ``runs``). Figures are wall-clock and process CPU; ``*_over_manual`` ratios
compare cases of the same run, so they are the figures to read on a shared machine. Writes
JSON to ``benchmarks/results/bench_pretrained.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch as th

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config.experiment import resolve_experiment  # noqa: E402
from backend.data_download.dataset import SymbolDataset  # noqa: E402
from backend.data_download.synthetic_market import (  # noqa: E402
    SyntheticMarketConfig,
    write_synthetic_market,
)
from backend.supervised.pretrain import pretrain_trunk  # noqa: E402
from backend.training.train import train_on_range  # noqa: E402
from backend.training.walk_forward import SessionRange, WalkForwardWindow  # noqa: E402
from backend.utils.provenance import collect_provenance  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_pretrained.json"
FIT_SESSIONS, VAL_SESSIONS = 60, 10


def _config(args: argparse.Namespace, mode: str, pretrained: dict[str, Any] | None) -> Any:
    training: dict[str, Any] = {
        "total_timesteps": args.steps,
        "learning_starts": args.learning_starts,
        "eval_every_steps": args.steps + 1,  # no validation pass inside the timed loop
        "tensorboard_log": None,
        "torch_threads": 1,
        "device": args.device,
        "seed": 0,
    }
    if pretrained is not None:
        training["pretrained"] = pretrained
    overrides = {
        "training": training,
        "env": {"sequence_length": args.window},
        "encoder": {"name": "transformer", "size": args.size},
    }
    return resolve_experiment("short", None, overrides, default_preset="short").for_mode(mode)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every figure over a case's repeats."""
    keys = ("train_wall_s", "process_cpu_s", "embedding_s", "steps_per_s")
    out: dict[str, Any] = {k: statistics.median(r[k] for r in rows) for k in keys}
    out["steps"] = rows[0]["steps"]
    out["repeats"] = len(rows)
    out["steps_per_s_incl_embedding"] = statistics.median(
        r["steps_per_s_incl_embedding"] for r in rows
    )
    out["steps_per_s_min_max"] = [
        min(r["steps_per_s"] for r in rows),
        max(r["steps_per_s"] for r in rows),
    ]
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Pretrain once, then time the four cases."""
    th.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        n_sessions = FIT_SESSIONS + VAL_SESSIONS + 30
        write_synthetic_market(
            store, SyntheticMarketConfig(start="2024-01-02", end=None, n_sessions=n_sessions)
        )
        base = _config(args, "transformer", None)
        ds = SymbolDataset.load("SPY", store, base.features)
        layout = ds.layout.iloc[ds.warmup_rows :]
        sessions = pd.DatetimeIndex(pd.unique(layout["session"]))
        fit = (sessions[0], sessions[FIT_SESSIONS - 1])
        val = (sessions[FIT_SESSIONS], sessions[FIT_SESSIONS + VAL_SESSIONS - 1])
        window = WalkForwardWindow(
            0,
            SessionRange(0, FIT_SESSIONS),
            SessionRange(FIT_SESSIONS, FIT_SESSIONS + VAL_SESSIONS),
            SessionRange(FIT_SESSIONS + VAL_SESSIONS, len(sessions)),
        )
        started = time.perf_counter()
        bundle = pretrain_trunk(
            [ds],
            sessions,
            window,
            "transformer",
            base.encoder.to_dict(),
            sequence_length=base.env.sequence_length,
            feature_clip=base.env.feature_clip,
            epochs=args.pretrain_epochs,
            val_fraction=0.2,
            feature_config=base.features,
            seed=0,
            target=Path(tmp) / "trunk",
            device=args.device if args.device != "auto" else "cpu",
        )
        pretrain_s = time.perf_counter() - started
        cases: dict[str, tuple[str, dict[str, Any] | None]] = {
            "manual": ("manual", None),
            "transformer_scratch": ("transformer", None),
            "transformer_finetune": (
                "transformer",
                {"bundle": str(bundle), "use": "finetune", "learning_rate": 1e-4},
            ),
            "transformer_frozen": ("transformer", {"bundle": str(bundle), "use": "frozen"}),
        }
        chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in cases]
        if unknown or "manual" not in chosen:
            raise SystemExit(
                f"--cases: unknown {unknown} or no 'manual'; choose from {list(cases)}"
            )
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
        for repeat in range(args.repeats):
            # Interleaved and alternating (forward, then reversed), so a change of load
            # during the run hits every case alike; the median of the repeats is reported.
            order = chosen if repeat % 2 == 0 else chosen[::-1]
            for name in order:
                mode, pretrained = cases[name]
                config = _config(args, mode, pretrained)
                load = os.getloadavg()[0]
                cpu0 = time.process_time()
                result = train_on_range(ds, fit, val, config)
                cpu = time.process_time() - cpu0
                steps = int(result.metrics["steps_done"])
                wall = float(result.metrics["train_time_s"])
                extra = result.metrics.get("pretrained") or {}
                embed = float(extra.get("embedding_seconds", 0.0))
                runs[name].append(
                    {
                        "repeat": repeat,
                        "load_average_1m": load,
                        "steps": steps,
                        "train_wall_s": wall,
                        "process_cpu_s": cpu,
                        "embedding_s": embed,
                        "steps_per_s": steps / wall,
                        "steps_per_s_incl_embedding": steps / (wall + embed),
                    }
                )
                print(
                    f"[{repeat + 1}/{args.repeats}] {name:<22} {steps / wall:8.1f} steps/s "
                    f"({wall:.1f} s"
                    + (f" + {embed:.2f} s embeddings)" if embed else ")")
                    + f" load {load:.2f}",
                    flush=True,
                )
    results = {name: _summary(rows) for name, rows in runs.items()}
    manual = results["manual"]
    for name, row in results.items():
        row["steps_per_s_over_manual"] = row["steps_per_s"] / manual["steps_per_s"]
        row["incl_embedding_over_manual"] = (
            row["steps_per_s_incl_embedding"] / manual["steps_per_s"]
        )
        # Per repeat: the case against the manual run of the same repeat (adjacent in time).
        row["over_manual_per_repeat"] = [
            r["steps_per_s"] / m["steps_per_s"]
            for r, m in zip(runs[name], runs["manual"], strict=True)
        ]
    return {
        "benchmark": "bench_pretrained",
        "config": {
            "cases": args.cases,
            "repeats": args.repeats,
            "steps": args.steps,
            "learning_starts": args.learning_starts,
            "size": args.size,
            "window": args.window,
            "pretrain_epochs": args.pretrain_epochs,
            "device": args.device,
            "fit_sessions": FIT_SESSIONS,
            "preset": "short",
        },
        "pretrain_s": pretrain_s,
        "cases": results,
        "runs": runs,
        "frozen_over_manual": (
            results["transformer_frozen"]["steps_per_s_over_manual"]
            if "transformer_frozen" in results
            else None
        ),
        "target_frozen_over_manual": 0.8,
        "machine": {"cpu_count": os.cpu_count(), "load_average": list(os.getloadavg())},
        "provenance": collect_provenance(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, run, print and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="env steps per case")
    parser.add_argument("--learning-starts", type=int, default=200, help="random steps first")
    parser.add_argument("--size", default="base", help="transformer size preset (tiny..large)")
    parser.add_argument("--window", type=int, default=64, help="bars per observation (T)")
    parser.add_argument("--pretrain-epochs", type=int, default=3, help="lab epochs")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, auto)")
    parser.add_argument(
        "--cases",
        default="manual,transformer_scratch,transformer_finetune,transformer_frozen",
        help="comma-separated cases (manual is required: the reference)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="interleaved runs per case (alternating order); the median is reported",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.learning_starts, args.size = 120, 40, "tiny"
        args.window, args.pretrain_epochs, args.repeats = 16, 1, 2
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    ratio = result["frozen_over_manual"]
    if ratio is not None:
        print(f"frozen / manual: {ratio:.2f} (target >= 0.8)")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
