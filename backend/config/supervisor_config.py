"""Typed, validated parameters of the LLM risk supervisor (the live trader's kill switch).

Frozen dataclasses with one docstring per field, invariants checked on construction, built
from one safe-loaded YAML file that rejects unknown keys (a typo must not silently fall
back to a default on the component that is supposed to stop trading).

Secrets are never stored here: the config names the *environment variables* that hold the
LLM API key and the control-API bearer token, and the values are read at the last moment.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

_T = TypeVar("_T")

DEFAULT_HALT_PATTERNS: tuple[str, ...] = (
    r"\btrading (?:halt|halted|suspended)\b",
    r"\bcircuit[- ]breakers?\b",
    r"\bflash[- ]crash\b",
    r"\b(?:sovereign |debt )?defaults?\b",
    r"\bwar\b",
    r"\bfed(?:eral reserve)? emergency\b|\bemergency (?:rate|fed|fomc)\b",
    r"\bmarket[- ]wide halt\b",
)
"""Regexes (case-insensitive) whose hits vote for Halt; see ``rule_classifier``."""

DEFAULT_CAUTION_PATTERNS: tuple[str, ...] = (
    r"\bdowngrade[sd]?\b",
    r"\bvolatility (?:spike|surge|jump)s?\b|\bvix (?:spike|surge|jump)s?\b",
    r"\brecession fears?\b",
    r"\bsell-?off\b",
    r"\bbank run\b",
    r"\bliquidity (?:crunch|crisis)\b",
)
"""Regexes (case-insensitive) whose hits vote for Caution; see ``rule_classifier``."""


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be finite and {bound}, got {value!r}")


def _from_mapping(cls: type[_T], data: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown}; valid keys: {sorted(known)}")
    return dict(data)


@dataclass(frozen=True)
class RuleConfig:
    """Keyword/regex rules of the offline classifier (the floor of every decision)."""

    halt_patterns: tuple[str, ...] = DEFAULT_HALT_PATTERNS
    """Case-insensitive regexes voting Halt (trading halts, crashes, defaults, war, ...)."""

    caution_patterns: tuple[str, ...] = DEFAULT_CAUTION_PATTERNS
    """Case-insensitive regexes voting Caution (downgrades, volatility spikes, ...)."""

    halt_min_items: int = 1
    """Distinct headlines that must hit a Halt pattern to decide Halt. 1 by default: one
    credible "trading halted" headline is enough to stop, a false Halt only costs a pause."""

    caution_min_items: int = 1
    """Distinct headlines that must hit a Caution pattern to decide Caution."""

    halt_items_escalate_caution: int = 3
    """This many Caution headlines at once escalate to Halt (a cluster of bad news)."""

    sentiment_caution_threshold: float = -0.5
    """Mean lexicon sentiment at or below this (with >= ``sentiment_min_items`` items)
    decides Caution even without a pattern hit."""

    sentiment_min_items: int = 3
    """Items needed before the mean sentiment may decide anything (one angry headline is
    noise)."""

    def __post_init__(self) -> None:
        for name in ("halt_min_items", "caution_min_items", "halt_items_escalate_caution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RuleConfig.{name}: must be an int >= 1, got {value!r}")
        if not -1.0 <= float(self.sentiment_caution_threshold) <= 1.0:
            raise ValueError("RuleConfig.sentiment_caution_threshold: must be in [-1, 1]")
        object.__setattr__(self, "halt_patterns", tuple(self.halt_patterns))
        object.__setattr__(self, "caution_patterns", tuple(self.caution_patterns))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleConfig:
        """Build from a mapping, rejecting unknown keys."""
        return cls(**_from_mapping(cls, data))


@dataclass(frozen=True)
class LLMConfig:
    """The optional OpenAI-compatible provider. Disabled unless ``enabled`` and a URL."""

    enabled: bool = False
    """Ask the LLM at all; the rule classifier runs either way."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """Server root; the provider POSTs to ``{base_url}/chat/completions``."""

    model: str = "gpt-4o-mini"
    """Model name sent in the request body."""

    api_key_env: str = "YOOPRL_LLM_API_KEY"
    """Name of the environment variable holding the API key (never the key itself)."""

    deadline_s: float = 20.0
    """Hard wall-clock budget of one classification, retries and backoff included."""

    max_attempts: int = 2
    """Attempts inside the deadline (1 = no retry). The only retry layer in the stack."""

    backoff_base_s: float = 0.25
    """First backoff; attempt ``k`` waits ``uniform(0, base * 2**k)`` (full jitter)."""

    backoff_max_s: float = 4.0
    """Cap on one backoff sleep."""

    breaker_failure_threshold: int = 3
    """Consecutive failed classifications that open the circuit breaker."""

    breaker_cooldown_s: float = 300.0
    """Seconds the breaker stays open before one half-open trial call."""

    max_items: int = 50
    """Most headlines sent in one prompt (newest first)."""

    max_response_bytes: int = 65536
    """Larger answers are rejected unread (a model that babbles is a failed call)."""

    def __post_init__(self) -> None:
        _check_positive("LLMConfig.deadline_s", self.deadline_s)
        _check_positive("LLMConfig.backoff_base_s", self.backoff_base_s, allow_zero=True)
        _check_positive("LLMConfig.backoff_max_s", self.backoff_max_s, allow_zero=True)
        _check_positive("LLMConfig.breaker_cooldown_s", self.breaker_cooldown_s)
        for name in ("max_attempts", "breaker_failure_threshold", "max_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LLMConfig.{name}: must be an int >= 1, got {value!r}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"LLMConfig.base_url: must be http(s), got {self.base_url!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LLMConfig:
        """Build from a mapping, rejecting unknown keys."""
        return cls(**_from_mapping(cls, data))


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything the supervisor service needs; one YAML file (see the runbook)."""

    news_paths: tuple[str, ...] = ()
    """JSON-lines headline files, or directories of ``*.jsonl`` files, read each poll."""

    feed_urls: tuple[str, ...] = ()
    """RSS/Atom feed URLs fetched each poll."""

    feed_timeout_s: float = 10.0
    """Hard budget for fetching one feed."""

    poll_interval_s: float = 3600.0
    """Seconds between polls (hourly by default)."""

    max_poll_bytes: int = 8_000_000
    """Most bytes one poll reads from the news files (newest files first; a larger file is
    read from its end). Truncation is logged and written into the decision's audit row."""

    max_poll_items: int = 5000
    """Most headlines one poll keeps from files and feeds together."""

    max_poll_seconds: float = 5.0
    """Wall-clock budget of reading the news files in one poll."""

    lookback_s: float = 6 * 3600.0
    """Only headlines published within this window before the poll count."""

    staleness_s: float = 2 * 3600.0
    """With no decision for longer than this, status says ``stale`` and at least Caution."""

    deescalate_after: int = 2
    """Consecutive lower verdicts needed to lower the level (escalation is immediate)."""

    audit_db_path: str = "data/supervisor/audit.sqlite3"
    """Append-only SQLite audit table (WAL)."""

    audit_jsonl_path: str = "data/supervisor/audit.jsonl"
    """JSON-lines mirror of the audit table, one line per decision."""

    host: str = "127.0.0.1"
    """Bind address of the API; loopback by default."""

    port: int = 8765
    """TCP port of the API."""

    api_token_env: str = "YOOPRL_SUPERVISOR_TOKEN"
    """Environment variable holding the bearer token of the control endpoints. If unset,
    control endpoints refuse every request (fail closed)."""

    rules: RuleConfig = field(default_factory=RuleConfig)
    """Rule classifier parameters."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    """LLM provider parameters."""

    def __post_init__(self) -> None:
        for name in ("feed_timeout_s", "poll_interval_s", "lookback_s", "staleness_s"):
            _check_positive(f"SupervisorConfig.{name}", getattr(self, name))
        if self.staleness_s <= self.poll_interval_s:
            raise ValueError(
                f"SupervisorConfig.staleness_s ({self.staleness_s}) must exceed poll_interval_s "
                f"({self.poll_interval_s}), or every status between two polls reads as stale"
            )
        for name in ("max_poll_bytes", "max_poll_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SupervisorConfig.{name}: must be an int >= 1, got {value!r}")
        _check_positive("SupervisorConfig.max_poll_seconds", self.max_poll_seconds)
        if isinstance(self.deescalate_after, bool) or self.deescalate_after < 1:
            raise ValueError("SupervisorConfig.deescalate_after: must be an int >= 1")
        if not 0 <= int(self.port) <= 65535:
            raise ValueError(f"SupervisorConfig.port: out of range: {self.port!r}")
        object.__setattr__(self, "news_paths", tuple(str(p) for p in self.news_paths))
        object.__setattr__(self, "feed_urls", tuple(str(u) for u in self.feed_urls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SupervisorConfig:
        """Build from a mapping (nested ``rules``/``llm`` mappings), rejecting unknown keys.

        Raises:
            ValueError: On unknown keys or invalid values.
        """
        values = _from_mapping(cls, data)
        if isinstance(values.get("rules"), Mapping):
            values["rules"] = RuleConfig.from_dict(values["rules"])
        if isinstance(values.get("llm"), Mapping):
            values["llm"] = LLMConfig.from_dict(values["llm"])
        return cls(**values)


def load_supervisor_config(path: str | Path) -> SupervisorConfig:
    """Safe-load a YAML file into a :class:`SupervisorConfig`.

    Raises:
        ValueError: If the file is not a mapping or holds invalid values.
    """
    with Path(path).open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    return SupervisorConfig.from_dict(data)
