"""One walk-forward window of the supervised lab: fit, calibrate, combine, predict the test.

Per window, in this order (nothing fitted ever sees a test bar):

1. per symbol: normalizer and label thresholds on the fit range, observations and labels
   of fit / validation / test (``samples.build_symbol_window``); symbols are pooled;
2. baselines fitted on the fit range;
3. per model: training early-stopped on validation; per-head temperatures on validation;
   confidence sources (Mahalanobis reference on the fit range) and their combination on
   validation; single-prediction latency;
4. ensembles of the calibrated members fitted on validation;
5. test probabilities, confidences, intensities and attention rows of every forecaster.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch as th

from backend.config.supervised import SupervisedConfig
from backend.data_download.dataset import SymbolDataset
from backend.supervised.baselines import BASELINES, fit_predict_baselines
from backend.supervised.calibration import fit_temperature, probabilities
from backend.supervised.confidence import (
    ConfidenceCombiner,
    MahalanobisScorer,
    attention_confidence,
    mc_confidence,
)
from backend.supervised.ensembles import ensemble_probabilities
from backend.supervised.labels import LabelConfig
from backend.supervised.model import MultiTaskModel
from backend.supervised.samples import PartData, SymbolWindow, build_symbol_window
from backend.supervised.trainer import (
    Predictions,
    TrainResult,
    model_summary,
    predict,
    resolve_device,
    train_model,
)
from backend.training.walk_forward import WalkForwardWindow


def label_config(config: SupervisedConfig) -> LabelConfig:
    """The labels' dataclass from the config section."""
    return LabelConfig(**config.labels.model_dump())


@dataclass
class NetResult:
    """One trained model of one window."""

    model: MultiTaskModel
    train: TrainResult
    temperatures: dict[str, float]
    combiner_weights: dict[str, dict[str, float]]
    latency_ms: dict[str, float]
    summary: dict[str, Any]


@dataclass
class WindowResult:
    """Everything the report needs from one window (test bars in ``test`` order)."""

    index: int
    dates: dict[str, tuple[str, str]]
    symbols: list[SymbolWindow]
    test: PartData
    probs: dict[str, dict[str, np.ndarray]]
    """Task -> forecaster -> (n_test, 3) probabilities (calibrated for the networks)."""
    raw_probs: dict[str, dict[str, np.ndarray]]
    """Task -> network -> uncalibrated test probabilities (temperature 1)."""
    val_accuracy: dict[str, dict[str, float]]
    """Task -> forecaster -> validation accuracy (picks the best baseline)."""
    confidence: dict[str, dict[str, dict[str, np.ndarray]]]
    """Task -> network -> source -> (n_test,) confidence; ``combined`` included."""
    mc_variance: dict[str, dict[str, np.ndarray]]
    intensity: dict[str, np.ndarray]
    """Network -> predicted standardized log-volatility on the test bars."""
    attention: np.ndarray | None
    """(n_test, L, H, T) newest-bar attention of the transformer."""
    nets: dict[str, NetResult]
    ensemble_weights: dict[str, dict[str, float]] = field(default_factory=dict)


def _dates(sessions: pd.DatetimeIndex, window: WalkForwardWindow) -> dict[str, tuple[str, str]]:
    return {
        name: (str(sessions[r.start].date()), str(sessions[r.stop - 1].date()))
        for name, r in (("fit", window.fit), ("val", window.val), ("test", window.test))
    }


def single_prediction_latency(
    model: MultiTaskModel,
    window: np.ndarray,
    mask: np.ndarray,
    instrument: np.ndarray | None,
    repeats: int,
    warmup: int = 5,
) -> dict[str, float]:
    """p50 / p99 wall time of one forward pass of a batch of one, in milliseconds.

    Args:
        model: The model (timed in eval mode, without gradients, on its own device).
        window: ``(1, T, F)`` observation.
        mask: ``(1, T)`` padding mask.
        instrument: ``(1,)`` instrument id of a pooled model, else None.
        repeats: Timed passes.
        warmup: Untimed passes first (allocator, kernels).
    """
    device = next(model.parameters()).device
    w = th.from_numpy(window).to(device)
    m = th.from_numpy(mask).to(device)
    ids = th.from_numpy(instrument).to(device) if instrument is not None else None
    times = []
    model.eval()
    with th.no_grad():
        for i in range(repeats + warmup):
            start = time.perf_counter()
            model(w, m, ids)
            if device.type == "cuda":
                th.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def measure_latency(model: MultiTaskModel, part: PartData, repeats: int) -> dict[str, float]:
    """p50 / p99 single-prediction latency on the first bar of ``part``, in milliseconds."""
    return single_prediction_latency(
        model, part.window[:1], part.mask[:1], model.instrument_ids(part.symbol[:1]), repeats
    )


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    keep = labels >= 0
    return float((probs[keep].argmax(axis=1) == labels[keep]).mean()) if keep.any() else 0.0


