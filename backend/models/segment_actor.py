"""Deterministic actions over one env segment, with the market encoder run once in batches.

An evaluation rollout (each validation check, the out-of-sample test) calls ``predict``
once per bar: for a sequence encoder that is one batch-1 encoder forward per bar, plus
SB3's per-call overhead, and it was ~20% of a main-job run. The market part of an
observation (the window, or a flat mode's features) does not depend on the policy's own
trades, only the 3-number account state does; so :class:`SegmentActor` encodes every bar
of the env's segment in batches with the current weights, and per bar runs only the
account projection, the actor's MLP and the mean action.

The action equals ``model.predict(obs, deterministic=True)`` up to float round-off between
batched and single-row kernels (``tests/test_segment_actor.py``). The weights are read once:
build a new one after any training step. Extractors whose forward is not the
:class:`~backend.models.feature_extractors.base.EncoderBase` layout
``concat(head(encode(market)), account_proj(account))`` are served by ``model.predict``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch as th

from backend.models.feature_extractors.base import EncoderBase

__all__ = ["SegmentActor", "supports_segment_actor"]

_BATCH = 1024
"""Bars encoded per forward: large enough to amortise per-op overhead, small in memory."""


class _SegmentEnv(Protocol):
    """The env interface this needs (``IntradayTradingEnv``)."""

    observation_space: Any

    @property
    def current_bar(self) -> int: ...

    @property
    def bar_range(self) -> tuple[int, int]: ...

    def market_observations(self, start: int, stop: int) -> dict[str, np.ndarray]: ...


def supports_segment_actor(model: Any) -> bool:
    """Whether ``model``'s actor has the encoder layout :class:`SegmentActor` reproduces."""
    policy = getattr(model, "policy", None)
    actor = getattr(policy, "actor", None)
    extractor = getattr(actor, "features_extractor", None)
    return (
        isinstance(extractor, EncoderBase)
        and type(extractor).forward is EncoderBase.forward
        and not bool(getattr(actor, "use_sde", False))
        and extractor.instrument_embedding is None
    )


class SegmentActor:
    """``predict`` for deterministic rollouts of one env, with batched market embeddings.

    Args:
        model: A trained SB3 SAC model (``YoopSAC``) whose actor :func:`supports_segment_actor`.
        env: The env the rollout steps; its ``current_bar`` says which embedding to use.
        batch_size: Bars per encoder forward.

    Raises:
        ValueError: if the model's actor does not have the supported layout, or the env's
            observations have keys other than the encoder's market keys and ``account``.
    """

    def __init__(self, model: Any, env: _SegmentEnv, *, batch_size: int = _BATCH) -> None:
        if not supports_segment_actor(model):
            raise ValueError(
                "SegmentActor: the actor's features extractor must be an EncoderBase with its "
                "own forward, no instrument embedding and no gSDE; use model.predict"
            )
        self._policy = model.policy
        self._actor = model.policy.actor
        self._env = env
        extractor: EncoderBase = self._actor.features_extractor
        self._extractor = extractor
        keys = set(env.observation_space.spaces)
        market = {"features"} if extractor.observation_kind == "flat" else {"window", "mask"}
        if keys != market | {"account"}:
            raise ValueError(
                f"SegmentActor: observation keys {sorted(keys)} are not the encoder's "
                f"{sorted(market | {'account'})}"
            )
        lo, hi = env.bar_range
        # Decision bars of any episode inside bar_range: the previous close of its first
        # session (>= lo - 1) up to the bar before its last one.
        self._first = max(int(lo) - 1, 0)
        stop = max(int(hi) - 1, self._first + 1)
        device = self._policy.device
        self._policy.set_training_mode(False)  # as SB3's predict leaves it
        chunks: list[th.Tensor] = []
        with th.no_grad():
            for start in range(self._first, stop, batch_size):
                end = min(stop, start + batch_size)
                market_obs = {
                    key: th.as_tensor(value, device=device)
                    for key, value in env.market_observations(start, end).items()
                }
                chunks.append(extractor.head(extractor._encode(market_obs)))  # (B, E)
        self._embeddings = th.cat(chunks)  # (n_bars, E)

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """The mean action for the env's current bar (SB3's ``predict`` signature).

        Raises:
            ValueError: for ``deterministic=False`` (sampling goes through ``model.predict``)
                or a bar outside the encoded segment.
        """
        if not deterministic:
            raise ValueError("SegmentActor serves deterministic rollouts only")
        row = self._env.current_bar - self._first
        if not 0 <= row < self._embeddings.shape[0]:
            raise ValueError(
                f"SegmentActor: bar {self._env.current_bar} is outside the encoded segment "
                f"[{self._first}, {self._first + self._embeddings.shape[0]})"
            )
        with th.no_grad():
            account = th.as_tensor(observation["account"], device=self._policy.device)
            account = self._extractor.account_proj(account.reshape(1, -1))  # (1, A)
            features = th.cat([self._embeddings[row : row + 1], account], dim=-1)  # (1, E + A)
            mean = self._actor.mu(self._actor.latent_pi(features))  # (1, 1)
            action = th.tanh(mean).cpu().numpy()
        return self._policy.unscale_action(action)[0], None
