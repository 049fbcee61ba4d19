"""Turn raw headlines into scored, deduplicated items for the risk supervisor.

The score is deliberately transparent: a small finance lexicon of signed word weights,
summed over the title and summary and squashed into ``[-1, 1]`` with ``x / (1 + |x|)``,
so that anyone can recompute why an item scored what it did (``hits`` lists the words).
It is an input feature for the rules, not a trading signal.

Deduplication is by normalised title (lowercase, punctuation and whitespace collapsed),
keeping the newest copy: wire stories are syndicated by many feeds and must count once.
Only items published within ``lookback`` before ``now`` are kept (future-dated items are
dropped too: a clock-skewed feed must not pin a headline forever).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

from backend.monitoring.news_sources import NewsItem

DEFAULT_LEXICON: Mapping[str, float] = MappingProxyType(
    {
        # negative
        "crash": -2.0,
        "plunge": -1.5,
        "plunges": -1.5,
        "tumble": -1.0,
        "tumbles": -1.0,
        "selloff": -1.5,
        "sell-off": -1.5,
        "halt": -1.5,
        "halted": -1.5,
        "default": -2.0,
        "defaults": -2.0,
        "war": -2.0,
        "recession": -1.5,
        "downgrade": -1.0,
        "downgraded": -1.0,
        "fears": -0.75,
        "fear": -0.75,
        "panic": -1.5,
        "volatility": -0.5,
        "emergency": -1.5,
        "bankruptcy": -2.0,
        "losses": -0.75,
        "slump": -1.0,
        "crisis": -1.5,
        # positive
        "rally": 1.0,
        "rallies": 1.0,
        "gains": 0.75,
        "surge": 0.5,
        "record": 0.5,
        "upgrade": 1.0,
        "upgraded": 1.0,
        "beats": 0.75,
        "growth": 0.5,
        "rebound": 0.75,
        "calm": 0.5,
        "eases": 0.5,
    }
)
"""Word -> weight; read-only so no caller can mutate the shared default."""

_WORD = re.compile(r"[a-z][a-z\-']*")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ScoredItem:
    """A headline with its lexicon score."""

    item: NewsItem
    """The underlying headline."""

    score: float
    """Lexicon sentiment in ``[-1, 1]`` (negative = bad news)."""

    hits: tuple[str, ...]
    """Lexicon words found, in order, for explainability."""


def normalize_title(title: str) -> str:
    """Lowercase, strip punctuation, collapse whitespace: the deduplication key."""
    return _NON_ALNUM.sub(" ", title.lower()).strip()


def score_text(
    text: str, lexicon: Mapping[str, float] = DEFAULT_LEXICON
) -> tuple[float, tuple[str, ...]]:
    """Sum lexicon weights of the words of ``text`` and squash into ``[-1, 1]``."""
    hits = tuple(w for w in _WORD.findall(text.lower()) if w in lexicon)
    raw = sum(lexicon[w] for w in hits)
    return raw / (1.0 + abs(raw)), hits


def score_items(
    items: Iterable[NewsItem],
    now: datetime,
    lookback: timedelta,
    lexicon: Mapping[str, float] = DEFAULT_LEXICON,
) -> list[ScoredItem]:
    """Filter to the lookback window, deduplicate by normalised title, score; newest first."""
    newest: dict[str, NewsItem] = {}
    for item in items:
        if not now - lookback <= item.published <= now:
            continue
        key = normalize_title(item.title)
        if not key:
            continue
        kept = newest.get(key)
        if kept is None or item.published > kept.published:
            newest[key] = item
    scored = []
    for item in newest.values():
        score, hits = score_text(f"{item.title} {item.summary}", lexicon)
        scored.append(ScoredItem(item=item, score=score, hits=hits))
    scored.sort(key=lambda s: (s.item.published, s.item.title), reverse=True)
    return scored
