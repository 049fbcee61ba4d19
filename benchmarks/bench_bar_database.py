"""Range query and full load from the bar database against the CSV store path.

Usage::

    python benchmarks/bench_bar_database.py [--repeats 3] [--out FILE]
    python benchmarks/bench_bar_database.py --synthetic-years 4   # without ../shared/data

Data: the real SPY 15-minute bars of ``../shared/data`` (``PickStocksAGI/SPY_15min.csv``,
2021-03 to 2023-02, bar-end naive Eastern stamps, and ``ADMF-PC/SPY_15m.csv``, 2024-03 to
2025-04, UTC), validated once by the loader's own code and written, in a temporary folder,
both as a CSV store (one file per session, what the converter and downloader write) and as
a bar database (``backend.database``). Without the shared data (or with
``--synthetic-years N``) a seeded random walk on the exchange calendar is used instead.

Cases, each the best of ``--repeats`` runs (the machine may be shared):

* ``csv_full_load``: ``loader.load_bars`` of the whole store without the parquet cache
  (reads and validates every CSV: what the first load of a store costs);
* ``csv_full_load_cached``: the same with its parquet cache warm (every later load);
* ``db_full_load``: ``BarDatabase.load_bars`` of everything;
* ``csv_range`` / ``csv_range_cached`` / ``db_range``: one month (``--range-days``, 30) in
  the middle of the history; the CSV path must validate the whole store to answer it;
* ``db_ingest``: validating the CSV files and adding them to an empty database.

Every database result is checked equal to the loader's frame. Ratios are CSV time over
database time, measured in the same run. Results are printed and written as JSON with the
machine (including the load average) and the configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.data_download.csv_store import write_sessions_bulk  # noqa: E402
from backend.data_download.loader import load_bars, parse_csvs  # noqa: E402
from backend.data_download.market_calendar import (  # noqa: E402
    expected_bar_starts,
    session_schedule,
)
from backend.data_download.validation import validate_bars  # noqa: E402
from backend.database.bar_database import BarDatabase  # noqa: E402
from backend.database.ingest import ingest_store  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_bar_database.json"
SHARED_RAW = (
    Path(
        os.environ.get("YOOPRL_SHARED_DATA")
        or Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    / "raw"
)
REAL_FILES: list[tuple[str, dict[str, Any]]] = [
    ("PickStocksAGI/SPY_15min.csv", {"stamp": "end"}),
    ("ADMF-PC/SPY_15m.csv", {}),
]


def real_bars() -> tuple[pd.DataFrame, list[str]] | None:
    """The real SPY 15m bars, validated (regular session), or ``None`` when absent."""
    paths = [(SHARED_RAW / name, opts) for name, opts in REAL_FILES]
    if not all(p.is_file() for p, _ in paths):
        return None
    frames = []
    for path, opts in paths:
        parsed = parse_csvs([path], interval="15m", symbol="SPY", **opts)
        result = validate_bars(parsed, "15m", files=[str(path)])
        frames.append(result.bars)
    return pd.concat(frames).sort_index(), [str(p) for p, _ in paths]


def synthetic_bars(years: int, seed: int = 0) -> pd.DataFrame:
    """A seeded random walk on every regular-session 15m bar of ``years`` years."""
    sched = session_schedule("2019-01-02", f"{2019 + years - 1}-12-31")
    index = expected_bar_starts(sched, "15m").as_unit("ns")
    rng = np.random.default_rng(seed)
    close = np.round(300 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(index)))), 4)
    open_ = np.r_[300.0, close[:-1]]
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + 0.01,
            "low": np.minimum(open_, close) - 0.01,
            "close": close,
            "volume": rng.integers(1_000, 100_000, len(index)).astype(np.float64),
        },
        index=index,
    )


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def machine_info() -> dict[str, Any]:
    """Interpreter, library versions, CPU and load, so figures can be compared across runs."""
    import duckdb
    import pyarrow

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "pandas": pd.__version__,
        "pyarrow": pyarrow.__version__,
        "duckdb": duckdb.__version__,
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    return info


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (best kept)")
    parser.add_argument("--range-days", type=int, default=30, help="length of the range query")
    parser.add_argument(
        "--synthetic-years", type=int, default=0, help="use N synthetic years, not real data"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output file")
    args = parser.parse_args(argv)

    real = None if args.synthetic_years else real_bars()
    if real is not None:
        bars, sources = real
        data = {"kind": "real", "files": sources}
    else:
        bars = synthetic_bars(args.synthetic_years or 4)
        data = {"kind": "synthetic", "years": args.synthetic_years or 4, "seed": 0}
    days = bars.index.normalize().unique()
    middle = days[len(days) // 2]
    start = middle.strftime("%Y-%m-%d")
    end = (middle + pd.Timedelta(days=args.range_days - 1)).strftime("%Y-%m-%d")
    data.update(
        bars=len(bars),
        sessions=len(days),
        first_bar=str(bars.index[0]),
        last_bar=str(bars.index[-1]),
        range=[start, end],
    )
    load_before = machine_info().get("load_average_1m")
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_bar_db_") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # data-quality warnings of the real files
        store = Path(tmp) / "data"
        write_sessions_bulk(bars, store, "SPY", durable=False)
        n_files = len(list((store / "intraday" / "SPY" / "15m").glob("*.csv")))

        def ingest() -> Any:
            db = BarDatabase(Path(tmp) / f"db-{time.perf_counter_ns()}")
            ingest_store(db, store, "SPY")
            return db

        times["db_ingest"], db = best_of(args.repeats, ingest)
        times["csv_full_load"], csv_all = best_of(
            args.repeats, lambda: load_bars("SPY", data_dir=store, use_cache=False)
        )
        load_bars("SPY", data_dir=store)  # warm the parquet cache
        times["csv_full_load_cached"], cached_all = best_of(
            args.repeats, lambda: load_bars("SPY", data_dir=store)
        )
        times["db_full_load"], db_all = best_of(args.repeats, lambda: db.load_bars("SPY"))
        times["csv_range"], csv_part = best_of(
            args.repeats,
            lambda: load_bars("SPY", start=start, end=end, data_dir=store, use_cache=False),
        )
        times["csv_range_cached"], _ = best_of(
            args.repeats, lambda: load_bars("SPY", start=start, end=end, data_dir=store)
        )
        times["db_range"], db_part = best_of(
            args.repeats, lambda: db.load_bars("SPY", start=start, end=end)
        )
        pd.testing.assert_frame_equal(db_all, csv_all)
        pd.testing.assert_frame_equal(cached_all, csv_all)
        pd.testing.assert_frame_equal(db_part, csv_part)
        data.update(csv_files=n_files, range_bars=len(db_part))
    result: dict[str, Any] = {
        "benchmark": "bench_bar_database",
        "data": data,
        "seconds": {k: round(v, 5) for k, v in times.items()},
        "csv_over_db": {
            "full_load": round(times["csv_full_load"] / times["db_full_load"], 2),
            "full_load_cached": round(times["csv_full_load_cached"] / times["db_full_load"], 2),
            "range": round(times["csv_range"] / times["db_range"], 2),
            "range_cached": round(times["csv_range_cached"] / times["db_range"], 2),
        },
        "db_equals_csv_path": True,
        "config": {"repeats": args.repeats, "range_days": args.range_days},
        "machine": {**machine_info(), "load_average_1m_before": load_before},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
