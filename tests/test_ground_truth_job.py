"""The default main job holds the ground-truth claims (slow: about 17 min of CPU, 2 workers).

``python -m backend.scripts.run_walk_forward`` with no arguments trains every encoder mode on
the ``null``, ``momentum`` and ``sequence`` markets and writes ``ground_truth.json``. The
claims of issue 9: no mode claims an edge in ``null`` (Holm-adjusted p >= 0.05 against
flat), every mode finds the momentum edge, and a sequence encoder finds the sequence edge
while manual does not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.scripts import run_walk_forward as cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ground_truth")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "EXPERIMENTS_DIR", root / "experiments")
        mp.setattr(cli, "BASELINE_RUNS_DIR", root / "baseline_runs")
        mp.setattr(cli, "CROSS_MODE_REPORT", root / "Docs" / "Transformer_Experiment_Report.md")
        assert cli.main(["--output", str(root / "run"), "--workers", "2"]) == 0
    table: dict = json.loads((Path(root) / "run" / "ground_truth.json").read_text())
    return table


def test_no_mode_claims_an_edge_in_the_null_market(ground_truth):
    assert ground_truth["claims"]["no_edge_claimed_in_null"] is True, ground_truth["rows"]


KNOWN_MISS = (
    "issue 9 open: measured 2026-12-02 at the short preset, cnn misses the momentum edge "
    "(Sharpe +1.16 vs flat, Holm p 1) and no encoder finds the sequence edge; jobs stop at "
    "5-7k of 10k steps with best checkpoints at 1-3k (validation Sharpe SE 2.9). Not strict: "
    "float-level differences between CPUs can flip a verdict; an XPASS is reported"
)


@pytest.mark.xfail(reason=KNOWN_MISS, strict=False)
def test_every_mode_finds_the_momentum_edge(ground_truth):
    assert ground_truth["claims"]["momentum_found_by_every_mode"] is True, ground_truth["rows"]


@pytest.mark.xfail(reason=KNOWN_MISS, strict=False)
def test_a_sequence_encoder_finds_the_sequence_edge_and_manual_does_not(ground_truth):
    claim = ground_truth["claims"]["sequence_found_by_a_sequence_encoder_not_by_manual"]
    assert claim is True, ground_truth["rows"]
