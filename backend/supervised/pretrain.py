"""Per-window pretraining of the RL encoders for the main job's ``--pretrain`` (issue 13).

For each walk-forward window and each pretrainable encoder mode of the run, the lab trains
the job's own encoder (same config, so the trunk *is* the RL encoder) as a multi-task
forecaster on the window's **fit range only**: the fit sessions are split into an inner
fit part and, at their end, an inner validation part (``pretrain_val_fraction``) that
early-stops the training. Label thresholds are fitted on the inner fit part; the
normalizer is the one the RL job fits on the whole fit range, so the trunk sees exactly the
observations the agent will. Nothing of the window's validation or test range is read.

The trunk is saved as a lab bundle under ``<run>/pretrained/w<k>/<mode>`` (what
``walk_forward_runner.job_config`` points the job at); several symbols train one pooled
trunk with instrument embeddings, and each symbol's agent uses its own fixed instrument.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch as th
from tqdm.auto import tqdm

from backend.config.supervised import LabelSection, TrainingSection
from backend.data_download.dataset import SymbolDataset
from backend.data_download.feature_config import FeatureConfig
from backend.supervised.bundle import save_bundle
from backend.supervised.labels import TASKS, LabelConfig
from backend.supervised.model import MultiTaskModel
from backend.supervised.pipeline import NetResult, WindowResult
from backend.supervised.samples import PartData, build_symbol_window
from backend.supervised.trainer import model_summary, train_model
from backend.training import walk_forward_runner as runner
from backend.training.walk_forward import SessionRange, WalkForwardWindow


def inner_split(fit: SessionRange, val_fraction: float) -> tuple[SessionRange, SessionRange]:
    """The fit range's sessions as ``(inner fit, inner validation at its end)``.

    Raises:
        ValueError: if either part would be empty.
    """
    n_val = int(round(len(fit) * val_fraction))
    if n_val < 1 or len(fit) - n_val < 1:
        raise ValueError(
            f"pretrain_val_fraction {val_fraction}: a fit range of {len(fit)} sessions "
            "leaves an empty inner fit or validation part"
        )
    cut = fit.stop - n_val
    return SessionRange(fit.start, cut), SessionRange(cut, fit.stop)


def pretrain_trunk(
    datasets: Sequence[SymbolDataset],
    sessions: pd.DatetimeIndex,
    window: WalkForwardWindow,
    mode: str,
    encoder_fields: dict[str, object],
    *,
    sequence_length: int,
    feature_clip: float,
    epochs: int,
    val_fraction: float,
    feature_config: FeatureConfig,
    seed: int,
    target: Path,
    device: str = "cpu",
) -> Path:
    """Pretrain one trunk on ``window``'s fit range and save it as a lab bundle at ``target``.

    Args:
        datasets: The run's symbols (pooled into one model when several).
        sessions: The session list the window indexes.
        window: The RL walk-forward window (only its ``fit`` range is read).
        mode: Encoder name.
        encoder_fields: The RL job's encoder config fields (the trunk's architecture).
        sequence_length: The env's ``T``.
        feature_clip: The env's clip.
        epochs: Upper bound on epochs (early-stopped on the inner validation part).
        val_fraction: Share of the fit sessions in the inner validation part.
        feature_config: The run's feature config (recorded in the bundle).
        seed: Seed of initialisation and batching.
        target: Bundle folder.
        device: Torch device of the training.
    """
    inner_fit, inner_val = inner_split(window.fit, val_fraction)
    lab_window = WalkForwardWindow(window.index, inner_fit, inner_val, inner_val)
    labels = LabelConfig(**LabelSection().model_dump())
    fit_first, fit_last = sessions[window.fit.start], sessions[window.fit.stop - 1]
    symbol_windows = [
        build_symbol_window(
            ds,
            sessions,
            lab_window,
            sequence_length=sequence_length,
            feature_clip=feature_clip,
            label_config=labels,
            normalizer=ds.fit_normalizer(fit_first, fit_last),  # the RL job's normalizer
        )
        for ds in datasets
    ]
    fit = PartData.concat([s.parts["fit"] for s in symbol_windows])
    val = PartData.concat([s.parts["val"] for s in symbol_windows])
    fields = dict(encoder_fields)
    fields.pop("name", None)
    if len(symbol_windows) > 1:
        fields["instruments"] = [s.symbol for s in symbol_windows]
    settings = TrainingSection(epochs=epochs, tensorboard=False, device=device)
    th.manual_seed(seed)
    model = MultiTaskModel(
        mode,
        sequence_length,
        fit.window.shape[-1],
        fields,
        TASKS,
        settings.head_dropout,
        clip=feature_clip,
    )
    result = train_model(
        model, fit, val, settings, seed=seed, description=f"pretrain w{window.index} {mode}"
    )
    dates = {
        "fit": (str(sessions[inner_fit.start].date()), str(sessions[inner_fit.stop - 1].date())),
        "val": (str(sessions[inner_val.start].date()), str(sessions[inner_val.stop - 1].date())),
    }
    net = NetResult(
        model=model.cpu(),
        train=result,
        temperatures={},
        combiner_weights={},
        latency_ms={},
        summary=model_summary(model),
    )
    record = WindowResult(
        index=window.index,
        dates=dates,
        symbols=symbol_windows,
        test=val,
        probs={},
        raw_probs={},
        val_accuracy={},
        confidence={},
        mc_variance={},
        intensity={},
        attention=None,
        nets={mode: net},
    )
    return save_bundle(
        target,
        net,
        record,
        list(datasets),
        feature_config=feature_config,
        lab_config={
            "labels": LabelSection().model_dump(),
            "training": settings.model_dump(),
            "pretrained_for": {
                "window": window.index,
                "fit_range": [str(fit_first.date()), str(fit_last.date())],
            },
        },
        sequence_length=sequence_length,
        feature_clip=feature_clip,
    )


def pretrain_run(
    spec: runner.RunSpec,
    windows: Sequence[WalkForwardWindow],
    sessions: pd.DatetimeIndex,
    *,
    only_windows: set[int] | None = None,
) -> list[Path]:
    """Pretrain every (window, pretrainable mode) trunk of a ``--pretrain`` run.

    Trunks already on disk (a resumed run) are kept. Returns the bundle folders.
    """
    datasets = [runner.load_dataset(spec, s) for s in spec.symbols]
    modes = [m for m in spec.modes if m in runner.PRETRAINABLE_MODES]
    todo = [
        (w, m) for w in windows for m in modes if only_windows is None or w.index in only_windows
    ]
    out = []
    for w, mode in tqdm(todo, desc="pretraining trunks", leave=False):
        target = runner.pretrained_dir(spec.output_dir, w.index, mode)
        out.append(target)
        if (target / "trunk.pt").is_file():
            continue
        config = spec.experiment_for(mode)
        pre = config.training.pretrained
        seed = runner.derive_seed(spec.seed, w.index, f"pretrain:{mode}")
        pretrain_trunk(
            datasets,
            sessions,
            w,
            mode,
            config.encoder.to_dict(),
            sequence_length=config.env.sequence_length,
            feature_clip=config.env.feature_clip,
            epochs=pre.pretrain_epochs,
            val_fraction=pre.pretrain_val_fraction,
            feature_config=spec.features,
            seed=seed,
            target=target,
            device="cuda" if th.cuda.is_available() and config.training.device != "cpu" else "cpu",
        )
    return out
