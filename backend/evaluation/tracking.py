"""Experiment tracking of walk-forward runs: MLflow as an optional extra.

``python -m backend.scripts.run_walk_forward --tracking mlflow`` logs a run to MLflow as

* one **parent run** per walk-forward run (named after its directory): the resolved config
  (``run.json``'s spec, flattened) as parameters, provenance as tags, the aggregate test
  metrics, and ``report.md``, ``metrics.json``, ``run.json`` and the PNG plots as artifacts;
* one **nested run per (window, mode) job**: its parameters (window, mode, seed, session
  ranges), every per-step TensorBoard scalar of its training (SAC losses, entropy
  coefficient, DSR, validation Sharpe, encoder gradient norms, attention entropy) as a step
  metric, its final test metrics per symbol, and ``result.json`` plus the model bundles as
  artifacts.

Jobs are logged from the main process as they finish (whatever the executor), by reading
the files the runner wrote, so tracking never touches training. The parent run's id is kept
in ``<run>/mlflow_run.json``, so ``--resume`` continues the same MLflow run.

The default store is a local MLflow file store under the run's output root
(``file://<run>/mlruns``); pass ``--tracking-uri`` for a server (``http://host:5000``) or
any other MLflow URI. MLflow >= 3 keeps the file store in maintenance mode behind
``MLFLOW_ALLOW_FILE_STORE=true``; this module sets it for ``file:`` URIs only. Install with
``pip install -e ".[mlflow]"`` (``mlflow-skinny``: the tracking client; ``pip install mlflow``
adds ``mlflow ui``).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

MLFLOW_INSTALL_HINT = 'pip install -e ".[mlflow]"'
TRACKERS = ("none", "mlflow")
PARENT_FILE = "mlflow_run.json"
EXPERIMENT = "yooprl-walk-forward"
MAX_PARAM_VALUE = 500
"""MLflow's limit on a parameter value's length (longer values are cut with a marker)."""
_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


class Tracker(Protocol):
    """What the main job calls while it runs."""

    def start(self, run_info: Mapping[str, Any]) -> None:
        """The run starts (or resumes); ``run_info`` is ``run.json``."""

    def log_job(self, job_name: str, result: Mapping[str, Any]) -> None:
        """Job ``wNN/<mode>`` finished with ``result`` (``result.json``)."""

    def finish(self, metrics: Mapping[str, Any], *, status: str = "FINISHED") -> None:
        """The run ended; ``metrics`` is ``metrics.json`` (empty when it failed)."""

    def describe(self) -> str:
        """One line for the console: where the tracked run is and how to open it."""


class NullTracker:
    """No tracking (the default)."""

    def start(self, run_info: Mapping[str, Any]) -> None:
        """Nothing to do."""

    def log_job(self, job_name: str, result: Mapping[str, Any]) -> None:
        """Nothing to do."""

    def finish(self, metrics: Mapping[str, Any], *, status: str = "FINISHED") -> None:
        """Nothing to do."""

    def describe(self) -> str:
        """Nothing to say."""
        return ""


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """``{"training": {"manual": {"seed": 1}}}`` -> ``{"training.manual.seed": "1"}``."""
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, (list, tuple)) and all(not isinstance(v, (Mapping, list)) for v in data):
        out[prefix] = json.dumps(list(data))
    elif isinstance(data, (list, tuple)):
        for i, value in enumerate(data):
            out.update(flatten(value, f"{prefix}.{i}"))
    else:
        text = "null" if data is None else str(data)
        if len(text) > MAX_PARAM_VALUE:
            text = text[: MAX_PARAM_VALUE - 8] + "...(cut)"
        out[prefix] = text
    return out


def metric_name(tag: str) -> str:
    """A TensorBoard tag as an MLflow metric name (only the characters MLflow accepts)."""
    return _METRIC_NAME.sub("_", tag)


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float, float]]]:
    """``{tag: [(step, wall_time, value), ...]}`` of every event file in ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import (  # type: ignore[import-untyped]
        EventAccumulator,
    )

    out: dict[str, list[tuple[int, float, float]]] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(
                (int(e.step), float(e.wall_time), float(e.value)) for e in acc.Scalars(tag)
            )
    return out


