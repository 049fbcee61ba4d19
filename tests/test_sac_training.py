"""YoopSAC: gradient accumulation equals the full batch, encoder-only weight decay, shared
encoder trained by the critic."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch as th

from backend.data_download.dataset import SymbolDataset
from backend.data_download.feature_config import FeatureConfig
from backend.data_download.loader import join_vix_asof
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.models.feature_extractors import ManualEncoderConfig, encoder_policy_kwargs
from backend.models.sac import YoopSAC, split_samples

th.set_num_threads(1)

BATCH = 64


@pytest.fixture(scope="module")
def env_factory() -> Any:
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=20, seed=5)
    )
    market = join_vix_asof(frames["SPY"], frames["VIX"])
    dataset = SymbolDataset.from_market("SPY", market, FeatureConfig())
    sessions = dataset.sessions
    arrays = dataset.arrays(dataset.fit_normalizer(sessions[0], sessions[-1]))

    def make() -> IntradayTradingEnv:
        return IntradayTradingEnv(arrays, EnvConfig(episode_sessions=2))

    return make


def _model(env: IntradayTradingEnv, **overrides: Any) -> YoopSAC:
    policy_kwargs: dict[str, Any] = {
        **encoder_policy_kwargs("manual", ManualEncoderConfig(hidden_dims=(16,), embedding_dim=8)),
        "net_arch": [16],
    }
    policy_kwargs.update(overrides.pop("policy_kwargs", {}))
    kwargs: dict[str, Any] = {
        "batch_size": BATCH,
        "learning_starts": 10**9,  # collect only; train() is called by hand
        "seed": 0,
        "device": "cpu",
        "policy_kwargs": policy_kwargs,
    }
    kwargs.update(overrides)
    return YoopSAC("MultiInputPolicy", env, **kwargs)


def _params(model: YoopSAC) -> dict[str, th.Tensor]:
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}


def _fill(model: YoopSAC, steps: int = 200) -> None:
    model.learn(total_timesteps=steps)


def test_split_samples_gives_equal_views(env_factory: Any) -> None:
    model = _model(env_factory())
    _fill(model)
    np.random.seed(0)  # noqa: NPY002 (SB3's replay buffer samples with the global RNG)
    batch = model.replay_buffer.sample(BATCH)  # type: ignore[union-attr]
    parts = split_samples(batch, 4)
    assert len(parts) == 4
    joined = th.cat([p.observations["features"] for p in parts])  # type: ignore[index]
    assert th.equal(joined, batch.observations["features"])  # type: ignore[index]
    with pytest.raises(ValueError, match="equal micro-batches"):
        split_samples(batch, 5)


def test_gradient_accumulation_matches_full_batch(env_factory: Any) -> None:
    """k micro-batches of B/k give the update of one batch of B (SGD, noise switched off).

    The actor's exploration noise is drawn per micro-batch, so it is made negligible
    (log-std bias -20, std ~2e-9) and the entropy term fixed at 0; plain SGD keeps the
    parameter change proportional to the gradient, so any accumulation error shows.
    """
    overrides: dict[str, Any] = {
        "ent_coef": 0.0,
        "policy_kwargs": {"optimizer_class": th.optim.SGD, "optimizer_kwargs": {}},
        "learning_rate": 0.05,
    }
    full = _model(env_factory(), **overrides)
    _fill(full)
    accumulated = _model(env_factory(), gradient_accumulation_steps=4, **copy.deepcopy(overrides))
    _fill(accumulated)  # sets up its logger; the buffer is replaced below
    accumulated.policy.load_state_dict(full.policy.state_dict())
    accumulated.replay_buffer = copy.deepcopy(full.replay_buffer)
    for model in (full, accumulated):
        with th.no_grad():
            model.actor.log_std.weight.zero_()  # type: ignore[union-attr]
            model.actor.log_std.bias.fill_(-20.0)  # type: ignore[union-attr]
    before = _params(full)
    for model in (full, accumulated):
        np.random.seed(123)  # noqa: NPY002 (SB3's replay buffer samples with the global RNG)
        th.manual_seed(123)
        model.train(gradient_steps=2, batch_size=BATCH)
    after_full, after_acc = _params(full), _params(accumulated)
    moved = max(float((after_full[k] - before[k]).abs().max()) for k in before)
    diff = max(float((after_full[k] - after_acc[k]).abs().max()) for k in before)
    assert moved > 1e-3, "the update must actually change the parameters"
    assert diff < 1e-5, f"accumulated update differs from the full batch by {diff}"


def test_accumulation_must_divide_the_batch(env_factory: Any) -> None:
    with pytest.raises(ValueError, match="must divide batch_size"):
        _model(env_factory(), gradient_accumulation_steps=3)


def test_weight_decay_applies_to_encoder_parameters_only(env_factory: Any) -> None:
    model = _model(
        env_factory(),
        encoder_weight_decay=0.1,
        policy_kwargs={"optimizer_class": th.optim.AdamW},
    )
    for module in (model.actor, model.critic):
        encoder_ids = {id(p) for p in module.features_extractor.parameters()}
        groups = module.optimizer.param_groups
        decayed = [g for g in groups if g["weight_decay"] > 0]
        assert len(decayed) == 1
        assert decayed[0]["weight_decay"] == pytest.approx(0.1)
        assert {id(p) for p in decayed[0]["params"]} == encoder_ids
        rest = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
        assert rest == {id(p) for p in module.parameters()} - encoder_ids
    # The learning-rate schedule still reaches every group.
    _fill(model, 100)
    model.train(gradient_steps=1, batch_size=BATCH)
    assert all(g["lr"] == pytest.approx(3e-4) for g in model.actor.optimizer.param_groups)


@pytest.mark.parametrize("loss", ["critic", "actor"])
def test_shared_encoder_is_trained_by_the_chosen_loss(env_factory: Any, loss: str) -> None:
    model = _model(
        env_factory(),
        shared_encoder_loss=loss,
        policy_kwargs={"share_features_extractor": True},
    )
    extractor = model.actor.features_extractor
    assert model.critic.features_extractor is extractor
    encoder_ids = {id(p) for p in extractor.parameters()}

    def owned(opt: th.optim.Optimizer) -> set[int]:
        return {id(p) for g in opt.param_groups for p in g["params"]}

    owner, other = (
        (model.critic.optimizer, model.actor.optimizer)
        if loss == "critic"
        else (model.actor.optimizer, model.critic.optimizer)
    )
    assert encoder_ids <= owned(owner)
    assert not encoder_ids & owned(other)

    _fill(model)
    before = {k: v.clone() for k, v in extractor.state_dict().items()}
    recorded: dict[str, float] = {}
    original = model.logger.record

    def record(key: str, value: Any, exclude: Any = None) -> None:
        recorded[key] = value
        original(key, value, exclude)

    model.logger.record = record  # type: ignore[method-assign]
    model.train(gradient_steps=2, batch_size=BATCH)
    changed = any(not th.equal(before[k], v) for k, v in extractor.state_dict().items())
    assert changed, "the shared encoder must be updated"
    if loss == "critic":
        assert recorded["train/encoder_grad_norm_critic"] > 0
        assert "train/encoder_grad_norm_actor" not in recorded
    else:
        assert recorded["train/encoder_grad_norm_actor"] > 0
        assert "train/encoder_grad_norm_critic" not in recorded
    assert np.isfinite(recorded["train/critic_loss"])


def test_save_load_round_trip_keeps_settings(env_factory: Any, tmp_path: Any) -> None:
    model = _model(env_factory(), gradient_accumulation_steps=2, encoder_weight_decay=0.05)
    _fill(model, 100)
    model.train(gradient_steps=1, batch_size=BATCH)
    model.save(tmp_path / "m.zip")
    loaded = YoopSAC.load(tmp_path / "m.zip", env=env_factory(), device="cpu")
    assert loaded.gradient_accumulation_steps == 2
    assert loaded.encoder_weight_decay == pytest.approx(0.05)
    for key, value in model.policy.state_dict().items():
        assert th.allclose(value, loaded.policy.state_dict()[key])
    obs, _ = env_factory().reset(seed=1)
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = loaded.predict(obs, deterministic=True)
    assert np.allclose(a1, a2)


def test_dataset_fixture_is_sane(env_factory: Any) -> None:
    env = env_factory()
    assert isinstance(env.arrays.timestamps[0], np.int64 | int)
    assert pd.Timestamp(int(env.arrays.timestamps[-1])).year >= 2024
