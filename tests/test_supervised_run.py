"""The supervised lab end to end: CLI on the embedded market, report, bundles, attention maps."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch as th
import yaml

from backend.scripts import run_supervised
from backend.supervised.bundle import load_bundle

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "walk_forward": {"train_sessions": 40, "test_sessions": 4, "max_windows": 1},
    "training": {"epochs": 2, "tensorboard": True},
    "confidence": {"mc_passes": 2},
    "baselines": {"hgb_max_iter": 5},
    "latency_repeats": 10,
}


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lab")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    before = _git_status()
    code = run_supervised.main(
        ["--market", "momentum", "--config", str(config), "--output", str(root / "run")]
    )
    assert code == 0
    assert _git_status() == before  # writes only under --output
    return root / "run"


def test_run_writes_a_report_with_every_model_baseline_and_test(tiny_run: Path, capsys) -> None:
    out = tiny_run / "momentum"
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    names = {
        "majority",
        "persistence",
        "logreg",
        "hgb",
        "lstm",
        "cnn",
        "transformer",
        "ens_mean",
        "ens_weighted",
        "ens_stack",
    }
    for task in ("direction", "volatility", "regime"):
        block = metrics["tasks"][task]
        assert set(block["scores"]) == names
        assert {row["model"] for row in block["tests"]} == names - {
            "majority",
            "persistence",
            "logreg",
            "hgb",
        }
        assert all(
            0.0 <= row["p_holm"] <= 1.0 for row in block["tests"] if row["p_holm"] is not None
        )
        for net in ("lstm", "cnn", "transformer"):
            assert block["calibration"][net]["ece_before"] is not None
            assert len(block["coverage"][net]["softmax"]) == 10
    assert metrics["extra"]["oracle"]["direction"] > 1 / 3
    assert set(metrics["latency_ms"]) == {"lstm", "cnn", "transformer", "ensemble"}
    assert len(metrics["attention_by_age"]) == 2  # tiny transformer: 2 layers
    assert metrics["trading"]["metrics"]["lstm"]["n_trades"] >= 0
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "p Holm" in text and "ECE after temperature" in text and "Coverage vs accuracy" in text
    for png in (
        "reliability_direction.png",
        "coverage_regime.png",
        "attention_by_age.png",
        "equity_direction.png",
    ):
        assert (out / "plots" / png).stat().st_size > 1000
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))


def test_bundles_round_trip_and_feed_the_attention_script(
    tiny_run: Path, tmp_path: Path, load_script
) -> None:
    bundle = load_bundle(tiny_run / "momentum" / "bundles" / "transformer")
    assert bundle.metadata["data_ranges"]["SPY"]["fit"]["sha256"]
    assert set(bundle.calibration["temperatures"]) == {"direction", "volatility", "regime"}
    state = th.load(
        tiny_run / "momentum" / "bundles" / "transformer" / "model.pt", weights_only=True
    )
    for key, value in bundle.model.state_dict().items():
        assert th.equal(value, state[key])
    date = bundle.metadata["dates"]["test"][0]
    script = load_script("visualize_attention")
    assert (
        script.main(
            [
                "--model",
                str(tiny_run / "momentum"),
                "--symbol",
                "SPY",
                "--date",
                date,
                "--output",
                str(tmp_path / "att"),
            ]
        )
        == 0
    )
    pngs = sorted(p.name for p in (tmp_path / "att").glob("*.png"))
    assert "attention_L0_H0.png" in pngs and "attention_L1_H1.png" in pngs
    with pytest.raises(SystemExit, match="no session 1999-01-04"):
        script.main(
            [
                "--model",
                str(tiny_run / "momentum"),
                "--date",
                "1999-01-04",
                "--output",
                str(tmp_path / "att2"),
            ]
        )


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  epochz: 3\n", encoding="utf-8")
    assert run_supervised.main(["--config", str(bad), "--print-config"]) == 2
    assert "training.epochz: Extra inputs are not permitted" in capsys.readouterr().err
    assert run_supervised.main(["--model", "gru"]) == 2
    assert "unknown ['gru']" in capsys.readouterr().err
    assert run_supervised.main(["--print-config", "--model", "cnn", "--mode", "long"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["models"] == ["cnn"] and printed["ensemble"] is False
    assert printed["sequence_length"] == 64
    np.testing.assert_equal(printed["labels"]["horizon"], 4)


def test_pooled_symbols_train_one_model_with_instrument_embeddings(
    tmp_path: Path, load_script
) -> None:
    """``--symbols SPY,QQQ``: one pooled model per network, the symbol id an input of the
    trunk, the table saved in the bundle; the multi-scale CNN is a config option."""
    config = tmp_path / "pooled.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **TINY,
                "training": {"epochs": 1, "tensorboard": False},
                "encoders": {"cnn": {"kernel_sizes": [2, 3, 5]}},
            }
        ),
        encoding="utf-8",
    )
    out = tmp_path / "run"
    code = run_supervised.main(
        [
            "--market",
            "momentum",
            "--symbols",
            "SPY,QQQ",
            "--model",
            "cnn,transformer",
            "--tasks",
            "direction",
            "--config",
            str(config),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads((out / "momentum" / "metrics.json").read_text(encoding="utf-8"))
    assert {row["symbol"] for row in metrics["class_balance"]} == {"SPY", "QQQ"}
    for mode in ("cnn", "transformer"):
        bundle = load_bundle(out / "momentum" / "bundles" / mode)
        assert bundle.config["encoder"]["instruments"] == ["SPY", "QQQ"]
        assert set(bundle.normalizers) == {"SPY", "QQQ"}
        model = bundle.model
        assert model.trunk.instrument_embedding is not None
        window = th.randn(1, model.trunk.dims.window, model.trunk.dims.n_features)
        mask = th.ones(1, model.trunk.dims.window)
        with th.no_grad():
            spy = model(window, mask, th.tensor([0.0]))["direction"]
            qqq = model(window, mask, th.tensor([1.0]))["direction"]
        assert (spy - qqq).abs().max() > 1e-6
        with pytest.raises(ValueError, match="needs the instrument id"):
            model(window, mask)
    cnn = load_bundle(out / "momentum" / "bundles" / "cnn")
    assert cnn.config["encoder"]["kernel_sizes"] == [2, 3, 5]
    date = load_bundle(out / "momentum" / "bundles" / "transformer").metadata["dates"]["test"][0]
    script = load_script("visualize_attention")
    args = ["--model", str(out / "momentum"), "--symbol", "QQQ", "--date", date]
    assert script.main([*args, "--output", str(tmp_path / "att")]) == 0
