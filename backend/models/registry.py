"""The model registry: versioned bundles of both tracks, promotion gates, a promoted pointer.

``python -m backend.models.registry list|register|promote|rollback|show`` (``--help``).
Not to be confused with the *encoder* registry (``backend/models/feature_extractors/
registry.py``, the names of encoder modes); this one holds trained models.

Layout of a registry root (``registry.root`` of the config, default ``models/``)::

    registry.json     every model name: its versions (bundle copy, contract, hashes, data
                      ranges, evidence figures, gate results at registration, who/when),
                      the promoted version and the promotion stack (for rollback)
    events.jsonl      append-only log: register, promote, refuse, rollback; each line
                      carries the SHA-256 of the line before it, so a rewritten or
                      truncated history is detected on read
    bundles/<name>/<version>/   an immutable copy of each registered bundle

**Versions are derived, never typed.** Against the latest version of the same name: a
different *contract* (features or their order, observation layout, symbols, tasks, action
map: what a consumer feeds the model and gets back) is a new **major** version; the same
contract with different weights (retraining) a **minor** one; the same weights with other
metadata or other evidence a **patch**; everything identical is refused as a duplicate.

**Promotion is gated** (:mod:`backend.models.promotion_gates`): the gates of the entry's
track are evaluated with the thresholds of the ``registry`` config section; one failure
refuses the promotion with each failed gate, its figure and its threshold named, and the
refusal is logged. ``rollback`` restores the previously promoted version. The live trader
loads :meth:`ModelRegistry.promoted_bundle` when it is given no explicit bundle.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import getpass
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.models.promotion_gates import GateResult, evaluate_gates
from backend.models.registry_config import RegistryConfig
from backend.models.registry_evidence import (
    EvidenceError,
    collect_evidence,
    find_run_dir,
    inspect_bundle,
)
from backend.utils.atomic_io import json_safe, write_json_atomic
from backend.utils.config_model import ConfigError, load_mapping

__all__ = [
    "EVENTS_FILE",
    "REGISTRY_FILE",
    "ModelRegistry",
    "PromotionRefused",
    "RegistryError",
    "SemVer",
    "default_model_name",
    "load_registry_config",
    "main",
]

REGISTRY_FILE = "registry.json"
EVENTS_FILE = "events.jsonl"
BUNDLES_DIR = "bundles"
FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class RegistryError(ValueError):
    """A registry operation that cannot be done; the message says why in one line."""


class PromotionRefused(RegistryError):
    """A promotion refused by its gates (logged as a ``refuse`` event)."""

    def __init__(self, message: str, results: Sequence[GateResult]) -> None:
        """Keep the gate results beside the one-line message."""
        super().__init__(message)
        self.results = list(results)


@dataclass(frozen=True, order=True)
class SemVer:
    """A ``major.minor.patch`` version."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        """``"1.2.3"`` -> ``SemVer(1, 2, 3)``.

        Raises:
            RegistryError: for anything else.
        """
        match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", text.strip())
        if match is None:
            raise RegistryError(f"version {text!r}: expected MAJOR.MINOR.PATCH, e.g. 1.2.0")
        return cls(*(int(g) for g in match.groups()))

    def bump(self, part: str) -> SemVer:
        """The next version after a ``major``, ``minor`` or ``patch`` change."""
        if part == "major":
            return SemVer(self.major + 1, 0, 0)
        if part == "minor":
            return SemVer(self.major, self.minor + 1, 0)
        if part == "patch":
            return SemVer(self.major, self.minor, self.patch + 1)
        raise ValueError(f"bump part {part!r}: expected major, minor or patch")

    def __str__(self) -> str:
        """``major.minor.patch``."""
        return f"{self.major}.{self.minor}.{self.patch}"


def default_model_name(track: str, symbols: Sequence[str]) -> str:
    """``rl-SPY``, ``supervised-SPY-QQQ``: the name a bundle registers under by default."""
    return f"{track}-{'-'.join(symbols)}"


def derive_version(
    versions: Sequence[Mapping[str, Any]], entry: Mapping[str, Any]
) -> tuple[SemVer, str, str]:
    """The version of a new entry given the name's existing ones: ``(version, bump, why)``.

    Raises:
        RegistryError: when an existing version has the same bundle and the same evidence.
    """
    for v in versions:
        if (
            v["content_sha256"] == entry["content_sha256"]
            and v["evidence"]["metrics_sha256"] == entry["evidence"]["metrics_sha256"]
        ):
            raise RegistryError(
                f"this bundle with this evidence is already registered as version {v['version']}"
            )
    if not versions:
        return SemVer(1, 0, 0), "initial", "first version of this name"
    latest = max(versions, key=lambda v: SemVer.parse(v["version"]))
    top = SemVer.parse(latest["version"])
    if latest["contract_sha256"] != entry["contract_sha256"]:
        changed = sorted(
            k
            for k in set(latest["contract"]) | set(entry["contract"])
            if latest["contract"].get(k) != entry["contract"].get(k)
        )
        return top.bump("major"), "major", f"contract changed vs {top}: {', '.join(changed)}"
    if latest["weights_sha256"] != entry["weights_sha256"]:
        return top.bump("minor"), "minor", f"same contract as {top}, new weights (retrained)"
    what = "metadata" if latest["content_sha256"] != entry["content_sha256"] else "evidence"
    return top.bump("patch"), "patch", f"same weights as {top}, other {what}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _who(who: str | None) -> str:
    if who:
        return who
    env = os.environ.get("YOOPRL_USER")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class ModelRegistry:
    """The registry under one root folder (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        """Open (not create) the registry at ``root``; files appear on the first write."""
        self.root = Path(root)

    # -- storage ------------------------------------------------------------------------

    @property
    def file(self) -> Path:
        """``<root>/registry.json``."""
        return self.root / REGISTRY_FILE

    @property
    def events_file(self) -> Path:
        """``<root>/events.jsonl``."""
        return self.root / EVENTS_FILE

    def load(self) -> dict[str, Any]:
        """The registry document (empty when the root has none yet).

        Raises:
            RegistryError: for an unreadable or foreign file.
        """
        if not self.file.is_file():
            return {"format_version": FORMAT_VERSION, "models": {}}
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{self.file}: not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            version = data.get("format_version") if isinstance(data, dict) else None
            raise RegistryError(
                f"{self.file}: format_version {version!r}, this code reads {FORMAT_VERSION}"
            )
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Exclusive lock of the root for one read-modify-write (other processes wait)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield self.load()
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _save(self, data: Mapping[str, Any]) -> None:
        write_json_atomic(self.file, data)

    def events(self) -> list[dict[str, Any]]:
        """Every logged event, oldest first, after checking the hash chain.

        Raises:
            RegistryError: when a line was changed, removed or inserted.
        """
        if not self.events_file.is_file():
            return []
        out: list[dict[str, Any]] = []
        previous: str | None = None
        lines = self.events_file.read_bytes().splitlines()
        for number, line in enumerate(lines, start=1):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                raise RegistryError(f"{self.events_file}: line {number} is not JSON") from None
            if event.get("prev_sha256") != previous:
                raise RegistryError(
                    f"{self.events_file}: line {number} does not follow line {number - 1} "
                    "(the append-only log was edited)"
                )
            previous = hashlib.sha256(line).hexdigest()
            out.append(event)
        return out

    def _log(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Append one event (fsynced), chained to the previous line's hash."""
        previous = None
        if self.events_file.is_file():
            lines = self.events_file.read_bytes().splitlines()
            if lines:
                previous = hashlib.sha256(lines[-1]).hexdigest()
        record = {"at": _now(), **event, "prev_sha256": previous}
        line = json.dumps(json_safe(record), sort_keys=True, allow_nan=False)
        with self.events_file.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return record

    # -- queries ------------------------------------------------------------------------

    def _model(self, data: Mapping[str, Any], name: str) -> dict[str, Any]:
        model: dict[str, Any] | None = data["models"].get(name)
        if model is None:
            known = sorted(data["models"])
            raise RegistryError(f"no model named {name!r} in {self.file} (known: {known})")
        return model

    def entry(self, name: str, version: str | None = None) -> dict[str, Any]:
        """One version of ``name`` (default: the latest).

        Raises:
            RegistryError: unknown name or version.
        """
        model = self._model(self.load(), name)
        return _pick(model, name, version)

    def promoted(self, name: str) -> dict[str, Any] | None:
        """The promoted entry of ``name``, or None when none is promoted."""
        data = self.load()
        model = data["models"].get(name)
        if model is None or model.get("promoted") is None:
            return None
        return _pick(model, name, model["promoted"])

    def promoted_bundle(self, name: str) -> Path:
        """Folder of the promoted bundle of ``name``, checked unchanged since registration.

        Raises:
            RegistryError: nothing promoted, or the stored copy was modified.
        """
        entry = self.promoted(name)
        if entry is None:
            raise RegistryError(
                f"no promoted version of {name!r} in {self.file}: promote one with "
                f"python -m backend.models.registry --root {self.root} promote {name}"
            )
        path = self.root / entry["bundle"]
        facts = inspect_bundle(path)
        if facts.content_sha256 != entry["content_sha256"]:
            raise RegistryError(
                f"{path}: the stored bundle of {name} {entry['version']} changed since it was "
                "registered (content hash differs); restore it or register a new version"
            )
        return path

    # -- changes ------------------------------------------------------------------------

    def register(
        self,
        bundle: str | Path,
        *,
        name: str | None = None,
        evidence: str | Path | None = None,
        config: RegistryConfig | None = None,
        who: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Copy ``bundle`` into the registry as the next version of ``name``.

        Args:
            bundle: An RL or supervised bundle folder.
            name: Model name (default :func:`default_model_name` of its track and symbols).
            evidence: The run folder whose ``metrics.json`` tested it (default: the
                nearest parent of the bundle holding one).
            config: Thresholds of the gates evaluated (and recorded) at registration;
                registration itself never fails a gate, promotion does.
            who: Recorded author (default ``$YOOPRL_USER`` or the login name).
            note: Free text kept with the entry.

        Raises:
            RegistryError: an unreadable bundle or evidence, a duplicate, a name of another
                track.
        """
        config = config or RegistryConfig()
        try:
            facts = inspect_bundle(bundle)
            run_dir = find_run_dir(facts.path, evidence)
            figures = collect_evidence(facts, run_dir)
        except EvidenceError as exc:
            raise RegistryError(str(exc)) from None
        name = name or default_model_name(facts.track, facts.symbols)
        if not _NAME.match(name):
            raise RegistryError(f"model name {name!r}: use letters, digits, '.', '_' or '-'")
        entry: dict[str, Any] = {
            "track": facts.track,
            "mode": facts.mode,
            "symbols": list(facts.symbols),
            "source": str(facts.path.resolve()),
            "contract": facts.contract,
            "contract_sha256": facts.contract_sha256,
            "weights_sha256": facts.weights_sha256,
            "content_sha256": facts.content_sha256,
            "size_bytes": facts.size_bytes,
            "training_ranges": {k: list(v) for k, v in facts.training_ranges.items()},
            "test_range": list(facts.test_range) if facts.test_range else None,
            "data": facts.data,
            "evidence": figures,
            "registered_by": _who(who),
            "registered_at": _now(),
            "note": note,
        }
        with self._locked() as data:
            model = data["models"].setdefault(
                name, {"track": facts.track, "versions": [], "promoted": None, "stack": []}
            )
            if model["track"] != facts.track:
                raise RegistryError(
                    f"model {name!r} holds {model['track']} bundles; {facts.path} is a "
                    f"{facts.track} bundle: register it under another name"
                )
            version, bump, why = derive_version(model["versions"], entry)
            entry = {"version": str(version), "bump": bump, "bump_reason": why, **entry}
            results = evaluate_gates(entry, config)
            entry["gates"] = [r.to_dict() for r in results]
            entry["gates_passed"] = [r.gate for r in results if r.passed]
            target = self.root / BUNDLES_DIR / name / str(version)
            _copy_bundle(facts.path, target)
            if inspect_bundle(target).content_sha256 != facts.content_sha256:
                shutil.rmtree(target, ignore_errors=True)
                raise RegistryError(f"copy of {facts.path} to {target} differs from the source")
            entry["bundle"] = target.relative_to(self.root).as_posix()
            model["versions"].append(entry)
            self._save(data)
            self._log(
                {
                    "action": "register",
                    "model": name,
                    "version": str(version),
                    "bump": bump,
                    "who": entry["registered_by"],
                    "source": entry["source"],
                    "gates_passed": entry["gates_passed"],
                }
            )
        return entry

    def promote(
        self,
        name: str,
        version: str | None = None,
        *,
        config: RegistryConfig | None = None,
        who: str | None = None,
    ) -> dict[str, Any]:
        """Make ``version`` (default: the latest) of ``name`` the one the trader loads.

        Raises:
            PromotionRefused: a gate failed (each failed gate named with figure and
                threshold); the refusal is logged.
            RegistryError: unknown name/version, or the version is already promoted.
        """
        config = config or RegistryConfig()
        author = _who(who)
        with self._locked() as data:
            model = self._model(data, name)
            entry = _pick(model, name, version)
            if model.get("promoted") == entry["version"]:
                raise RegistryError(f"{name} {entry['version']} is already the promoted version")
            results = evaluate_gates(entry, config)
            gates = [r.to_dict() for r in results]
            failed = [r for r in results if not r.passed]
            if failed:
                self._log(
                    {
                        "action": "refuse",
                        "model": name,
                        "version": entry["version"],
                        "who": author,
                        "gates": gates,
                        "config": config.to_dict(),
                    }
                )
                reasons = "; ".join(r.message for r in failed)
                raise PromotionRefused(
                    f"promotion of {name} {entry['version']} refused by {len(failed)} gate(s): "
                    f"{reasons}",
                    results,
                )
            previous = model.get("promoted")
            model["promoted"] = entry["version"]
            model["stack"].append(entry["version"])
            entry["promotions"] = [*entry.get("promotions", []), {"by": author, "at": _now()}]
            self._save(data)
            self._log(
                {
                    "action": "promote",
                    "model": name,
                    "version": entry["version"],
                    "previous": previous,
                    "who": author,
                    "gates": gates,
                    "config": config.to_dict(),
                }
            )
        return entry

    def rollback(self, name: str, *, who: str | None = None, reason: str | None = None) -> str:
        """Restore the version promoted before the current one; returns it.

        Raises:
            RegistryError: nothing promoted before the current version.
        """
        author = _who(who)
        with self._locked() as data:
            model = self._model(data, name)
            stack: list[str] = model["stack"]
            if len(stack) < 2:
                current = model.get("promoted")
                raise RegistryError(
                    f"{name}: no earlier promoted version to roll back to (promoted: {current})"
                )
            current = stack.pop()
            restored = stack[-1]
            model["promoted"] = restored
            self._save(data)
            self._log(
                {
                    "action": "rollback",
                    "model": name,
                    "version": restored,
                    "previous": current,
                    "who": author,
                    "reason": reason,
                }
            )
        return restored


def _pick(model: Mapping[str, Any], name: str, version: str | None) -> dict[str, Any]:
    versions: list[dict[str, Any]] = model["versions"]
    if not versions:
        raise RegistryError(f"model {name!r} has no version")
    if version is None:
        return max(versions, key=lambda v: SemVer.parse(v["version"]))
    wanted = str(SemVer.parse(version))
    for v in versions:
        if v["version"] == wanted:
            return v
    raise RegistryError(
        f"model {name!r} has no version {wanted} (versions: {[v['version'] for v in versions]})"
    )


def _copy_bundle(source: Path, target: Path) -> None:
    """Copy a bundle folder to ``target`` via a temporary sibling (never half a copy)."""
    if target.exists():
        raise RegistryError(f"{target} already exists; the registry never overwrites a version")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_registry_config(path: str | Path | None) -> RegistryConfig:
    """The ``registry`` section of an experiment file (defaults without a file).

    Only that section is read and validated, so any experiment YAML (or a bundle's
    ``config.yaml``) works.

    Raises:
        ConfigError: unreadable file or an invalid ``registry`` section (paths named).
    """
    if path is None:
        return RegistryConfig()
    section = load_mapping(path).get("registry") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path}: registry: expected a mapping of fields, got {section!r}")
    try:
        return RegistryConfig.from_dict(section)
    except ConfigError as exc:
        raise ConfigError(f"{path}: registry: {exc}") from None


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """``list | register | promote | rollback | show``."""
    p = argparse.ArgumentParser(
        prog="python -m backend.models.registry",
        description="Versioned model bundles (RL and supervised) with promotion gates.",
    )
    p.add_argument(
        "--root",
        default=None,
        help="registry folder (default: the config's registry.root, else models/)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="experiment YAML/JSON whose 'registry' "
        "section sets the root and the gate thresholds (default: schema defaults)",
    )
    p.add_argument("--who", default=None, help="recorded author (default $YOOPRL_USER or login)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every model: track, versions, latest, promoted")
    reg = sub.add_parser("register", help="copy a bundle in as the next derived version")
    reg.add_argument("bundle", help="RL or supervised bundle folder")
    reg.add_argument("--name", default=None, help="model name (default <track>-<SYMBOLS>)")
    reg.add_argument(
        "--evidence",
        default=None,
        help="run folder with the metrics.json that "
        "tested the bundle (default: the nearest parent holding one)",
    )
    reg.add_argument("--note", default=None, help="free text kept with the entry")
    pro = sub.add_parser("promote", help="gate-check a version and make it the promoted one")
    pro.add_argument("name")
    pro.add_argument("--version", default=None, help="default: the latest")
    rb = sub.add_parser("rollback", help="restore the previously promoted version")
    rb.add_argument("name")
    rb.add_argument("--reason", default=None)
    show = sub.add_parser("show", help="one version's entry and gate results, or the event log")
    show.add_argument("name")
    show.add_argument("--version", default=None, help="default: the latest")
    show.add_argument("--events", action="store_true", help="print this model's event log")
    show.add_argument("--json", action="store_true", help="the raw entry as JSON")
    return p


def _gate_lines(gates: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"  [{'pass' if g['passed'] else 'FAIL'}] {g['gate']}: {g['detail']}" for g in gates]


def _print_entry(entry: Mapping[str, Any], promoted: str | None) -> None:
    star = " (promoted)" if entry["version"] == promoted else ""
    print(f"{entry['version']}{star}  {entry['track']} {entry['mode']} {entry['symbols']}")
    print(f"  bump: {entry['bump']} ({entry['bump_reason']})")
    print(f"  bundle: {entry['bundle']}  (from {entry['source']})")
    print(f"  size: {entry['size_bytes'] / 1e6:.3g} MB")
    ranges = ", ".join(f"{k} {v[0]}..{v[1]}" for k, v in entry["training_ranges"].items())
    print(f"  trained on: {ranges or 'not recorded'}; own test: {entry['test_range']}")
    print(f"  evidence: {entry['evidence']['run']}")
    print(f"  registered by {entry['registered_by']} at {entry['registered_at']}")
    print("  gates at registration:")
    for line in _gate_lines(entry["gates"]):
        print("  " + line)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; errors raise :class:`RegistryError`/`ConfigError`."""
    args = build_parser().parse_args(argv)
    config = load_registry_config(args.config)
    registry = ModelRegistry(args.root or config.root)
    if args.command == "list":
        models = registry.load()["models"]
        if not models:
            print(f"{registry.file}: no model registered")
        for name, model in sorted(models.items()):
            latest = max(model["versions"], key=lambda v: SemVer.parse(v["version"]))
            print(
                f"{name:<24} {model['track']:<10} {len(model['versions'])} version(s), latest "
                f"{latest['version']} ({latest['mode']}), promoted {model['promoted'] or '-'}"
            )
        return 0
    if args.command == "register":
        entry = registry.register(
            args.bundle,
            name=args.name,
            evidence=args.evidence,
            config=config,
            who=args.who,
            note=args.note,
        )
        name = args.name or default_model_name(entry["track"], entry["symbols"])
        print(f"registered {name} {entry['version']} ({entry['bump']}: {entry['bump_reason']})")
        for line in _gate_lines(entry["gates"]):
            print(line)
        return 0
    if args.command == "promote":
        entry = registry.promote(args.name, args.version, config=config, who=args.who)
        print(f"promoted {args.name} {entry['version']}: every gate passed")
        return 0
    if args.command == "rollback":
        restored = registry.rollback(args.name, who=args.who, reason=args.reason)
        print(f"rolled back {args.name} to {restored}")
        return 0
    if args.events:
        for event in registry.events():
            if event.get("model") == args.name:
                extra = f" (from {event['previous']})" if event.get("previous") else ""
                print(
                    f"{event['at']} {event['action']:<9} {event['version']}{extra} by "
                    f"{event.get('who')}"
                )
                if event["action"] == "refuse":
                    print("\n".join(_gate_lines([g for g in event["gates"] if not g["passed"]])))
        return 0
    entry = registry.entry(args.name, args.version)
    if args.json:
        print(json.dumps(entry, indent=2))
    else:
        promoted = registry.load()["models"][args.name].get("promoted")
        _print_entry(entry, promoted)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 done, 1 promotion refused by a gate, 2 any other error (one line)."""
    try:
        return run(argv)
    except PromotionRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except (RegistryError, ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
