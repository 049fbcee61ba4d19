"""Training and batched inference of :class:`MultiTaskModel`.

AdamW with separate weight decay for trunk and heads, linear warm-up then cosine decay per
optimizer step, gradient accumulation, mixed precision on CUDA only (autocast + GradScaler;
on CPU it would only be slower), early stopping on the validation loss with the best
weights restored, class weights or focal loss, optional label smoothing, a tqdm bar and
TensorBoard scalars.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from backend.config.supervised import TrainingSection
from backend.supervised.labels import NO_LABEL
from backend.supervised.model import MultiTaskModel
from backend.supervised.samples import PartData


@dataclass
class TrainResult:
    """What training returns besides the (best) model, which is trained in place."""

    best_epoch: int
    epochs_run: int
    best_val_loss: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str) -> th.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return th.device("cuda" if th.cuda.is_available() else "cpu")
    return th.device(name)


def class_weights(labels: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Inverse-frequency weights, mean 1 over the classes present (0-count classes get 1)."""
    y = labels[labels != NO_LABEL]
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1.0) / n_classes, 1.0)
    return w / w.mean()


def task_loss(
    logits: th.Tensor,
    target: th.Tensor,
    weight: th.Tensor | None,
    settings: TrainingSection,
) -> th.Tensor:
    """Cross-entropy or focal loss over the rows with a label (``target != -1``)."""
    keep = target != NO_LABEL
    if not bool(keep.any()):
        return logits.sum() * 0.0
    logits, target = logits[keep].float(), target[keep]
    if settings.loss == "focal":
        log_p = F.log_softmax(logits, dim=-1)
        log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        ce = F.nll_loss(log_p, target, weight=weight, reduction="none")
        focal = (1.0 - log_pt.exp()).pow(settings.focal_gamma) * ce
        norm = weight[target].sum() if weight is not None else target.numel()
        return focal.sum() / norm
    return F.cross_entropy(logits, target, weight=weight, label_smoothing=settings.label_smoothing)


def _tensors(part: PartData, model: MultiTaskModel) -> dict[str, th.Tensor]:
    out = {
        "window": th.from_numpy(part.window),
        "mask": th.from_numpy(part.mask),
        "intensity": th.from_numpy(np.nan_to_num(part.intensity, nan=np.nan).astype(np.float32)),
    }
    ids = model.instrument_ids(part.symbol)
    if ids is not None:
        out["instrument"] = th.from_numpy(ids)
    for task in model.tasks:
        out[task] = th.from_numpy(part.labels[task])
    return out


