"""What the model registry knows about a bundle and about the run that judged it.

Read from files only (``metadata.json``, ``config.yaml``/``config.json``, the run's
``metrics.json`` and ``result.json``): the registry sits in the models layer and must not
import the lab or the reports that wrote them, and a bundle is judged by what was recorded,
never by re-running anything.

* :func:`inspect_bundle` tells an RL bundle (``backend/models/model_manager.py``) from a
  supervised one (``backend/supervised/bundle.py``) and extracts its **contract** (what a
  consumer must feed it and gets back: features and their order, observation layout,
  symbols, tasks), the hashes that tell retraining from a metadata edit, its size and the
  data ranges it was trained on.
* :func:`collect_evidence` extracts, from the run folder holding the bundle's
  ``metrics.json``, exactly the figures the promotion gates read, so a registry entry
  keeps its evidence even after the run folder is gone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backend.utils.provenance import sha256_file

__all__ = [
    "BundleFacts",
    "EvidenceError",
    "collect_evidence",
    "find_run_dir",
    "inspect_bundle",
    "sha256_file",
]

METRICS_FILE = "metrics.json"
RESULT_FILE = "result.json"
_RL_WEIGHT_FILES = ("model.zip", "encoder_state_dict.pt")
_SUPERVISED_WEIGHT_FILES = ("model.pt",)


class EvidenceError(ValueError):
    """A bundle or run folder the registry cannot read; the message names file and field."""


DateRange = tuple[str, str]


@dataclass(frozen=True)
class BundleFacts:
    """A bundle as the registry sees it."""

    track: str
    """``rl`` or ``supervised``."""
    path: Path
    """The bundle folder."""
    mode: str
    """Encoder mode (``manual``, ``transformer``, ...): the strategy name in the evidence."""
    symbols: tuple[str, ...]
    """Tickers the bundle was trained on."""
    contract: dict[str, Any]
    """What a consumer feeds it and gets back; a change means a new major version."""
    weights_sha256: str
    """Hash of the weight files: a change (same contract) means retraining, a minor version."""
    content_sha256: str
    """Hash of every file: a change with the same weights is a metadata edit (patch)."""
    size_bytes: int
    """Bytes on disk of all the bundle's files."""
    training_ranges: dict[str, DateRange] = field(default_factory=dict)
    """``{part: (first, last)}`` of every range the weights saw (fit, val, pretraining)."""
    test_range: DateRange | None = None
    """The bundle's own test range, when it came from a walk-forward window."""
    data: dict[str, Any] = field(default_factory=dict)
    """The data block of its metadata (first/last bar, hash, ranges), as recorded."""

    @property
    def contract_sha256(self) -> str:
        """Hash of :attr:`contract` (canonical JSON)."""
        return _digest(json.dumps(self.contract, sort_keys=True).encode())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise EvidenceError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvidenceError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EvidenceError(f"{path}: expected a JSON object at the top level")
    return data


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _content_hash(root: Path) -> tuple[str, int]:
    lines, size = [], 0
    for p in _files(root):
        lines.append(f"{p.relative_to(root).as_posix()} {sha256_file(p)}")
        size += p.stat().st_size
    return _digest("\n".join(lines).encode()), size


def _weights_hash(root: Path, names: Sequence[str]) -> str:
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise EvidenceError(f"bundle {root}: missing weight file(s) {missing}")
    return _digest("\n".join(f"{n} {sha256_file(root / n)}" for n in names).encode())


def _range(value: Any, where: str) -> DateRange:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, str) for v in value)
    ):
        raise EvidenceError(f"{where}: expected [first date, last date], got {value!r}")
    first, last = str(value[0])[:10], str(value[1])[:10]
    if first > last:
        raise EvidenceError(f"{where}: first date {first} is after last date {last}")
    return first, last


