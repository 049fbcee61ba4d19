"""Single-prediction latency of the supervised lab's networks at every size, against 100 ms.

``python benchmarks/bench_supervised_latency.py [--repeats 200] [--features 30] [--out FILE]``
builds each network (LSTM, CNN, multi-scale CNN, transformer) at each size preset of the lab
(``backend.config.supervised.SIZE_PRESETS``: tiny and small at T=16, medium at T=64, large at
T=120) with all three task heads, and times one forward pass of a batch of one
(``backend.supervised.pipeline.single_prediction_latency``: eval mode, no gradients, after
warm-up). The reference measured in the same run is the logistic-regression baseline's
``predict_proba`` on one flat feature row, so ``p99_over_logreg`` is stable across machines
where milliseconds are not. Writes JSON to ``benchmarks/results/bench_supervised_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config.supervised import SIZE_PRESETS  # noqa: E402
from backend.supervised.labels import TASKS  # noqa: E402
from backend.supervised.model import MultiTaskModel  # noqa: E402
from backend.supervised.pipeline import single_prediction_latency  # noqa: E402
from backend.utils.provenance import collect_provenance  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_supervised_latency.json"
WINDOW_BY_SIZE = {"tiny": 16, "small": 16, "medium": 64, "large": 120}
BUDGET_MS = 100.0


def _logreg_latency(n_features: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, n_features))
    model = LogisticRegression(max_iter=200).fit(x, rng.integers(0, 3, 600))
    row = x[:1]
    times = []
    for i in range(repeats + 5):
        start = time.perf_counter()
        model.predict_proba(row)
        if i >= 5:
            times.append((time.perf_counter() - start) * 1e3)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def run(repeats: int, n_features: int, sizes: list[str], device: str) -> dict[str, Any]:
    """Every (size, network) latency and the logistic-regression reference."""
    th.set_num_threads(1)
    reference = _logreg_latency(n_features, repeats)
    rows = []
    for size in sizes:
        steps = WINDOW_BY_SIZE[size]
        variants: list[tuple[str, str, dict[str, Any]]] = [
            ("lstm", "lstm", {}),
            ("cnn", "cnn", {}),
            ("cnn_multiscale", "cnn", {"kernel_sizes": (3, 5, 7)}),
            ("transformer", "transformer", {}),
        ]
        for label, mode, extra in variants:
            fields = {**SIZE_PRESETS[size][mode], **extra}
            if mode == "transformer" and fields.get("local_window"):
                n_layers = fields.get("n_layers", 2)
                fields["local_window"] = list(fields["local_window"])[:n_layers]
            th.manual_seed(0)
            model = MultiTaskModel(mode, steps, n_features, fields, TASKS, 0.1).to(device)
            window = np.random.default_rng(1).normal(size=(1, steps, n_features))
            latency = single_prediction_latency(
                model, window.astype(np.float32), np.ones((1, steps), np.float32), None, repeats
            )
            rows.append(
                {
                    "size": size,
                    "model": label,
                    "window": steps,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    **latency,
                    "budget_ms": BUDGET_MS,
                    "budget_over_p99": BUDGET_MS / latency["p99"],
                    "p99_over_logreg": latency["p99"] / reference["p99"],
                }
            )
            print(
                f"{size:>6} {label:<15} T={steps:<4} p50 {latency['p50']:7.2f} ms  "
                f"p99 {latency['p99']:7.2f} ms",
                flush=True,
            )
    return {
        "benchmark": "bench_supervised_latency",
        "config": {
            "repeats": repeats,
            "n_features": n_features,
            "sizes": sizes,
            "device": device,
            "torch_threads": 1,
        },
        "reference_logreg_ms": reference,
        "results": rows,
        "machine": {"cpu_count": os.cpu_count(), "load_average": list(os.getloadavg())},
        "provenance": collect_provenance(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, run, print and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed passes per model")
    parser.add_argument("--features", type=int, default=30, help="features per bar (F)")
    parser.add_argument("--sizes", default="tiny,small,medium,large", help="size presets")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in WINDOW_BY_SIZE]
    if unknown:
        parser.error(f"--sizes: unknown {unknown}; expected some of {sorted(WINDOW_BY_SIZE)}")
    result = run(args.repeats, args.features, sizes, args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