def run_window(
    datasets: Sequence[SymbolDataset],
    sessions: pd.DatetimeIndex,
    window: WalkForwardWindow,
    config: SupervisedConfig,
    *,
    seed: int,
    output_dir: Path | None = None,
) -> WindowResult:
    """Run steps 1-5 of the module docstring for one window."""
    labels_cfg = label_config(config)
    symbol_windows = [
        build_symbol_window(
            ds,
            sessions,
            window,
            sequence_length=config.sequence_length,
            feature_clip=config.feature_clip,
            label_config=labels_cfg,
        )
        for ds in datasets
    ]
    fit = PartData.concat([s.parts["fit"] for s in symbol_windows])
    val = PartData.concat([s.parts["val"] for s in symbol_windows])
    test = PartData.concat([s.parts["test"] for s in symbol_windows])
    tasks = config.tasks
    probs: dict[str, dict[str, np.ndarray]] = {t: {} for t in tasks}
    raw: dict[str, dict[str, np.ndarray]] = {t: {} for t in tasks}
    val_probs: dict[str, dict[str, np.ndarray]] = {t: {} for t in tasks}
    val_acc: dict[str, dict[str, float]] = {t: {} for t in tasks}
    for task in tasks:
        base = fit_predict_baselines(task, fit, {"val": val, "test": test}, config.baselines, seed)
        for name in BASELINES:
            probs[task][name] = base[name]["test"]
            val_acc[task][name] = _accuracy(base[name]["val"], val.labels[task])

    device = resolve_device(config.training.device)
    nets: dict[str, NetResult] = {}
    confidence: dict[str, dict[str, dict[str, np.ndarray]]] = {t: {} for t in tasks}
    mc_variance: dict[str, dict[str, np.ndarray]] = {t: {} for t in tasks}
    intensity: dict[str, np.ndarray] = {}
    attention: np.ndarray | None = None
    n_features = fit.window.shape[-1]
    for offset, mode in enumerate(config.models):
        model_seed = seed + 1000 * window.index + offset
        th.manual_seed(model_seed)  # weight init
        fields = config.encoder_fields(mode)
        if config.instrument_embedding and len(symbol_windows) > 1:
            fields = {**fields, "instruments": [s.symbol for s in symbol_windows]}
        model = MultiTaskModel(
            mode,
            config.sequence_length,
            n_features,
            fields,
            tasks,
            config.training.head_dropout,
            clip=config.feature_clip,
        )
        log_dir = (
            output_dir / "tensorboard" / f"window_{window.index:02d}" / mode
            if output_dir is not None and config.training.tensorboard
            else None
        )
        result = train_model(
            model,
            fit,
            val,
            config.training,
            seed=model_seed,
            log_dir=log_dir,
            description=f"w{window.index} {mode}",
        )
        is_transformer = model.attention_trunk is not None
        pred_fit = predict(model, fit.select(fit.labelled), device=device)
        pred_val = predict(
            model,
            val,
            device=device,
            mc_passes=config.confidence.mc_passes,
            attention=is_transformer,
            seed=seed,
        )
        pred_test = predict(
            model,
            test,
            device=device,
            mc_passes=config.confidence.mc_passes,
            attention=is_transformer,
            seed=seed + 1,
        )
        scorer = MahalanobisScorer.fit(pred_fit.embedding)
        temperatures: dict[str, float] = {}
        weights: dict[str, dict[str, float]] = {}
        for task in tasks:
            keep = val.labels[task] >= 0
            temp = fit_temperature(pred_val.logits[task][keep], val.labels[task][keep])
            temperatures[task] = temp
            p_val = probabilities(pred_val.logits[task], temp)
            p_test = probabilities(pred_test.logits[task], temp)
            probs[task][mode] = p_test
            raw[task][mode] = probabilities(pred_test.logits[task])
            val_probs[task][mode] = p_val
            val_acc[task][mode] = _accuracy(p_val, val.labels[task])
            src_val = _sources(pred_val, task, temp, scorer)
            src_test = _sources(pred_test, task, temp, scorer)
            combiner = ConfidenceCombiner(tuple(s for s in src_val if s != "mc_variance"))
            correct = p_val[keep].argmax(axis=1) == val.labels[task][keep]
            combiner.fit({k: v[keep] for k, v in src_val.items()}, correct)
            weights[task] = combiner.weights
            mc_variance[task][mode] = src_test.pop("mc_variance")
            src_val.pop("mc_variance")
            src_test["combined"] = combiner.predict(src_test)
            confidence[task][mode] = src_test
        if pred_test.intensity is not None:
            intensity[mode] = pred_test.intensity
        if is_transformer:
            attention = pred_test.attention
        nets[mode] = NetResult(
            model=model.cpu(),
            train=result,
            temperatures=temperatures,
            combiner_weights=weights,
            latency_ms=measure_latency(model, test, config.latency_repeats),
            summary=model_summary(model),
        )
        model.to(device)

    ensemble_weights: dict[str, dict[str, float]] = {}
    members = [m for m in ("lstm", "cnn", "transformer") if m in config.models]
    if config.ensemble and len(members) >= 2:
        for task in tasks:
            ens_val, ens_test, w = ensemble_probabilities(
                val_probs[task], probs[task], val.labels[task], members
            )
            ensemble_weights[task] = w
            for name, p in ens_test.items():
                probs[task][name] = p
                val_acc[task][name] = _accuracy(ens_val[name], val.labels[task])
    return WindowResult(
        index=window.index,
        dates=_dates(sessions, window),
        symbols=symbol_windows,
        test=test,
        probs=probs,
        raw_probs=raw,
        val_accuracy=val_acc,
        confidence=confidence,
        mc_variance=mc_variance,
        intensity=intensity,
        attention=attention,
        nets=nets,
        ensemble_weights=ensemble_weights,
    )


def _sources(
    pred: Predictions, task: str, temperature: float, scorer: MahalanobisScorer
) -> dict[str, np.ndarray]:
    """Every confidence source of one task's predictions (plus the MC variance)."""
    p = probabilities(pred.logits[task], temperature)
    out = {"softmax": p.max(axis=1)}
    if pred.mc_logits is not None:
        out["mc"], out["mc_variance"] = mc_confidence(pred.mc_logits[task], temperature)
    else:
        out["mc"], out["mc_variance"] = out["softmax"], np.zeros(p.shape[0])
    out["similarity"] = scorer.similarity(pred.embedding)
    if pred.attention is not None:
        out["attention"] = attention_confidence(pred.attention)
    return out
