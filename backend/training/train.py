"""Train one SAC + DSR agent on one fit range, early-stopped on a validation range.

:func:`train_on_range` is the unit a walk-forward run repeats per window::

    fit normalizer on fit sessions ─► arrays ─► train env (random starts, fit bars only)
                                          └───► val env (whole val segment, sequential)
    YoopSAC(MultiInputPolicy + encoder) ─► learn(TradingMetrics, ValidationEarlyStopping)
    ─► best validation weights restored ─► TrainResult

The command line trains one model and writes it as a model bundle
(:mod:`backend.models.model_manager`) with its provenance::

    python -m backend.training.train --config configs/train.yaml --symbol SPY

DSR episode defaults (:data:`TRAINING_ENV_DEFAULTS`)
---------------------------------------------------
The env resets the Differential Sharpe Ratio's moments at every episode start. With
``EnvConfig``'s defaults (one 26-bar session per episode, ``dsr_eta=0.01``) the moments
never settle: after ``n`` steps the exponential averages carry a total weight of
``1 - (1 - eta)^n``, 0.23 after a whole session, so the variance estimate is ~4x too small
and the reward's scale drifts with the step index inside the episode, which the agent
cannot observe. Training therefore defaults to five-session episodes (130 steps), a faster
``dsr_eta=0.05`` (memory ~20 bars, weight 0.64 after the warm-up and > 0.99 after 100
steps) and a 20-step warm-up during which the reward is 0. Any ``env`` section of the
config file overrides these.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from backend.config.env_config import EnvConfig
from backend.config.training_config import (
    FeatureConfig,
    TrainingSettings,
    config_from_dict,
)
from backend.data_download.dataset import SymbolDataset, bar_range
from backend.data_download.market_arrays import MarketArrays
from backend.data_download.normalizer import FeatureNormalizer
from backend.environments.intraday_env import IntradayTradingEnv
from backend.models.feature_extractors import encoder_policy_kwargs, uses_sequence_observation
from backend.models.model_manager import save_bundle
from backend.models.sac import YoopSAC
from backend.training.augmentation import TrainingAugmentation
from backend.training.callbacks import TradingMetricsCallback, ValidationEarlyStopping
from backend.utils.provenance import collect_provenance, data_range

AGENT = "SAC_INTRADAY_DSR"
"""Agent name used in saved file names and for the feature preset."""

TRAINING_ENV_DEFAULTS = EnvConfig(episode_sessions=5, dsr_eta=0.05, dsr_warmup_steps=20)
"""Env parameters for training when none are given (see the module docstring)."""

SYNTHETIC_DIR = Path("data") / "synthetic"
"""Where the CLI generates the synthetic market when no ``--data-dir`` is given."""

SessionSpan = tuple[pd.Timestamp, pd.Timestamp]
"""First and last session (naive dates, inclusive)."""


@dataclass
class TrainResult:
    """What :func:`train_on_range` hands back."""

    model: YoopSAC
    """The trained model, with the best validation weights loaded."""
    normalizer: FeatureNormalizer
    """The normalizer fitted on the fit sessions; needed to build observations later."""
    metrics: dict[str, Any]
    """``train_time_s``, ``steps_done``, ``best_val_sharpe``, ``best_step``,
    ``stopped_early``, ``n_evaluations``, ``restored_best``, ``fit_bars``, ``val_bars``."""
    val_history: list[tuple[int, float]] = field(default_factory=list)
    """``(num_timesteps, val_sharpe)`` of every evaluation."""
    env_config: EnvConfig = field(default_factory=EnvConfig)
    """The env config the model was trained with (observation layout resolved)."""


def resolve_env_config(settings: TrainingSettings, env_config: EnvConfig | None) -> EnvConfig:
    """The env config with the observation layout the encoder needs.

    ``use_sequence_encoder`` and ``sequence_length`` follow ``settings``, so a sequence
    encoder can never be paired with flat observations (or a different window length).
    """
    base = TRAINING_ENV_DEFAULTS if env_config is None else env_config
    return dataclasses.replace(
        base,
        use_sequence_encoder=uses_sequence_observation(settings.encoder_mode),
        sequence_length=settings.sequence_length,
    )


def fit_reward_floor(arrays: MarketArrays, fit_range: tuple[int, int], cfg: EnvConfig) -> EnvConfig:
    """``cfg`` with ``dsr_eps`` fitted on the fit range when ``dsr_floor_vol`` asks for it.

    ``sigma`` is the std of the asset's open-to-close bar return over the fit bars only (no
    look-ahead: val and test never inform it); the fitted floor travels with the model in
    its env config, so validation and test use the same number.
    """
    if cfg.dsr_floor_vol <= 0.0:
        return cfg
    lo, hi = fit_range
    bar_returns = arrays.close[lo:hi] / arrays.open[lo:hi] - 1.0
    sigma = float(np.std(bar_returns)) if hi > lo else 0.0
    return dataclasses.replace(cfg, dsr_eps=max((cfg.dsr_floor_vol * sigma) ** 2, 1e-12))


def build_model(
    env: gym.Env[Any, Any], settings: TrainingSettings, *, tensorboard_log: str | None
) -> YoopSAC:
    """A :class:`YoopSAC` on ``env`` with the encoder and hyper-parameters of ``settings``.

    The optimiser is AdamW so ``encoder_weight_decay`` is decoupled decay; every parameter
    group sets its own ``weight_decay`` (0 outside the encoder), so this is Adam elsewhere.
    """
    policy_kwargs: dict[str, Any] = {
        **encoder_policy_kwargs(settings.encoder_mode, settings.encoder_config()),
        "net_arch": list(settings.net_arch),
        "share_features_extractor": settings.share_features_extractor,
        "optimizer_class": th.optim.AdamW,
    }
    return YoopSAC(
        "MultiInputPolicy",
        env,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        use_amp=settings.use_amp,
        encoder_weight_decay=settings.encoder_weight_decay,
        shared_encoder_loss=settings.shared_encoder_loss,
        learning_rate=settings.learning_rate,
        buffer_size=settings.buffer_size,
        learning_starts=settings.learning_starts,
        batch_size=settings.batch_size,
        tau=settings.tau,
        gamma=settings.gamma,
        train_freq=settings.train_freq,
        gradient_steps=settings.gradient_steps,
        policy_kwargs=policy_kwargs,
        tensorboard_log=tensorboard_log,
        seed=settings.seed,
        device=settings.device,
        verbose=0,
    )


def train_on_range(
    dataset: SymbolDataset,
    fit_sessions: SessionSpan,
    val_sessions: SessionSpan,
    settings: TrainingSettings,
    env_config: EnvConfig | None = None,
    *,
    run_name: str | None = None,
    progress_bar: bool = False,
    best_model_path: str | Path | None = None,
    attention_probe_every: int = 1_000,
    callbacks: Sequence[BaseCallback] = (),
) -> TrainResult:
    """Train one model on ``fit_sessions``, early-stopped on ``val_sessions``.

    Args:
        dataset: The symbol's market, raw features and session layout.
        fit_sessions: First and last training session; the normalizer is fitted here only.
        val_sessions: First and last validation session (after the fit range).
        settings: Encoder and SAC settings.
        env_config: Costs and reward; ``None`` uses :data:`TRAINING_ENV_DEFAULTS`. Its
            observation layout is overridden to match the encoder.
        run_name: TensorBoard run name; defaults to ``<SYMBOL>_<encoder_mode>``.
        progress_bar: Show SB3's tqdm/rich progress bar.
        best_model_path: Also ``model.save`` each new best validation model there.
        attention_probe_every: Steps between attention-entropy probes (Transformer only).
        callbacks: Extra callbacks, run after the built-in ones.

    Returns:
        The model with its best validation weights, the normalizer and run metrics.

    Raises:
        ValueError: if the validation range does not start after the fit range ends.
    """
    fit_first, fit_last = (pd.Timestamp(s) for s in fit_sessions)
    val_first, val_last = (pd.Timestamp(s) for s in val_sessions)
    if not fit_first <= fit_last < val_first <= val_last:
        raise ValueError(
            f"need fit_first <= fit_last < val_first <= val_last, got fit {fit_sessions} "
            f"and val {val_sessions}"
        )
    if settings.torch_threads > 0:
        th.set_num_threads(settings.torch_threads)
    normalizer = dataset.fit_normalizer(fit_first, fit_last)
    arrays = dataset.arrays(normalizer)
    fit_range = bar_range(arrays, *dataset.session_bounds(fit_first, fit_last))
    val_range = bar_range(arrays, *dataset.session_bounds(val_first, val_last))

    cfg = fit_reward_floor(arrays, fit_range, resolve_env_config(settings, env_config))
    train_env: gym.Env[Any, Any] = IntradayTradingEnv(arrays, cfg, fit_range)
    if settings.input_jitter or settings.feature_dropout or settings.resample_probability:
        train_env = TrainingAugmentation(
            train_env,  # type: ignore[arg-type]
            input_jitter=settings.input_jitter,
            feature_dropout=settings.feature_dropout,
            resample_probability=settings.resample_probability,
            seed=settings.seed,
        )
    val_cfg = dataclasses.replace(cfg, episode_sessions=0, random_start=False)
    val_env = IntradayTradingEnv(arrays, val_cfg, val_range)

    model = build_model(train_env, settings, tensorboard_log=settings.tensorboard_log)
    early_stopping = ValidationEarlyStopping(
        val_env,
        settings.eval_every_steps,
        settings.early_stop_window,
        min_delta=settings.early_stop_min_delta,
        smoothing=settings.early_stop_smoothing,
        best_model_path=best_model_path,
        restore_best=settings.checkpoint == "best",
    )
    metrics_cb = TradingMetricsCallback(
        reward_scale=cfg.reward_scale, attention_probe_every=attention_probe_every
    )
    started = time.perf_counter()
    model.learn(
        total_timesteps=settings.total_timesteps,
        callback=CallbackList([metrics_cb, early_stopping, *callbacks]),
        tb_log_name=run_name or f"{dataset.symbol}_{settings.encoder_mode}",
        progress_bar=progress_bar,
    )
    train_time = time.perf_counter() - started
    metrics: dict[str, Any] = {
        "train_time_s": train_time,
        "steps_done": int(model.num_timesteps),
        "best_val_sharpe": (
            early_stopping.best_sharpe if early_stopping.best_state is not None else None
        ),
        "best_step": early_stopping.best_step,
        "checkpoint": settings.checkpoint,
        "val_sharpe_se": early_stopping.sharpe_standard_error,
        "stopped_early": early_stopping.stopped_early,
        "n_evaluations": len(early_stopping.history),
        "restored_best": early_stopping.restored,
        "fit_bars": fit_range[1] - fit_range[0],
        "val_bars": val_range[1] - val_range[0],
    }
    return TrainResult(model, normalizer, metrics, list(early_stopping.history), cfg)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

_SECTIONS = ("training", "env", "features", "encoder")


def load_run_file(path: Path) -> tuple[TrainingSettings, EnvConfig, FeatureConfig]:
    """Read a run file with optional ``training``, ``env`` and ``features`` sections.

    ``env`` keys override :data:`TRAINING_ENV_DEFAULTS`; missing sections use defaults. A
    bundle's ``config.yaml`` also has an ``encoder`` section, derived from ``training``; it
    is accepted when it agrees, so a bundle's config can be trained again as it is.

    Raises:
        ValueError: on unknown sections or keys, or invalid values.
    """
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    data = data or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; expected {list(_SECTIONS)}")
    settings = config_from_dict(TrainingSettings, data.get("training") or {})
    encoder = data.get("encoder")
    if encoder is not None:
        derived = {"mode": settings.encoder_mode, "config": settings.encoder_config().to_dict()}
        if encoder != derived:
            raise ValueError(
                f"{path}: the 'encoder' section {encoder} disagrees with what 'training' "
                f"implies {derived}; edit 'training' and drop 'encoder'"
            )
    env = EnvConfig.from_dict({**TRAINING_ENV_DEFAULTS.to_dict(), **(data.get("env") or {})})
    features_data = data.get("features")
    features = (
        FeatureConfig.for_agent(AGENT)
        if features_data is None
        else config_from_dict(FeatureConfig, features_data)
    )
    return settings, env, features


def split_sessions(
    sessions: pd.DatetimeIndex, val_fraction: float, gap_sessions: int
) -> tuple[SessionSpan, SessionSpan]:
    """Fit sessions first, then ``gap_sessions`` skipped, then the last ``val_fraction``.

    Raises:
        ValueError: if either part would be empty.
    """
    n = len(sessions)
    n_val = max(1, round(n * val_fraction))
    n_fit = n - n_val - gap_sessions
    if n_fit < 1:
        raise ValueError(
            f"{n} sessions cannot hold {n_val} validation and {gap_sessions} gap sessions"
        )
    return (sessions[0], sessions[n_fit - 1]), (sessions[n - n_val], sessions[-1])


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m backend.training.train",
        description="Train one SAC + DSR intraday agent on one date range.",
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML/JSON run file")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"bar store root; default: the synthetic market in {SYNTHETIC_DIR}",
    )
    parser.add_argument("--symbol", default="SPY", help="ticker to train on (default SPY)")
    parser.add_argument("--start", default=None, help="first date to load (YYYY-MM-DD)")
    parser.add_argument("--end", default=None, help="last date to load (YYYY-MM-DD)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of sessions for validation"
    )
    parser.add_argument(
        "--gap-sessions", type=int, default=1, help="sessions skipped between fit and val"
    )
    parser.add_argument(
        "--output", type=Path, default=Path("backend/models/sac/runs"), help="output root"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Train one model and write it as a bundle (``save_bundle``) under ``--output``.

    Besides the bundle's own files, ``metrics.json`` (metrics, ranges, validation
    history) and ``training_settings.json`` are kept in it, as before bundles existed.
    """
    args = build_parser().parse_args(argv)
    try:
        settings, env_config, features = load_run_file(args.config)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: --config {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.data_dir is None:
        from backend.data_download.synthetic_market import ensure_synthetic_dataset

        data_dir = ensure_synthetic_dataset(SYNTHETIC_DIR)
    else:
        data_dir = args.data_dir
    dataset = SymbolDataset.load(args.symbol, data_dir, features, start=args.start, end=args.end)
    fit, val = split_sessions(dataset.sessions, args.val_fraction, args.gap_sessions)
    run_name = f"{dataset.symbol}_{settings.encoder_mode}_{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = args.output / run_name
    result = train_on_range(
        dataset,
        fit,
        val,
        settings,
        env_config,
        run_name=run_name,
        progress_bar=not args.no_progress,
    )
    report = {
        **result.metrics,
        "symbol": dataset.symbol,
        "fit_sessions": [str(fit[0].date()), str(fit[1].date())],
        "val_sessions": [str(val[0].date()), str(val[1].date())],
        "val_history": result.val_history,
    }
    metadata = {
        "symbols": [dataset.symbol],
        "agent": AGENT,
        "seed": settings.seed,
        "data": {
            # The whole loaded range (feature warm-up included) and each segment, each
            # with the sha256 of its bars, so "trained on the same data" can be checked.
            **data_range(dataset.market),
            "data_dir": str(data_dir),
            "interval": dataset.interval,
            "fit": {
                "sessions": report["fit_sessions"],
                **data_range(dataset.market, *dataset.session_bounds(*fit)),
            },
            "val": {
                "sessions": report["val_sessions"],
                **data_range(dataset.market, *dataset.session_bounds(*val)),
            },
        },
        "train_time_s": result.metrics["train_time_s"],
        "metrics": result.metrics,
        "val_history": result.val_history,
        "provenance": collect_provenance(),
    }
    save_bundle(
        out_dir,
        result.model,
        result.normalizer,
        settings=settings,
        env_config=result.env_config,
        feature_config=features,
        metadata=metadata,
        extra_files={
            "metrics.json": json.dumps(report, indent=2, default=str) + "\n",
            "training_settings.json": json.dumps(settings.to_dict(), indent=2) + "\n",
        },
    )
    print(json.dumps({k: report[k] for k in ("steps_done", "best_val_sharpe")}, default=str))
    print(f"saved to {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
