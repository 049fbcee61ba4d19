"""Model bundles: exact round trips, atomic overwrites, and clear errors on mismatches."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
import yaml

from backend.config.experiment import ExperimentConfig, load_experiment, resolve_experiment
from backend.config.training_config import FeatureConfig, TrainingSettings
from backend.data_download.dataset import SymbolDataset, bar_range
from backend.data_download.loader import join_vix_asof
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)
from backend.environments.intraday_env import IntradayTradingEnv
from backend.models import model_manager
from backend.models.model_manager import (
    BUNDLE_FORMAT_VERSION,
    ModelBundle,
    load_bundle,
    load_encoder_state,
    save_bundle,
)
from backend.training.train import TrainResult, split_sessions, train_on_range
from backend.utils.provenance import data_range

th.set_num_threads(1)

MODES = ["manual", "transformer"]
NORMALIZER = "normalizer_SPY_SAC_INTRADAY_DSR.json"


@pytest.fixture(scope="module")
def dataset() -> SymbolDataset:
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=24, seed=7)
    )
    market = join_vix_asof(frames["SPY"], frames["VIX"])
    return SymbolDataset.from_market("SPY", market, FeatureConfig())


ENCODERS: dict[str, dict[str, Any]] = {
    "manual": {"embedding_dim": 8, "hidden_dims": [16]},
    "transformer": {"embedding_dim": 8, "d_model": 8, "n_layers": 1, "n_heads": 2},
}


def _config(mode: str, **training: Any) -> ExperimentConfig:
    values: dict[str, Any] = {
        "net_arch": [16],
        "total_timesteps": 200,
        "batch_size": 16,
        "buffer_size": 1_000,
        "learning_starts": 50,
        "eval_every_steps": 200,
        "device": "cpu",
        "seed": 5,
        "tensorboard_log": None,
    }
    values.update(training)
    return resolve_experiment(
        overrides={
            "env": {"sequence_length": 8, "episode_sessions": 2},
            "encoder": {"name": mode, **ENCODERS[mode]},
            "training": values,
        }
    )


@dataclasses.dataclass
class Trained:
    config: ExperimentConfig
    result: TrainResult
    fit: tuple[Any, Any]
    val: tuple[Any, Any]


@pytest.fixture(scope="module", params=MODES)
def trained(request: pytest.FixtureRequest, dataset: SymbolDataset) -> Trained:
    config = _config(request.param)
    fit, val = split_sessions(dataset.sessions, val_fraction=0.15, gap_sessions=1)
    result = train_on_range(dataset, fit, val, config)
    return Trained(config, result, fit, val)


def _metadata(dataset: SymbolDataset, t: Trained, **extra: Any) -> dict[str, Any]:
    return {
        "symbols": [dataset.symbol],
        "seed": t.config.training.seed,
        "data": {
            **data_range(dataset.market),
            "fit": data_range(dataset.market, *dataset.session_bounds(*t.fit)),
            "val": data_range(dataset.market, *dataset.session_bounds(*t.val)),
        },
        "train_time_s": t.result.metrics["train_time_s"],
        "metrics": t.result.metrics,
        **extra,
    }


def _save(path: Path, dataset: SymbolDataset, t: Trained, **extra: Any) -> Path:
    return save_bundle(
        path,
        t.result.model,
        t.result.normalizer,
        config=t.result.config,
        metadata=_metadata(dataset, t, **extra),
    )


def _observations(bundle: ModelBundle, dataset: SymbolDataset, n: int) -> list[dict[str, Any]]:
    """``n`` observations of a sequential walk over the data, driven by the bundle's model."""
    arrays = dataset.arrays(bundle.normalizer)
    env = bundle.make_env(arrays, None, episode_sessions=0, random_start=False)
    obs, _ = env.reset(seed=0)
    out = []
    for _ in range(n):
        out.append(obs)
        action, _ = bundle.model.predict(obs, deterministic=True)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    return out