def _batch_loss(
    model: MultiTaskModel,
    batch: dict[str, th.Tensor],
    weights: dict[str, th.Tensor | None],
    settings: TrainingSection,
) -> th.Tensor:
    out = model(batch["window"], batch["mask"], batch.get("instrument"))
    loss = sum(
        (task_loss(out[t], batch[t], weights[t], settings) for t in model.tasks),
        start=th.zeros((), device=batch["window"].device),
    )
    if "intensity" in out:
        target = batch["intensity"]
        keep = th.isfinite(target)
        if bool(keep.any()):
            loss = loss + settings.intensity_weight * F.mse_loss(
                out["intensity"][keep].float(), target[keep]
            )
    return loss


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_model(
    model: MultiTaskModel,
    fit: PartData,
    val: PartData,
    settings: TrainingSection,
    *,
    seed: int,
    log_dir: Path | None = None,
    description: str = "",
) -> TrainResult:
    """Train ``model`` on the labelled bars of ``fit``, early-stopped on ``val``'s loss."""
    device = resolve_device(settings.device)
    th.set_num_threads(settings.torch_threads)  # as train.py: oversubscribed OMP crawls
    th.manual_seed(seed)
    generator = th.Generator().manual_seed(seed)
    model.to(device)
    fit = fit.select(fit.labelled)
    val = val.select(val.labelled)
    if fit.n == 0 or val.n == 0:
        raise ValueError(f"{description}: no labelled bars to fit ({fit.n}) or validate ({val.n})")
    data = _tensors(fit, model)
    val_data = {k: v.to(device) for k, v in _tensors(val, model).items()}
    weights: dict[str, th.Tensor | None] = {
        t: th.tensor(class_weights(fit.labels[t]), dtype=th.float32, device=device)
        if settings.class_weights
        else None
        for t in model.tasks
    }
    trunk_params = list(model.trunk.parameters())
    trunk_ids = {id(p) for p in trunk_params}
    head_params = [p for p in model.parameters() if id(p) not in trunk_ids]
    optimizer = th.optim.AdamW(
        [
            {"params": trunk_params, "weight_decay": settings.encoder_weight_decay},
            {"params": head_params, "weight_decay": settings.head_weight_decay},
        ],
        lr=settings.learning_rate,
    )
    batches_per_epoch = math.ceil(fit.n / settings.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / settings.grad_accum_steps)
    total = steps_per_epoch * settings.epochs
    warmup = int(settings.warmup_fraction * total)
    scheduler = th.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total, warmup)
    )
    use_amp = settings.amp and device.type == "cuda"
    scaler = th.amp.GradScaler("cuda", enabled=use_amp)
    writer = SummaryWriter(str(log_dir)) if log_dir is not None else None

    best_loss, best_epoch, best_state = math.inf, 0, None
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    bar = tqdm(range(settings.epochs), desc=description or model.mode, leave=False)
    epoch = 0
    for epoch in bar:
        model.train()
        order = th.randperm(fit.n, generator=generator)
        running, seen = 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        for b in range(batches_per_epoch):
            idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
            batch = {k: v[idx].to(device) for k, v in data.items()}
            with th.autocast(device_type=device.type, enabled=use_amp):
                loss = _batch_loss(model, batch, weights, settings)
            scaler.scale(loss / settings.grad_accum_steps).backward()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            last = b == batches_per_epoch - 1
            if (b + 1) % settings.grad_accum_steps == 0 or last:
                scaler.unscale_(optimizer)
                th.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
        val_loss = evaluate_loss(model, val_data, weights, settings)
        record = {"epoch": float(epoch), "train_loss": running / seen, "val_loss": val_loss}
        history.append(record)
        bar.set_postfix(train=f"{record['train_loss']:.3f}", val=f"{val_loss:.3f}")
        if writer is not None:
            writer.add_scalar("loss/train", record["train_loss"], epoch)
            writer.add_scalar("loss/val", val_loss, epoch)
            writer.add_scalar("lr", optimizer.param_groups[0]["lr"], epoch)
        if val_loss < best_loss - 1e-6:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= settings.patience:
            break
    bar.close()
    if writer is not None:
        writer.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        best_epoch=best_epoch,
        epochs_run=epoch + 1,
        best_val_loss=best_loss,
        seconds=time.perf_counter() - started,
        history=history,
    )


@th.no_grad()
def evaluate_loss(
    model: MultiTaskModel,
    data: dict[str, th.Tensor],
    weights: dict[str, th.Tensor | None],
    settings: TrainingSection,
    batch_size: int = 1024,
) -> float:
    """Mean loss over ``data`` in eval mode (no dropout)."""
    model.eval()
    n = data["window"].shape[0]
    total = 0.0
    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in data.items()}
        total += float(_batch_loss(model, batch, weights, settings)) * batch["window"].shape[0]
    return total / n


@dataclass
class Predictions:
    """Raw model outputs over a part, one row per bar."""

    logits: dict[str, np.ndarray]
    """Task -> (n, 3) logits (eval mode)."""
    intensity: np.ndarray | None
    """(n,) predicted standardized log-volatility."""
    embedding: np.ndarray
    """(n, E) trunk embeddings."""
    attention: np.ndarray | None = None
    """(n, L, H, T) attention of the newest bar over the window (transformer only)."""
    mc_logits: dict[str, np.ndarray] | None = None
    """Task -> (N, n, 3) logits of Monte Carlo dropout passes."""


