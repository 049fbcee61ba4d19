"""Smoke tests: every benchmark script runs end to end at tiny sizes and writes its JSON.

Only the shape of the output is checked (keys present, figures positive and finite); timings
are never asserted, the machine running the tests may be arbitrarily loaded.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    path = BENCHMARKS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_yooprl_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_env_smallest(tmp_path: Path) -> None:
    out = tmp_path / "bench_env.json"
    result = _load("bench_env").main(
        ["--steps", "200", "--sessions", "10", "--repeats", "1", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == result
    assert result["benchmark"] == "bench_env"
    keys = {"floor", "env_flat", "env_window", "sb3_dummy_vec_flat"}
    assert set(result["steps_per_second"]) == keys
    assert all(_positive(v) for v in result["steps_per_second"].values())
    assert all(_positive(v) for v in result["env_over_floor_time"].values())
    assert result["floor_matches_env_reward_sum"] is True
    assert {"python", "cpu_count", "stable_baselines3"} <= set(result["machine"])


def test_bench_vec_env_smallest(tmp_path: Path) -> None:
    out = tmp_path / "bench_vec_env.json"
    argv = ["--steps", "256", "--sessions", "10", "--envs", "1,4", "--repeats", "1"]
    argv += ["--train-modes", "manual", "--train-envs", "1,2", "--train-steps", "16"]
    argv += ["--train-warmup", "4", "--train-sessions", "30", "--out", str(out)]
    result = _load("bench_vec_env").main(argv)
    assert json.loads(out.read_text()) == result
    assert result["benchmark"] == "bench_vec_env"
    vec = {
        f"{kind}_{obs}_n{n}"
        for kind in ("batched", "dummy")
        for obs in ("flat", "window")
        for n in (1, 4)
    }
    train = {"train_manual_n1", "train_manual_n2"}
    assert set(result["steps_per_second"]) == {"floor", "env_flat", "env_window"} | vec | train
    assert all(_positive(v) for v in result["steps_per_second"].values())
    assert set(result["batched_over_dummy"]) == {"flat_n1", "flat_n4", "window_n1", "window_n4"}
    assert set(result["train_over_n1"]) == {"manual_n1", "manual_n2"}


@pytest.mark.slow
def test_bench_train_quick(tmp_path: Path) -> None:
    # One sequence encoder, separate and shared, YoopSAC and plain SB3, plus the baseline
    # twice: six children.
    out = tmp_path / "bench_train.json"
    result = _load("bench_train").main(
        ["--steps", "20", "--quick", "--modes", "lstm", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == result
    assert result["benchmark"] == "bench_train"
    assert "reference" in result and "baseline" in result["reference"]
    cases = {"baseline", "lstm.separate", "lstm.shared", "lstm.separate.sb3", "lstm.shared.sb3"}
    versus = result["summary"]["yoop_vs_sb3"]
    assert set(versus) == {"lstm.separate", "lstm.shared"}
    for row in versus.values():
        assert row["ratio"] == pytest.approx(
            row["yoop_steps_per_s"] / row["sb3_steps_per_s"], rel=0.02
        )
    assert result["cases"]["lstm.separate.sb3"]["engine"] == "sb3"
    assert result["cases"]["lstm.separate"]["engine"] == "yoop"
    assert set(result["cases"]) == cases
    assert result["cases"]["baseline"]["runs"] == 2  # bracketing the other cases

    summary = result["summary"]
    for table in (
        "steps_per_second",
        "time_per_step_over_baseline",
        "cpu_time_per_step_over_baseline",
        "latency_ms_median",
        "latency_ms_p99",
        "trainable_params",
    ):
        assert set(summary[table]) == cases, table
        assert all(_positive(v) for v in summary[table].values()), table
    assert summary["time_per_step_over_baseline"]["baseline"] == 1.0
    assert all(v >= 0 for v in summary["peak_rss_growth_mib"].values())
    sharing = summary["sharing_shared_over_separate"]["lstm"]
    assert _positive(sharing["train_speedup"])
    assert sharing["params_saved"] > 0  # one extractor fewer in the trained modules

    for name, case in result["cases"].items():
        assert case["gradient_updates_total"] > 0, name
        assert case["latency_ms_median"] <= case["latency_ms_p99"], name
        assert _positive(case["peak_rss_mib_end"]), name
        assert _positive(case["replay_buffer_mib"]), name
    assert result["cases"]["lstm.shared"]["shared"] is True
    assert result["cases"]["lstm.separate"]["observation_keys"] == ["account", "mask", "window"]

    config = result["config"]
    for key in ("torch_threads", "device", "sequence_length", "feature_count", "batch_size"):
        assert key in config, key
    assert config["quick"] is True and config["steps_timed"] == 20
    assert {"torch", "python", "stable_baselines3", "cpu_count"} <= set(result["machine"])
    assert "commit" in result["git"]


@pytest.mark.slow
def test_bench_walk_forward_quick(tmp_path: Path) -> None:
    # The walk-forward CLI twice (serial, then 2 workers) on a tiny manual-only config.
    out = tmp_path / "bench_walk_forward.json"
    result = _load("bench_walk_forward").main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["benchmark"] == "bench_walk_forward"
    assert set(result["cases"]) == {"workers_1", "workers_2"}
    for name, case in result["cases"].items():
        assert case["jobs"] == 2, name  # 2 windows x 1 mode
        for key in ("wall_s", "peak_rss_mib", "cpu_s", "job_time_s_sum"):
            assert _positive(case[key]), (name, key)
        assert "--workers" in case["command"] and "--sequence-encoder manual" in case["command"]
    summary = result["summary"]
    assert _positive(summary["speedup_workers_2_over_1"])
    assert summary["same_results"] is True  # job seeds do not depend on the executor
    bound = summary["idle_wall_lower_bound_s"]
    assert set(bound) == set(result["cases"]) and all(_positive(v) for v in bound.values())
    assert result["load_average_1m_start"] is not None  # the machine's load is recorded
    assert result["config"]["quick"] is True
    assert {"torch", "python", "cpu_count"} <= set(result["machine"])
    assert "commit" in result["git"]


def test_bench_bar_database_synthetic(tmp_path: Path) -> None:
    out = tmp_path / "bench_bar_database.json"
    result = _load("bench_bar_database").main(
        ["--synthetic-years", "1", "--repeats", "1", "--range-days", "10", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == result
    assert result["benchmark"] == "bench_bar_database"
    assert result["data"]["kind"] == "synthetic" and result["data"]["bars"] > 6000
    cases = {
        "db_ingest",
        "csv_full_load",
        "csv_full_load_cached",
        "db_full_load",
        "csv_range",
        "csv_range_cached",
        "db_range",
    }
    assert set(result["seconds"]) == cases
    assert all(_positive(v) for v in result["seconds"].values())
    assert all(_positive(v) for v in result["csv_over_db"].values())
    assert result["db_equals_csv_path"] is True
    assert "load_average_1m" in result["machine"]


def test_bench_supervised_latency_tiny(tmp_path: Path) -> None:
    out = tmp_path / "bench_supervised_latency.json"
    result = _load("bench_supervised_latency").main(
        ["--sizes", "tiny", "--repeats", "10", "--features", "6", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result, default=str))
    models = {row["model"] for row in result["results"]}
    assert models == {"lstm", "cnn", "cnn_multiscale", "transformer"}
    for row in result["results"]:
        assert 0 < row["p50"] <= row["p99"]
        assert row["budget_ms"] == 100.0 and _positive(row["p99_over_logreg"])
    assert len(result["machine"]["load_average"]) == 3


def test_bench_pretrained_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench_pretrained.json"
    result = _load("bench_pretrained").main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result, default=str))
    cases = {"manual", "transformer_scratch", "transformer_finetune", "transformer_frozen"}
    assert set(result["cases"]) == cases
    for row in result["cases"].values():
        assert row["steps"] == result["config"]["steps"] and _positive(row["steps_per_s"])
    assert result["cases"]["transformer_frozen"]["embedding_s"] > 0
    assert result["cases"]["manual"]["steps_per_s_over_manual"] == 1.0
    assert [r["repeat"] for r in result["runs"]["manual"]] == [0, 1]
    assert len(result["cases"]["transformer_frozen"]["over_manual_per_repeat"]) == 2
    assert result["target_frozen_over_manual"] == 0.8


@pytest.mark.slow
def test_bench_backends_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench_backends.json"
    result = _load("bench_backends").main(
        ["--steps", "20", "--rounds", "2", "--no-compile", "--json", str(out)]
    )
    assert json.loads(out.read_text()) == result
    measured = set(result["steps_per_s"])
    assert {"yoop_manual", "sb3_mlp", "yoop_transformer"} <= measured
    assert measured | set(result["skipped"]) == {
        "yoop_manual",
        "sb3_mlp",
        "sbx_mlp",
        "yoop_transformer",
    }
    assert all(_positive(v) for v in result["steps_per_s"].values())
    assert all(len(r) == 2 for r in result["runs_steps_per_s"].values())
    assert _positive(result["paired_ratios"]["sb3_mlp_over_yoop_manual"])