def test_round_trip_is_exact(dataset: SymbolDataset, trained: Trained, tmp_path: Path) -> None:
    path = _save(tmp_path / "bundle", dataset, trained)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no temporary left over
    names = {p.name for p in path.iterdir()}
    assert names == {
        "model.zip",
        "encoder_state_dict.pt",
        NORMALIZER,
        "config.yaml",
        "metadata.json",
    }
    loaded = load_bundle(path)
    original = trained.result.model

    # Same parameters, bit for bit.
    saved_state = original.policy.state_dict()
    for key, value in loaded.model.policy.state_dict().items():
        assert th.equal(value, saved_state[key]), key

    # Same deterministic actions on a few hundred observations of a real walk.
    obs_list = _observations(loaded, dataset, 300)
    for obs in obs_list:
        before, _ = original.predict(obs, deterministic=True)
        after, _ = loaded.model.predict(obs, deterministic=True)
        assert np.array_equal(before, after)
    batch = {k: np.stack([o[k] for o in obs_list]) for k in obs_list[0]}
    assert np.array_equal(
        original.predict(batch, deterministic=True)[0],
        loaded.model.predict(batch, deterministic=True)[0],
    )

    # Same normalizer: identical transform, statistics equal.
    norm, new = trained.result.normalizer, loaded.normalizer
    assert new.feature_names == norm.feature_names
    assert np.array_equal(
        new.transform(dataset.features), norm.transform(dataset.features), equal_nan=True
    )
    for name in norm.feature_names:
        a, b = norm.stats[name], new.stats[name]
        assert np.allclose([a.center, a.scale], [b.center, b.scale], rtol=0, atol=0)

    # Same configs.
    assert load_experiment(path / "config.yaml") == trained.result.config == trained.config
    assert loaded.config_data == trained.config.model_dump(mode="json")
    assert loaded.encoder_config == trained.config.encoder
    assert loaded.reward_config == trained.config.reward
    assert loaded.env_config == trained.result.env_config
    assert loaded.feature_config == dataset.feature_config

    # Metadata: what the bundle is and how to feed it.
    meta = loaded.metadata
    assert meta["format_version"] == BUNDLE_FORMAT_VERSION
    assert meta["agent"] == "SAC_INTRADAY_DSR" and meta["symbols"] == ["SPY"]
    assert meta["feature_names"] == dataset.feature_names
    sequence = trained.config.encoder.name == "transformer"
    assert meta["observation"] == {
        "mode": "sequence" if sequence else "flat",
        "sequence_length": 8 if sequence else None,
        "n_features": len(dataset.feature_names),
        "feature_clip": trained.config.env.feature_clip,
        "account_dim": 3,
    }
    assert meta["data"]["sha256"] == data_range(dataset.market)["sha256"]
    assert meta["seed"] == 5 and meta["metrics"]["steps_done"] == 200
    assert set(meta["provenance"]) >= {"git_commit", "packages", "timestamp_utc"}
    assert set(meta["files"]) == names - {"metadata.json"}

    # config.yaml is the experiment's model_dump: it loads back equal.
    config = yaml.safe_load((path / "config.yaml").read_text())
    assert config == trained.config.model_dump(mode="json")
    assert load_experiment(path / "config.yaml") == trained.config

    # Encoder weights for warm starts: actor's and (not shared) critic's extractor.
    state = load_encoder_state(path)
    assert state["encoder_mode"] == trained.config.encoder.name and not state["shared"]
    assert state["encoder_config"] == trained.config.encoder.to_dict()
    for part in ("actor", "critic"):
        module = getattr(original.policy, part).features_extractor.state_dict()
        assert state[part].keys() == module.keys()
        assert all(th.equal(state[part][k], module[k]) for k in module)


