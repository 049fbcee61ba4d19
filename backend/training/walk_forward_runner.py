"""Walk-forward orchestration: one job per (window, encoder mode), resumable and parallel.

A run is a grid of independent jobs. Each job, for every symbol of the run (each symbol gets
its own model; symbols are looped inside the job to keep the grid small and the output
layout flat):

1. trains SAC on the window's fit sessions, early-stopped on its val sessions
   (:func:`backend.training.train.train_on_range`);
2. plays the best model once over the test sessions, which it never saw, in an env with
   ``episode_sessions=0, random_start=False`` (deterministic actions, or sampled with a
   seed derived from the job when ``stochastic_eval``), timing every ``predict`` call;
3. scores it net of costs (:func:`backend.evaluation.metrics.compute_metrics`) and runs the
   flat / buy-and-hold / random baselines on the same test bars with the same costs;
4. writes the model bundle(s) and, as the very last step, ``result.json`` atomically.

Because ``result.json`` appears only once everything else of the job is on disk, its
presence (validated by :func:`load_complete_result`) is what ``--resume`` trusts: a job
killed half-way leaves no ``result.json`` and is simply redone.

Layout of a run directory::

    <output>/run.json                           spec (config, seed), data range + hash,
                                                windows, provenance; written at start
    <output>/windows/w00/<mode>/result.json     metrics, timings, per-bar series and
                                                per-session returns (model, baselines)
    <output>/windows/w00/<mode>/model_<SYM>/    model bundle (save_bundle)
    <output>/pretrained/w00/<mode>/             with ``training.pretrained.pretrain``: the
                                                window's supervised trunk, pretrained on
                                                its fit range before the jobs run

Seeds: every job trains with :func:`job_seed` ``(run seed, window dates, mode, replicate)``,
so the serial and the parallel executors (process pool, Ray: :mod:`backend.training.executors`)
give identical numbers for the same run seed, a resumed job is the same job it would have
been, and a window's model is the same in a run with more or fewer windows (the window's
position in the run does not enter its seed). ``seeds`` replicates per (window, mode) train
with replicate numbers 0..N-1; replicate 0 lives in ``w00/<mode>``, replicate r > 0 in
``w00/<mode>-r<r>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch as th

from backend.config.experiment import ExperimentConfig
from backend.data_download.dataset import SymbolDataset, bar_range
from backend.data_download.feature_config import FeatureConfig
from backend.database.datasets import load_symbol_dataset
from backend.environments.env_config import EnvConfig
from backend.environments.intraday_env import IntradayTradingEnv
from backend.evaluation.baselines import run_baselines_for_env
from backend.evaluation.metrics import PerformanceMetrics, compute_metrics
from backend.evaluation.rollout import PolicyState, rollout_policy
from backend.evaluation.session_stats import per_session_returns
from backend.models.model_manager import save_bundle
from backend.models.pretrained import load_trunk_bundle
from backend.models.segment_actor import SegmentActor, supports_segment_actor
from backend.training import executors
from backend.training.train import load_pretrained, train_on_range
from backend.training.walk_forward import WalkForwardConfig, WalkForwardWindow
from backend.utils.atomic_io import write_json_atomic
from backend.utils.provenance import collect_provenance, data_range

__all__ = [
    "RESULT_FILE",
    "RESULT_SCHEMA",
    "RUN_FILE",
    "Job",
    "RunSpec",
    "check_pretrained",
    "derive_seed",
    "job_config",
    "job_dir",
    "job_seed",
    "load_complete_result",
    "plan_jobs",
    "pretrained_dir",
    "run_job",
    "run_spec_jobs",
    "out_of_sample_env_config",
    "write_run_json",
]

RUN_FILE = "run.json"
RESULT_FILE = "result.json"
RESULT_SCHEMA = 2
"""Bumped when ``result.json`` changes shape; other versions are not trusted on resume."""

METRIC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PerformanceMetrics))


# ---------------------------------------------------------------------------------------
# Run specification and jobs
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """Everything a job needs, picklable for worker processes and saved in ``run.json``.

    The experiment is one resolved :class:`ExperimentConfig`; each job trains
    ``config.for_mode(mode)`` with its own derived seed.
    """

    output_dir: str
    """Run directory (``<output>``)."""
    data_dir: str
    """Bar store root actually read (``config.data.data_dir`` resolved)."""
    config: ExperimentConfig
    """The resolved experiment (preset + file + flags; purge gap derived)."""
    synthetic: bool = False
    """Whether the data are the embedded synthetic market."""

    @property
    def market(self) -> str | None:
        """Ground-truth scenario of the synthetic market (``data.market``).

        None for real data, which never carries a scenario.
        """
        return self.config.data.market if self.synthetic else None

    @property
    def seeds(self) -> int:
        """Training replicates per (window, mode) (``walk_forward.seeds``)."""
        return self.config.walk_forward.seeds

    @property
    def symbols(self) -> tuple[str, ...]:
        """Tickers; each gets its own model per (window, mode)."""
        return self.config.data.symbols

    @property
    def modes(self) -> tuple[str, ...]:
        """Encoder modes, in report order (``manual`` first when present)."""
        return self.config.modes

    @property
    def preset(self) -> str:
        """Run preset name, for the record (``custom`` when none was applied)."""
        return self.config.preset or "custom"

    @property
    def seed(self) -> int:
        """Run seed (``training.seed``); job seeds derive from it (:func:`derive_seed`)."""
        return self.config.training.seed

    @property
    def stochastic_eval(self) -> bool:
        """Sample actions on the test range (seeded) instead of taking the mean action."""
        return self.config.stochastic_eval

    @property
    def walk_forward(self) -> WalkForwardConfig:
        """Window layout (purge gap resolved)."""
        return self.config.walk_forward

    @property
    def features(self) -> FeatureConfig:
        """Feature set."""
        return self.config.features

    @property
    def env(self) -> EnvConfig:
        """Costs of training and test (observation layout set per encoder)."""
        return self.config.env

    @property
    def start(self) -> str | None:
        """First date loaded."""
        return self.config.data.start

    @property
    def end(self) -> str | None:
        """Last date loaded."""
        return self.config.data.end

    def experiment_for(self, mode: str) -> ExperimentConfig:
        """The experiment the jobs of ``mode`` train (before their seed is derived)."""
        return self.config.for_mode(mode)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, summary keys plus the full ``config``; :meth:`from_dict` reverses it."""
        return {
            "output_dir": self.output_dir,
            "data_dir": self.data_dir,
            "symbols": list(self.symbols),
            "modes": list(self.modes),
            "preset": self.preset,
            "seed": self.seed,
            "stochastic_eval": self.stochastic_eval,
            "start": self.start,
            "end": self.end,
            "synthetic": self.synthetic,
            "market": self.market,
            "seeds": self.seeds,
            # Trials of the search that chose this config: the report's deflated Sharpe.
            "tuning_trials": self.config.search.tuning_trials,
            "config": self.config.model_dump(mode="json"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSpec:
        """Rebuild from :meth:`to_dict` output (e.g. ``run.json`` on ``--resume``).

        Raises:
            ConfigError: if the recorded config does not validate.
        """
        from backend.config.experiment import resolve_experiment

        return cls(
            output_dir=str(data["output_dir"]),
            data_dir=str(data["data_dir"]),
            config=resolve_experiment(file=data["config"]),
            synthetic=bool(data.get("synthetic", False)),
        )


@dataclass(frozen=True)
class Job:
    """One (window, mode) cell of the grid, with its sessions as ISO dates."""

    window: int
    mode: str
    fit: tuple[str, str]
    val: tuple[str, str]
    test: tuple[str, str]
    replicate: int = 0
    """Training replicate (0..seeds-1): same data, another derived seed."""

    @property
    def folder(self) -> str:
        """``manual`` or ``manual-r1``: the job's folder below its window."""
        return self.mode if self.replicate == 0 else f"{self.mode}-r{self.replicate}"

    @property
    def name(self) -> str:
        """``w00/manual`` (``w00/manual-r1`` for replicate 1): the folder below ``windows/``."""
        return f"w{self.window:02d}/{self.folder}"


def derive_seed(run_seed: int, *parts: object) -> int:
    """A seed fixed by the run seed and ``parts`` alone, in ``[0, 2**31)``.

    Hashing (rather than ``run_seed + window``) keeps the jobs' random streams unrelated,
    and does not depend on the order or the process in which jobs run.
    """
    key = ":".join(str(p) for p in (run_seed, *parts))
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def job_seed(run_seed: int, job: Job) -> int:
    """The training seed of ``job``: (run seed, fit/val/test dates, mode, replicate).

    The window's dates, not its position in the run, so the same window trains the same
    model whether the run has 2 windows or 20 (issue 9).
    """
    return derive_seed(run_seed, *job.fit, *job.val, *job.test, job.mode, job.replicate)


def job_dir(output_dir: str | Path, job: Job) -> Path:
    """``<output>/windows/w{i:02d}/{mode}`` (``{mode}-r{r}`` for replicate r > 0)."""
    return Path(output_dir) / "windows" / f"w{job.window:02d}" / job.folder


PRETRAINABLE_MODES: tuple[str, ...] = ("cnn", "lstm", "transformer")
"""Modes the supervised lab pretrains (its trunks are sequence encoders)."""


def pretrained_dir(output_dir: str | Path, window: int, mode: str) -> Path:
    """``<output>/pretrained/w{i:02d}/{mode}``: the window's trunk under ``--pretrain``."""
    return Path(output_dir) / "pretrained" / f"w{window:02d}" / mode


def job_config(spec: RunSpec, job: Job) -> ExperimentConfig:
    """The job's experiment with its pretrained trunk resolved (before the seed).

    ``training.pretrained.pretrain`` points the job at its window's trunk
    (:func:`pretrained_dir`, written before the jobs run); a ``bundle`` applies to the jobs
    of the bundle's encoder mode only, the other modes train from scratch.

    Raises:
        FileNotFoundError: if ``pretrain`` is set and the window's trunk is missing.
    """
    config = spec.experiment_for(job.mode)
    pre = config.training.pretrained
    if not pre.enabled:
        return config
    off = pre.replace(bundle=None, pretrain=False)
    if pre.pretrain:
        if job.mode not in PRETRAINABLE_MODES:
            update = off
        else:
            path = pretrained_dir(spec.output_dir, job.window, job.mode)
            if not (path / "trunk.pt").is_file():
                raise FileNotFoundError(
                    f"{path}: no pretrained trunk for {job.name}; the main job pretrains "
                    "every window before its jobs run (--pretrain)"
                )
            update = pre.replace(pretrain=False, bundle=str(path))
    else:
        assert pre.bundle is not None
        update = pre if load_trunk_bundle(pre.bundle).mode == job.mode else off
    return config.model_copy(
        update={"training": config.training.replace(pretrained=update.to_dict())}
    )


def _span(sessions: pd.DatetimeIndex, start: int, stop: int) -> tuple[str, str]:
    return (str(sessions[start].date()), str(sessions[stop - 1].date()))


def plan_jobs(
    windows: Sequence[WalkForwardWindow],
    sessions: pd.DatetimeIndex,
    modes: Sequence[str],
    seeds: int = 1,
) -> list[Job]:
    """Jobs in window-major order (all modes of window 0 first): early results are paired.

    Within a window: replicate-major, so replicate 0 of every mode comes first.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    jobs: list[Job] = []
    for w in windows:
        fit = _span(sessions, w.fit.start, w.fit.stop)
        val = _span(sessions, w.val.start, w.val.stop)
        test = _span(sessions, w.test.start, w.test.stop)
        jobs.extend(
            Job(w.index, mode, fit, val, test, replicate=r) for r in range(seeds) for mode in modes
        )
    return jobs


def check_pretrained(spec: RunSpec, job: Job) -> None:
    """Refuse the job's pretrained trunk before anything trains (every symbol checked).

    The same check :func:`~backend.training.train.train_on_range` makes (features, window
    length, normalizer of this window's fit range, no overlap with its validation or test
    sessions), run up front so a mismatched bundle stops the run in seconds.

    Raises:
        ValueError: listing every difference.
    """
    config = job_config(spec, job)
    pre = config.training.pretrained
    if pre.bundle is None:
        return
    config = config.model_copy(update={"encoder": load_trunk_bundle(pre.bundle).encoder_config()})
    forbidden = {
        "validation": (pd.Timestamp(job.val[0]), pd.Timestamp(job.val[1])),
        "test": (pd.Timestamp(job.test[0]), pd.Timestamp(job.test[1])),
    }
    for symbol in spec.symbols:
        ds = load_dataset(spec, symbol)
        normalizer = ds.fit_normalizer(pd.Timestamp(job.fit[0]), pd.Timestamp(job.fit[1]))
        load_pretrained(pre.bundle, config, symbol, normalizer, forbidden)


# ---------------------------------------------------------------------------------------
# Data (cached per process: serial runs load once, each worker loads once)
# ---------------------------------------------------------------------------------------

_DATASETS: dict[tuple[Any, ...], SymbolDataset] = {}


def load_dataset(spec: RunSpec, symbol: str) -> SymbolDataset:
    """The symbol's dataset for this run, loaded once per process."""
    database = spec.config.data.database
    key = (spec.data_dir, database, symbol, spec.features, spec.start, spec.end)
    if key not in _DATASETS:
        source = {"database": database} if database is not None else {"data_dir": spec.data_dir}
        _DATASETS[key] = load_symbol_dataset(
            symbol, spec.features, start=spec.start, end=spec.end, **source
        )
    return _DATASETS[key]


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def load_complete_result(path: str | Path, job: Job, spec: RunSpec) -> dict[str, Any] | None:
    """The job's ``result.json`` if it is complete and belongs to this job, else None.

    Checks the schema version, the job identity (window, mode, sessions, seed), that every
    symbol has every metric and its series, and that each model bundle's metadata exists:
    a file from another run layout or a truncated write is redone, never trusted.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        ok = (
            data["schema"] == RESULT_SCHEMA
            and data["complete"] is True
            and data["window"] == job.window
            and data["mode"] == job.mode
            and tuple(data["test_sessions"]) == job.test
            and tuple(data["fit_sessions"]) == job.fit
            and int(data.get("replicate", 0)) == job.replicate
            and data["seed"] == job_seed(spec.seed, job)
            and sorted(data["symbols"]) == sorted(spec.symbols)
        )
        for symbol in spec.symbols:
            entry = data["symbols"][symbol]
            ok = ok and all(k in entry["metrics"] for k in METRIC_FIELDS)
            ok = ok and len(entry["series"]["net_returns"]) == entry["metrics"]["n_bars"]
            ok = ok and len(entry["sessions"]["net_returns"]) == len(entry["sessions"]["dates"])
            ok = ok and (p.parent / entry["bundle"] / "metadata.json").is_file()
    except (KeyError, TypeError):
        return None
    return data if ok else None


def write_run_json(
    spec: RunSpec, windows: Sequence[WalkForwardWindow], jobs: Sequence[Job]
) -> Path:
    """Record the run at its start: spec, windows, data range + bar hash, provenance."""
    data: dict[str, Any] = {}
    for symbol in spec.symbols:
        ds = load_dataset(spec, symbol)
        data[symbol] = data_range(ds.market)
    windows_out = []
    by_window = {j.window: j for j in jobs if j.replicate == 0}
    for w in windows:
        j = by_window[w.index]
        windows_out.append(
            {
                "index": w.index,
                "fit": list(j.fit),
                "val": list(j.val),
                "test": list(j.test),
                "fit_sessions": len(w.fit),
                "val_sessions": len(w.val),
                "test_sessions": len(w.test),
            }
        )
    payload = {
        "spec": spec.to_dict(),
        "seed": spec.seed,
        "windows": windows_out,
        "data": data,
        "provenance": collect_provenance(),
        "created_utc": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }
    return write_json_atomic(Path(spec.output_dir) / RUN_FILE, payload)


# ---------------------------------------------------------------------------------------
# One job
# ---------------------------------------------------------------------------------------


LATENCY_CALLS = 256
"""Test bars whose action comes from a timed ``model.predict`` (the live trader's call)."""


class _TimedPolicy:
    """The test rollout's policy: timed ``model.predict`` first, then the batched actor.

    The first ``timed_calls`` actions come from ``model.predict`` and their wall times are
    the reported inference latency (what the live trader pays per bar); the rest of a
    deterministic rollout comes from ``fast`` (a :class:`SegmentActor`: the same actions,
    without one batch-1 encoder forward per bar) when there is one.
    """

    def __init__(self, model: Any, fast: Any = None, timed_calls: int = LATENCY_CALLS) -> None:
        self._model = model
        self._fast = fast
        self._timed_calls = timed_calls
        self.seconds: list[float] = []

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: PolicyState = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, PolicyState]:
        """Time and forward one ``predict`` call, or hand it to the batched actor."""
        if self._fast is not None and deterministic and len(self.seconds) >= self._timed_calls:
            fast_out: tuple[np.ndarray, PolicyState] = self._fast.predict(
                observation, state, episode_start, deterministic
            )
            return fast_out
        t0 = time.perf_counter()
        out: tuple[np.ndarray, PolicyState] = self._model.predict(
            observation, state, episode_start, deterministic
        )
        self.seconds.append(time.perf_counter() - t0)
        return out


class _RecordingEnv(IntradayTradingEnv):
    """The env, also keeping each step's held position and bar (``rollout_policy`` drops them).

    ``compute_metrics`` needs the position held over each bar (``info["target"]``) and the
    session of each bar to count trades, exposure and sessions exactly like the baselines.
    """

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        """Reset and clear the record."""
        self.targets: list[float] = []
        self.bars: list[int] = []
        return super().reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        """Step and record ``target`` and ``bar``."""
        out = super().step(action)
        info = out[4]
        self.targets.append(float(info["target"]))
        self.bars.append(int(info["bar"]))
        return out


def _peak_rss_mib() -> float:
    """Process high-water mark of resident memory (``ru_maxrss``: KiB on Linux, B on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def session_dates(timestamps: np.ndarray) -> np.ndarray:
    """New York trading date (``YYYY-MM-DD``) of each bar start (int64 ns UTC)."""
    ny = pd.DatetimeIndex(pd.to_datetime(np.asarray(timestamps, dtype=np.int64), utc=True))
    return np.asarray(ny.tz_convert("America/New_York").strftime("%Y-%m-%d"))


def session_block(
    timestamps: np.ndarray, net_returns: np.ndarray, baselines: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """Per-session net returns of the model and of each baseline on the same bars.

    The unit of inference of the report (:mod:`backend.evaluation.session_stats`): each
    session's bars compounded. The baselines are simulated on exactly the test bars the
    model traded, so both cover the same sessions; a mismatch is a bug and raises.
    """
    dates = session_dates(timestamps)
    days, model = per_session_returns(net_returns, dates)
    bars = np.unique(dates, return_counts=True)
    out: dict[str, Any] = {
        "dates": days.tolist(),
        "bars": [int(bars[1][bars[0] == d][0]) for d in days],
        "net_returns": model.tolist(),
        "baselines": {},
    }
    for name, series in baselines.items():
        if len(series) != len(net_returns):
            raise RuntimeError(
                f"baseline {name!r}: {len(series)} test bars but the model traded "
                f"{len(net_returns)} (a test rollout only ends early when equity reaches 0)"
            )
        _, values = per_session_returns(series, dates)
        out["baselines"][name] = values.tolist()
    return out


def out_of_sample_env_config(env_config: EnvConfig) -> EnvConfig:
    """The env settings of an out-of-sample test: one episode over every test bar.

    No random start, no episode length, and no ruin stop (``ruin_equity`` 0): the ruin
    threshold ends *training* episodes, but a test must score every test bar, as the
    baselines do (:mod:`backend.evaluation.baselines`), so a policy that loses half its
    capital is reported with its whole loss instead of ending the run.
    """
    return env_config.model_copy(
        update={"episode_sessions": 0, "random_start": False, "ruin_equity": 0.0}
    )


def _train_and_test_symbol(
    spec: RunSpec, job: Job, symbol: str, config: ExperimentConfig, out_dir: Path
) -> dict[str, Any]:
    """Train, bundle, test and baseline one symbol of one job."""
    ds = load_dataset(spec, symbol)
    fit = (pd.Timestamp(job.fit[0]), pd.Timestamp(job.fit[1]))
    val = (pd.Timestamp(job.val[0]), pd.Timestamp(job.val[1]))
    test = (pd.Timestamp(job.test[0]), pd.Timestamp(job.test[1]))
    if th.cuda.is_available():
        th.cuda.reset_peak_memory_stats()
    settings = config.training
    result = train_on_range(
        ds,
        fit,
        val,
        config,
        run_name=f"w{job.window:02d}_{job.folder}_{symbol}",
        progress_bar=False,
        # One attention-entropy probe per validation evaluation, so short runs log it too.
        attention_probe_every=settings.eval_every_steps,
        unseen={"test": test},
    )
    arrays = ds.arrays(result.normalizer)
    test_range = bar_range(arrays, *ds.session_bounds(*test))
    test_cfg = out_of_sample_env_config(result.env_config)
    env = _RecordingEnv(arrays, test_cfg, test_range, reward=config.reward)
    fast = None
    if not spec.stochastic_eval and supports_segment_actor(result.model):
        fast = SegmentActor(result.model, env)
    policy = _TimedPolicy(result.model, fast)
    if spec.stochastic_eval:
        # SB3 samples actions from torch's global generator: seed it so that a stochastic
        # test is repeatable and independent of how many random draws training made.
        th.manual_seed(settings.seed)
    rollout = rollout_policy(
        policy, env, deterministic=not spec.stochastic_eval, seed=settings.seed
    )
    bars = np.asarray(env.bars, dtype=np.int64)
    metrics = compute_metrics(
        rollout.net_returns,
        positions=np.asarray(env.targets),
        end_positions=rollout.positions,
        session_ids=arrays.session_index[bars],
        turnover=rollout.turnover,
        trade_costs=rollout.trade_costs,
    )
    baselines = run_baselines_for_env(
        arrays, test_cfg, test_range, seed=derive_seed(spec.seed, *job.test, "baselines")
    )
    latency = np.asarray(policy.seconds) * 1e3
    bundle_name = f"model_{symbol}"
    save_bundle(
        out_dir / bundle_name,
        result.model,
        result.normalizer,
        config=result.config,
        metadata={
            "symbols": [symbol],
            "seed": settings.seed,
            "data": {
                **data_range(ds.market),
                "fit_sessions": list(job.fit),
                "val_sessions": list(job.val),
                "test_sessions": list(job.test),
            },
            "metrics": {**result.metrics, "test": metrics.to_dict()},
            "train_time_s": result.metrics["train_time_s"],
        },
    )
    cuda_peak = th.cuda.max_memory_allocated() / 2**20 if th.cuda.is_available() else None
    return {
        "metrics": metrics.to_dict(),
        "training": result.metrics,
        "val_history": [list(h) for h in result.val_history],
        "train_time_s": float(result.metrics["train_time_s"]),
        "inference_latency_ms_median": float(np.median(latency)) if latency.size else None,
        "inference_latency_ms_p99": (float(np.percentile(latency, 99)) if latency.size else None),
        "predict_calls": int(latency.size),
        "peak_rss_mib": _peak_rss_mib(),
        "cuda_peak_mib": cuda_peak,
        "test_bar_range": list(test_range),
        "bundle": bundle_name,
        "baselines": {name: b.metrics for name, b in baselines.items()},
        "sessions": session_block(
            rollout.timestamps,
            rollout.net_returns,
            {name: b.simulation.net_returns for name, b in baselines.items()},
        ),
        "series": {
            "timestamps": rollout.timestamps.tolist(),
            "net_returns": rollout.net_returns.tolist(),
            "baselines": {name: b.simulation.net_returns.tolist() for name, b in baselines.items()},
        },
    }


def run_job(spec: RunSpec, job: Job) -> dict[str, Any]:
    """Run one (window, mode) job for every symbol and write its artifacts.

    The same function runs in the serial loop and in worker processes. ``result.json`` is
    written last and atomically, so it exists only for a finished job.

    Returns:
        The content of ``result.json``.
    """
    out_dir = job_dir(spec.output_dir, job)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = job_seed(spec.seed, job)
    config = job_config(spec, job)
    training: dict[str, Any] = {"seed": seed}
    if config.training.tensorboard_log is not None:
        training["tensorboard_log"] = str(Path(spec.output_dir) / "tensorboard")
    config = config.model_copy(update={"training": config.training.replace(**training)})
    started = time.perf_counter()
    per_symbol = {
        symbol: _train_and_test_symbol(spec, job, symbol, config, out_dir)
        for symbol in spec.symbols
    }
    payload = {
        "schema": RESULT_SCHEMA,
        "complete": True,
        "window": job.window,
        "mode": job.mode,
        "replicate": job.replicate,
        "seed": seed,
        "fit_sessions": list(job.fit),
        "val_sessions": list(job.val),
        "test_sessions": list(job.test),
        "stochastic_eval": spec.stochastic_eval,
        "device": "cuda" if th.cuda.is_available() else "cpu",
        "job_time_s": time.perf_counter() - started,
        "symbols": per_symbol,
    }
    write_json_atomic(out_dir / RESULT_FILE, payload)
    return payload


# ---------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------


def _init_worker() -> None:
    """Worker start-up: one torch thread, so N workers use N cores and not N x cores."""
    th.set_num_threads(1)


def _run_spec_job(item: tuple[RunSpec, Job]) -> dict[str, Any]:
    """:func:`run_job` of a ``(spec, job)`` pair (module level: pool workers unpickle it)."""
    return run_job(*item)


def run_spec_jobs(
    items: Sequence[tuple[RunSpec, Job]],
    *,
    workers: int = 1,
    on_done: Callable[[RunSpec, Job, dict[str, Any]], None] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> None:
    """Run ``(spec, job)`` pairs serially, in a spawn-context process pool, or on Ray.

    Every executor runs :func:`run_job` itself (see :mod:`backend.training.executors`).
    The pairs may come from several runs: the ground-truth comparison hands every market's
    jobs over at once, so a worker that finishes a market's last job starts the next
    market's instead of waiting for the market's slowest job. Results do not depend on the
    order (seeds come from the jobs). ``on_done`` is called in this process after each
    finished job (progress bars). The first job failure is raised after cancelling the jobs
    not yet started; jobs that finished before it keep their ``result.json`` for ``--resume``.
    """
    for (spec, job), result in executors.run_jobs(
        items,
        _run_spec_job,
        executor=executor,
        workers=workers,
        initializer=_init_worker,
        ray_address=ray_address,
    ):
        if on_done is not None:
            on_done(spec, job, result)


def collect_results(spec: RunSpec, jobs: Iterable[Job]) -> dict[str, dict[str, Any]]:
    """Every job's validated ``result.json``; raises if one is missing or incomplete."""
    out = {}
    for job in jobs:
        data = load_complete_result(job_dir(spec.output_dir, job) / RESULT_FILE, job, spec)
        if data is None:
            raise RuntimeError(f"job {job.name}: no complete {RESULT_FILE}")
        out[job.name] = data
    return out