@th.no_grad()
def predict(
    model: MultiTaskModel,
    part: PartData,
    *,
    device: th.device | None = None,
    mc_passes: int = 0,
    attention: bool = False,
    seed: int = 0,
    batch_size: int = 1024,
) -> Predictions:
    """Logits, embeddings, optional attention rows and Monte Carlo dropout passes."""
    device = device or next(model.parameters()).device
    model.eval()
    attention_trunk = model.attention_trunk if attention else None
    if attention_trunk is not None:
        attention_trunk.store_attention = True
    window = th.from_numpy(part.window)
    mask = th.from_numpy(part.mask)
    ids = model.instrument_ids(part.symbol)
    instrument = th.from_numpy(ids) if ids is not None else None

    def ids_of(start: int) -> th.Tensor | None:
        if instrument is None:
            return None
        return instrument[start : start + batch_size].to(device)

    outs: dict[str, list[np.ndarray]] = {}
    maps: list[np.ndarray] = []
    for start in range(0, part.n, batch_size):
        w = window[start : start + batch_size].to(device)
        m = mask[start : start + batch_size].to(device)
        out = model(w, m, ids_of(start))
        for key, value in out.items():
            outs.setdefault(key, []).append(value.float().cpu().numpy())
        if attention_trunk is not None:
            rows = [layer[:, :, -1, :] for layer in attention_trunk.last_attention]  # (B, H, T)
            maps.append(th.stack(rows, dim=1).float().cpu().numpy())  # (B, L, H, T)
    if attention_trunk is not None:
        attention_trunk.store_attention = False
    mc: dict[str, np.ndarray] | None = None
    if mc_passes > 0:
        th.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, th.nn.Dropout):
                module.train()
        passes: dict[str, list[np.ndarray]] = {t: [] for t in model.tasks}
        if _trunk_has_dropout(model):
            for _ in range(mc_passes):  # full stochastic passes through trunk and heads
                chunks: dict[str, list[np.ndarray]] = {t: [] for t in model.tasks}
                for start in range(0, part.n, batch_size):
                    out = model(
                        window[start : start + batch_size].to(device),
                        mask[start : start + batch_size].to(device),
                        ids_of(start),
                    )
                    for task in model.tasks:
                        chunks[task].append(out[task].float().cpu().numpy())
                for task in model.tasks:
                    passes[task].append(np.concatenate(chunks[task]))
        else:
            # No dropout in the trunk: resampling the head dropout on the fixed embedding
            # gives the same distribution as full passes, N times cheaper.
            embedding_all = th.from_numpy(np.concatenate(outs["embedding"])).to(device)
            for _ in range(mc_passes):
                x = model.dropout(embedding_all)
                for task, head in model.heads.items():
                    passes[task].append(head(x).float().cpu().numpy())
        model.eval()
        mc = {t: np.stack(v) for t, v in passes.items()}
    return Predictions(
        logits={t: np.concatenate(outs[t]) for t in model.tasks},
        intensity=np.concatenate(outs["intensity"]) if "intensity" in outs else None,
        embedding=np.concatenate(outs["embedding"]),
        attention=np.concatenate(maps) if maps else None,
        mc_logits=mc,
    )


def _trunk_has_dropout(model: MultiTaskModel) -> bool:
    for module in model.trunk.modules():
        if isinstance(module, th.nn.Dropout) and module.p > 0:
            return True
        if isinstance(module, th.nn.LSTM) and module.dropout > 0:
            return True
    return False


def count_parameters(model: th.nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_summary(model: MultiTaskModel) -> dict[str, Any]:
    """Sizes for the report."""
    return {
        "mode": model.mode,
        "parameters": count_parameters(model),
        "trunk_parameters": count_parameters(model.trunk),
        "embedding_dim": model.embedding_dim,
    }