def _rl_facts(root: Path) -> BundleFacts:
    meta_path = root / "metadata.json"
    metadata = _read_json(meta_path)
    for name, digest in (metadata.get("files") or {}).items():
        if not (root / name).is_file():
            raise EvidenceError(f"bundle {root}: {name} is listed in metadata.json but missing")
        if sha256_file(root / name) != digest:
            raise EvidenceError(f"bundle {root}: {name} changed after saving (sha256 differs)")
    try:
        config = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EvidenceError(f"bundle {root}: config.yaml unreadable: {exc}") from None
    for key in ("observation", "feature_names", "symbols", "encoder_mode"):
        if key not in metadata:
            raise EvidenceError(f"{meta_path}: field {key!r} is missing")
    env = config.get("env") or {}
    contract = {
        "track": "rl",
        "symbols": list(metadata["symbols"]),
        "feature_names": list(metadata["feature_names"]),
        "features": config.get("features"),
        "observation": metadata["observation"],
        # What the trader does with the action: the env's action map.
        "action": {k: env.get(k) for k in ("long_only", "max_position", "deadband")},
    }
    data = dict(metadata.get("data") or {})
    training: dict[str, DateRange] = {}
    for key in ("fit_sessions", "val_sessions"):
        if key in data:
            training[key.removesuffix("_sessions")] = _range(data[key], f"{meta_path}: data.{key}")
    training.update(_pretraining_ranges(metadata, meta_path))
    trunk = _pretrained_trunk(config, root)
    if trunk is not None:
        data["pretrained_trunk"] = trunk
        for part, span in (trunk.get("dates") or {}).items():
            training[f"pretrain_{part}"] = (span[0], span[1])
    test = data.get("test_sessions")
    content, size = _content_hash(root)
    return BundleFacts(
        track="rl",
        path=root,
        mode=str(metadata["encoder_mode"]),
        symbols=tuple(metadata["symbols"]),
        contract=contract,
        weights_sha256=_weights_hash(root, _RL_WEIGHT_FILES),
        content_sha256=content,
        size_bytes=size,
        training_ranges=training,
        test_range=_range(test, f"{meta_path}: data.test_sessions") if test else None,
        data=data,
    )


def _pretraining_ranges(metadata: Mapping[str, Any], where: Path) -> dict[str, DateRange]:
    """Ranges a pretrained trunk saw, when the bundle records one (``pretrained_encoder``).

    A warm-started encoder carries its pretraining data into the policy: those bars count
    as training data for the overlap gate.
    """
    block = metadata.get("pretrained_encoder")
    if not isinstance(block, Mapping):
        return {}
    dates = block.get("dates") or block.get("data_range") or {}
    out: dict[str, DateRange] = {}
    if isinstance(dates, Mapping):
        for part in ("fit", "val"):
            if part in dates:
                out[f"pretrain_{part}"] = _range(
                    dates[part], f"{where}: pretrained_encoder.dates.{part}"
                )
    return out


def _trunk_folder(recorded: str, bundle: Path) -> Path | None:
    """The trunk folder a bundle's ``training.pretrained.bundle`` names, if it exists.

    Absolute, or relative to the working directory of the run that wrote it: tried as
    given, then against each folder above the bundle (the run's output lies there).
    """
    path = Path(recorded)
    candidates = [path] if path.is_absolute() else [path, *(p / path for p in bundle.parents)]
    return next((c for c in candidates if (c / "metadata.json").is_file()), None)


def _pretrained_trunk(config: Mapping[str, Any], root: Path) -> dict[str, Any] | None:
    """The pretrained trunk an RL bundle was warm-started from, with the sessions it saw.

    ``training.pretrained.bundle`` of the bundle's ``config.yaml`` names the trunk's folder;
    its ``metadata.json`` ``dates`` (``fit``, ``val``: what trained and early-stopped it)
    are bars the policy's encoder learned from, so the overlap gate counts them. A trunk
    that cannot be read is recorded with the reason (``error``): the gate then fails,
    since the bars it saw cannot be shown to lie outside the test.
    """
    pretrained = (config.get("training") or {}).get("pretrained") or {}
    recorded = pretrained.get("bundle") if isinstance(pretrained, Mapping) else None
    if not recorded:
        return None
    out: dict[str, Any] = {"bundle": str(recorded), "use": pretrained.get("use")}
    folder = _trunk_folder(str(recorded), root)
    if folder is None:
        out["error"] = f"training.pretrained.bundle {recorded}: no trunk bundle found there"
        return out
    where = folder / "metadata.json"
    try:
        dates = _read_json(where).get("dates") or {}
        out["dates"] = {
            part: list(_range(dates[part], f"{where}: dates.{part}"))
            for part in ("fit", "val")
            if part in dates
        }
    except EvidenceError as exc:
        out["error"] = str(exc)
        return out
    if not out["dates"]:
        out["error"] = f"{where}: records no fit or validation dates"
    return out


