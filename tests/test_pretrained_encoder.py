"""Pretrained supervised trunks in the RL agent (issue 13): pretrain, frozen, fine-tune, refusals.

One ``--pretrain`` main-job run on the tiny synthetic store (2 windows, manual + transformer)
is shared by the tests; the direct tests reuse its window-0 trunk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch as th
import yaml
from walk_forward_support import main_job_argv, run_job

from backend.config.experiment import ExperimentConfig, resolve_experiment
from backend.data_download.dataset import SymbolDataset, bar_range
from backend.environments.intraday_env import IntradayTradingEnv
from backend.models.model_manager import load_bundle
from backend.models.pretrained import build_trunk, load_trunk_bundle, trunk_embeddings
from backend.scripts import run_walk_forward as cli
from backend.training import walk_forward_runner as runner
from backend.training.train import (
    build_model,
    compose_frozen_model,
    frozen_fast_path,
    train_on_range,
)


@pytest.fixture(scope="module")
def workspace(walk_forward_workspace):
    config = yaml.safe_load((walk_forward_workspace / "tiny.yaml").read_text())
    config["training"]["pretrained"] = {"pretrain_epochs": 2}
    config["training"]["tensorboard_log"] = None
    config["walk_forward"]["train_sessions"] = 18  # enough fit bars for the label thresholds
    (walk_forward_workspace / "pretrain.yaml").write_text(yaml.safe_dump(config))
    return walk_forward_workspace


def _argv(ws: Path, out: Path, *extra: str) -> list[str]:
    return main_job_argv(ws, out, *extra, config="pretrain.yaml", modes="manual,transformer")


@pytest.fixture(scope="module")
def pretrain_run(workspace) -> Path:
    out = workspace / "pretrain_run"
    assert cli.main(_argv(workspace, out, "--pretrain")) == 0
    return out


def _experiment(ws: Path, **training) -> ExperimentConfig:
    base = yaml.safe_load((ws / "pretrain.yaml").read_text())
    base["training"] = {**base["training"], **training}
    base["data"] = {"data_dir": str(ws / "store")}
    return resolve_experiment("short", None, base, default_preset="short").for_mode("transformer")


def _sessions(job: runner.Job) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    return {
        k: (pd.Timestamp(v[0]), pd.Timestamp(v[1]))
        for k, v in vars(job).items()
        if k in ("fit", "val", "test")
    }


def test_pretrain_reads_only_each_windows_fit_range(pretrain_run) -> None:
    for window in (0, 1):
        job = run_job(pretrain_run, window, "transformer")
        trunk = load_trunk_bundle(runner.pretrained_dir(pretrain_run, window, "transformer"))
        first, last = trunk.trained_span()
        assert pd.Timestamp(job.fit[0]) <= first <= last <= pd.Timestamp(job.fit[1])
        result = json.loads((runner.job_dir(pretrain_run, job) / runner.RESULT_FILE).read_text())
        pretrained = result["symbols"]["SPY"]["training"]["pretrained"]
        assert pretrained["use"] == "frozen"
        assert Path(pretrained["bundle"]) == runner.pretrained_dir(
            pretrain_run, window, "transformer"
        )
        # The agent's normalizer is the trunk's: both fitted on the window's fit range.
        agent = load_bundle(runner.job_dir(pretrain_run, job) / "model_SPY")
        assert agent.normalizer.to_dict() == trunk.normalizers["SPY"].to_dict()
        # Frozen: the trained agent's encoder is the trunk, weight for weight.
        state = agent.model.actor.features_extractor.state_dict()
        for key, value in trunk.state.items():
            if not key.startswith("account_proj"):
                assert th.equal(state[key], value), key
        manual = json.loads(
            (
                runner.job_dir(pretrain_run, run_job(pretrain_run, window, "manual"))
                / runner.RESULT_FILE
            ).read_text()
        )
        assert manual["symbols"]["SPY"]["training"]["pretrained"] is None
    assert not (pretrain_run / "pretrained" / "w00" / "manual").exists()


def test_frozen_fast_path_equals_the_trunk_inside_the_policy(workspace, pretrain_run) -> None:
    job = run_job(pretrain_run, 0, "transformer")
    trunk = load_trunk_bundle(runner.pretrained_dir(pretrain_run, 0, "transformer"))
    config = _experiment(workspace).model_copy(update={"encoder": trunk.encoder_config("SPY")})
    ds = SymbolDataset.load("SPY", workspace / "store", config.features)
    spans = _sessions(job)
    normalizer = ds.fit_normalizer(*spans["fit"])
    arrays = ds.arrays(normalizer)
    fit = bar_range(arrays, *ds.session_bounds(*spans["fit"]))
    fast_arrays, extractor = frozen_fast_path(trunk, arrays, config.env, "SPY", config.training)
    fast_cfg = config.env.model_copy(update={"use_sequence_encoder": False})
    fast_env = IntradayTradingEnv(fast_arrays, fast_cfg, fit, reward=config.reward)
    seq_env = IntradayTradingEnv(arrays, config.env, fit, reward=config.reward)
    th.manual_seed(0)
    fast = build_model(fast_env, config, tensorboard_log=None, extractor=extractor)
    with th.no_grad():  # a policy that is not at its init, so the comparison means something
        for p in fast.policy.parameters():
            p.add_(0.1 * th.randn_like(p))
    full = compose_frozen_model(fast, seq_env, config, trunk)
    encoder = build_trunk(trunk, seq_env.observation_space, "SPY").eval()
    bars = np.arange(fit[0], fit[1], 7)
    for t in bars:
        seq_obs = seq_env._observation(int(t), 0.5, 0.001)
        fast_obs = fast_env._observation(int(t), 0.5, 0.001)
        batch = {k: th.as_tensor(v)[None] for k, v in seq_obs.items()}
        with th.no_grad():
            embedding = encoder.head(encoder._encode(batch))[0].numpy()
        np.testing.assert_allclose(fast_obs["features"], embedding, atol=1e-5)
        a_fast, _ = fast.predict(fast_obs, deterministic=True)
        a_full, _ = full.predict(seq_obs, deterministic=True)
        np.testing.assert_allclose(a_fast, a_full, atol=1e-5)
    # The embeddings are computed once for every bar; batching does not change them.
    small = trunk_embeddings(
        encoder,
        arrays.features,
        sequence_length=config.env.sequence_length,
        feature_clip=config.env.feature_clip,
        batch_size=17,
    )
    np.testing.assert_allclose(small, fast_arrays.features, atol=1e-5)
    # Encoding only the bars a training run observes gives those rows unchanged.
    lo, hi = max(fit[0] - 1, 1), fit[1]
    part = trunk_embeddings(
        encoder,
        arrays.features,
        sequence_length=config.env.sequence_length,
        feature_clip=config.env.feature_clip,
        batch_size=17,
        rows=(lo, hi),
    )
    np.testing.assert_allclose(part[lo:hi], fast_arrays.features[lo:hi], atol=1e-5)
    assert not part[:lo].any() and not part[hi:].any()
    with pytest.raises(ValueError, match="rows"):
        trunk_embeddings(encoder, arrays.features, sequence_length=4, feature_clip=5.0, rows=(5, 2))
    assert not any(p.requires_grad for p in full.actor.features_extractor.body.parameters())


def test_finetune_trains_the_trunk_with_its_own_learning_rate_and_decay(
    workspace, pretrain_run
) -> None:
    job = run_job(pretrain_run, 0, "transformer")
    bundle = runner.pretrained_dir(pretrain_run, 0, "transformer")
    config = _experiment(
        workspace,
        pretrained={
            "bundle": str(bundle),
            "use": "finetune",
            "learning_rate": 1e-3,
            "weight_decay": 0.05,
        },
    )
    ds = SymbolDataset.load("SPY", workspace / "store", config.features)
    spans = _sessions(job)
    result = train_on_range(ds, spans["fit"], spans["val"], config, unseen={"test": spans["test"]})
    model = result.model
    # The encoder group lives in whichever optimiser owns the extractor (the critic's under
    # the short preset's shared, critic-trained encoder).
    groups = {
        g["name"]: g
        for optimizer in (model.actor.optimizer, model.critic.optimizer)
        for g in optimizer.param_groups
    }
    assert groups["encoder"]["lr"] == pytest.approx(1e-3)
    assert groups["encoder"]["weight_decay"] == 0.05
    assert groups["heads"]["lr"] == pytest.approx(config.training.learning_rate)
    trunk = load_trunk_bundle(bundle)
    state = model.critic.features_extractor.state_dict()
    moved = [k for k, v in trunk.state.items() if not th.equal(state[k], v)]
    assert moved, "fine-tuning left every trunk weight unchanged"
    assert result.metrics["pretrained"]["use"] == "finetune"


def test_a_mismatched_bundle_is_refused_with_every_difference(workspace, pretrain_run) -> None:
    job = run_job(pretrain_run, 0, "transformer")
    spans = _sessions(job)
    bundle = str(runner.pretrained_dir(pretrain_run, 1, "transformer"))  # window 1's trunk
    config = _experiment(workspace, pretrained={"bundle": bundle})
    config = config.model_copy(update={"env": config.env.model_copy(update={"sequence_length": 8})})
    ds = SymbolDataset.load("SPY", workspace / "store", config.features.replace(use_vix=False))
    with pytest.raises(ValueError, match="refused") as info:
        train_on_range(ds, spans["fit"], spans["val"], config, unseen={"test": spans["test"]})
    message = str(info.value)
    assert "window length: the trunk reads T=" in message
    assert "feature names: expected" in message and "missing" in message
    assert "normalizer of SPY: the trunk's was fitted on" in message
    # A trunk that learned from the window's test sessions is refused for it.
    own = str(runner.pretrained_dir(pretrain_run, 0, "transformer"))
    config = _experiment(workspace, pretrained={"bundle": own})
    ds = SymbolDataset.load("SPY", workspace / "store", config.features)
    trunk_first, _ = load_trunk_bundle(own).trained_span()
    with pytest.raises(ValueError, match="overlaps this window's test range"):
        train_on_range(
            ds, spans["fit"], spans["val"], config, unseen={"test": (trunk_first, trunk_first)}
        )


def test_cli_refuses_a_bundle_before_writing_anything(workspace, pretrain_run, capsys) -> None:
    other = runner.pretrained_dir(pretrain_run, 1, "transformer")
    out = workspace / "refused"
    code = cli.main(_argv(workspace, out, "--pretrained-encoder", str(other)))
    err = capsys.readouterr().err
    assert code == 2
    assert "--pretrained-encoder, job w00/transformer:" in err and "normalizer of SPY" in err
    assert len(err.strip().splitlines()) == 1
    assert not (out / "run.json").exists()
    assert cli.main(_argv(workspace, out, "--pretrain", "--pretrained-encoder", str(other))) == 2
    assert "give one of them" in capsys.readouterr().err
    assert (
        cli.main(
            _argv(workspace, out, "--pretrain", "--pretrained-use", "finetune", "--print-config")
        )
        == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["training"]["pretrained"]["pretrain"] is True
    assert printed["training"]["pretrained"]["use"] == "finetune"


def _retarget(bundle: Path, dest: Path, trunk: Path) -> Path:
    """A copy of an RL bundle whose ``training.pretrained.bundle`` names ``trunk``."""
    from backend.models.registry_evidence import sha256_file

    shutil.copytree(bundle, dest)
    config = yaml.safe_load((dest / "config.yaml").read_text())
    config["training"]["pretrained"]["bundle"] = str(trunk)
    (dest / "config.yaml").write_text(yaml.safe_dump(config))
    meta = json.loads((dest / "metadata.json").read_text())
    meta["files"]["config.yaml"] = sha256_file(dest / "config.yaml")
    (dest / "metadata.json").write_text(json.dumps(meta))
    return dest


def test_registry_overlap_gate_reads_the_pretrained_trunks_data_range(
    pretrain_run, tmp_path
) -> None:
    from backend.models.registry import ModelRegistry, PromotionRefused

    job = run_job(pretrain_run, 0, "transformer")
    bundle = runner.job_dir(pretrain_run, job) / "model_SPY"
    trunk_dir = runner.pretrained_dir(pretrain_run, 0, "transformer")
    reg = ModelRegistry(tmp_path / "reg")
    entry = reg.register(bundle, evidence=pretrain_run)
    trunk = load_trunk_bundle(trunk_dir)
    assert entry["training_ranges"]["pretrain_fit"] == list(trunk.dates["fit"])
    gate = next(g for g in entry["gates"] if g["gate"] == "no_test_overlap")
    assert gate["passed"], gate["detail"]  # trained on window 0's fit range only

    # The same policy, but its trunk was early-stopped on the first session of window 1's test.
    leaky_trunk = tmp_path / "leaky_trunk"
    shutil.copytree(trunk_dir, leaky_trunk)
    meta = json.loads((leaky_trunk / "metadata.json").read_text())
    test_1 = run_job(pretrain_run, 1, "transformer").test
    meta["dates"]["val"] = [test_1[0], test_1[0]]
    (leaky_trunk / "metadata.json").write_text(json.dumps(meta))
    leaky = reg.register(_retarget(bundle, tmp_path / "leaky", leaky_trunk), evidence=pretrain_run)
    gate = next(g for g in leaky["gates"] if g["gate"] == "no_test_overlap")
    assert not gate["passed"] and gate["figure"] == 1.0 and gate["threshold"] == 0.0
    with pytest.raises(
        PromotionRefused,
        match=r"no_test_overlap: pretrain_val .* \(pretrained trunk .*leaky_trunk\) overlaps "
        r"the test .* of window 1 by 1 day\(s\); needs 0 overlapping days",
    ):
        reg.promote("rl-SPY", leaky["version"])

    # A trunk that cannot be read: its range is unknown, so the gate fails too.
    lost = reg.register(
        _retarget(bundle, tmp_path / "lost", tmp_path / "gone"), evidence=pretrain_run
    )
    gate = next(g for g in lost["gates"] if g["gate"] == "no_test_overlap")
    assert not gate["passed"] and "pretrained trunk's data range is unknown" in gate["detail"]
    assert reg.promoted("rl-SPY") is None
