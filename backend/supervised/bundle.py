"""Supervised model bundles, in the RL bundles' format family (``models/model_manager.py``).

A bundle directory holds::

    model.pt             MultiTaskModel state_dict (trunk + heads)
    trunk.pt             the trunk alone: a state_dict of the RL features extractor
    config.json          mode, T, F, encoder fields, tasks, feature config, lab config
    normalizer_<SYM>.json  FeatureNormalizer fitted on the fit range (one per symbol)
    labels.json          label definitions and per-symbol thresholds (fit range)
    calibration.json     per-head temperatures and confidence-combiner weights
    metadata.json        window dates, data ranges with SHA-256 of the bars, provenance

Files are written to a temporary sibling and moved into place, so a crash never leaves a
half-written bundle under the final name.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch as th

from backend.config.training_config import FeatureConfig
from backend.data_download.dataset import SymbolDataset
from backend.data_download.normalizer import FeatureNormalizer
from backend.supervised.labels import LabelThresholds
from backend.supervised.model import MultiTaskModel
from backend.supervised.pipeline import NetResult, WindowResult
from backend.utils.atomic_io import write_text_atomic
from backend.utils.provenance import collect_provenance, data_range

FORMAT_VERSION = 1
REQUIRED = ("model.pt", "config.json", "labels.json", "calibration.json", "metadata.json")


def _json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def save_bundle(
    target: Path,
    net: NetResult,
    window: WindowResult,
    datasets: list[SymbolDataset],
    *,
    feature_config: FeatureConfig,
    lab_config: dict[str, Any],
    sequence_length: int,
    feature_clip: float,
    data_dir: Path | None = None,
) -> Path:
    """Write one network of one window as a bundle at ``target`` (replacing an old one)."""
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    model = net.model
    th.save(model.state_dict(), tmp / "model.pt")
    th.save(model.trunk_state_dict(), tmp / "trunk.pt")
    n_features = window.test.window.shape[-1]
    _json(
        tmp / "config.json",
        {
            "format_version": FORMAT_VERSION,
            "kind": "supervised_multitask",
            "mode": model.mode,
            "sequence_length": sequence_length,
            "n_features": n_features,
            "feature_clip": feature_clip,
            "encoder": model.trunk.config.to_dict(),
            "tasks": list(model.tasks),
            "head_dropout": float(model.dropout.p),
            "features": feature_config.to_dict(),
            "lab": lab_config,
        },
    )
    for s in window.symbols:
        s.normalizer.save(tmp / f"normalizer_{s.symbol}.json")
    _json(
        tmp / "labels.json",
        {
            "definition": lab_config.get("labels", {}),
            "thresholds": {s.symbol: s.thresholds.to_dict() for s in window.symbols},
        },
    )
    _json(
        tmp / "calibration.json",
        {"temperatures": net.temperatures, "combiner_weights": net.combiner_weights},
    )
    ranges: dict[str, Any] = {}
    for ds in datasets:
        ranges[ds.symbol] = {}
        for part, (first, last) in window.dates.items():
            start, end = ds.session_bounds(pd.Timestamp(first), pd.Timestamp(last))
            ranges[ds.symbol][part] = data_range(ds.market, start, end)
    _json(
        tmp / "metadata.json",
        {
            "format_version": FORMAT_VERSION,
            "window": window.index,
            "data_dir": str(Path(data_dir).resolve()) if data_dir is not None else None,
            "dates": window.dates,
            "symbols": [s.symbol for s in window.symbols],
            "feature_names": list(window.symbols[0].normalizer.feature_names),
            "data_ranges": ranges,
            "training": {
                "epochs_run": net.train.epochs_run,
                "best_epoch": net.train.best_epoch,
                "best_val_loss": net.train.best_val_loss,
            },
            "latency_ms": net.latency_ms,
            "provenance": collect_provenance(),
        },
    )
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


@dataclass
class LoadedBundle:
    """A bundle read back."""

    model: MultiTaskModel
    config: dict[str, Any]
    feature_config: FeatureConfig
    normalizers: dict[str, FeatureNormalizer]
    thresholds: dict[str, LabelThresholds]
    calibration: dict[str, Any]
    metadata: dict[str, Any]


def load_bundle(path: str | Path) -> LoadedBundle:
    """Read a bundle written by :func:`save_bundle`.

    Raises:
        FileNotFoundError: naming the first missing file.
        ValueError: for a bundle of another kind or format version.
    """
    root = Path(path)
    for name in REQUIRED:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root}: not a supervised bundle, {name} is missing")
    config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    if (
        config.get("kind") != "supervised_multitask"
        or config.get("format_version") != FORMAT_VERSION
    ):
        raise ValueError(
            f"{root / 'config.json'}: expected kind 'supervised_multitask' version "
            f"{FORMAT_VERSION}, got {config.get('kind')!r} version {config.get('format_version')!r}"
        )
    model = MultiTaskModel(
        config["mode"],
        config["sequence_length"],
        config["n_features"],
        config["encoder"],
        config["tasks"],
        config["head_dropout"],
        clip=config["feature_clip"],
    )
    model.load_state_dict(th.load(root / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    labels = json.loads((root / "labels.json").read_text(encoding="utf-8"))
    return LoadedBundle(
        model=model,
        config=config,
        feature_config=FeatureConfig.from_dict(config["features"]),
        normalizers={
            p.stem.removeprefix("normalizer_"): FeatureNormalizer.load(p)
            for p in sorted(root.glob("normalizer_*.json"))
        },
        thresholds={s: LabelThresholds.from_dict(t) for s, t in labels["thresholds"].items()},
        calibration=json.loads((root / "calibration.json").read_text(encoding="utf-8")),
        metadata=json.loads((root / "metadata.json").read_text(encoding="utf-8")),
    )
