"""Training callbacks: trading metrics for TensorBoard, validation Sharpe early stopping.

SB3 already logs the losses, the entropy coefficient and ``rollout/ep_rew_mean``;
:class:`TradingMetricsCallback` adds what a trading run is judged by (equity, turnover,
mean DSR per step) and the Transformer's attention entropy. :class:`ValidationEarlyStopping`
runs the deterministic policy over the whole validation segment every
``eval_every_steps`` steps, keeps the best policy weights by annualized Sharpe and stops
when ``early_stop_window`` evaluations in a row bring no improvement; the best weights are
restored when training ends.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback, EventCallback

from backend.environments.intraday_env import IntradayTradingEnv
from backend.evaluation.metrics import BARS_PER_YEAR, sharpe_ratio
from backend.evaluation.rollout import rollout_policy
from backend.models.segment_actor import SegmentActor, supports_segment_actor


class TradingMetricsCallback(BaseCallback):
    """Log per-episode trading metrics from the env's ``info`` dicts to SB3's logger.

    Keys (averaged over the episodes finished between two logger dumps):
    ``trading/episode_reward``, ``trading/mean_step_reward`` (the mean DSR per step when
    the env's reward is the DSR, divided by ``reward_scale``), ``trading/final_equity``,
    ``trading/episode_turnover``; and ``encoder/attention_entropy`` for encoders that expose
    ``attention_entropy()`` (the Transformer), measured every ``attention_probe_every``
    steps on the latest observation with ``store_attention`` switched on just for that
    forward pass (the fused attention kernel is used otherwise).

    Args:
        reward_scale: The env's ``reward_scale``, undone for ``mean_step_reward``.
        attention_probe_every: Steps between attention probes; 0 disables them.
        verbose: SB3 verbosity.
    """

    def __init__(
        self, reward_scale: float = 1.0, attention_probe_every: int = 1_000, verbose: int = 0
    ) -> None:
        super().__init__(verbose)
        self.reward_scale = float(reward_scale)
        self.attention_probe_every = int(attention_probe_every)
        self._reward_sum: np.ndarray = np.zeros(0)
        self._turnover: np.ndarray = np.zeros(0)
        self._steps: np.ndarray = np.zeros(0, dtype=np.int64)
        self.last_attention_entropy: float | None = None
        """Latest probed attention entropy (nats), None before the first probe."""
        self.episodes_logged = 0
        """Episodes whose metrics were recorded."""

    def _on_training_start(self) -> None:
        n = self.training_env.num_envs if self.training_env is not None else 1
        self._reward_sum = np.zeros(n)
        self._turnover = np.zeros(n)
        self._steps = np.zeros(n, dtype=np.int64)

    def _on_step(self) -> bool:
        rewards = np.asarray(self.locals["rewards"], dtype=np.float64)
        dones = np.asarray(self.locals["dones"], dtype=bool)
        infos: list[dict[str, Any]] = self.locals["infos"]
        self._reward_sum += rewards
        self._steps += 1
        for i, info in enumerate(infos):
            self._turnover[i] += float(info.get("turnover", 0.0))
            if dones[i]:
                steps = max(int(self._steps[i]), 1)
                self.logger.record_mean("trading/episode_reward", float(self._reward_sum[i]))
                self.logger.record_mean(
                    "trading/mean_step_reward",
                    float(self._reward_sum[i]) / steps / self.reward_scale,
                )
                # SB3 VecEnvs reset on done; the finished episode's last info is this one.
                self.logger.record_mean("trading/final_equity", float(info.get("equity", np.nan)))
                self.logger.record_mean("trading/episode_turnover", float(self._turnover[i]))
                self._reward_sum[i] = 0.0
                self._turnover[i] = 0.0
                self._steps[i] = 0
                self.episodes_logged += 1
        every = self.attention_probe_every
        if every > 0 and self.n_calls % every == 0:
            self._probe_attention()
        return True

    def _probe_attention(self) -> None:
        extractor = getattr(self.model.policy.actor, "features_extractor", None)
        if extractor is None or not hasattr(extractor, "attention_entropy"):
            return
        obs = self.locals.get("new_obs")
        if obs is None:
            return
        tensor_obs, _ = self.model.policy.obs_to_tensor(obs)
        previous = bool(extractor.store_attention)
        extractor.store_attention = True
        try:
            with th.no_grad():
                extractor(tensor_obs)
            entropy = float(extractor.attention_entropy())
        finally:
            extractor.store_attention = previous
        self.last_attention_entropy = entropy
        self.logger.record("encoder/attention_entropy", entropy)


class ValidationEarlyStopping(EventCallback):
    """Validation Sharpe every ``eval_every_steps``; keep the best weights; stop on a plateau.

    The validation env must run the whole segment in one episode (``episode_sessions=0``,
    ``random_start=False``); each evaluation resets it to its first start bar and steps the
    deterministic policy to the end, collecting ``info["net_return"]``. The annualized
    Sharpe of those net step returns is logged as ``eval/val_sharpe`` (with
    ``eval/val_total_return`` and ``eval/val_turnover``).

    The best policy's ``state_dict`` is kept in memory (and written with ``model.save`` to
    ``best_model_path`` when given). "Best" is judged on the mean of the last ``smoothing``
    evaluations, not on one: a short validation range has a Sharpe standard error of
    several units (:attr:`sharpe_standard_error`), so a single lucky evaluation would
    otherwise pick the checkpoint (issue 9). After ``early_stop_window`` evaluations in a row
    without a smoothed Sharpe above the best by more than ``min_delta``, ``_on_step`` returns
    False, which stops ``learn()``. At the end of training the best weights are loaded back into the
    policy (actor, critic and target critic; the optimiser states and the entropy
    coefficient stay as they ended, they do not affect ``predict``).

    ``callback_after_eval`` runs after every evaluation (SB3 ``EvalCallback``'s hook), with
    this callback as its ``parent``: the tuner reports :attr:`best_sharpe` to Optuna there
    and prunes a trial from inside ``learn()``. Returning False stops training.

    Args:
        val_env: The validation env (not vectorized).
        eval_every_steps: Transitions (``num_timesteps``) between evaluations: with a VecEnv
            of ``n`` envs each callback call adds ``n``, and an evaluation runs at the first
            call at or past each multiple (with one env, every ``eval_every_steps`` calls).
        early_stop_window: Evaluations without improvement before stopping.
        min_delta: Improvement in (smoothed) Sharpe needed to count as a new best.
        smoothing: Evaluations averaged into the criterion (1: the latest alone).
        periods_per_year: Annualization factor of the per-step returns.
        best_model_path: Optional file for ``model.save`` of each new best.
        restore_best: Load the best weights when training ends.
        callback_after_eval: Called after every evaluation (``parent`` is this callback).
        verbose: SB3 verbosity.

    Raises:
        ValueError: if the validation env is not a whole-segment, sequential env.
    """

    def __init__(
        self,
        val_env: IntradayTradingEnv,
        eval_every_steps: int,
        early_stop_window: int,
        *,
        min_delta: float = 0.0,
        smoothing: int = 1,
        periods_per_year: float = BARS_PER_YEAR,
        best_model_path: str | Path | None = None,
        restore_best: bool = True,
        callback_after_eval: BaseCallback | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(callback_after_eval, verbose=verbose)
        if val_env.config.episode_sessions != 0:
            raise ValueError(
                "val_env must cover the whole validation segment: episode_sessions=0, got "
                f"{val_env.config.episode_sessions}"
            )
        if eval_every_steps < 1 or early_stop_window < 1 or smoothing < 1:
            raise ValueError("eval_every_steps, early_stop_window and smoothing must be >= 1")
        self.val_env = val_env
        self.eval_every_steps = int(eval_every_steps)
        self.early_stop_window = int(early_stop_window)
        self.min_delta = float(min_delta)
        self.smoothing = int(smoothing)
        self.sharpe_standard_error: float | None = None
        """Standard error of one evaluation's annualized Sharpe (Lo 2002, iid bars:
        ``sqrt((1 + SR_bar**2 / 2) / n_bars)`` annualized), from the first evaluation."""
        self.periods_per_year = float(periods_per_year)
        self.best_model_path = None if best_model_path is None else Path(best_model_path)
        self.restore_best = restore_best
        self.best_sharpe = -math.inf
        """Best (smoothed) validation Sharpe so far (-inf before the first evaluation)."""
        self.best_step: int | None = None
        """``num_timesteps`` at the best evaluation."""
        self.best_state: dict[str, th.Tensor] | None = None
        """Policy ``state_dict`` at the best evaluation (CPU copies)."""
        self.history: list[tuple[int, float]] = []
        """``(num_timesteps, val_sharpe)`` of every evaluation."""
        self.evals_without_improvement = 0
        """Evaluations since the last new best."""
        self._next_eval = self.eval_every_steps
        """``num_timesteps`` at or past which the next evaluation runs."""
        self.stopped_early = False
        """True when this callback ended training."""
        self.restored = False
        """True when the best weights were loaded back at the end."""

    def evaluate(self) -> dict[str, float]:
        """Run the deterministic policy over the validation segment once.

        Returns:
            ``{"sharpe", "total_return", "turnover", "steps"}``.
        """
        policy: Any = self.model
        if supports_segment_actor(self.model):
            policy = SegmentActor(self.model, self.val_env)  # same actions, batched encoder
        result = rollout_policy(policy, self.val_env, deterministic=True)
        return {
            "sharpe": sharpe_ratio(result.net_returns, self.periods_per_year),
            "total_return": result.total_return,
            "turnover": float(result.turnover.sum()),
            "steps": float(result.n_steps),
        }

    def _on_training_start(self) -> None:
        super()._on_training_start()
        every = self.eval_every_steps
        self._next_eval = (self.num_timesteps // every + 1) * every

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next_eval:
            return True
        every = self.eval_every_steps
        self._next_eval = (self.num_timesteps // every + 1) * every
        metrics = self.evaluate()
        sharpe = metrics["sharpe"]
        self.history.append((self.num_timesteps, sharpe))
        if self.sharpe_standard_error is None and metrics["steps"] > 0:
            per_bar = sharpe / math.sqrt(self.periods_per_year) if math.isfinite(sharpe) else 0.0
            self.sharpe_standard_error = math.sqrt(
                (1.0 + 0.5 * per_bar**2) / metrics["steps"] * self.periods_per_year
            )
        recent = [h[1] for h in self.history[-self.smoothing :]]
        recent = [x if math.isfinite(x) else 0.0 for x in recent]
        criterion = float(np.mean(recent))
        self.logger.record("eval/val_sharpe", sharpe)
        self.logger.record("eval/val_sharpe_smoothed", criterion)
        self.logger.record("eval/val_total_return", metrics["total_return"])
        self.logger.record("eval/val_turnover", metrics["turnover"])
        if criterion > self.best_sharpe + self.min_delta:
            self.best_sharpe = criterion
            self.best_step = self.num_timesteps
            self.best_state = {
                k: v.detach().to("cpu", copy=True)
                for k, v in self.model.policy.state_dict().items()
            }
            self.evals_without_improvement = 0
            if self.best_model_path is not None:
                self.best_model_path.parent.mkdir(parents=True, exist_ok=True)
                self.model.save(self.best_model_path)
        else:
            self.evals_without_improvement += 1
        self.logger.record("eval/best_val_sharpe", self.best_sharpe)
        self.logger.dump(self.num_timesteps)
        if self.verbose > 0:
            print(
                f"step {self.num_timesteps}: val Sharpe {sharpe:.3f} "
                f"(best {self.best_sharpe:.3f} at {self.best_step})"
            )
        if self.callback is not None and not self._on_event():
            return False
        if self.evals_without_improvement >= self.early_stop_window:
            self.stopped_early = True
            return False
        return True

    def _on_training_end(self) -> None:
        if self.restore_best and self.best_state is not None:
            state = copy.copy(self.best_state)
            self.model.policy.load_state_dict(state)
            self.restored = True
