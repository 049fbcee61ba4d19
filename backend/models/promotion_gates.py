"""Promotion gates: what a registered model must have proven before the trader may load it.

Each gate reads one figure of a registry entry (its recorded evidence, size and data
ranges: :mod:`backend.models.registry_evidence`) and compares it with a threshold of the
``registry`` config section (:mod:`backend.models.registry_config`). A failed gate says
which gate, the figure and the threshold, so a refusal needs no digging:
``beats_buy_and_hold[SPY]: sharpe difference +0.21, Holm-adjusted p = 0.41; needs > 0 and
p < 0.05``.

Gates of an RL bundle: beats each baseline of ``must_beat`` on the pooled walk-forward test
sessions (estimate > 0, Holm-adjusted p < alpha), p99 predict latency, bundle size, no
overlap between the data it trained on and the test ranges it is judged on. A supervised
bundle: beats the best baseline of its task (chosen on validation) with Holm-adjusted
p < alpha, ECE of its calibrated forecasts, latency, size, no overlap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from backend.models.registry_config import RegistryConfig, RLGates, SupervisedGates

__all__ = ["GateResult", "evaluate_gates", "overlap_days"]

_MB = 1_000_000


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict on one entry."""

    gate: str
    """Gate name, e.g. ``beats_flat[SPY]``, ``ece``, ``p99_latency_ms``."""
    passed: bool
    """Whether the figure met the threshold."""
    figure: float | None
    """The entry's figure (None when the evidence does not record it: the gate fails)."""
    threshold: float | None
    """The threshold it was compared with."""
    detail: str
    """One line: the figure, the threshold and the rule."""

    @property
    def message(self) -> str:
        """``gate: detail``, the line a refusal prints."""
        return f"{self.gate}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the registry and its event log."""
        return asdict(self)


def _g(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4g}"


def overlap_days(a: Sequence[str], b: Sequence[str]) -> int:
    """Calendar days two inclusive ``[first, last]`` date ranges share (0 if disjoint)."""
    first = max(dt.date.fromisoformat(a[0][:10]), dt.date.fromisoformat(b[0][:10]))
    last = min(dt.date.fromisoformat(a[1][:10]), dt.date.fromisoformat(b[1][:10]))
    return max((last - first).days + 1, 0)


def _beats(gate: str, estimate: Any, p: Any, alpha: float, what: str, missing: str) -> GateResult:
    if estimate is None or p is None:
        return GateResult(gate, False, None, alpha, f"{missing}; needs > 0 and p < {alpha:g}")
    ok = float(estimate) > 0 and float(p) < alpha
    detail = (
        f"{what} {float(estimate):+.4g}, Holm-adjusted p = {float(p):.4g}; needs > 0 and "
        f"p < {alpha:g}"
    )
    return GateResult(gate, ok, float(p), alpha, detail)


def _rl_beats(entry: Mapping[str, Any], gates: RLGates) -> list[GateResult]:
    tests = entry["evidence"].get("tests", [])
    out = []
    for symbol in entry["symbols"]:
        for baseline in gates.must_beat:
            row = next(
                (
                    t
                    for t in tests
                    if t.get("symbol") == symbol
                    and t.get("against") == baseline
                    and t.get("metric") == gates.metric
                ),
                None,
            )
            out.append(
                _beats(
                    f"beats_{baseline}[{symbol}]",
                    None if row is None else row.get("estimate"),
                    None if row is None else row.get("p_adjusted"),
                    gates.alpha,
                    f"{gates.metric} difference",
                    f"the evidence has no test of {entry['mode']} vs {baseline} on "
                    f"{gates.metric} for {symbol}",
                )
            )
    return out


def _supervised_beats(entry: Mapping[str, Any], gates: SupervisedGates) -> list[GateResult]:
    task = entry["evidence"].get("tasks", {}).get(gates.task)
    gate = f"beats_best_baseline[{gates.task}]"
    if task is None:
        return [
            GateResult(gate, False, None, gates.alpha, f"the evidence has no task {gates.task!r}")
        ]
    best = task.get("best_baseline")
    row = next((r for r in task.get("tests", []) if r.get("reference") == best), None)
    return [
        _beats(
            gate,
            None if row is None else row.get("mean_difference"),
            None if row is None else row.get("p_holm"),
            gates.alpha,
            f"session accuracy gain over {best}",
            f"the evidence has no test of {entry['mode']} vs the best baseline {best}",
        )
    ]