def test_overwrite_replaces_the_bundle(
    dataset: SymbolDataset, trained: Trained, tmp_path: Path
) -> None:
    path = _save(tmp_path / "b", dataset, trained, run="first")
    _save(path, dataset, trained, run="second")
    assert load_bundle(path).metadata["run"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_failure_mid_save_keeps_the_previous_bundle(
    dataset: SymbolDataset, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(tmp_path / "b", dataset, trained, run="old")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    real_write = model_manager._write_text

    def failing_write(target: Path, text: str) -> None:
        if target.name == "config.yaml":  # model.zip, encoder and normalizer already written
            raise OSError("disk full")
        real_write(target, text)

    monkeypatch.setattr(model_manager, "_write_text", failing_write)
    with pytest.raises(OSError, match="disk full"):
        _save(path, dataset, trained, run="new")
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert load_bundle(path).metadata["run"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_failure_at_the_swap_restores_the_previous_bundle(
    dataset: SymbolDataset, trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(tmp_path / "b", dataset, trained, run="old")
    real_replace = os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        if Path(src).name.startswith(".b.tmp-") and Path(dst) == path:
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(model_manager.os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        _save(path, dataset, trained, run="new")
    monkeypatch.undo()
    assert load_bundle(path).metadata["run"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_a_crash_between_the_renames_points_to_the_old_bundle(
    dataset: SymbolDataset, trained: Trained, tmp_path: Path
) -> None:
    path = _save(tmp_path / "b", dataset, trained)
    aside = tmp_path / ".b.old-abc123"
    path.rename(aside)  # the state a crash after the first rename leaves
    with pytest.raises(FileNotFoundError, match=r"previous bundle is at .*\.b\.old-abc123"):
        load_bundle(path)


def test_refuses_to_replace_what_is_not_a_bundle(
    dataset: SymbolDataset, trained: Trained, tmp_path: Path
) -> None:
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(FileExistsError, match="not a model bundle"):
        _save(precious, dataset, trained)
    assert (precious / "thesis.txt").read_text() == "do not delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


@pytest.fixture(scope="module")
def manual_bundle(
    dataset: SymbolDataset, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Trained]:
    config = _config("manual", total_timesteps=60, learning_starts=30, eval_every_steps=60)
    fit, val = split_sessions(dataset.sessions, val_fraction=0.15, gap_sessions=1)
    t = Trained(config, train_on_range(dataset, fit, val, config), fit, val)
    return _save(tmp_path_factory.mktemp("m") / "bundle", dataset, t), t


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


@pytest.mark.parametrize(
    "name", ["model.zip", "encoder_state_dict.pt", "config.yaml", NORMALIZER, "metadata.json"]
)
def test_missing_file_is_named(
    manual_bundle: tuple[Path, Trained], tmp_path: Path, name: str
) -> None:
    path = _copy(manual_bundle[0], tmp_path / "b")
    (path / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"missing .*{name}"):
        load_bundle(path)


def test_format_version_mismatch(manual_bundle: tuple[Path, Trained], tmp_path: Path) -> None:
    path = _copy(manual_bundle[0], tmp_path / "b")
    meta = json.loads((path / "metadata.json").read_text())
    meta["format_version"] = BUNDLE_FORMAT_VERSION + 1
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"format_version is 2, this code reads version 1"):
        load_bundle(path)


def test_edited_file_is_detected(manual_bundle: tuple[Path, Trained], tmp_path: Path) -> None:
    path = _copy(manual_bundle[0], tmp_path / "b")
    with (path / "config.yaml").open("a") as handle:
        handle.write("# edited\n")
    with pytest.raises(ValueError, match="config.yaml changed after saving: sha256 expected"):
        load_bundle(path)


def test_feature_mismatch_names_what_differs(manual_bundle: tuple[Path, Trained]) -> None:
    bundle = load_bundle(manual_bundle[0])
    names = bundle.feature_names
    swapped = [names[1], names[0], *names[2:]]
    with pytest.raises(
        ValueError, match=rf"feature order: first difference at position 0: expected '{names[0]}'"
    ):
        bundle.check_compatible(feature_names=swapped)
    with pytest.raises(ValueError, match=rf"missing \['{names[-1]}'\], unexpected \['extra'\]"):
        bundle.check_compatible(feature_names=[*names[:-1], "extra"])
    bundle.check_compatible(feature_names=names, env_config=bundle.env_config)


def test_layout_mismatch_names_what_differs(
    manual_bundle: tuple[Path, Trained], dataset: SymbolDataset
) -> None:
    bundle = load_bundle(manual_bundle[0])
    seq = bundle.env_config.replace(use_sequence_encoder=True)
    with pytest.raises(ValueError, match="observation mode: expected 'flat', got 'sequence'"):
        bundle.check_compatible(env_config=seq)
    arrays = dataset.arrays(bundle.normalizer)
    with pytest.raises(ValueError, match="observation mode: expected 'flat', got 'sequence'"):
        bundle.make_env(arrays, use_sequence_encoder=True)
    with pytest.raises(
        ValueError, match=r"feature_clip \(observation bounds\): expected 10.0, got 3.0"
    ):
        bundle.make_env(arrays, feature_clip=3.0)
    other = IntradayTradingEnv(arrays, seq)
    with pytest.raises(ValueError, match="observation mode: expected 'flat', got 'sequence'"):
        bundle.check_compatible(other.observation_space)
    with pytest.raises(TypeError, match="needs observation_space"):
        bundle.check_compatible()
    env = bundle.make_env(arrays, bar_range(arrays, *dataset.session_bounds(*manual_bundle[1].val)))
    bundle.check_compatible(env.observation_space)


def test_sequence_length_mismatch(dataset: SymbolDataset, trained: Trained, tmp_path: Path) -> None:
    if trained.config.encoder.name != "transformer":
        pytest.skip("sequence layout only")
    bundle = load_bundle(_save(tmp_path / "b", dataset, trained))
    arrays = dataset.arrays(bundle.normalizer)
    with pytest.raises(ValueError, match="sequence_length: expected 8, got 12"):
        bundle.make_env(arrays, sequence_length=12)
    flat = IntradayTradingEnv(arrays, bundle.env_config.replace(use_sequence_encoder=False))
    with pytest.raises(ValueError, match="observation mode: expected 'sequence', got 'flat'"):
        bundle.check_compatible(flat.observation_space)


def test_inconsistent_or_incomplete_saves_are_refused(
    manual_bundle: tuple[Path, Trained], dataset: SymbolDataset, tmp_path: Path
) -> None:
    t = manual_bundle[1]
    config = t.result.config
    kwargs: dict[str, Any] = {"config": config, "metadata": {"symbols": ["SPY"]}}
    model, norm = t.result.model, t.result.normalizer
    # model_copy skips validation: the bundle's own checks must still catch disagreement.
    seq = config.model_copy(update={"env": config.env.replace(use_sequence_encoder=True)})
    with pytest.raises(ValueError, match="cannot save an inconsistent bundle: encoder_mode"):
        save_bundle(tmp_path / "a", model, norm, **{**kwargs, "config": seq})
    no_vix = config.model_copy(update={"features": FeatureConfig(use_vix=False)})
    with pytest.raises(ValueError, match="feature_config vs normalizer: feature names"):
        save_bundle(tmp_path / "a", model, norm, **{**kwargs, "config": no_vix})
    with pytest.raises(ValueError, match="must name the symbol"):
        save_bundle(tmp_path / "a", model, norm, **{**kwargs, "metadata": {}})
    with pytest.raises(ValueError, match=r"\['feature_names'\] are filled by save_bundle"):
        save_bundle(
            tmp_path / "a",
            model,
            norm,
            **{**kwargs, "metadata": {"symbol": "SPY", "feature_names": []}},
        )
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_a_loadable_bundle(tmp_path: Path) -> None:
    from backend.data_download.synthetic_market import write_synthetic_market
    from backend.training.train import main

    data_dir = tmp_path / "data"
    write_synthetic_market(
        data_dir, SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=24, seed=7)
    )
    experiment = _config("manual", total_timesteps=60, learning_starts=30, eval_every_steps=60)
    settings = experiment.training
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "training": settings.to_dict(),
                "encoder": experiment.encoder.to_dict(),
                "env": {"episode_sessions": 2},
            }
        )
    )
    out = tmp_path / "out"
    argv = ["--config", str(config), "--data-dir", str(data_dir), "--output", str(out)]
    assert main([*argv, "--no-progress", "--val-fraction", "0.15"]) == 0
    (run_dir,) = out.iterdir()
    bundle = load_bundle(run_dir)
    assert {"metrics.json", "training_settings.json"} <= set(bundle.metadata["files"])
    training = load_experiment(run_dir / "config.yaml").training
    assert TrainingSettings.load(run_dir / "training_settings.json") == training
    meta = bundle.metadata
    dataset = SymbolDataset.load("SPY", data_dir, FeatureConfig())
    assert meta["data"]["sha256"] == data_range(dataset.market)["sha256"]
    assert meta["data"]["fit"]["first_bar"] == dataset.market.index[0].isoformat()
    assert meta["data"]["val"]["last_bar"] == dataset.market.index[-1].isoformat()
    assert meta["metrics"]["steps_done"] == 60 and meta["seed"] == settings.seed
    assert meta["provenance"]["packages"]["stable-baselines3"]
    bundle.check_compatible(feature_names=dataset.feature_names, env_config=bundle.env_config)


def test_shared_encoder_bundle(dataset: SymbolDataset, tmp_path: Path) -> None:
    from backend.training.train import build_model

    config = _config("transformer", share_features_extractor=True)
    fit, _ = split_sessions(dataset.sessions, val_fraction=0.15, gap_sessions=1)
    normalizer = dataset.fit_normalizer(*fit)
    arrays = dataset.arrays(normalizer)
    model = build_model(IntradayTradingEnv(arrays, config.env), config, tensorboard_log=None)
    path = save_bundle(tmp_path / "b", model, normalizer, config=config, metadata={"symbol": "spy"})
    state = load_encoder_state(path / "encoder_state_dict.pt")
    assert state["shared"] and "critic" not in state
    extractor = model.policy.actor.features_extractor.state_dict()
    assert all(th.equal(state["actor"][k], v) for k, v in extractor.items())
    bundle = load_bundle(path)
    assert bundle.metadata["symbols"] == ["SPY"]
    assert bundle.model.policy.share_features_extractor
    env = bundle.make_env(arrays)
    obs, _ = env.reset(seed=1)
    assert np.array_equal(
        model.predict(obs, deterministic=True)[0], bundle.model.predict(obs, deterministic=True)[0]
    )
