"""Supervised trunks in the RL agent: read, check and load a pretrained encoder (issue 13).

The supervised lab (``backend.supervised``) trains the RL encoders themselves as multi-task
forecasters and saves each trunk as a bundle folder (``backend/supervised/bundle.py``):
``trunk.pt`` (a ``state_dict`` of the RL features extractor), ``config.json`` (encoder mode
and fields, window length ``T``, feature count, clip, feature config), one
``normalizer_<SYMBOL>.json`` per symbol (fitted on the lab's fit range) and
``metadata.json`` (feature names, the session dates of fit / validation / test).

This module is what the RL side needs of it, below the training layer:

* :func:`load_trunk_bundle` reads those files (no import of the lab);
* :func:`trunk_differences` lists every way a bundle does not fit the job (encoder mode,
  feature names and order, window length, observation clip, normalizer statistics) and
  :func:`range_overlaps` every overlap of the bars the trunk learned from (its fit and
  validation sessions) with the ranges the job must not have seen;
* :func:`trunk_embeddings` computes a frozen trunk's market embedding of every bar once,
  batched (GPU when asked): the embedding of a window does not depend on the policy, so a
  frozen trunk need not run inside SAC's updates at all;
* :class:`PrecomputedEmbeddingExtractor` is the SAC features extractor of that fast path:
  it passes the precomputed embedding through and projects the account vector, exactly
  the ``concat(head(body(window)), account_proj(account))`` of the trunk itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from backend.data_download.normalizer import FeatureNormalizer
from backend.models.feature_extractors.base import EncoderBase
from backend.models.feature_extractors.registry import (
    EncoderConfigBase,
    get_encoder_class,
    resolve_encoder_config,
)
from backend.models.model_manager import feature_name_differences

PretrainedUse = Literal["frozen", "finetune"]
"""``frozen``: the trunk's weights never change (embeddings computed once); ``finetune``:
SAC trains it further with its own learning rate and weight decay."""

TRUNK_FILE = "trunk.pt"
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
TRAINED_PARTS: tuple[str, ...] = ("fit", "val")
"""Ranges whose bars shaped the trunk: trained on ``fit``, early-stopped on ``val``."""

_NORMALIZER_RTOL = 1e-6


@dataclass(frozen=True)
class TrunkBundle:
    """A supervised trunk read from its bundle folder."""

    path: Path
    mode: str
    """Encoder name (registry key) of the trunk."""
    encoder: dict[str, Any]
    """The trunk's encoder config fields."""
    sequence_length: int
    n_features: int
    feature_clip: float
    feature_names: tuple[str, ...]
    normalizers: dict[str, FeatureNormalizer]
    """Per symbol, the normalizer the trunk's inputs were scaled with."""
    dates: dict[str, tuple[str, str]]
    """Part (``fit``, ``val``, ``test``) -> first and last session date of the lab window."""
    state: dict[str, th.Tensor]
    """``state_dict`` of the RL features extractor."""

    def encoder_config(self, symbol: str | None = None) -> EncoderConfigBase:
        """The trunk's encoder config; a pooled trunk gets ``instrument = symbol`` fixed.

        Raises:
            ValueError: if a pooled trunk never saw ``symbol``.
        """
        fields = dict(self.encoder)
        instruments = list(fields.get("instruments") or [])
        if instruments:
            if symbol not in instruments:
                raise ValueError(
                    f"{self.path}: pooled trunk of {instruments} has no instrument {symbol!r}"
                )
            fields["instrument"] = symbol
        return resolve_encoder_config(self.mode, fields)

    def trained_span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last session whose bars trained or selected the trunk (fit + val)."""
        firsts = [pd.Timestamp(self.dates[p][0]) for p in TRAINED_PARTS if p in self.dates]
        lasts = [pd.Timestamp(self.dates[p][1]) for p in TRAINED_PARTS if p in self.dates]
        return min(firsts), max(lasts)


def load_trunk_bundle(path: str | Path) -> TrunkBundle:
    """Read a supervised bundle's trunk, config, normalizers and dates.

    Raises:
        FileNotFoundError: naming the first missing file.
        ValueError: for a folder that is not a supervised bundle.
    """
    root = Path(path)
    for name in (TRUNK_FILE, CONFIG_FILE, METADATA_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(
                f"{root}: not a supervised trunk bundle ({name} is missing); give a folder "
                "written by the supervised lab, e.g. <run>/bundles/transformer"
            )
    config = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("kind") != "supervised_multitask":
        raise ValueError(
            f"{root / CONFIG_FILE}: kind {config.get('kind')!r}, expected 'supervised_multitask'"
        )
    metadata = json.loads((root / METADATA_FILE).read_text(encoding="utf-8"))
    normalizers = {
        p.stem.removeprefix("normalizer_"): FeatureNormalizer.load(p)
        for p in sorted(root.glob("normalizer_*.json"))
    }
    return TrunkBundle(
        path=root,
        mode=str(config["mode"]),
        encoder=dict(config["encoder"]),
        sequence_length=int(config["sequence_length"]),
        n_features=int(config["n_features"]),
        feature_clip=float(config["feature_clip"]),
        feature_names=tuple(metadata["feature_names"]),
        normalizers=normalizers,
        dates={k: (str(v[0]), str(v[1])) for k, v in metadata["dates"].items()},
        state=th.load(root / TRUNK_FILE, map_location="cpu", weights_only=True),
    )


def _normalizer_differences(
    symbol: str, expected: FeatureNormalizer, got: FeatureNormalizer
) -> list[str]:
    out = []
    if (expected.fit_start, expected.fit_end) != (got.fit_start, got.fit_end):
        out.append(
            f"normalizer of {symbol}: the trunk's was fitted on {expected.fit_start} .. "
            f"{expected.fit_end}, this job's on {got.fit_start} .. {got.fit_end}"
        )
    if expected.method != got.method:
        out.append(f"normalizer method: expected {expected.method!r}, got {got.method!r}")
    shared = [n for n in expected.feature_names if n in got.stats]
    differing = [
        n
        for n in shared
        if not np.isclose(expected.stats[n].center, got.stats[n].center, rtol=_NORMALIZER_RTOL)
        or not np.isclose(expected.stats[n].scale, got.stats[n].scale, rtol=_NORMALIZER_RTOL)
    ]
    if differing:
        first = differing[0]
        e, g = expected.stats[first], got.stats[first]
        out.append(
            f"normalizer statistics of {symbol}: {len(differing)} of {len(shared)} features "
            f"differ (first {first!r}: center/scale {e.center:.6g}/{e.scale:.6g} in the trunk, "
            f"{g.center:.6g}/{g.scale:.6g} here)"
        )
    return out


def trunk_differences(
    bundle: TrunkBundle,
    *,
    mode: str,
    feature_names: tuple[str, ...] | list[str],
    sequence_length: int,
    feature_clip: float,
    symbol: str,
    normalizer: FeatureNormalizer | None,
) -> list[str]:
    """Every way ``bundle`` does not fit a job's observations; empty when it fits."""
    out = []
    if bundle.mode != mode:
        out.append(f"encoder: the trunk is {bundle.mode!r}, the job trains {mode!r}")
    out += feature_name_differences(bundle.feature_names, feature_names)
    if bundle.sequence_length != sequence_length:
        out.append(
            f"window length: the trunk reads T={bundle.sequence_length} bars, the env "
            f"emits T={sequence_length}"
        )
    if not np.isclose(bundle.feature_clip, feature_clip):
        out.append(f"feature_clip: the trunk's {bundle.feature_clip}, the env's {feature_clip}")
    instruments = list(bundle.encoder.get("instruments") or [])
    if instruments and symbol not in instruments:
        out.append(f"instruments: the pooled trunk knows {instruments}, not {symbol!r}")
    if symbol not in bundle.normalizers:
        out.append(
            f"normalizer: the bundle has none for {symbol!r} (it has {sorted(bundle.normalizers)})"
        )
    elif normalizer is not None:
        out += _normalizer_differences(symbol, bundle.normalizers[symbol], normalizer)
    return out


