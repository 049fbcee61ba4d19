"""The model registry end to end: register, derived versions, gates, promote, rollback, trader.

The RL evidence is a real tiny walk-forward run (two windows, manual encoder, seconds); the
supervised evidence a real tiny lab run. The synthetic market has no edge, so the real
figures fail the "beats" gates, as they must; to exercise a promotion the tests rewrite the
run's test figures in a copy of ``metrics.json`` (what a run that found an edge would hold)
and check that every other gate still reads the real figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from walk_forward_support import main_job_argv

from backend.config.experiment import resolve_experiment
from backend.models import registry as registry_cli
from backend.models.promotion_gates import overlap_days
from backend.models.registry import (
    ModelRegistry,
    PromotionRefused,
    RegistryError,
    SemVer,
    derive_version,
    load_registry_config,
)
from backend.models.registry_config import RegistryConfig
from backend.utils.config_model import ConfigError

BUNDLE = "windows/w01/manual/model_SPY"
EARLIER_BUNDLE = "windows/w00/manual/model_SPY"


@pytest.fixture(scope="module")
def wf_run(walk_forward_workspace: Path) -> Path:
    """A real two-window manual walk-forward run (its metrics.json, bundles, result.json)."""
    from backend.scripts import run_walk_forward as cli

    out = walk_forward_workspace / "registry_run"
    argv = main_job_argv(
        walk_forward_workspace, out, "--output-root", str(walk_forward_workspace), modes="manual"
    )
    code = cli.main(argv)
    assert code == 0
    return out


def _edge_copy(run: Path, dest: Path, *, estimate: float = 0.8, p: float = 0.001) -> Path:
    """A copy of ``run`` whose tests say manual beat both baselines (other figures real)."""
    shutil.copytree(run, dest)
    path = dest / "metrics.json"
    metrics = json.loads(path.read_text())
    for t in metrics["tests"]:
        if t["strategy"] == "manual":
            t["estimate"], t["p_value"], t["p_adjusted"] = estimate, p, p
    path.write_text(json.dumps(metrics))
    return dest


def test_real_run_is_registered_and_its_promotion_refused_with_figures(
    wf_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "reg"
    reg = ModelRegistry(root)
    entry = reg.register(wf_run / BUNDLE, who="tester")
    assert entry["version"] == "1.0.0" and entry["track"] == "rl" and entry["mode"] == "manual"
    assert (root / entry["bundle"] / "model.zip").is_file()  # an immutable copy
    assert entry["registered_by"] == "tester" and entry["registered_at"].endswith("+00:00")
    assert entry["training_ranges"]["fit"][0] <= entry["training_ranges"]["fit"][1]
    real = json.loads((wf_run / "metrics.json").read_text())
    p_flat = next(
        t["p_adjusted"]
        for t in real["tests"]
        if t["strategy"] == "manual" and t["against"] == "flat" and t["metric"] == "sharpe"
    )
    assert p_flat >= 0.05  # no edge on the null market
    with pytest.raises(PromotionRefused, match=r"beats_flat\[SPY\]: sharpe difference") as info:
        reg.promote("rl-SPY", who="tester")
    failed = {r.gate: r for r in info.value.results if not r.passed}
    assert failed["beats_flat[SPY]"].figure == pytest.approx(p_flat)
    assert failed["beats_flat[SPY]"].threshold == 0.05
    assert "needs > 0 and p < 0.05" in str(info.value)
    passed = {r.gate for r in info.value.results if r.passed}
    assert {"p99_latency_ms", "model_size_mb", "no_test_overlap"} <= passed
    assert reg.promoted("rl-SPY") is None
    actions = [e["action"] for e in reg.events()]
    assert actions == ["register", "refuse"]
    # The CLI says the same in one line and exits 1.
    assert registry_cli.main(["--root", str(root), "promote", "rl-SPY"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("refused: ") and "beats_buy_and_hold[SPY]" in err[0]


def test_versions_are_derived_major_minor_patch_and_duplicates_refused(
    wf_run: Path, tmp_path: Path, tiny_live_bundle: Path
) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    assert reg.register(wf_run / BUNDLE)["version"] == "1.0.0"
    with pytest.raises(RegistryError, match="already registered as version 1.0.0"):
        reg.register(wf_run / BUNDLE)
    # Same weights, other evidence: a patch.
    other = _edge_copy(wf_run, tmp_path / "edge")
    patch = reg.register(other / BUNDLE)
    assert (patch["version"], patch["bump"]) == ("1.0.1", "patch")
    assert "other evidence" in patch["bump_reason"]
    # Same weights, edited metadata: a patch.
    edited = tmp_path / "edited"
    shutil.copytree(wf_run / BUNDLE, edited)
    meta = json.loads((edited / "metadata.json").read_text())
    meta["note"] = "relabelled"
    (edited / "metadata.json").write_text(json.dumps(meta))
    assert reg.register(edited, evidence=wf_run)["version"] == "1.0.2"
    # Another window's model: same contract, new weights (retrained): a minor version.
    minor = reg.register(wf_run / EARLIER_BUNDLE)
    assert (minor["version"], minor["bump"]) == ("1.1.0", "minor")
    # Other features (the live fixture's feature set): the contract changed, a major one.
    major = reg.register(tiny_live_bundle, name="rl-SPY", evidence=wf_run)
    assert (major["version"], major["bump"]) == ("2.0.0", "major")
    assert "feature_names" in major["bump_reason"] and "features" in major["bump_reason"]
    # A changed file inside a bundle is refused, not registered.
    broken = tmp_path / "broken"
    shutil.copytree(wf_run / BUNDLE, broken)
    (broken / "model.zip").write_bytes(b"not the model")
    with pytest.raises(RegistryError, match=r"model.zip changed after saving"):
        reg.register(broken, evidence=wf_run)


def test_derive_version_rules_on_entries() -> None:
    def entry(contract: str, weights: str, content: str, metrics: str) -> dict[str, Any]:
        return {
            "contract": {"c": contract},
            "contract_sha256": contract,
            "weights_sha256": weights,
            "content_sha256": content,
            "evidence": {"metrics_sha256": metrics},
        }

    assert derive_version([], entry("a", "w", "x", "m"))[0] == SemVer(1, 0, 0)
    existing = [{**entry("a", "w", "x", "m"), "version": "1.4.2"}]
    assert derive_version(existing, entry("a", "w", "x", "n"))[:2] == (SemVer(1, 4, 3), "patch")
    assert derive_version(existing, entry("a", "w", "y", "m"))[:2] == (SemVer(1, 4, 3), "patch")
    assert derive_version(existing, entry("a", "v", "y", "m"))[:2] == (SemVer(1, 5, 0), "minor")
    assert derive_version(existing, entry("b", "v", "y", "m"))[:2] == (SemVer(2, 0, 0), "major")
    assert SemVer.parse("10.2.3") > SemVer.parse("9.12.30")
    with pytest.raises(RegistryError, match="expected MAJOR.MINOR.PATCH"):
        SemVer.parse("1.2")


def _live_yaml(tmp_path: Path, root: Path) -> Path:
    cfg = tmp_path / "live.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "symbol": "SPY",
                "state_db": str(tmp_path / "state.sqlite"),
                "api_port": 0,
                "registry_root": str(root),
                "feed": {"kind": "synthetic", "start": "2024-10-01", "n_sessions": 1, "seed": 2},
                "supervisor": {"url": None, "deadline_s": 0.5},
            }
        )
    )
    return cfg


def test_promote_rollback_and_the_trader_loads_the_promoted_bundle(
    wf_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from backend.api import live_service
    from backend.models import model_manager

    edge = _edge_copy(wf_run, tmp_path / "edge")
    root = tmp_path / "reg"
    reg = ModelRegistry(root)
    first = reg.register(edge / BUNDLE)
    second = reg.register(edge / EARLIER_BUNDLE)
    loaded: list[Path] = []
    real_load = model_manager.load_bundle

    def recording_load(path: Any, **kwargs: Any) -> Any:
        loaded.append(Path(path))
        return real_load(path, **kwargs)

    monkeypatch.setattr(model_manager, "load_bundle", recording_load)
    cfg = _live_yaml(tmp_path, root)

    # Nothing promoted: the trader refuses in one line.
    assert live_service.main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "no promoted version of 'rl-SPY'" in err and "--bundle" in err

    assert reg.promote("rl-SPY", "1.0.0", who="ops")["version"] == "1.0.0"
    assert live_service.main(["--config", str(cfg)]) == 0
    assert loaded[-1] == root / first["bundle"]

    assert reg.promote("rl-SPY", who="ops")["version"] == "1.1.0"  # latest by default
    with pytest.raises(RegistryError, match="already the promoted version"):
        reg.promote("rl-SPY")
    assert live_service.main(["--config", str(cfg)]) == 0
    assert loaded[-1] == root / second["bundle"]

    assert reg.rollback("rl-SPY", who="ops", reason="drift") == "1.0.0"
    assert live_service.main(["--config", str(cfg)]) == 0
    assert loaded[-1] == root / first["bundle"]
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        reg.rollback("rl-SPY")

    # An explicit bundle still wins over the registry.
    assert live_service.main(["--config", str(cfg), "--bundle", str(wf_run / BUNDLE)]) == 0
    assert loaded[-1] == wf_run / BUNDLE

    events = reg.events()
    assert [e["action"] for e in events] == [
        "register",
        "register",
        "promote",
        "promote",
        "rollback",
    ]
    assert events[-1]["previous"] == "1.1.0" and events[-1]["reason"] == "drift"
    assert all(e["who"] == "ops" for e in events[2:])

    # A stored bundle changed after registration is never loaded.
    stored = root / first["bundle"] / "metadata.json"
    stored.write_text(stored.read_text().replace('"seed"', '"seed_"'))
    capsys.readouterr()
    assert live_service.main(["--config", str(cfg)]) == 2
    assert "changed since it was registered" in capsys.readouterr().err


def test_size_latency_and_overlap_gates_name_figure_and_threshold(
    wf_run: Path, tmp_path: Path
) -> None:
    edge = _edge_copy(wf_run, tmp_path / "edge")
    reg = ModelRegistry(tmp_path / "reg")
    entry = reg.register(edge / BUNDLE)
    strict = RegistryConfig.from_dict({"rl": {"max_size_mb": 0.01, "max_p99_latency_ms": 1e-6}})
    with pytest.raises(PromotionRefused) as info:
        reg.promote("rl-SPY", config=strict)
    message = str(info.value)
    size = entry["size_bytes"] / 1e6
    assert f"model_size_mb: {size:.4g} MB; needs <= 0.01 MB" in message
    latency = entry["evidence"]["latency_p99_ms"]
    assert latency > 0 and f"p99_latency_ms: {latency:.4g} ms; needs <= 1e-06 ms" in message
    assert "beats_flat" not in message  # the edge copy passes those

    # A bundle trained on a range that covers the evidence's test ranges: refused.
    whole = tmp_path / "whole_range"
    shutil.copytree(edge / BUNDLE, whole)
    meta = json.loads((whole / "metadata.json").read_text())
    windows = json.loads((edge / "metrics.json").read_text())["windows"]
    meta["data"]["fit_sessions"] = [windows[0]["fit"][0], windows[-1]["test"][1]]
    del meta["data"]["test_sessions"]
    (whole / "metadata.json").write_text(json.dumps(meta))
    reg.register(whole, evidence=edge)
    with pytest.raises(
        PromotionRefused, match=r"no_test_overlap: fit .* overlaps the test .* of window 0 by 3 day"
    ):
        reg.promote("rl-SPY")
    # Evidence whose window trained on its own test: refused as well.
    leaky = tmp_path / "leaky"
    shutil.copytree(edge, leaky)
    metrics = json.loads((leaky / "metrics.json").read_text())
    metrics["windows"][0]["test"] = [
        metrics["windows"][0]["val"][0],
        metrics["windows"][0]["test"][1],
    ]
    (leaky / "metrics.json").write_text(json.dumps(metrics))
    reg.register(leaky / BUNDLE)
    with pytest.raises(PromotionRefused, match=r"evidence window 0 trains \(val\) on its own test"):
        reg.promote("rl-SPY")
    assert reg.promoted("rl-SPY") is None
    assert overlap_days(["2024-01-01", "2024-01-10"], ["2024-01-10", "2024-02-01"]) == 1
    assert overlap_days(["2024-01-01", "2024-01-09"], ["2024-01-10", "2024-02-01"]) == 0


def test_bundle_without_recorded_training_range_fails_the_overlap_gate(
    wf_run: Path, tmp_path: Path, tiny_live_bundle: Path
) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    entry = reg.register(tiny_live_bundle, evidence=_edge_copy(wf_run, tmp_path / "edge"))
    gate = next(g for g in entry["gates"] if g["gate"] == "no_test_overlap")
    assert not gate["passed"] and "records no training range" in gate["detail"]
    with pytest.raises(PromotionRefused, match="no_test_overlap"):
        reg.promote("rl-SPY")


def test_event_log_is_append_only_and_edits_are_detected(wf_run: Path, tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    reg.register(wf_run / BUNDLE)
    with pytest.raises(PromotionRefused):
        reg.promote("rl-SPY")
    before = reg.events_file.read_text().splitlines()
    reg.register(wf_run / EARLIER_BUNDLE)
    after = reg.events_file.read_text().splitlines()
    assert after[: len(before)] == before and len(after) == len(before) + 1
    # Rewriting history (dropping the refusal) breaks the chain.
    reg.events_file.write_text("\n".join([after[0], after[2]]) + "\n")
    with pytest.raises(RegistryError, match="line 2 does not follow line 1"):
        reg.events()


def test_registry_section_is_in_the_experiment_schema_with_validation(tmp_path: Path) -> None:
    config = resolve_experiment()
    assert config.registry.rl.alpha == 0.05 and config.registry.supervised.max_ece == 0.05
    assert config.registry.rl.max_p99_latency_ms == 100 and config.registry.rl.max_size_mb == 50
    with pytest.raises(ConfigError, match=r"registry\.rl\.alpha"):
        resolve_experiment(overrides={"registry": {"rl": {"alpha": 1.5}}})
    with pytest.raises(ConfigError, match=r"registry\.rl\.must_beat"):
        resolve_experiment(overrides={"registry": {"rl": {"must_beat": ["random"]}}})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"registry": {"root": "elsewhere", "rl": {"alpha": 0.01}}}))
    loaded = load_registry_config(path)
    assert loaded.root == "elsewhere" and loaded.rl.alpha == 0.01
    path.write_text(yaml.safe_dump({"registry": {"rl": {"alpah": 0.01}}}))
    with pytest.raises(ConfigError, match=r"exp.yaml: registry: .*alpah.*unknown key"):
        load_registry_config(path)


def test_cli_list_show_and_events(
    wf_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "reg")
    edge = _edge_copy(wf_run, tmp_path / "edge")
    assert registry_cli.main(["--root", root, "--who", "cli", "register", str(edge / BUNDLE)]) == 0
    assert "registered rl-SPY 1.0.0" in capsys.readouterr().out
    assert registry_cli.main(["--root", root, "--who", "cli", "promote", "rl-SPY"]) == 0
    assert registry_cli.main(["--root", root, "list"]) == 0
    out = capsys.readouterr().out
    assert "rl-SPY" in out and "promoted 1.0.0" in out
    assert registry_cli.main(["--root", root, "show", "rl-SPY"]) == 0
    out = capsys.readouterr().out
    assert "1.0.0 (promoted)" in out and "[pass] beats_flat[SPY]" in out
    assert registry_cli.main(["--root", root, "show", "rl-SPY", "--events"]) == 0
    out = capsys.readouterr().out
    assert "register" in out and "promote" in out and "by cli" in out
    assert registry_cli.main(["--root", root, "show", "nope"]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny supervised lab run (one CNN, direction only)."""
    from backend.scripts import run_supervised

    root = tmp_path_factory.mktemp("lab")
    config = root / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "walk_forward": {"train_sessions": 40, "test_sessions": 4, "max_windows": 1},
                "training": {"epochs": 2, "tensorboard": False},
                "confidence": {"mc_passes": 2},
                "baselines": {"hgb_max_iter": 5},
                "latency_repeats": 10,
            }
        )
    )
    code = run_supervised.main(
        [
            "--market",
            "momentum",
            "--model",
            "cnn",
            "--tasks",
            "direction",
            "--config",
            str(config),
            "--output",
            str(root / "run"),
        ]
    )
    assert code == 0
    return root / "run" / "momentum"


