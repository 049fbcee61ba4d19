"""scripts/analyze_training_logs.py on hand-made TensorBoard event files and result files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter


@pytest.fixture(scope="module")
def analyzer(load_script):
    return load_script("analyze_training_logs")


def _write_events(run_dir: Path, series: dict[str, list[tuple[int, float]]]) -> None:
    writer = SummaryWriter(log_dir=str(run_dir))
    for tag, points in series.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


def _result(path: Path, window: int, mode: str, max_dd: float, val: list[list[float]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    payload = {
        "window": window,
        "mode": mode,
        "symbols": {"SPY": {"metrics": {"max_drawdown": max_dd}, "val_history": val}},
    }
    (path / "result.json").write_text(json.dumps(payload))


DOWN = [(100 * (i + 1), float(10 - i)) for i in range(10)]  # 10, 9, ..., 1 at 100..1000
UP = [(100 * (i + 1), float(i)) for i in range(8)]


@pytest.fixture()
def wf_run(tmp_path: Path) -> Path:
    """A walk-forward layout: two jobs, the second with no TensorBoard run at all."""
    run = tmp_path / "run_a"
    (run / "run.json").parent.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    _result(run / "windows" / "w00" / "manual", 0, "manual", 0.05, [[500, 0.2], [1000, 0.4]])
    _result(run / "windows" / "w00" / "lstm", 0, "lstm", 0.12, [[500, -0.1], [1000, -0.3]])
    _write_events(
        run / "tensorboard" / "w00_manual_SPY_1",
        {
            "train/actor_loss": DOWN,
            "train/critic_loss": UP,
            "train/ent_coef": [(100, 0.5), (200, 0.5)],
            "eval/val_sharpe": [(500, 0.3), (1000, 0.9), (1500, 0.1)],
        },
    )
    return run


def test_trend_of_a_straight_decreasing_line(analyzer):
    steps, values = zip(*DOWN, strict=True)
    trend = analyzer.compute_trend(steps, values)
    assert trend.n_points == 10
    assert trend.first_quartile_mean == pytest.approx(9.5)  # 10 points: quarter = 2
    assert trend.last_quartile_mean == pytest.approx(1.5)
    assert trend.slope == pytest.approx(-0.01)  # -1 per 100 steps
    assert trend.decreased is True
    assert trend.change == pytest.approx(-8.0)


def test_trend_increasing_flat_and_degenerate(analyzer):
    up = analyzer.compute_trend(*zip(*UP, strict=True))
    assert up.slope == pytest.approx(0.01) and up.decreased is False
    flat = analyzer.compute_trend([1, 2, 3, 4], [2.0, 2.0, 2.0, 2.0])
    assert flat.slope == pytest.approx(0.0, abs=1e-12) and flat.decreased is False
    single = analyzer.compute_trend([5], [3.0])
    assert single.slope == 0.0 and single.first_quartile_mean == single.last_quartile_mean == 3.0
    assert analyzer.compute_trend([1, 2], [np.nan, np.inf]) is None
    with pytest.raises(ValueError, match="differ in length"):
        analyzer.compute_trend([1, 2], [1.0])


def test_walk_forward_run_rows_and_missing_tags(analyzer, wf_run):
    rows = analyzer.analyze([wf_run])
    by_label = {r.unit.label: r for r in rows}
    assert set(by_label) == {"w00/manual/SPY", "w00/lstm/SPY"}

    manual = by_label["w00/manual/SPY"]
    actor = manual.trends["train/actor_loss"]
    assert actor.decreased and actor.slope == pytest.approx(-0.01, rel=1e-5)
    assert manual.trends["train/critic_loss"].decreased is False
    assert manual.val_sharpe_best == pytest.approx(0.9)  # from TensorBoard, not result.json
    assert manual.val_sharpe_last == pytest.approx(0.1)
    assert manual.unit.max_drawdown == pytest.approx(0.05)
    assert manual.unit.notes == []

    lstm = by_label["w00/lstm/SPY"]
    assert all(t is None for t in lstm.trends.values())
    assert lstm.val_sharpe_best == pytest.approx(-0.1)  # fallback: val_history
    assert lstm.val_sharpe_last == pytest.approx(-0.3)
    assert "no TensorBoard run found" in lstm.unit.notes


def test_cli_writes_markdown_and_plot(analyzer, wf_run, tmp_path, capsys):
    # A second run whose TensorBoard log lacks the critic loss and the entropy coefficient.
    run_b = tmp_path / "run_b"
    _result(run_b / "windows" / "w01" / "manual", 1, "manual", 0.2, [])
    _write_events(run_b / "tensorboard" / "w01_manual_SPY_1", {"train/actor_loss": UP})
    out, png = tmp_path / "summary.md", tmp_path / "losses.png"
    code = analyzer.main([str(wf_run), str(run_b), "--out", str(out), "--plot", str(png)])
    assert code == 0
    text = capsys.readouterr().out
    assert text == out.read_text()
    assert "| run_a | w00/manual/SPY | manual | 9.5 -> 1.5 | -10 | down |" in text
    assert "| run_b | w01/manual/SPY | manual |" in text
    assert "## Per run and mode" in text
    assert "run_b w01/manual/SPY: no train/critic_loss; no train/ent_coef" in text
    assert "no validation Sharpe" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bundle_with_separate_tensorboard_root(analyzer, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    meta = {
        "encoder_mode": "cnn",
        "symbols": ["QQQ"],
        "metrics": {"best_val_sharpe": 1.25, "best_step": 2000, "test": {"max_drawdown": 0.3}},
    }
    (bundle / "metadata.json").write_text(json.dumps(meta))
    tb = tmp_path / "tb"
    _write_events(tb / "QQQ_cnn_1", {"train/critic_loss": UP})
    _write_events(tb / "QQQ_cnn_2", {"train/critic_loss": DOWN})  # the newest run wins
    _write_events(tb / "SPY_cnn_1", {"train/critic_loss": UP})
    (row,) = analyzer.analyze([bundle], tensorboard=tb)
    assert row.unit.label == "QQQ/cnn" and row.unit.tb_dir == tb / "QQQ_cnn_2"
    assert row.trends["train/critic_loss"].decreased is True
    assert row.val_sharpe_best == pytest.approx(1.25)
    assert row.unit.max_drawdown == pytest.approx(0.3)


def test_not_a_directory_is_a_one_line_error(analyzer, tmp_path, capsys):
    assert analyzer.main([str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("error: not a directory")
