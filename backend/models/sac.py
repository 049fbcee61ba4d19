"""SAC with gradient accumulation, CUDA mixed precision and encoder-only weight decay.

:class:`YoopSAC` is Stable-Baselines3's ``SAC`` (2.x) with ``train()`` rewritten around
micro-batches. The update is the same as SB3's (same losses, same order of optimiser
steps, same ``train/*`` logging keys) with four additions:

* **Gradient accumulation.** Each gradient step samples ``batch_size`` transitions and
  splits them into ``k = gradient_accumulation_steps`` equal micro-batches; every
  micro-batch loss is scaled by ``1/k`` and its gradients summed before one optimiser step,
  so the update equals the full-batch update (losses are means) with ``k`` times less
  activation memory: what makes a Transformer over 64-bar windows fit a large batch.
* **Mixed precision.** On CUDA with ``use_amp``, forward passes run under
  ``torch.autocast(float16)`` and a ``torch.amp.GradScaler`` scales the losses. On any other
  device autocast is never entered and the scaler is disabled, i.e. plain FP32: the same
  config runs on a laptop and on a GPU box.
* **Encoder-only weight decay.** After ``_setup_model`` the actor and critic optimisers are
  rebuilt with two parameter groups: the features extractor's parameters with
  ``weight_decay = encoder_weight_decay`` and everything else with 0. With
  ``optimizer_class=torch.optim.AdamW`` (what the training pipeline uses) this is decoupled
  decay (Loshchilov & Hutter 2019) and, at 0, exactly Adam.
* **A critic-trained shared encoder.** SB3's ``share_features_extractor=True`` trains the
  shared extractor with the *actor* loss only: ``ContinuousCritic.forward`` runs it under
  ``set_grad_enabled(False)`` and ``SACPolicy._build`` leaves it out of the critic
  optimiser. With ``shared_encoder_loss="critic"`` (the default here) the roles swap, as in
  SAC-AE (Yarats et al. 2019) and DrQ (Kostrikov et al. 2020): the critic optimiser owns
  the extractor and the TD loss back-propagates into it, while the actor sees detached
  features. ``"actor"`` keeps SB3's behaviour.

The encoder's gradient norms (after unscaling, before the step) are logged as
``train/encoder_grad_norm_actor`` and ``train/encoder_grad_norm_critic``.

Work SB3 throws away is skipped without changing a number (issue 10): the policy aliases
resolve to mode-caching policies (``set_training_mode`` walks every submodule on each
``predict`` and ``train()`` call in SB3, 27-41% of a ``predict``; here only when the mode
changes), an action is drawn in closed form instead of through distribution objects, and
under a critic-trained shared encoder the actor phase computes the (detached) features of a
batch once and feeds them to both the actor head and the Q heads, which SB3 would compute
twice with the same weights; in every layout the actor loss's critic features carry no
gradient (SB3 back-propagates into a separate critic's encoder and discards the result).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac.policies import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    CnnPolicy,
    MlpPolicy,
    MultiInputPolicy,
    SACPolicy,
)
from torch import nn
from torch.nn import functional as F

SharedEncoderLoss = Literal["critic", "actor"]
"""Which loss trains a shared encoder: ``critic`` (SAC-AE/DrQ) or ``actor`` (SB3's default)."""


_Samples = ReplayBufferSamples | DictReplayBufferSamples


def _slice_obs(obs: Any, sl: slice) -> Any:
    """Rows ``sl`` of a tensor or of every tensor of a dict observation."""
    if isinstance(obs, dict):
        return {key: value[sl] for key, value in obs.items()}
    return obs[sl]


def split_samples(samples: _Samples, k: int) -> list[_Samples]:
    """Split a replay batch into ``k`` equal, contiguous micro-batches (views, no copies).

    Raises:
        ValueError: if the batch size is not divisible by ``k``.
    """
    size = samples.actions.shape[0]
    if size % k != 0:
        raise ValueError(f"batch of {size} cannot be split into {k} equal micro-batches")
    step = size // k
    out: list[_Samples] = []
    for i in range(k):
        sl = slice(i * step, (i + 1) * step)
        fields: dict[str, Any] = {
            name: (None if value is None else _slice_obs(value, sl))
            for name, value in samples._asdict().items()
        }
        out.append(type(samples)(**fields))
    return out


def grad_norm(parameters: Iterator[nn.Parameter] | list[nn.Parameter]) -> float | None:
    """L2 norm of the gradients present, or None when no parameter has one."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return None
    norms = th._foreach_norm(grads)  # one call instead of one kernel per tensor
    return float(th.linalg.vector_norm(th.stack([n.float() for n in norms])))


class _ModeCachingPolicy:
    """Mixin for SB3 SAC policies: skip ``set_training_mode`` walks that change nothing.

    SB3 calls ``set_training_mode`` (``nn.Module.train`` over every submodule) on every
    ``predict`` and every ``train()``; when the policy, actor and critic already have the
    requested mode nothing would change. A submodule switched by hand (``module.eval()``
    deep inside the actor) is not detected: switch the policy with ``set_training_mode``.
    """

    training: bool
    actor: nn.Module
    critic: nn.Module

    def set_training_mode(self, mode: bool) -> None:
        """Put the policy in training or evaluation mode, unless it already is."""
        if self.training is mode and self.actor.training is mode and self.critic.training is mode:
            return
        super().set_training_mode(mode)  # type: ignore[misc]

    def _predict(self, observation: Any, deterministic: bool = False) -> th.Tensor:
        """SB3's squashed-Gaussian action, without building distribution objects.

        ``Normal.rsample`` draws ``mean + std * normal_(empty(shape))``: the same random
        stream and the same numbers (``tests/test_sac_update_math.py``).
        """
        actor: Any = self.actor
        if actor.use_sde:
            return actor(observation, deterministic)
        mean, log_std, _ = actor.get_action_dist_params(observation)
        if deterministic:
            return th.tanh(mean)
        noise = th.empty(mean.shape, dtype=mean.dtype, device=mean.device).normal_()
        return th.tanh(mean + noise * log_std.exp())


class YoopMlpPolicy(_ModeCachingPolicy, MlpPolicy):  # type: ignore[misc]
    """SB3's SAC ``MlpPolicy`` with the mode cache and closed-form actions."""


class YoopCnnPolicy(_ModeCachingPolicy, CnnPolicy):  # type: ignore[misc]
    """SB3's SAC ``CnnPolicy`` with the mode cache and closed-form actions."""


class YoopMultiInputPolicy(_ModeCachingPolicy, MultiInputPolicy):  # type: ignore[misc]
    """SB3's SAC ``MultiInputPolicy`` with the mode cache and closed-form actions."""


class YoopSAC(SAC):
    """SB3 SAC with gradient accumulation, CUDA AMP, encoder weight decay, shared encoder.

    Args:
        policy: Policy class or alias (``"MultiInputPolicy"`` for the trading env).
        env: The training env.
        gradient_accumulation_steps: Micro-batches per gradient step; must divide
            ``batch_size``.
        use_amp: Use autocast + GradScaler when the model's device is CUDA; ignored
            otherwise.
        encoder_weight_decay: Weight decay of the features-extractor parameter groups.
        encoder_lr_scale: The features extractor's learning rate as a multiple of the SAC
            learning rate (a fine-tuned pretrained trunk's own rate); 1 by default.
        shared_encoder_loss: With ``policy_kwargs["share_features_extractor"]=True``, which
            loss trains the shared extractor (see the module docstring).
        **kwargs: Everything ``stable_baselines3.SAC`` takes.

    Raises:
        ValueError: on an invalid accumulation count or loss name, or gSDE combined with
            a critic-trained shared encoder (not implemented).
    """

    _EXTRACTOR: ClassVar[str] = "features_extractor"
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": YoopMlpPolicy,
        "CnnPolicy": YoopCnnPolicy,
        "MultiInputPolicy": YoopMultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[SACPolicy],
        env: Any,
        *,
        gradient_accumulation_steps: int = 1,
        use_amp: bool = True,
        encoder_weight_decay: float = 0.0,
        shared_encoder_loss: SharedEncoderLoss = "critic",
        encoder_lr_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if isinstance(gradient_accumulation_steps, bool) or gradient_accumulation_steps < 1:
            raise ValueError(
                f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps!r}"
            )
        batch_size = int(kwargs.get("batch_size", 256))
        if batch_size % gradient_accumulation_steps != 0:
            raise ValueError(
                f"gradient_accumulation_steps {gradient_accumulation_steps} must divide "
                f"batch_size {batch_size}"
            )
        if shared_encoder_loss not in ("critic", "actor"):
            raise ValueError(
                f"shared_encoder_loss must be 'critic' or 'actor', got {shared_encoder_loss!r}"
            )
        if encoder_weight_decay < 0:
            raise ValueError(f"encoder_weight_decay must be >= 0, got {encoder_weight_decay}")
        if not encoder_lr_scale > 0:
            raise ValueError(f"encoder_lr_scale must be > 0, got {encoder_lr_scale}")
        self.encoder_lr_scale = float(encoder_lr_scale)
        # Set before super().__init__, which calls _setup_model (SB3 load() restores them
        # from the saved __dict__ before calling _setup_model too).
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)
        self.use_amp = bool(use_amp)
        self.encoder_weight_decay = float(encoder_weight_decay)
        self.shared_encoder_loss: SharedEncoderLoss = shared_encoder_loss
        super().__init__(policy, env, **kwargs)

    # ------------------------------------------------------------------ setup
    @property
    def amp_enabled(self) -> bool:
        """Whether autocast and loss scaling are active: ``use_amp`` and a CUDA device."""
        return self.use_amp and th.device(self.device).type == "cuda"

    @property
    def critic_trains_shared_encoder(self) -> bool:
        """True when one extractor is shared and the critic's TD loss trains it."""
        return bool(self.policy.share_features_extractor) and self.shared_encoder_loss == "critic"

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.critic_trains_shared_encoder and self.use_sde:
            raise ValueError("use_sde with a critic-trained shared encoder is not implemented")
        self._rebuild_optimizers()
        self.grad_scaler = th.amp.GradScaler("cuda", enabled=self.amp_enabled)
        self._polyak_pairs: tuple[list[th.Tensor], list[th.Tensor]] | None = None

    def _param_groups(self, module: nn.Module, *, include_extractor: bool) -> list[dict[str, Any]]:
        """Two groups: extractor parameters (decayed) and the rest (never decayed)."""
        encoder, rest = [], []
        for name, param in module.named_parameters():
            if name.startswith(self._EXTRACTOR + ".") or f".{self._EXTRACTOR}." in name:
                if include_extractor:
                    encoder.append(param)
            else:
                rest.append(param)
        groups: list[dict[str, Any]] = [{"params": rest, "weight_decay": 0.0, "name": "heads"}]
        if encoder:
            groups.insert(
                0,
                {
                    "params": encoder,
                    "weight_decay": self.encoder_weight_decay,
                    "name": "encoder",
                    "lr_scale": self.encoder_lr_scale,
                },
            )
        return groups

    def _update_learning_rate(
        self, optimizers: list[th.optim.Optimizer] | th.optim.Optimizer
    ) -> None:
        """SB3's schedule for every group, then the encoder group's ``lr_scale`` on top."""
        super()._update_learning_rate(optimizers)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                group["lr"] *= group.get("lr_scale", 1.0)

    def _rebuild_optimizers(self) -> None:
        """Replace SB3's actor/critic optimisers by ones with encoder/heads groups.

        Which module's optimiser owns a shared extractor follows ``shared_encoder_loss``;
        the optimiser class and its other kwargs are the policy's own.
        """
        policy = self.policy
        kwargs = {k: v for k, v in policy.optimizer_kwargs.items() if k != "weight_decay"}
        lr = self.lr_schedule(1)
        shared = bool(policy.share_features_extractor)
        actor_owns = not (shared and self.shared_encoder_loss == "critic")
        critic_owns = (not shared) or not actor_owns
        # Optimizer's base signature has no ``lr``; every concrete class does (as in SB3).
        self.actor.optimizer = policy.optimizer_class(  # type: ignore[call-arg]
            self._param_groups(self.actor, include_extractor=actor_owns), lr=lr, **kwargs
        )
        self.critic.optimizer = policy.optimizer_class(  # type: ignore[call-arg]
            self._param_groups(self.critic, include_extractor=critic_owns), lr=lr, **kwargs
        )
        for optimizer in (self.actor.optimizer, self.critic.optimizer):
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)

    # ------------------------------------------------------------------ forward helpers
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_enabled:
            return th.autocast(device_type="cuda", dtype=th.float16)
        return contextlib.nullcontext()

    def _critic_q(self, obs: Any, actions: th.Tensor, *, train_encoder: bool) -> list[th.Tensor]:
        """Online critic Q-values; with ``train_encoder`` gradients reach a shared encoder."""
        if not train_encoder:
            return list(self.critic(obs, actions))
        critic = self.critic
        features = critic.extract_features(obs, critic.features_extractor)
        q_input = th.cat([features, actions], dim=1)
        return [q_net(q_input) for q_net in critic.q_networks]

    def _actor_q(self, obs: Any) -> tuple[th.Tensor, th.Tensor, list[th.Tensor]]:
        """Reparameterised action, its log-prob, and the online critic's Q of that action.

        The actor loss needs only dQ/da from the critic: SB3 evaluates ``critic(obs, a)``
        with gradients into a separate critic's encoder (a backward whose gradients the
        next ``zero_grad`` discards) and re-runs a shared extractor that the actor pass has
        just run. Here the critic's features carry no gradient: a separate critic's are
        computed under ``no_grad``, a shared extractor's are the actor pass's own features,
        detached (``ContinuousCritic.forward`` detaches them too). The actor's gradients are
        SB3's (``tests/test_sac_update_math.py``). Under a critic-trained shared encoder the
        actor's features are detached as well: the actor loss must not move the
        representation. gSDE keeps SB3's path.
        """
        actor, critic = self.actor, self.critic
        if actor.use_sde:
            actions, log_prob = actor.action_log_prob(obs)
            return actions, log_prob, list(critic(obs, actions))
        shared = bool(self.policy.share_features_extractor)
        with th.set_grad_enabled(th.is_grad_enabled() and not self.critic_trains_shared_encoder):
            features = actor.extract_features(obs, actor.features_extractor)
        latent_pi = actor.latent_pi(features)
        mean_actions = actor.mu(latent_pi)
        log_std = th.clamp(actor.log_std(latent_pi), LOG_STD_MIN, LOG_STD_MAX)  # type: ignore[operator]
        actions, log_prob = actor.action_dist.log_prob_from_params(mean_actions, log_std)  # type: ignore[call-arg]
        if shared:
            critic_features = features.detach()
        else:
            with th.no_grad():
                critic_features = critic.extract_features(obs, critic.features_extractor)
        q_input = th.cat([critic_features, actions], dim=1)
        return actions, log_prob, [q_net(q_input) for q_net in critic.q_networks]

    def _extractor_params(self, module: nn.Module) -> list[nn.Parameter]:
        extractor = getattr(module, self._EXTRACTOR, None)
        return [] if extractor is None else list(extractor.parameters())

    # ------------------------------------------------------------------ training
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SB3's SAC update, run over micro-batches (see the module docstring).

        Order per gradient step, as in SB3: critic update with targets computed with the
        current entropy coefficient, then the actor and entropy-coefficient updates with
        the updated critic, then the Polyak update. The actor is not changed by the
        critic step, so computing its actions after the critic step (once per
        micro-batch, rather than keeping every micro-batch's graph alive) gives the same
        losses as SB3's ordering.
        """
        self.policy.set_training_mode(True)
        optimizers: list[th.optim.Optimizer] = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)

        k = self.gradient_accumulation_steps
        scaler = self.grad_scaler
        train_shared = self.critic_trains_shared_encoder
        actor_encoder = [] if train_shared else self._extractor_params(self.actor)
        critic_encoder = self._extractor_params(self.critic)
        if self.policy.share_features_extractor and not train_shared:
            critic_encoder = []  # SB3 mode: the critic never trains the shared encoder

        ent_coef_losses, ent_coefs = [], []
        actor_losses, critic_losses = [], []
        actor_norms, critic_norms = [], []

        for gradient_step in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            micro_batches = split_samples(replay_data, k)
            if self.use_sde:
                self.actor.reset_noise()

            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                # Detached: the critic and actor losses must not move the coefficient
                # (https://github.com/rail-berkeley/softlearning/issues/60).
                ent_coef = th.exp(self.log_ent_coef.detach())
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.item())

            # ---- critic: accumulate 1/k-scaled TD losses, one step.
            self.critic.optimizer.zero_grad()
            critic_loss_total = 0.0
            for mb in micro_batches:
                discounts = mb.discounts if mb.discounts is not None else self.gamma
                with th.no_grad(), self._autocast():
                    next_actions, next_log_prob = self.actor.action_log_prob(mb.next_observations)
                    next_q = th.cat(self.critic_target(mb.next_observations, next_actions), dim=1)
                    next_q, _ = th.min(next_q.float(), dim=1, keepdim=True)
                    next_q = next_q - ent_coef * next_log_prob.float().reshape(-1, 1)
                    target_q = mb.rewards + (1 - mb.dones) * discounts * next_q
                with self._autocast():
                    current_q = self._critic_q(
                        mb.observations, mb.actions, train_encoder=train_shared
                    )
                    critic_loss = 0.5 * sum(F.mse_loss(q.float(), target_q) for q in current_q)
                assert isinstance(critic_loss, th.Tensor)
                scaler.scale(critic_loss / k).backward()
                critic_loss_total += critic_loss.item() / k
            critic_losses.append(critic_loss_total)
            scaler.unscale_(self.critic.optimizer)
            norm = grad_norm(critic_encoder)
            if norm is not None:
                critic_norms.append(norm)
            scaler.step(self.critic.optimizer)

            # ---- actor and entropy coefficient: accumulate, one step each.
            self.actor.optimizer.zero_grad()
            if self.ent_coef_optimizer is not None:
                self.ent_coef_optimizer.zero_grad()
            actor_loss_total, ent_loss_total = 0.0, 0.0
            for mb in micro_batches:
                with self._autocast():
                    _, log_prob, q_values = self._actor_q(mb.observations)
                    log_prob = log_prob.float().reshape(-1, 1)
                    q_pi = th.cat(q_values, dim=1).float()
                    min_qf_pi, _ = th.min(q_pi, dim=1, keepdim=True)
                    actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
                loss = actor_loss
                if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                    assert isinstance(self.target_entropy, float)
                    ent_loss = -(
                        self.log_ent_coef * (log_prob + self.target_entropy).detach()
                    ).mean()
                    ent_loss_total += ent_loss.item() / k
                    loss = loss + ent_loss  # disjoint parameters: one backward serves both
                scaler.scale(loss / k).backward()
                actor_loss_total += actor_loss.item() / k
            actor_losses.append(actor_loss_total)
            if self.ent_coef_optimizer is not None:
                ent_coef_losses.append(ent_loss_total)
            scaler.unscale_(self.actor.optimizer)
            norm = grad_norm(actor_encoder)
            if norm is not None:
                actor_norms.append(norm)
            scaler.step(self.actor.optimizer)
            if self.ent_coef_optimizer is not None:
                scaler.unscale_(self.ent_coef_optimizer)
                scaler.step(self.ent_coef_optimizer)
            scaler.update()

            if gradient_step % self.target_update_interval == 0:
                self._polyak_update()

        self._n_updates += gradient_steps

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if len(ent_coef_losses) > 0:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        if actor_norms:
            self.logger.record("train/encoder_grad_norm_actor", np.mean(actor_norms))
        if critic_norms:
            self.logger.record("train/encoder_grad_norm_critic", np.mean(critic_norms))

    def _polyak_update(self) -> None:
        """SB3's Polyak step of the target critic, as two multi-tensor kernels.

        ``target = (1 - tau) * target + tau * online`` element for element as SB3's
        per-tensor loop computes it (``mul_`` then ``add(alpha=tau)``), over parameter
        lists gathered once per model instead of a module walk per step.
        """
        pairs = self._polyak_pairs
        if pairs is None:
            online = [p.data for p in self.critic.parameters()]
            target = [p.data for p in self.critic_target.parameters()]
            if len(online) != len(target):
                raise ValueError("critic and critic_target have different parameter lists")
            pairs = self._polyak_pairs = (online, target)
        online, target = pairs
        with th.no_grad():
            th._foreach_mul_(target, 1.0 - self.tau)
            th._foreach_add_(target, online, alpha=self.tau)
        # Copy running stats, see SB3 GH issue #996.
        polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

    def _excluded_save_params(self) -> list[str]:
        # The scaler is rebuilt by _setup_model; its state is transient loss-scale tuning.
        return [*super()._excluded_save_params(), "grad_scaler", "_polyak_pairs"]


__all__ = [
    "SharedEncoderLoss",
    "YoopCnnPolicy",
    "YoopMlpPolicy",
    "YoopMultiInputPolicy",
    "YoopSAC",
    "grad_norm",
    "split_samples",
]