def test_supervised_bundle_gates_read_the_lab_metrics(
    lab_run: Path, wf_run: Path, tmp_path: Path
) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    entry = reg.register(lab_run / "bundles" / "cnn")
    assert entry["track"] == "supervised" and entry["version"] == "1.0.0"
    metrics = json.loads((lab_run / "metrics.json").read_text())
    ece = metrics["tasks"]["direction"]["scores"]["cnn"]["ece"]
    gates = {g["gate"]: g for g in entry["gates"]}
    assert gates["ece"]["figure"] == pytest.approx(ece)
    assert gates["ece"]["passed"] == (ece <= 0.05)
    assert gates["p99_latency_ms"]["figure"] == pytest.approx(metrics["latency_ms"]["cnn"]["p99"])
    best = metrics["tasks"]["direction"]["best_baseline"]
    assert f"gain over {best}" in gates["beats_best_baseline[direction]"]["detail"]
    # An ECE threshold above the figure and an edge in the test: promoted.
    lenient = RegistryConfig.from_dict({"supervised": {"max_ece": max(ece, 0.0) + 0.01}})
    edge = tmp_path / "edge"
    shutil.copytree(lab_run, edge, ignore=shutil.ignore_patterns("data"))
    doc = json.loads((edge / "metrics.json").read_text())
    for row in doc["tasks"]["direction"]["tests"]:
        row["mean_difference"], row["p_holm"] = 0.05, 0.001
    (edge / "metrics.json").write_text(json.dumps(doc))
    reg.register(edge / "bundles" / "cnn")
    assert reg.promote("supervised-SPY", config=lenient)["version"] == "1.0.1"
    strict = RegistryConfig.from_dict({"supervised": {"max_ece": ece / 2}})
    with pytest.raises(PromotionRefused, match=rf"ece: {ece:.4g}; needs <= {ece / 2:g}"):
        reg.promote("supervised-SPY", "1.0.0", config=strict)
    # An RL bundle cannot join a supervised name.
    with pytest.raises(RegistryError, match="holds supervised bundles"):
        reg.register(wf_run / BUNDLE, name="supervised-SPY")