def range_overlaps(
    bundle: TrunkBundle, forbidden: dict[str, tuple[pd.Timestamp, pd.Timestamp]]
) -> list[str]:
    """Each named session range that overlaps the sessions the trunk learned from."""
    first, last = bundle.trained_span()
    out = []
    for name, (start, stop) in forbidden.items():
        if pd.Timestamp(start) <= last and first <= pd.Timestamp(stop):
            out.append(
                f"data range: the trunk learned from sessions {first.date()} .. {last.date()} "
                f"(its fit and validation), which overlaps this window's {name} range "
                f"{pd.Timestamp(start).date()} .. {pd.Timestamp(stop).date()}"
            )
    return out


def refuse_if(problems: list[str], bundle: TrunkBundle) -> None:
    """Raise one ``ValueError`` listing every problem (nothing when the list is empty)."""
    if problems:
        raise ValueError(f"pretrained encoder {bundle.path} refused: " + "; ".join(problems) + ".")


def build_trunk(
    bundle: TrunkBundle, observation_space: spaces.Dict, symbol: str | None = None
) -> EncoderBase:
    """The RL encoder of the bundle's mode on ``observation_space``, with the trunk loaded."""
    encoder = get_encoder_class(bundle.mode)(observation_space, bundle.encoder_config(symbol))
    encoder.load_state_dict(bundle.state)
    return encoder


