"""Shared pieces of the SAC tests: tiny configs of every encoder and a small synthetic market.

Small enough that a model of each mode builds and trains a few steps in about a second.
"""

from __future__ import annotations

from typing import Any

from backend.config.encoder_config import (
    CNNConfig,
    LSTMConfig,
    ManualEncoderConfig,
    TransformerConfig,
)
from backend.config.training_config import FeatureConfig
from backend.data_download.dataset import SymbolDataset
from backend.data_download.loader import join_vix_asof
from backend.data_download.synthetic_market import (
    SyntheticMarketConfig,
    generate_synthetic_market,
)

TINY_ENCODERS: dict[str, Any] = {
    "manual": ManualEncoderConfig(hidden_dims=(16,), embedding_dim=8, account_dim=4),
    "cnn": CNNConfig(channels=8, dilations=(1, 2), embedding_dim=8, account_dim=4),
    "lstm": LSTMConfig(hidden_size=8, embedding_dim=8, account_dim=4),
    "transformer": TransformerConfig(
        d_model=8, n_heads=2, n_layers=1, ff_dim=16, embedding_dim=8, account_dim=4
    ),
}
"""One tiny config per registered encoder mode."""


def synthetic_arrays(n_sessions: int, seed: int, fit_sessions: int | None = None) -> Any:
    """Market arrays of a synthetic SPY+VIX market, normalized on its first ``fit_sessions``
    sessions (all of them by default)."""
    frames = generate_synthetic_market(
        SyntheticMarketConfig(start="2024-10-01", end=None, n_sessions=n_sessions, seed=seed)
    )
    market = join_vix_asof(frames["SPY"], frames["VIX"])
    dataset = SymbolDataset.from_market("SPY", market, FeatureConfig())
    sessions = dataset.sessions
    last = sessions[-1] if fit_sessions is None else sessions[fit_sessions - 1]
    return dataset.arrays(dataset.fit_normalizer(sessions[0], last))
