"""YoopSAC's update is SB3's update: losses and parameters after a step match a reference.

The reference below is a transcription of ``stable_baselines3.sac.SAC.train`` (2.x): it
uses SB3's own ``actor.action_log_prob`` (``torch.distributions``) and ``critic(...)`` for
the actor loss. YoopSAC runs micro-batches, draws actions in closed form, caches the
policy's mode and reuses the shared extractor's features in the actor phase; the losses and
the parameters after one step (actor, critic, critic target, entropy coefficient) must come
out the same, for every encoder and each encoder layout. With a critic-trained shared
encoder (not an SB3 mode) the reference is SB3's update with the documented changes: the
critic's TD loss trains the extractor and the actor sees detached features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th
from sac_support import TINY_ENCODERS, synthetic_arrays
from torch.nn import functional as F

from backend.config.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.models.feature_extractors import encoder_policy_kwargs, uses_sequence_observation
from backend.models.sac import YoopSAC

th.set_num_threads(1)

BATCH = 32
SEQ = 8
ENCODERS = TINY_ENCODERS
LAYOUTS = ("separate", "shared_actor", "shared_critic")


@pytest.fixture(scope="module")
def arrays() -> Any:
    return synthetic_arrays(12, seed=11)


def _model(arrays: Any, mode: str, layout: str, **overrides: Any) -> YoopSAC:
    env = IntradayTradingEnv(
        arrays,
        EnvConfig(
            episode_sessions=2,
            use_sequence_encoder=uses_sequence_observation(mode),
            sequence_length=SEQ,
        ),
    )
    policy_kwargs: dict[str, Any] = {
        **encoder_policy_kwargs(mode, ENCODERS[mode]),
        "net_arch": [16],
        "share_features_extractor": layout != "separate",
        "optimizer_class": th.optim.AdamW,
        # A larger eps keeps Adam's first step linear in tiny gradients (e.g. the attention
        # key bias, whose gradient is zero up to roundoff): g / (|g| + eps) would otherwise
        # turn roundoff into +-lr steps and hide real differences among them.
        "optimizer_kwargs": {"eps": 1e-4},
    }
    return YoopSAC(
        "MultiInputPolicy",
        env,
        batch_size=BATCH,
        learning_starts=10**9,  # collect only; train() is called by hand
        learning_rate=1e-3,
        encoder_weight_decay=0.01,
        shared_encoder_loss="critic" if layout == "shared_critic" else "actor",
        seed=0,
        device="cpu",
        policy_kwargs=policy_kwargs,
        **overrides,
    )


def sb3_reference_update(model: YoopSAC, data: Any, *, critic_trains_encoder: bool) -> dict:
    """One gradient step of SB3 2.x ``SAC.train`` on ``data`` (transcribed, k = 1).

    Two documented differences from SB3's listing: the target's next actions are drawn
    before the actor's actions (YoopSAC runs the critic phase first; in SB3's layouts the
    critic step cannot change the actor, so only the order of the two Gaussian draws
    differs), and with a critic-trained shared encoder the actor's detached features are
    computed after the critic step has moved the encoder.
    """
    actor, critic, critic_target = model.actor, model.critic, model.critic_target
    discounts = model.gamma
    ent_coef = th.exp(model.log_ent_coef.detach())
    with th.no_grad():
        next_actions, next_log_prob = actor.action_log_prob(data.next_observations)
        next_q = th.cat(critic_target(data.next_observations, next_actions), dim=1)
        next_q, _ = th.min(next_q, dim=1, keepdim=True)
        next_q = next_q - ent_coef * next_log_prob.reshape(-1, 1)
        target_q = data.rewards + (1 - data.dones) * discounts * next_q
    if critic_trains_encoder:
        feats = critic.extract_features(data.observations, critic.features_extractor)
        q_in = th.cat([feats, data.actions], dim=1)
        current_q = [q(q_in) for q in critic.q_networks]
    else:
        current_q = critic(data.observations, data.actions)
    critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in current_q)
    critic.optimizer.zero_grad()
    critic_loss.backward()
    critic.optimizer.step()
    # Action by the current actor for the sampled state.
    if critic_trains_encoder:
        with th.no_grad():
            features = actor.extract_features(data.observations, actor.features_extractor)
        latent_pi = actor.latent_pi(features)
        mean = actor.mu(latent_pi)
        log_std = th.clamp(actor.log_std(latent_pi), -20, 2)
        actions_pi, log_prob = actor.action_dist.log_prob_from_params(mean, log_std)
    else:
        actions_pi, log_prob = actor.action_log_prob(data.observations)
    log_prob = log_prob.reshape(-1, 1)
    ent_coef_loss = -(model.log_ent_coef * (log_prob + model.target_entropy).detach()).mean()
    # The actor loss through SB3's own critic forward (its extractor runs again).
    q_pi = th.cat(critic(data.observations, actions_pi), dim=1)
    min_qf_pi, _ = th.min(q_pi, dim=1, keepdim=True)
    actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
    actor.optimizer.zero_grad()
    actor_loss.backward()
    actor.optimizer.step()
    model.ent_coef_optimizer.zero_grad()
    ent_coef_loss.backward()
    model.ent_coef_optimizer.step()
    with th.no_grad():
        for p, tp in zip(critic.parameters(), critic_target.parameters(), strict=True):
            tp.mul_(1 - model.tau)
            tp.add_(p, alpha=model.tau)
    return {
        "train/actor_loss": actor_loss.item(),
        "train/critic_loss": critic_loss.item(),
        "train/ent_coef_loss": ent_coef_loss.item(),
        "train/ent_coef": ent_coef.item(),
    }


def _state(model: YoopSAC) -> dict[str, th.Tensor]:
    out = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
    out["log_ent_coef"] = model.log_ent_coef.detach().clone()
    return out


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", list(ENCODERS))
def test_update_equals_the_sb3_reference(arrays: Any, mode: str, layout: str) -> None:
    fast = _model(arrays, mode, layout)
    fast.learn(total_timesteps=120)  # fills the buffer with random actions, sets the logger
    reference = _model(arrays, mode, layout)
    reference.policy.load_state_dict(fast.policy.state_dict())
    np.random.seed(3)  # noqa: NPY002 (SB3's replay buffer samples with the global RNG)
    batch = fast.replay_buffer.sample(BATCH)  # type: ignore[union-attr]
    fast.replay_buffer.sample = lambda *args, **kwargs: batch  # type: ignore[method-assign,union-attr]
    before = _state(fast)

    recorded: dict[str, float] = {}
    original = fast.logger.record

    def record(key: str, value: Any, exclude: Any = None) -> None:
        recorded[key] = value
        original(key, value, exclude)

    fast.logger.record = record  # type: ignore[method-assign]
    th.manual_seed(42)
    fast.train(gradient_steps=1, batch_size=BATCH)
    th.manual_seed(42)
    expected = sb3_reference_update(
        reference, batch, critic_trains_encoder=layout == "shared_critic"
    )

    for key, value in expected.items():
        assert recorded[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    after_fast, after_ref = _state(fast), _state(reference)
    moved = {k: float((after_ref[k] - before[k]).abs().max()) for k in before}
    assert max(moved.values()) > 1e-4, "the reference step must change the parameters"
    for part in ("actor.", "critic.", "critic_target."):
        assert any(v > 0 for k, v in moved.items() if k.startswith(part)), part
    for key in before:
        diff = float((after_fast[key] - after_ref[key]).abs().max())
        assert diff < 2e-6, f"{key} differs from SB3's update by {diff}"


def test_fast_predict_equals_sb3_sampling(arrays: Any) -> None:
    """Closed-form sampling draws the same actions as SB3's distribution objects."""
    model = _model(arrays, "manual", "separate")
    obs = model.env.reset()  # type: ignore[union-attr]
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    for deterministic in (True, False):
        th.manual_seed(9)
        with th.no_grad():
            expected = model.actor(obs_tensor, deterministic=deterministic)
        th.manual_seed(9)
        with th.no_grad():
            got = model.policy._predict(obs_tensor, deterministic=deterministic)
        assert th.allclose(got, expected, atol=1e-7)


def test_training_mode_walk_is_skipped_only_when_nothing_changes(arrays: Any) -> None:
    model = _model(arrays, "manual", "separate")
    calls: list[bool] = []
    original = th.nn.Module.train

    def counting_train(self: th.nn.Module, mode: bool = True) -> th.nn.Module:
        calls.append(mode)
        return original(self, mode)

    obs = model.env.reset()  # type: ignore[union-attr]
    model.policy.set_training_mode(False)
    th.nn.Module.train = counting_train  # type: ignore[method-assign]
    try:
        model.predict(obs)
        model.predict(obs)
        assert calls == [], "predict in eval mode must not walk the modules"
        model.policy.set_training_mode(True)
        assert calls, "a real mode change must walk the modules"
    finally:
        th.nn.Module.train = original  # type: ignore[method-assign]
    assert model.actor.training and model.critic.training
    model.policy.set_training_mode(False)
    assert not any(m.training for m in model.actor.modules())
