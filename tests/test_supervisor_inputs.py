"""Risk levels, headline inputs, lexicon scoring, rule classifier and config of the supervisor."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from backend.config.supervisor_config import (
    LLMConfig,
    RuleConfig,
    SupervisorConfig,
    load_supervisor_config,
)
from backend.monitoring import news_sources
from backend.monitoring.risk_levels import RiskLevel
from backend.monitoring.rule_classifier import RuleClassifier
from backend.monitoring.sentiment_service import normalize_title, score_items, score_text

NEWS = Path(__file__).parent / "fixtures" / "news"
NOW = datetime(2026, 3, 2, 14, 0, tzinfo=timezone.utc)
WINDOW = timedelta(hours=6)


def scored(*files: str):
    items = news_sources.read_paths([NEWS / f for f in files])
    return score_items(items, NOW, WINDOW)


def test_risk_levels_order_and_wire_names() -> None:
    assert RiskLevel.OK < RiskLevel.CAUTION < RiskLevel.HALT
    assert max(RiskLevel.OK, RiskLevel.HALT) is RiskLevel.HALT
    assert [lvl.wire for lvl in RiskLevel] == ["OK", "Caution", "Halt"]
    assert RiskLevel.from_wire("HALT") is RiskLevel.HALT
    assert RiskLevel.from_wire(" caution ") is RiskLevel.CAUTION
    with pytest.raises(ValueError, match="unknown risk level"):
        RiskLevel.from_wire("Maybe")


def test_jsonl_reader_skips_bad_lines_and_normalises_time() -> None:
    items, rejected = news_sources.read_jsonl(NEWS / "calm.jsonl")
    assert rejected == 2  # the non-JSON line and the title-less object
    assert len(items) == 4
    assert all(i.published.tzinfo is timezone.utc for i in items)
    assert items[0].symbols == ("SPY",)


def test_directory_input_reads_every_jsonl_file() -> None:
    items = news_sources.read_paths([NEWS, NEWS / "missing.jsonl"])
    assert {i.source for i in items} >= {"wire", "wire2", "untrusted-blog"}


def test_scoring_dedupes_by_normalised_title_and_applies_lookback() -> None:
    out = scored("calm.jsonl")
    titles = [s.item.title for s in out]
    # The '!' duplicate collapses onto one item (the newest copy), the 2010 story is too old.
    assert len(out) == 2
    assert titles[0] == "ETF inflows steady as stocks post modest gains!"
    assert not any("Old news" in t for t in titles)
    assert normalize_title("  ETF inflows, steady!! ") == "etf inflows steady"


def test_lexicon_score_is_bounded_and_explained() -> None:
    score, hits = score_text("Crash and panic: recession fears")
    assert -1.0 < score < -0.8
    assert hits == ("crash", "panic", "recession", "fears")
    assert score_text("Stocks rally")[0] > 0
    assert score_text("nothing here") == (0.0, ())


def test_future_dated_items_are_dropped() -> None:
    item = news_sources.NewsItem(NOW + timedelta(hours=1), "x", "War declared")
    assert score_items([item], NOW, WINDOW) == []


def test_rss_and_atom_feeds_parse() -> None:
    rss = news_sources.parse_feed((NEWS / "feed.rss").read_bytes(), "rss")
    assert [i.title for i in rss] == [
        "Recession fears grow as factory orders slump",
        "Stocks rally on earnings beats",
    ]
    assert rss[0].published == datetime(2026, 3, 2, 13, 20, tzinfo=timezone.utc)
    atom = news_sources.parse_feed((NEWS / "feed.atom").read_bytes(), "atom")
    assert [i.title for i in atom] == [
        "Volatility spike rattles options desks",
        "Fed emergency meeting called",
    ]
    assert atom[0].summary == "VIX up 40%."


def test_feed_with_dtd_is_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><rss><channel/></rss>'
    with pytest.raises(ValueError):
        news_sources.parse_feed(bomb, "evil")
    with pytest.raises(ValueError, match="not a valid feed"):
        news_sources.parse_feed(b"<rss><channel>", "broken")


def test_collect_fetches_feeds_and_reports_failures_without_raising() -> None:
    rss = (NEWS / "feed.rss").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ok.rss":
            return httpx.Response(200, content=rss)
        return httpx.Response(503)

    async def run():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await news_sources.collect(
                [NEWS / "halt.jsonl"],
                ["http://feeds.invalid/ok.rss", "http://feeds.invalid/down.rss"],
                timeout_s=1.0,
                client=client,
            )

    items, errors = asyncio.run(run())
    assert len(items) == 1 + 2
    assert len(errors) == 1 and "HTTP 503" in errors[0]


@pytest.mark.parametrize(
    ("files", "level"),
    [
        (("calm.jsonl",), RiskLevel.OK),
        (("caution.jsonl",), RiskLevel.CAUTION),
        (("halt.jsonl",), RiskLevel.HALT),
        (("calm.jsonl", "caution.jsonl", "halt.jsonl"), RiskLevel.HALT),
    ],
)
def test_rule_classifier_levels(files: tuple[str, ...], level: RiskLevel) -> None:
    verdict = RuleClassifier(RuleConfig()).classify(scored(*files))
    assert verdict.level is level
    assert verdict.provider == "rules"
    if level is not RiskLevel.OK:
        assert verdict.drivers


def test_rule_patterns_respect_word_boundaries() -> None:
    rules = RuleClassifier(RuleConfig())
    assert rules.matches("Warner warrant software default settings") == [
        (RiskLevel.HALT, "default")
    ]
    assert rules.matches("Warner Bros warrant holders approve deal") == []
    assert rules.matches("War in the Gulf")[0][0] is RiskLevel.HALT
    assert rules.matches("Fed Emergency rate cut")[0][0] is RiskLevel.HALT


def test_feed_items_classify_through_rules() -> None:
    rss = news_sources.parse_feed((NEWS / "feed.rss").read_bytes(), "rss")
    atom = news_sources.parse_feed((NEWS / "feed.atom").read_bytes(), "atom")
    items = score_items(rss + atom, NOW, WINDOW)
    verdict = RuleClassifier(RuleConfig()).classify(items)
    assert verdict.level is RiskLevel.HALT  # "Fed emergency"
    assert verdict.drivers == ("Fed emergency meeting called",)


def test_caution_cluster_escalates_and_sentiment_rule() -> None:
    cfg = RuleConfig(halt_patterns=(), halt_items_escalate_caution=2)
    mk = lambda t, m: news_sources.NewsItem(NOW - timedelta(minutes=m), "w", t)  # noqa: E731
    items = score_items([mk("Bank A downgrade", 1), mk("Bank B downgraded", 2)], NOW, WINDOW)
    assert RuleClassifier(cfg).classify(items).level is RiskLevel.HALT
    gloomy = score_items(
        [mk("Panic and crash", 1), mk("Slump and losses", 2), mk("Crisis deepens panic", 3)],
        NOW,
        WINDOW,
    )
    verdict = RuleClassifier(RuleConfig(caution_patterns=())).classify(gloomy)
    assert verdict.level is RiskLevel.CAUTION
    assert "sentiment" in verdict.reason


def test_invalid_rule_pattern_fails_at_startup() -> None:
    with pytest.raises(ValueError, match="invalid rule pattern"):
        RuleClassifier(RuleConfig(halt_patterns=("(unclosed",)))


def test_config_yaml_roundtrip_and_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "sup.yaml"
    path.write_text(
        "poll_interval_s: 60\nnews_paths: [a.jsonl]\n"
        "rules: {halt_min_items: 2}\nllm: {enabled: true, deadline_s: 3}\n"
    )
    cfg = load_supervisor_config(path)
    assert cfg.poll_interval_s == 60 and cfg.news_paths == ("a.jsonl",)
    assert cfg.rules.halt_min_items == 2 and cfg.llm.deadline_s == 3
    path.write_text("poll_intervall_s: 60\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_supervisor_config(path)
    with pytest.raises(ValueError, match="deadline_s"):
        LLMConfig(deadline_s=0)
    with pytest.raises(ValueError, match="must exceed poll_interval_s"):
        SupervisorConfig(poll_interval_s=600, staleness_s=600)
    with pytest.raises(ValueError, match="deescalate_after"):
        SupervisorConfig(deescalate_after=0)


def test_rule_classifier_behind_the_common_provider_interface() -> None:
    rules = RuleClassifier(RuleConfig())
    result = asyncio.run(rules.assess(scored("halt.jsonl")))
    assert rules.name == "rules" and result.error is None and result.attempts == 0
    assert result.verdict == rules.classify(scored("halt.jsonl"))
