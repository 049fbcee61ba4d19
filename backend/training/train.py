"""Train one SAC + DSR agent on one fit range, early-stopped on a validation range.

:func:`train_on_range` is the unit a walk-forward run repeats per window::

    fit normalizer on fit sessions ─► arrays ─► train env (random starts, fit bars only)
                                          └───► val env (whole val segment, sequential)
    YoopSAC(MultiInputPolicy + encoder) ─► learn(TradingMetrics, ValidationEarlyStopping)
    ─► best validation weights restored ─► TrainResult

The command line trains one model and writes it as a model bundle
(:mod:`backend.models.model_manager`) with its provenance::

    python -m backend.training.train --config configs/train.yaml --symbol SPY

Everything a run needs is one :class:`~backend.config.experiment.ExperimentConfig`
(``training``, ``env``, ``reward``, ``encoder``, ``features``, ``data``); the CLI resolves
it from an optional preset, the ``--config`` file and its flags, and ``--print-config``
shows the result without training.

DSR episode defaults (:data:`~backend.config.experiment.TRAINING_ENV_DEFAULTS`)
---------------------------------------------------------------------------------
The env resets the Differential Sharpe Ratio's moments at every episode start. With
``EnvConfig``'s defaults (one 26-bar session per episode) and the DSR's (``eta=0.01``) the
moments never settle: after ``n`` steps the exponential averages carry a total weight of
``1 - (1 - eta)^n``, 0.23 after a whole session, so the variance estimate is ~4x too small
and the reward's scale drifts with the step index inside the episode, which the agent
cannot observe. The experiment therefore defaults to five-session episodes (130 steps), a
faster ``eta=0.05`` (memory ~20 bars, weight 0.64 after the warm-up and > 0.99 after 100
steps) and a 20-step warm-up during which the reward is 0. Any ``env`` or ``reward`` keys
of the config file override these.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import pandas as pd
import torch as th
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from backend.config.experiment import (
    AGENT,
    TRAINING_ENV_DEFAULTS,
    ExperimentConfig,
    resolve_experiment,
)
from backend.config.training_config import TrainingSettings
from backend.data_download.dataset import SymbolDataset, bar_range
from backend.data_download.market_arrays import MarketArrays
from backend.data_download.normalizer import FeatureNormalizer
from backend.data_download.synthetic_market import ensure_synthetic_dataset, market_scenario
from backend.database.datasets import load_symbol_dataset
from backend.environments.env_config import EnvConfig
from backend.environments.factory import synthetic_market_dir
from backend.environments.intraday_env import IntradayTradingEnv
from backend.environments.rewards import fit_reward_floor
from backend.models.feature_extractors import encoder_policy_kwargs
from backend.models.model_manager import save_bundle
from backend.models.pretrained import (
    PrecomputedEmbeddingExtractor,
    TrunkBundle,
    build_trunk,
    load_trunk_bundle,
    load_trunk_state,
    range_overlaps,
    refuse_if,
    trunk_differences,
    trunk_embeddings,
)
from backend.models.sac import YoopSAC
from backend.training.augmentation import TrainingAugmentation
from backend.training.callbacks import TradingMetricsCallback, ValidationEarlyStopping
from backend.training.vec_env import BatchedIntradayVecEnv
from backend.utils.config_model import ConfigError
from backend.utils.provenance import collect_provenance, data_range

__all__ = [
    "AGENT",
    "TRAINING_ENV_DEFAULTS",
    "TrainResult",
    "build_model",
    "build_parser",
    "main",
    "resolve_data_dir",
    "split_sessions",
    "train_on_range",
]

DEFAULT_DATA_DIR = Path("data")
"""The store read when ``data.data_dir`` is null and it holds every symbol."""

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
    config: ExperimentConfig = field(default_factory=ExperimentConfig)
    """The experiment the model was trained with (observation layout derived)."""

    @property
    def env_config(self) -> EnvConfig:
        """The env config of training (``config.env``)."""
        return self.config.env


def build_model(
    env: gym.Env[Any, Any] | VecEnv,
    config: ExperimentConfig,
    *,
    tensorboard_log: str | None,
    extractor: dict[str, Any] | None = None,
) -> YoopSAC:
    """A :class:`YoopSAC` on ``env`` with the encoder and SAC settings of ``config``.

    The optimiser is AdamW so ``encoder_weight_decay`` is decoupled decay; every parameter
    group sets its own ``weight_decay`` (0 outside the encoder), so this is Adam elsewhere.
    A fine-tuned pretrained trunk (``training.pretrained.use = finetune``) gets its own
    learning rate and weight decay. ``extractor`` replaces the features-extractor entries
    of the policy kwargs (the frozen fast path's extractor). On a VecEnv of ``n`` envs
    ``gradient_steps`` is multiplied by ``n``: a training phase follows ``train_freq``
    steps of every env, so the updates per transition are those of one env.
    """
    settings = config.training
    n_envs = env.num_envs if isinstance(env, VecEnv) else 1
    pretrained = settings.pretrained
    weight_decay, lr_scale = settings.encoder_weight_decay, 1.0
    if pretrained.enabled and pretrained.use == "finetune":
        weight_decay = pretrained.weight_decay
        if pretrained.learning_rate is not None:
            lr_scale = pretrained.learning_rate / settings.learning_rate
    policy_kwargs: dict[str, Any] = {
        **(extractor if extractor is not None else encoder_policy_kwargs(config.encoder)),
        "net_arch": list(settings.net_arch),
        "share_features_extractor": settings.share_features_extractor,
        "optimizer_class": th.optim.AdamW,
    }
    return YoopSAC(
        "MultiInputPolicy",
        env,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        use_amp=settings.use_amp,
        encoder_weight_decay=weight_decay,
        encoder_lr_scale=lr_scale,
        shared_encoder_loss=settings.shared_encoder_loss,
        learning_rate=settings.learning_rate,
        buffer_size=settings.buffer_size,
        learning_starts=settings.learning_starts,
        batch_size=settings.batch_size,
        tau=settings.tau,
        gamma=settings.gamma,
        train_freq=settings.train_freq,
        gradient_steps=settings.gradient_steps * n_envs,
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
    config: ExperimentConfig,
    *,
    run_name: str | None = None,
    progress_bar: bool = False,
    best_model_path: str | Path | None = None,
    attention_probe_every: int = 1_000,
    callbacks: Sequence[BaseCallback] = (),
    after_eval: BaseCallback | None = None,
    unseen: dict[str, SessionSpan] | None = None,
) -> TrainResult:
    """Train one model on ``fit_sessions``, early-stopped on ``val_sessions``.

    Args:
        dataset: The symbol's market, raw features and session layout.
        fit_sessions: First and last training session; the normalizer is fitted here only.
        val_sessions: First and last validation session (after the fit range).
        config: The experiment: ``training``, ``encoder``, ``env`` (its observation layout
            already derived from the encoder) and ``reward`` are used here.
        run_name: TensorBoard run name; defaults to ``<SYMBOL>_<encoder name>``.
        progress_bar: Show SB3's tqdm/rich progress bar.
        best_model_path: Also ``model.save`` each new best validation model there.
        attention_probe_every: Steps between attention-entropy probes (Transformer only).
        callbacks: Extra callbacks, run after the built-in ones.
        after_eval: Called after every validation evaluation, its ``parent`` the early
            stopping callback (the tuner's pruning hook).
        unseen: Further named session ranges a pretrained trunk must not have learned
            from (the walk-forward job passes its test range); the validation range is
            always checked.

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
    settings = config.training
    if settings.torch_threads > 0:
        th.set_num_threads(settings.torch_threads)
    normalizer = dataset.fit_normalizer(fit_first, fit_last)
    arrays = dataset.arrays(normalizer)
    fit_range = bar_range(arrays, *dataset.session_bounds(fit_first, fit_last))
    val_range = bar_range(arrays, *dataset.session_bounds(val_first, val_last))

    # The reward floor (``reward.floor_vol``) is fitted on the fit bars only and recorded
    # in the config the model is saved with, so validation and test use the same number.
    lo, hi = fit_range
    reward = fit_reward_floor(config.reward, arrays.open[lo:hi], arrays.close[lo:hi])
    config = config.model_copy(update={"reward": reward})
    cfg = config.env
    trunk: TrunkBundle | None = None
    extractor: dict[str, Any] | None = None
    train_arrays = arrays
    embed_seconds = 0.0
    if settings.pretrained.bundle is not None:
        forbidden = {"validation": (val_first, val_last), **(unseen or {})}
        trunk = load_pretrained(
            settings.pretrained.bundle, config, dataset.symbol, normalizer, forbidden
        )
        config = config.model_copy(update={"encoder": trunk.encoder_config(dataset.symbol)})
        if settings.pretrained.use == "frozen":
            started = time.perf_counter()
            span = (max(fit_range[0] - 1, 0), val_range[1])  # every bar the two envs observe
            train_arrays, extractor = frozen_fast_path(
                trunk, arrays, cfg, dataset.symbol, settings, rows=span
            )
            embed_seconds = time.perf_counter() - started
            cfg = cfg.model_copy(update={"use_sequence_encoder": False})
    train_env: gym.Env[Any, Any] | VecEnv
    if settings.n_envs > 1:
        # VecMonitor: the episode statistics SB3 logs, as its Monitor gives one env. The
        # schema refuses n_envs > 1 with augmentation (it wraps one env).
        train_env = VecMonitor(
            BatchedIntradayVecEnv(
                train_arrays, cfg, fit_range, num_envs=settings.n_envs, reward=reward
            )
        )
    else:
        train_env = IntradayTradingEnv(train_arrays, cfg, fit_range, reward=reward)
        if settings.input_jitter or settings.feature_dropout or settings.resample_probability:
            train_env = TrainingAugmentation(
                train_env,
                input_jitter=settings.input_jitter,
                feature_dropout=settings.feature_dropout,
                resample_probability=settings.resample_probability,
                seed=settings.seed,
            )
    val_cfg = cfg.model_copy(update={"episode_sessions": 0, "random_start": False})
    val_env = IntradayTradingEnv(train_arrays, val_cfg, val_range, reward=reward)

    model = build_model(
        train_env, config, tensorboard_log=settings.tensorboard_log, extractor=extractor
    )
    if trunk is not None and extractor is None:  # fine-tune: start every copy at the trunk
        for extractor_module in _extractors(model):
            load_trunk_state(extractor_module, trunk)
    early_stopping = ValidationEarlyStopping(
        val_env,
        settings.eval_every_steps,
        settings.early_stop_window,
        min_delta=settings.early_stop_min_delta,
        smoothing=settings.early_stop_smoothing,
        best_model_path=best_model_path,
        restore_best=settings.checkpoint == "best",
        callback_after_eval=after_eval,
    )
    metrics_cb = TradingMetricsCallback(
        reward_scale=config.reward.scale, attention_probe_every=attention_probe_every
    )
    started = time.perf_counter()
    model.learn(
        total_timesteps=settings.total_timesteps,
        callback=CallbackList([metrics_cb, early_stopping, *callbacks]),
        tb_log_name=run_name or f"{dataset.symbol}_{config.encoder.name}",
        progress_bar=progress_bar,
    )
    train_time = time.perf_counter() - started
    if trunk is not None and extractor is not None:
        # Frozen fast path: the same policy on the env's own observations, for testing,
        # bundling and live trading (the trunk inside the extractor, frozen).
        seq_env = IntradayTradingEnv(arrays, config.env, fit_range, reward=reward)
        model = compose_frozen_model(model, seq_env, config, trunk)
    metrics: dict[str, Any] = {
        "train_time_s": train_time,
        "pretrained": (
            {
                "bundle": str(trunk.path),
                "use": settings.pretrained.use,
                "embedding_seconds": embed_seconds,
            }
            if trunk is not None
            else None
        ),
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
    return TrainResult(model, normalizer, metrics, list(early_stopping.history), config)


# ---------------------------------------------------------------------------------------
# Pretrained trunks (issue 13)
# ---------------------------------------------------------------------------------------


def load_pretrained(
    path: str | Path,
    config: ExperimentConfig,
    symbol: str,
    normalizer: FeatureNormalizer,
    forbidden: dict[str, SessionSpan],
) -> TrunkBundle:
    """Read the trunk bundle and refuse it if it does not fit this job.

    Args:
        path: The bundle folder.
        config: The job's experiment.
        symbol: The symbol the agent trades.
        normalizer: The job's normalizer (fit range).
        forbidden: Named session ranges the trunk must not have learned from.

    Raises:
        ValueError: listing every difference (encoder, feature names / order, window
            length, clip, instruments, normalizer) and every overlap of the trunk's fit and
            validation sessions with ``forbidden``.
    """
    trunk = load_trunk_bundle(path)
    problems = trunk_differences(
        trunk,
        mode=config.encoder.name,
        feature_names=normalizer.feature_names,
        sequence_length=config.env.sequence_length,
        feature_clip=config.env.feature_clip,
        symbol=symbol,
        normalizer=normalizer,
    )
    refuse_if(problems + range_overlaps(trunk, forbidden), trunk)
    return trunk


def _extractors(model: YoopSAC) -> list[th.nn.Module]:
    """The distinct features extractors of the actor, critic and critic target."""
    found: dict[int, th.nn.Module] = {}
    for owner in (model.actor, model.critic, model.critic_target):
        module = owner.features_extractor
        found.setdefault(id(module), module)
    return list(found.values())


def frozen_fast_path(
    trunk: TrunkBundle,
    arrays: MarketArrays,
    env_config: EnvConfig,
    symbol: str,
    settings: TrainingSettings,
    rows: tuple[int, int] | None = None,
) -> tuple[MarketArrays, dict[str, Any]]:
    """Arrays whose features are the frozen trunk's embeddings, and the SAC extractor.

    The embedding of bar ``t`` is the trunk's ``head(body(window_t))`` on exactly the
    window the env would emit at ``t`` (computed once, batched, on the training device).
    SAC's networks are then MLPs on the embedding: no trunk forward per env step or per
    update. ``rows`` limits the pass to the bars the training envs observe (the rows
    outside are zero; an env on them would see no market).
    """
    probe = IntradayTradingEnv(arrays, env_config, (0, arrays.n_bars))
    space = probe.observation_space
    assert isinstance(space, spaces.Dict)
    encoder = build_trunk(trunk, space, symbol)
    device = get_device(settings.device)
    embeddings = trunk_embeddings(
        encoder,
        arrays.features,
        sequence_length=env_config.sequence_length,
        feature_clip=env_config.feature_clip,
        device=device,
        rows=rows,
    )
    names = tuple(f"trunk_{i:03d}" for i in range(embeddings.shape[1]))
    fast = dataclasses.replace(arrays, features=embeddings, feature_names=names)
    extractor = {
        "features_extractor_class": PrecomputedEmbeddingExtractor,
        "features_extractor_kwargs": {
            "account_dim": encoder.config.account_dim,
            "account_state": encoder.account_proj.state_dict(),
        },
    }
    return fast, extractor


def compose_frozen_model(
    fast: YoopSAC, env: IntradayTradingEnv, config: ExperimentConfig, trunk: TrunkBundle
) -> YoopSAC:
    """The frozen fast-path policy as a model on the env's sequence observations.

    Every extractor is the trunk's encoder (frozen) with the account projection SAC
    learned; actor and critic heads are copied. Its actions on a window equal the fast
    model's on that window's precomputed embedding.
    """
    full = build_model(env, config, tensorboard_log=None)
    for module in _extractors(full):
        load_trunk_state(module, trunk)
        module.requires_grad_(False)
    state = full.policy.state_dict()
    for key, value in fast.policy.state_dict().items():
        if key not in state or state[key].shape != value.shape:
            raise RuntimeError(f"frozen policy: {key} has no counterpart in the full model")
        state[key] = value
    full.policy.load_state_dict(state)
    full.num_timesteps = fast.num_timesteps
    return full


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def resolve_data_dir(config: ExperimentConfig) -> tuple[Path, bool]:
    """The store a run reads, and whether it is the embedded synthetic market.

    ``data.data_dir`` is used as given. Otherwise ``./data`` is used when it holds every
    symbol and ``data.market`` is not given, else the synthetic market of ``data.market``
    is generated (once, offline, in
    :func:`~backend.environments.factory.synthetic_market_dir`: ``data/synthetic`` for
    ``null``, else ``data/synthetic_<market>``).

    Raises:
        ConfigError: if ``data.data_dir`` is not a directory.
    """
    from backend.data_download.loader import available_symbols

    if config.data.database is not None:
        path = Path(config.data.database)
        if not path.is_dir():
            raise ConfigError(f"data.database {path}: no such directory")
        return path, False
    if config.data.data_dir is not None:
        path = Path(config.data.data_dir)
        if not path.is_dir():
            raise ConfigError(f"data.data_dir {path}: no such directory")
        return path, False
    # An explicit data.market asks for that synthetic scenario even when ./data has bars.
    if "market" not in config.data.model_fields_set:
        present = set(available_symbols(DEFAULT_DATA_DIR))
        if present and all(s in present for s in config.data.symbols):
            return DEFAULT_DATA_DIR, False
    market = config.data.market
    return ensure_synthetic_dataset(synthetic_market_dir(market), market_scenario(market)), True


def data_source(config: ExperimentConfig, data_dir: str | Path | None = None) -> dict[str, Any]:
    """``load_symbol_dataset``'s source keywords: the database if configured, else the store.

    Args:
        config: The experiment.
        data_dir: The store to read (default: :func:`resolve_data_dir`'s answer).
    """
    if config.data.database is not None:
        return {"database": config.data.database}
    return {"data_dir": data_dir if data_dir is not None else resolve_data_dir(config)[0]}


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
    from backend.config.presets import preset_names

    parser = argparse.ArgumentParser(
        prog="python -m backend.training.train",
        description="Train one SAC + DSR intraday agent on one date range.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML/JSON experiment file (backend.config.experiment.ExperimentConfig; "
        "a bundle's config.yaml works too); default: the schema defaults",
    )
    parser.add_argument(
        "--preset",
        default=None,
        choices=preset_names(),
        help="run preset merged under the file (default: the file's 'preset' key, else none)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"bar store root (data.data_dir); default: ./data if it holds the symbol, else "
        f"the synthetic market in {synthetic_market_dir('null')}",
    )
    parser.add_argument("--symbol", default=None, help="ticker to train on (data.symbols)")
    parser.add_argument("--start", default=None, help="first date to load (YYYY-MM-DD)")
    parser.add_argument("--end", default=None, help="last date to load (YYYY-MM-DD)")
    parser.add_argument("--seed", type=int, default=None, help="training.seed")
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
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved experiment (preset + file + flags) as YAML and exit",
    )
    return parser


def resolve_cli_config(args: argparse.Namespace) -> ExperimentConfig:
    """The experiment of a trainer command line: preset < ``--config`` < flags.

    Raises:
        ConfigError: on any invalid key or value (one line, paths named).
        OSError: if the config file cannot be read.
    """
    data: dict[str, Any] = {}
    if args.data_dir is not None:
        data["data_dir"] = str(args.data_dir)
    if args.symbol is not None:
        data["symbols"] = [args.symbol.strip().upper()]
    if args.start is not None:
        data["start"] = args.start
    if args.end is not None:
        data["end"] = args.end
    overrides: dict[str, Any] = {"data": data} if data else {}
    if args.seed is not None:
        overrides["training"] = {"seed": args.seed}
    config = resolve_experiment(args.preset, args.config, overrides)
    if len(config.data.symbols) != 1:
        raise ConfigError(
            f"data.symbols: the trainer trains one symbol, got {list(config.data.symbols)}; "
            "use --symbol or the main job (backend.scripts.run_walk_forward)"
        )
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Train one model and write it as a bundle (``save_bundle``) under ``--output``.

    Besides the bundle's own files, ``metrics.json`` (metrics, ranges, validation
    history) and ``training_settings.json`` are kept in it, as before bundles existed.
    A config mistake is one line on stderr and exit code 2.
    """
    args = build_parser().parse_args(argv)
    try:
        config = resolve_cli_config(args)
    except (OSError, ConfigError) as exc:
        where = f"--config {args.config}: " if isinstance(exc, OSError) else ""
        print(f"error: {where}{exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    try:
        data_dir, _ = resolve_data_dir(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    features = config.features
    symbol = config.data.symbols[0]
    dataset = load_symbol_dataset(
        symbol,
        features,
        start=config.data.start,
        end=config.data.end,
        **data_source(config, data_dir),
    )
    fit, val = split_sessions(dataset.sessions, args.val_fraction, args.gap_sessions)
    run_name = f"{dataset.symbol}_{config.encoder.name}_{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = args.output / run_name
    result = train_on_range(
        dataset,
        fit,
        val,
        config,
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
        "seed": config.training.seed,
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
        config=result.config,
        metadata=metadata,
        extra_files={
            "metrics.json": json.dumps(report, indent=2, default=str) + "\n",
            "training_settings.json": json.dumps(config.training.to_dict(), indent=2) + "\n",
        },
    )
    print(json.dumps({k: report[k] for k in ("steps_done", "best_val_sharpe")}, default=str))
    print(f"saved to {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