def load_trunk_state(extractor: nn.Module, bundle: TrunkBundle) -> None:
    """Copy the trunk's weights into ``extractor`` (strict: every key must match)."""
    extractor.load_state_dict(bundle.state)


@th.no_grad()
def trunk_embeddings(
    trunk: EncoderBase,
    features: np.ndarray,
    *,
    sequence_length: int,
    feature_clip: float,
    batch_size: int = 2048,
    device: str | th.device = "cpu",
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """The frozen trunk's market embedding ``head(body(window))`` of every bar -> ``(n, E)``.

    Row ``t``'s window is what the env emits at ``t`` in sequence mode: feature rows
    ``t-T+1 .. t`` clipped to ``feature_clip``, zero-padded with mask 0 before row 0. Rows
    are encoded in batches of ``batch_size`` on ``device`` (the trunk is moved there and
    back), in eval mode.

    ``rows`` (half-open ``(start, stop)``) encodes only the bars an env will observe (the
    fit and validation bars of a training run): the pass is the one cost the frozen path
    adds to SAC, and it grows with every bar encoded. Rows outside stay zero.

    Raises:
        ValueError: if ``rows`` is not a range within ``0 .. n``.
    """
    feats = np.clip(np.asarray(features, dtype=np.float32), -feature_clip, feature_clip)
    n, n_feat = feats.shape
    first, stop = (0, n) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= first <= stop <= n:
        raise ValueError(f"rows: need 0 <= start <= stop <= {n}, got {rows}")
    pad = sequence_length - 1
    padded = np.zeros((n + pad, n_feat), dtype=np.float32)
    padded[pad:] = feats
    mask_src = np.zeros(n + pad, dtype=np.float32)
    mask_src[pad:] = 1.0
    source = th.from_numpy(padded).to(device)
    mask_all = th.from_numpy(mask_src).to(device)
    offsets = th.arange(sequence_length, device=device)
    was_training = trunk.training
    original = next(trunk.parameters()).device
    trunk.eval().to(device)
    out = np.zeros((n, trunk.config.embedding_dim), dtype=np.float32)
    try:
        for start in range(first, stop, batch_size):
            end = min(stop, start + batch_size)
            batch = th.arange(start, end, device=device)
            idx = batch[:, None] + offsets[None, :]  # (B, T)
            obs = {
                "window": source[idx],  # (B, T, F)
                "mask": mask_all[idx],  # (B, T)
                "account": th.zeros(batch.numel(), trunk.dims.n_account, device=device),
            }
            out[start:end] = trunk.head(trunk._encode(obs)).float().cpu().numpy()  # (B, E)
    finally:
        trunk.to(original).train(was_training)
    return out


class PrecomputedEmbeddingExtractor(BaseFeaturesExtractor):
    """SAC features of the frozen fast path: ``concat(embedding, account_proj(account))``.

    The observation's ``features`` entry is the trunk's precomputed embedding of the bar
    (:func:`trunk_embeddings`), so this equals the trunk's own output on the window; only
    the account projection (which the lab never trained: it fed zeros) is learned here.
    ``account_proj`` has the trunk's layout and starts from the trunk's weights.

    Args:
        observation_space: ``{"features": (E,), "account": (3,)}``.
        account_dim: Width of the account projection (the trunk's ``account_dim``).
        account_state: The trunk's ``account_proj`` state dict, or None for a fresh one.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        account_dim: int,
        account_state: dict[str, th.Tensor] | None = None,
    ) -> None:
        embedding = observation_space.spaces["features"]
        account = observation_space.spaces["account"]
        assert isinstance(embedding, spaces.Box) and isinstance(account, spaces.Box)
        dim = int(embedding.shape[0])
        super().__init__(observation_space, features_dim=dim + account_dim)
        self.account_proj = nn.Sequential(nn.Linear(int(account.shape[0]), account_dim), nn.Tanh())
        if account_state is not None:
            self.account_proj.load_state_dict(account_state)

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:
        """``(B, E)`` embedding and ``(B, 3)`` account -> ``(B, E + A)``."""
        return th.cat(
            [observations["features"], self.account_proj(observations["account"])], dim=-1
        )


__all__ = [
    "PrecomputedEmbeddingExtractor",
    "PretrainedUse",
    "TrunkBundle",
    "build_trunk",
    "load_trunk_bundle",
    "load_trunk_state",
    "range_overlaps",
    "refuse_if",
    "trunk_differences",
    "trunk_embeddings",
]