def _at_most(gate: str, figure: Any, threshold: float, unit: str, missing: str) -> GateResult:
    if figure is None:
        return GateResult(gate, False, None, threshold, f"{missing}; needs <= {threshold:g}{unit}")
    value = float(figure)
    detail = f"{value:.4g}{unit}; needs <= {threshold:g}{unit}"
    return GateResult(gate, value <= threshold, value, threshold, detail)


def _overlap(entry: Mapping[str, Any]) -> GateResult:
    gate = "no_test_overlap"
    windows = entry["evidence"].get("windows", [])
    problems: list[str] = []
    days = 0
    for w in windows:
        for part in ("fit", "val"):
            n = overlap_days(w[part], w["test"])
            if n:
                days += n
                problems.append(f"evidence window {w['index']} trains ({part}) on its own test")
    trunk = (entry.get("data") or {}).get("pretrained_trunk") or {}
    if trunk.get("error"):
        return GateResult(
            gate,
            False,
            None,
            0.0,
            f"the pretrained trunk's data range is unknown ({trunk['error']}), so it cannot "
            "be shown to have never seen the test; needs 0 overlapping days",
        )
    training: Mapping[str, Sequence[str]] = entry.get("training_ranges") or {}
    # The bundle is judged on its own window's test and every later one; a bundle from no
    # window of the run (e.g. trained on a whole range) on all of them.
    own = entry.get("test_range")
    start = next((i for i, w in enumerate(windows) if own is not None and w["test"] == own), 0)
    judged = windows[start:]
    if not training:
        return GateResult(
            gate,
            False,
            None,
            0.0,
            "the bundle records no training range, so it cannot be shown to have never seen "
            "the test; needs 0 overlapping days",
        )
    for name, span in training.items():
        for w in judged:
            n = overlap_days(span, w["test"])
            if n:
                days += n
                source = (
                    f" (pretrained trunk {trunk['bundle']})" if name.startswith("pretrain_") else ""
                )
                problems.append(
                    f"{name} {span[0]}..{span[1]}{source} overlaps the test "
                    f"{w['test'][0]}..{w['test'][1]} of window {w['index']} by {n} day(s)"
                )
    if problems:
        return GateResult(
            gate, False, float(days), 0.0, "; ".join(problems) + "; needs 0 overlapping days"
        )
    return GateResult(
        gate,
        True,
        0.0,
        0.0,
        f"0 overlapping days between {sorted(training)} and {len(judged)} test range(s)",
    )


def evaluate_gates(entry: Mapping[str, Any], config: RegistryConfig) -> list[GateResult]:
    """Every enabled gate of ``entry``'s track, in a fixed order.

    Args:
        entry: A registry entry (``track``, ``mode``, ``symbols``, ``size_bytes``,
            ``training_ranges``, ``test_range``, ``evidence``).
        config: The ``registry`` section whose thresholds apply.
    """
    track = entry["track"]
    evidence = entry["evidence"]
    results: list[GateResult]
    gates: RLGates | SupervisedGates
    if track == "rl":
        gates = config.rl
        results = _rl_beats(entry, gates)
    elif track == "supervised":
        gates = config.supervised
        results = _supervised_beats(entry, gates) if gates.beat_best_baseline else []
        if gates.max_ece is not None:
            ece = evidence.get("tasks", {}).get(gates.task, {}).get("ece")
            results.append(
                _at_most("ece", ece, gates.max_ece, "", f"no ECE recorded for {gates.task!r}")
            )
    else:
        raise ValueError(f"entry track {track!r}: expected rl or supervised")
    if gates.max_p99_latency_ms is not None:
        results.append(
            _at_most(
                "p99_latency_ms",
                evidence.get("latency_p99_ms"),
                gates.max_p99_latency_ms,
                " ms",
                "no p99 latency recorded in the evidence",
            )
        )
    if gates.max_size_mb is not None:
        results.append(
            _at_most(
                "model_size_mb", entry["size_bytes"] / _MB, gates.max_size_mb, " MB", "no size"
            )
        )
    if gates.no_test_overlap:
        results.append(_overlap(entry))
    return results


def describe(results: Sequence[GateResult]) -> str:
    """The failed gates, one ``gate: figure; threshold`` clause each (empty if all passed)."""
    return "; ".join(r.message for r in results if not r.passed)
