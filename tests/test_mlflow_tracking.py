"""--tracking mlflow: a tracked run can be listed and its artifacts opened from the file store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.evaluation.tracking import flatten, make_tracker, metric_name
from backend.scripts import run_walk_forward as cli


def test_flatten_and_metric_names():
    flat = flatten({"training": {"manual": {"net_arch": [64, 64], "tb": None}}, "seed": 3})
    assert flat == {
        "training.manual.net_arch": "[64, 64]",
        "training.manual.tb": "null",
        "seed": "3",
    }
    assert len(flatten({"x": "y" * 900})["x"]) == 500
    assert metric_name("train/actor_loss") == "train/actor_loss"
    assert metric_name("a:b<c>") == "a_b_c_"
    with pytest.raises(ValueError, match="expected one of none, mlflow"):
        make_tracker("wandb", ".")


def test_mlflow_run_lists_jobs_metrics_and_artifacts(walk_forward_workspace, capsys, monkeypatch):
    pytest.importorskip("mlflow", reason='the MLflow extra: pip install -e ".[mlflow]"')
    from mlflow.tracking import MlflowClient

    root = walk_forward_workspace
    out = root / "mlflow_run"
    code = cli.main(
        [
            "--data-dir",
            str(root / "store"),
            "--config",
            str(root / "tiny.yaml"),
            "--sequence-encoder",
            "manual",
            "--output",
            str(out),
            "--tracking",
            "mlflow",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    store = (out / "mlruns").resolve().as_uri()
    assert f"at {store}" in printed and "mlflow ui --backend-store-uri" in printed

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("yooprl-walk-forward")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_name == "mlflow_run"
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == ["w00/manual", "w01/manual"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}

    # parameters: the resolved config
    params = parent.data.params
    assert params["config.training.total_timesteps"] == "150"
    assert params["config.walk_forward.train_sessions"] == "12"
    assert params["symbols"] == '["SPY"]'
    assert "manual/sharpe" in parent.data.metrics

    # per-step metrics from training and final test metrics of one job
    job = next(r for r in children if r.info.run_name == "w00/manual")
    result = json.loads((out / "windows" / "w00" / "manual" / "result.json").read_text())
    assert job.data.metrics["test/sharpe"] == pytest.approx(
        result["symbols"]["SPY"]["metrics"]["sharpe"]
    )
    critic = client.get_metric_history(job.info.run_id, "train/critic_loss")
    assert len(critic) >= 1 and all(m.step > 0 for m in critic)
    val = client.get_metric_history(job.info.run_id, "eval/val_sharpe")
    assert [m.step for m in val] == [75, 150]

    # artifacts: report, tables, plots on the parent; result and bundle on each job
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.md", "metrics.json", "run.json", "plots"} <= top
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/equity_SPY.png" in plots
    local = Path(client.download_artifacts(parent.info.run_id, "report.md"))
    assert local.read_text() == (out / "report.md").read_text()
    job_files = {a.path for a in client.list_artifacts(job.info.run_id)}
    assert {"result.json", "model_SPY"} <= job_files
    bundle = {a.path for a in client.list_artifacts(job.info.run_id, "model_SPY")}
    assert "model_SPY/metadata.json" in bundle
