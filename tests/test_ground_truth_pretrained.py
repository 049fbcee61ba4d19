"""Pretrained rows of the ground-truth comparison (issue 13), end to end on a tiny budget.

``--pretrained-variants frozen,finetune`` adds, per market, one sub-run of the sequence
encoders on trunks pretrained per window on the window's fit range; the table gains rows
``cnn+pretrained(frozen)`` / ``cnn+pretrained(finetune)`` tested with the scratch rows as
one family, and a test of each against cnn from scratch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from walk_forward_support import run_job

from backend.environments import factory
from backend.evaluation import ground_truth
from backend.scripts import run_walk_forward as cli
from backend.training import train
from backend.training import walk_forward_runner as runner

TINY = {
    "walk_forward": {"train_sessions": 18, "test_sessions": 4, "max_windows": 1},
    "training": {
        "total_timesteps": 150,
        "learning_starts": 50,
        "batch_size": 16,
        "buffer_size": 1000,
        "eval_every_steps": 75,
        "tensorboard_log": None,
        "pretrained": {"pretrain_epochs": 2},
    },
}
"""Seconds per job; 18 training sessions leave the lab enough fit bars for its thresholds."""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gt_pretrained")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return root


@pytest.fixture(scope="module")
def variant_run(workspace: Path) -> Path:
    out = workspace / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        mp.setattr(train, "DEFAULT_DATA_DIR", workspace / "data")
        mp.setattr(factory, "SYNTHETIC_DIR", workspace / "data" / "synthetic")
        mp.setattr(cli, "EXPERIMENTS_DIR", workspace / "experiments")
        mp.setattr(cli, "BASELINE_RUNS_DIR", workspace / "baseline_runs")
        mp.setattr(cli, "CROSS_MODE_REPORT", workspace / "Docs" / "report.md")
        argv = ["--config", str(workspace / "tiny.yaml"), "--sequence-encoder", "manual,cnn"]
        argv += ["--pretrained-variants", "finetune,frozen", "--end", "2023-02-28"]
        assert cli.main([*argv, "--output", str(out)]) == 0
    return out


def test_the_table_gains_tested_pretrained_rows(variant_run: Path) -> None:
    table = json.loads((variant_run / "ground_truth.json").read_text())
    modes = ["manual", "cnn", "cnn+pretrained(frozen)", "cnn+pretrained(finetune)"]
    for market in ("null", "momentum", "sequence"):
        rows = [r for r in table["rows"] if r["scenario"] == market]
        assert [r["mode"] for r in rows] == modes
        assert all(r["p_adjusted"] is not None and r["vs_flat_estimate"] is not None for r in rows)
    assert table["test_source"].startswith("report's paired session tests")
    assert {(p["scenario"], p["use"]) for p in table["pretraining"]} == {
        (m, u) for m in ("null", "momentum", "sequence") for u in ("frozen", "finetune")
    }
    text = (variant_run / "ground_truth.md").read_text()
    assert "| sequence | cnn+pretrained(finetune) | 4 |" in text
    assert "## Pretrained trunks against the same encoder from scratch" in text
    root_report = (variant_run / "report.md").read_text()
    assert "[sequence-pretrained-frozen](sequence-pretrained-frozen/report.md)" in root_report
    # The table's picture: one forest row per table row, linked from the root report.
    picture = variant_run / "ground_truth.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(ground_truth.png)" in root_report


def test_each_variant_trains_the_sequence_encoders_on_their_windows_trunks(
    variant_run: Path,
) -> None:
    for use in ("frozen", "finetune"):
        sub = variant_run / cli.variant_folder("sequence", use)
        recorded = json.loads((sub / runner.RUN_FILE).read_text())["spec"]
        assert recorded["modes"] == ["cnn"]  # manual has no trunk: its row is the base run's
        assert recorded["config"]["pretrained_variants"] == []  # an ordinary, resumable run
        job = run_job(sub, 0, "cnn")
        result = json.loads((runner.job_dir(sub, job) / runner.RESULT_FILE).read_text())
        pretrained = result["symbols"]["SPY"]["training"]["pretrained"]
        assert pretrained["use"] == use
        assert Path(pretrained["bundle"]) == runner.pretrained_dir(sub, 0, "cnn")
        # Same windows as the scratch run of the market, so the rows are paired.
        base = json.loads((variant_run / "sequence" / runner.RUN_FILE).read_text())
        assert base["windows"] == json.loads((sub / runner.RUN_FILE).read_text())["windows"]
    assert ground_truth.variant_label("cnn", "frozen") == "cnn+pretrained(frozen)"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--market", "sequence"], "apply to the ground-truth comparison"),
        (["--pretrain"], "the base rows must train from scratch"),
        (["--sequence-encoder", "manual"], "hold no pretrainable encoder"),
        (["--pretrained-variants", "thawed"], "unknown use"),
    ],
)
def test_variants_where_they_cannot_apply_are_one_line_errors(
    workspace: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", str(workspace / "tiny.yaml"), "--pretrained-variants", "frozen"]
    assert cli.main([*argv, *extra, "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_print_config_names_the_variant_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--print-config", "--pretrained-variants", "finetune"]) == 0
    out = capsys.readouterr().out
    assert "# and once more per market for pretrained_variants 'finetune'" in out