def job_tensorboard_dir(output_dir: Path, job_name: str, symbol: str) -> Path | None:
    """The newest TensorBoard run of a job's symbol (``w00_manual_SPY_<n>``, highest n).

    SB3 numbers runs of the same name; a job redone on ``--resume`` gets the next number,
    and the newest one is the run that produced the job's ``result.json``.
    """
    window, mode = job_name.split("/")
    stem = f"{window}_{mode}_{symbol}_"
    candidates = []
    for path in (output_dir / "tensorboard").glob(stem + "*"):
        suffix = path.name[len(stem) :]
        if path.is_dir() and suffix.isdigit():
            candidates.append((int(suffix), path))
    return max(candidates)[1] if candidates else None


class MlflowTracker:
    """Logs a walk-forward run to MLflow through ``MlflowClient`` (no global active run).

    Args:
        output_dir: The run directory.
        tracking_uri: MLflow tracking URI; ``None`` = ``file://<output_dir>/mlruns``.
        experiment: MLflow experiment name.

    Raises:
        RuntimeError: when MLflow is not installed (with the install command).
    """

    def __init__(
        self, output_dir: str | Path, tracking_uri: str | None = None, experiment: str = EXPERIMENT
    ) -> None:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise RuntimeError(
                f"--tracking mlflow needs MLflow, which is not installed: {MLFLOW_INSTALL_HINT}"
            ) from None
        self.output_dir = Path(output_dir)
        self.tracking_uri = tracking_uri or (self.output_dir / "mlruns").resolve().as_uri()
        if self.tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.experiment = experiment
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.symbols: list[str] = []

    # -- MLflow plumbing ------------------------------------------------------------------

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, params=items[i : i + 100])

    def _log_metrics(self, run_id: str, rows: Iterable[tuple[str, float, int, int]]) -> None:
        from mlflow.entities import Metric

        batch = []
        for key, value, timestamp_ms, step in rows:
            if value != value or value in (float("inf"), float("-inf")):
                continue  # MLflow stores NaN, but a missing point reads better than NaN
            batch.append(Metric(metric_name(key), float(value), int(timestamp_ms), int(step)))
            if len(batch) == 1000:
                self.client.log_batch(run_id, metrics=batch)
                batch = []
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return str(exp.experiment_id)
        return str(self.client.create_experiment(self.experiment))

    # -- Tracker --------------------------------------------------------------------------

    def start(self, run_info: Mapping[str, Any]) -> None:
        """Create (or, after ``--resume``, reopen) the parent run and log the config."""
        self.experiment_id = self._experiment_id()
        spec = run_info.get("spec", {})
        self.symbols = [str(s) for s in spec.get("symbols", [])]
        record_path = self.output_dir / PARENT_FILE
        if record_path.is_file():
            record = json.loads(record_path.read_text(encoding="utf-8"))
            if record.get("tracking_uri") == self.tracking_uri:
                self.parent_id = str(record["run_id"])
                self.client.update_run(self.parent_id, status="RUNNING")
                return
        provenance = run_info.get("provenance", {})
        tags = {
            "yooprl.kind": "walk_forward",
            "yooprl.output_dir": str(self.output_dir.resolve()),
            "yooprl.preset": str(spec.get("preset")),
            "yooprl.modes": ",".join(spec.get("modes", [])),
            "yooprl.symbols": ",".join(self.symbols),
        }
        git = provenance.get("git") if isinstance(provenance, Mapping) else None
        if isinstance(git, Mapping) and git.get("commit"):
            tags["mlflow.source.git.commit"] = str(git["commit"])
        run = self.client.create_run(self.experiment_id, run_name=self.output_dir.name, tags=tags)
        self.parent_id = run.info.run_id
        self._log_params(self.parent_id, flatten(spec))
        record_path.write_text(
            json.dumps({"run_id": self.parent_id, "tracking_uri": self.tracking_uri}) + "\n",
            encoding="utf-8",
        )

    def log_job(self, job_name: str, result: Mapping[str, Any]) -> None:
        """One nested run: params, per-step TensorBoard scalars, final metrics, artifacts."""
        if self.parent_id is None or self.experiment_id is None:
            raise RuntimeError("MlflowTracker.log_job before start")
        run = self.client.create_run(
            self.experiment_id,
            run_name=job_name,
            tags={"mlflow.parentRunId": self.parent_id, "yooprl.job": job_name},
        )
        run_id = run.info.run_id
        params = {
            "window": str(result.get("window")),
            "mode": str(result.get("mode")),
            "seed": str(result.get("seed")),
            "fit_sessions": json.dumps(result.get("fit_sessions")),
            "val_sessions": json.dumps(result.get("val_sessions")),
            "test_sessions": json.dumps(result.get("test_sessions")),
            "device": str(result.get("device")),
        }
        self._log_params(run_id, params)
        now_ms = int(time.time() * 1000)
        symbols = result.get("symbols", {})
        many = len(symbols) > 1
        final: list[tuple[str, float, int, int]] = [
            ("job_time_s", float(result.get("job_time_s") or 0.0), now_ms, 0)
        ]
        for symbol, entry in symbols.items():
            prefix = f"{symbol}." if many else ""
            tb_dir = job_tensorboard_dir(self.output_dir, job_name, symbol)
            if tb_dir is not None:
                scalars = tensorboard_scalars(tb_dir)
                self._log_metrics(
                    run_id,
                    (
                        (prefix + tag, value, int(wall * 1000), step)
                        for tag, points in scalars.items()
                        for step, wall, value in points
                    ),
                )
            for key, value in (entry.get("metrics") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    final.append((f"{prefix}test/{key}", float(value), now_ms, 0))
            for key, value in (entry.get("training") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    final.append((f"{prefix}training/{key}", float(value), now_ms, 0))
        self._log_metrics(run_id, final)
        job_dir = self.output_dir / "windows" / job_name
        if (job_dir / "result.json").is_file():
            self.client.log_artifact(run_id, str(job_dir / "result.json"))
        for symbol, entry in symbols.items():
            bundle = job_dir / str(entry.get("bundle", f"model_{symbol}"))
            if bundle.is_dir():
                self.client.log_artifacts(run_id, str(bundle), artifact_path=bundle.name)
        self.client.set_terminated(run_id, "FINISHED")

    def finish(self, metrics: Mapping[str, Any], *, status: str = "FINISHED") -> None:
        """Aggregate test metrics and the report, plots and tables on the parent run."""
        if self.parent_id is None:
            return
        now_ms = int(time.time() * 1000)
        rows = []
        for source in ("aggregates", "baseline_aggregates"):
            for name, stats in (metrics.get(source) or {}).items():
                for key, s in (stats or {}).items():
                    if isinstance(s, Mapping) and isinstance(s.get("estimate"), (int, float)):
                        rows.append((f"{name}/{key}", float(s["estimate"]), now_ms, 0))
        self._log_metrics(self.parent_id, rows)
        for name in ("report.md", "metrics.json", "run.json"):
            path = self.output_dir / name
            if path.is_file():
                self.client.log_artifact(self.parent_id, str(path))
        for png in sorted(self.output_dir.glob("*.png")):
            self.client.log_artifact(self.parent_id, str(png), artifact_path="plots")
        self.client.set_terminated(self.parent_id, status)

    def describe(self) -> str:
        """Where the run is, and the UI command for a local store."""
        where = (
            f"mlflow: run {self.parent_id} in experiment '{self.experiment}' at {self.tracking_uri}"
        )
        if self.tracking_uri.startswith("file:"):
            where += (
                f"\n  browse: MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri "
                f"{self.tracking_uri}  (the UI needs the full 'mlflow' package)"
            )
        return where


def make_tracker(kind: str, output_dir: str | Path, tracking_uri: str | None = None) -> Tracker:
    """The tracker behind ``--tracking``.

    Raises:
        ValueError: for an unknown kind.
        RuntimeError: for ``mlflow`` without MLflow installed.
    """
    if kind == "none":
        return NullTracker()
    if kind == "mlflow":
        return MlflowTracker(output_dir, tracking_uri)
    raise ValueError(f"--tracking {kind!r}: expected one of {', '.join(TRACKERS)}")


__all__ = [
    "MLFLOW_INSTALL_HINT",
    "TRACKERS",
    "MlflowTracker",
    "NullTracker",
    "Tracker",
    "flatten",
    "job_tensorboard_dir",
    "make_tracker",
    "tensorboard_scalars",
]