def _supervised_facts(root: Path) -> BundleFacts:
    config = _read_json(root / "config.json")
    meta_path = root / "metadata.json"
    metadata = _read_json(meta_path)
    contract = {
        "track": "supervised",
        "symbols": list(metadata.get("symbols", [])),
        "feature_names": list(metadata.get("feature_names", [])),
        "features": config.get("features"),
        "sequence_length": config.get("sequence_length"),
        "n_features": config.get("n_features"),
        "feature_clip": config.get("feature_clip"),
        "tasks": list(config.get("tasks", [])),
    }
    dates = metadata.get("dates") or {}
    training = {
        part: _range(dates[part], f"{meta_path}: dates.{part}")
        for part in ("fit", "val")
        if part in dates
    }
    content, size = _content_hash(root)
    return BundleFacts(
        track="supervised",
        path=root,
        mode=str(config.get("mode")),
        symbols=tuple(metadata.get("symbols", [])),
        contract=contract,
        weights_sha256=_weights_hash(root, _SUPERVISED_WEIGHT_FILES),
        content_sha256=content,
        size_bytes=size,
        training_ranges=training,
        test_range=_range(dates["test"], f"{meta_path}: dates.test") if "test" in dates else None,
        data={"dates": dates, "data_ranges": metadata.get("data_ranges")},
    )


def inspect_bundle(path: str | Path) -> BundleFacts:
    """The facts of the RL or supervised bundle in folder ``path``.

    Raises:
        EvidenceError: not a bundle of either kind, a file changed after saving, or a
            malformed field (named).
    """
    root = Path(path)
    if not root.is_dir():
        raise EvidenceError(f"no bundle folder at {root}")
    if (root / "model.zip").is_file() and (root / "metadata.json").is_file():
        return _rl_facts(root)
    config = root / "config.json"
    if config.is_file() and _read_json(config).get("kind") == "supervised_multitask":
        return _supervised_facts(root)
    raise EvidenceError(
        f"{root}: not a model bundle (an RL bundle has model.zip + metadata.json, a supervised "
        "one config.json of kind 'supervised_multitask')"
    )


def find_run_dir(bundle: Path, explicit: str | Path | None = None) -> Path:
    """The run folder whose ``metrics.json`` judged the bundle.

    ``explicit`` when given; otherwise the nearest parent of the bundle holding a
    ``metrics.json`` (the main job writes bundles at ``<run>/windows/wNN/<mode>/model_SYM``,
    the lab at ``<run>/bundles/<mode>``).

    Raises:
        EvidenceError: when no such folder is found.
    """
    if explicit is not None:
        run = Path(explicit)
        if not (run / METRICS_FILE).is_file():
            raise EvidenceError(f"--evidence {run}: no {METRICS_FILE} there")
        return run
    for parent in list(bundle.resolve().parents)[:5]:
        if (parent / METRICS_FILE).is_file():
            return parent
    raise EvidenceError(
        f"no {METRICS_FILE} in the parents of {bundle}; pass the run folder that tested it "
        "(--evidence RUN_DIR)"
    )


