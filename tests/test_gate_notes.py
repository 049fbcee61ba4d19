"""The Transformer gate notes are written from a run's metrics.json and the registry's gates."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from walk_forward_support import main_job_argv


@pytest.fixture(scope="module")
def two_mode_run(walk_forward_workspace: Path) -> Path:
    from backend.scripts import run_walk_forward as cli

    out = walk_forward_workspace / "gate_run"
    extra = ("--output-root", str(walk_forward_workspace))
    code = cli.main(main_job_argv(walk_forward_workspace, out, *extra, modes="manual,transformer"))
    assert code == 0
    return out


def test_notes_quote_the_run_and_the_gates(
    two_mode_run: Path, tmp_path: Path, load_script: Callable[[str], ModuleType]
) -> None:
    script = load_script("generate_gate_meeting_notes")
    out = tmp_path / "notes.md"
    assert script.main(["--run", str(two_mode_run), "--output", str(out)]) == 0
    text = out.read_text()
    metrics = json.loads((two_mode_run / "metrics.json").read_text())
    test = next(
        t
        for t in metrics["tests"]
        if (t["strategy"], t["against"], t["metric"]) == ("transformer", "manual", "sharpe")
    )
    assert f"| transformer vs manual | {test['estimate']:.4g} |" in text
    assert f"{test['p_adjusted']:.4g}" in text
    power = metrics["power"]
    assert f"{power['min_detectable_sharpe_holm']:.4g}" in text
    # The null market has no edge: the gates refuse and the decision is no-go, with reasons.
    assert "**NO-GO**" in text and "the production encoder stays manual" in text
    assert "the transformer does not beat manual" in text
    registry = json.loads((two_mode_run / "registry" / "registry.json").read_text())
    assert set(registry["models"]) == {"gate-manual-SPY", "gate-transformer-SPY"}
    # Re-running on the same evidence gives the same notes (bar the timestamp line).
    again = tmp_path / "again.md"
    assert script.main(["--run", str(two_mode_run), "--output", str(again)]) == 0
    assert text.splitlines()[3:] == again.read_text().splitlines()[3:]


def test_a_run_without_both_modes_is_refused(
    tmp_path: Path, load_script: Callable[[str], ModuleType]
) -> None:
    script = load_script("generate_gate_meeting_notes")
    (tmp_path / "metrics.json").write_text(json.dumps({"modes": ["manual"]}))
    assert script.main(["--run", str(tmp_path), "--output", str(tmp_path / "n.md")]) == 2
