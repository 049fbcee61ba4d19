"""Multi-task model: one RL encoder as the shared trunk, one head per task.

The trunk is the RL agent's own features extractor (``ENCODER_REGISTRY[mode]``) built on the
env's sequence observation space, so its trained weights load into the agent unchanged.
The account vector (position, unrealized PnL, session time left) means nothing for a
forecast, so the lab feeds it as zeros: the trunk's account projection then adds a constant
that the heads absorb, and the RL agent fine-tunes it later. Heads read
``Dropout(trunk(obs))`` (the dropout is what Monte Carlo dropout samples):

* ``logits[task]`` ``(B, 3)`` per classification task;
* ``intensity`` ``(B,)``: standardized future log-volatility (when ``volatility`` is a task).

Pooled models of several symbols give the trunk each bar's symbol id (the encoder's
``instruments`` field: a learned instrument embedding, ``backend.models.feature_extractors.
base``); the table's symbol order is saved with the encoder config in the bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from torch import nn

from backend.models.feature_extractors.base import INSTRUMENT_KEY, EncoderBase
from backend.models.feature_extractors.registry import get_encoder_class, resolve_encoder_config
from backend.models.feature_extractors.transformer_encoder import TransformerEncoder

N_ACCOUNT = 3
"""Length of the env's account vector (``Docs/CONTRACTS.md``)."""


def sequence_observation_space(
    window: int, n_features: int, clip: float, n_instruments: int = 0
) -> spaces.Dict:
    """The env's sequence-mode observation space (``IntradayTradingEnv``).

    With ``n_instruments`` > 0 it also has the ``instrument`` id entry of pooled models.
    """
    entries: dict[str, spaces.Space[Any]] = {
        "window": spaces.Box(-clip, clip, shape=(window, n_features), dtype=np.float32),
        "mask": spaces.Box(0.0, 1.0, shape=(window,), dtype=np.float32),
        "account": spaces.Box(
            low=np.array([-1.0, -1.0, 0.0], dtype=np.float32),
            high=np.array([1.0, 1.0, 1.0], dtype=np.float32),
            dtype=np.float32,
        ),
    }
    if n_instruments > 0:
        entries[INSTRUMENT_KEY] = spaces.Box(
            0.0, float(n_instruments - 1), shape=(1,), dtype=np.float32
        )
    return spaces.Dict(entries)


class MultiTaskModel(nn.Module):
    """RL encoder trunk + per-task heads.

    Args:
        mode: Encoder name (``lstm``, ``cnn``, ``transformer``; ``manual`` works with flat
            observations but the lab uses the sequence encoders).
        window: ``T``.
        n_features: ``F``.
        encoder_fields: Fields of the mode's encoder config.
        tasks: Classification tasks, in head order.
        head_dropout: Dropout before the heads.
        clip: Feature clip of the observation space.
    """

    def __init__(
        self,
        mode: str,
        window: int,
        n_features: int,
        encoder_fields: dict[str, Any],
        tasks: Sequence[str],
        head_dropout: float,
        clip: float = 10.0,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.tasks = tuple(tasks)
        config = resolve_encoder_config(mode, encoder_fields)
        self.instruments: tuple[str, ...] = tuple(config.instruments)
        self.trunk: EncoderBase = get_encoder_class(mode)(
            sequence_observation_space(window, n_features, clip, len(self.instruments)), config
        )
        dim = self.trunk.features_dim
        self.embedding_dim = dim
        self.dropout = nn.Dropout(head_dropout)
        self.heads = nn.ModuleDict({task: nn.Linear(dim, 3) for task in self.tasks})
        self.intensity_head = nn.Linear(dim, 1) if "volatility" in self.tasks else None

    @property
    def attention_trunk(self) -> TransformerEncoder | None:
        """The trunk if it is a transformer (attention maps), else None."""
        return self.trunk if isinstance(self.trunk, TransformerEncoder) else None

    def instrument_ids(self, symbols: np.ndarray) -> np.ndarray | None:
        """Instrument ids ``(n,)`` float32 of each bar's symbol; None without embeddings.

        Raises:
            ValueError: naming a symbol the model was not trained on.
        """
        if not self.instruments:
            return None
        index = {s: i for i, s in enumerate(self.instruments)}
        unknown = sorted(set(np.asarray(symbols).astype(str).tolist()) - set(index))
        if unknown:
            raise ValueError(
                f"symbols {unknown}: not in the model's instruments {list(self.instruments)}"
            )
        return np.array([index[str(s)] for s in symbols], dtype=np.float32)

    def embed(
        self, window: th.Tensor, mask: th.Tensor, instrument: th.Tensor | None = None
    ) -> th.Tensor:
        """Trunk embedding of ``window`` ``(B, T, F)`` and ``mask`` ``(B, T)`` -> ``(B, E)``.

        ``instrument`` ``(B,)``: symbol ids, required when the model has instruments.
        """
        account = window.new_zeros(window.shape[0], N_ACCOUNT)  # (B, 3): no position
        obs = {"window": window, "mask": mask, "account": account}
        if self.instruments:
            if instrument is None:
                raise ValueError(
                    f"{self.mode}: a pooled model of {list(self.instruments)} needs the "
                    "instrument id of every observation"
                )
            obs[INSTRUMENT_KEY] = instrument.reshape(-1, 1).to(window.dtype)  # (B, 1)
        return self.trunk(obs)

    def forward(
        self, window: th.Tensor, mask: th.Tensor, instrument: th.Tensor | None = None
    ) -> dict[str, th.Tensor]:
        """Logits per task ``(B, 3)``, ``intensity`` ``(B,)`` and ``embedding`` ``(B, E)``."""
        embedding = self.embed(window, mask, instrument)  # (B, E)
        x = self.dropout(embedding)
        out = {task: head(x) for task, head in self.heads.items()}
        if self.intensity_head is not None:
            out["intensity"] = self.intensity_head(x).squeeze(-1)  # (B,)
        out["embedding"] = embedding
        return out

    def trunk_state_dict(self) -> dict[str, th.Tensor]:
        """The trunk's weights: a ``state_dict`` of the RL features extractor."""
        return self.trunk.state_dict()