def _windows(metrics: Mapping[str, Any], where: Path, track: str) -> list[dict[str, Any]]:
    """``[{"index", "fit", "val", "test"}]`` of the run's walk-forward windows."""
    rows = metrics.get("windows")
    if not isinstance(rows, list) or not rows:
        raise EvidenceError(f"{where}: field 'windows' is missing or empty")
    out = []
    for i, w in enumerate(rows):
        keys = ("fit", "val", "test") if track == "rl" else ("fit_range", "val_range", "test_range")
        try:
            parts = [_range(w[k], f"{where}: windows[{i}].{k}") for k in keys]
        except KeyError as exc:
            raise EvidenceError(f"{where}: windows[{i}] lacks {exc}") from None
        out.append(
            {
                "index": int(w.get("index", w.get("window", i))),
                "fit": list(parts[0]),
                "val": list(parts[1]),
                "test": list(parts[2]),
            }
        )
    return out


def _rl_evidence(facts: BundleFacts, metrics: dict[str, Any], where: Path) -> dict[str, Any]:
    tests = metrics.get("tests")
    if not isinstance(tests, list):
        raise EvidenceError(f"{where}: field 'tests' is missing (not a walk-forward metrics.json?)")
    mine = [
        t for t in tests if t.get("strategy") == facts.mode and t.get("symbol") in facts.symbols
    ]
    latency: float | None = None
    source = None
    result = facts.path.parent / RESULT_FILE
    if result.is_file():
        job = _read_json(result)
        entry = (job.get("symbols") or {}).get(facts.symbols[0], {})
        if entry.get("bundle") == facts.path.name and entry.get("inference_latency_ms_p99"):
            latency = float(entry["inference_latency_ms_p99"])
            source = f"{result} symbols.{facts.symbols[0]}.inference_latency_ms_p99"
    keep = ("symbol", "strategy", "against", "metric", "estimate", "p_value", "p_adjusted")
    return {
        "tests": [{k: t.get(k) for k in keep} for t in mine],
        "family_size": (metrics.get("power") or {}).get("family_size"),
        "n_sessions": (metrics.get("power") or {}).get("n_sessions"),
        "deflated_sharpe": metrics.get("deflated_sharpe"),
        "latency_p99_ms": latency,
        "latency_source": source,
        "windows": _windows(metrics, where, "rl"),
    }


def _supervised_evidence(
    facts: BundleFacts, metrics: dict[str, Any], where: Path
) -> dict[str, Any]:
    tasks = metrics.get("tasks")
    if not isinstance(tasks, dict):
        raise EvidenceError(f"{where}: field 'tasks' is missing (not a lab metrics.json?)")
    out_tasks: dict[str, Any] = {}
    for task, block in tasks.items():
        rows = [r for r in block.get("tests", []) if r.get("model") == facts.mode]
        score = (block.get("scores") or {}).get(facts.mode, {})
        out_tasks[task] = {
            "best_baseline": block.get("best_baseline"),
            "tests": [
                {
                    k: r.get(k)
                    for k in ("model", "reference", "mean_difference", "p_value", "p_holm")
                }
                for r in rows
            ],
            "ece": score.get("ece"),
            "accuracy": score.get("accuracy"),
        }
    latency = (metrics.get("latency_ms") or {}).get(facts.mode, {}).get("p99")
    return {
        "tasks": out_tasks,
        "n_comparisons": metrics.get("n_comparisons"),
        "latency_p99_ms": None if latency is None else float(latency),
        "latency_source": f"{where} latency_ms.{facts.mode}.p99" if latency is not None else None,
        "windows": _windows(metrics, where, "supervised"),
    }


def collect_evidence(facts: BundleFacts, run_dir: Path) -> dict[str, Any]:
    """The gate figures of ``facts`` from the run folder ``run_dir`` (JSON-ready).

    Raises:
        EvidenceError: a missing or malformed ``metrics.json`` field (named).
    """
    where = run_dir / METRICS_FILE
    metrics = _read_json(where)
    body = (
        _rl_evidence(facts, metrics, where)
        if facts.track == "rl"
        else _supervised_evidence(facts, metrics, where)
    )
    return {"run": str(run_dir.resolve()), "metrics_sha256": sha256_file(where), **body}
