"""Headline inputs: JSON-lines files/directories and RSS/Atom feeds over HTTP.

Everything read here is untrusted: malformed lines are skipped and counted (one bad line
must not blind the supervisor), feed XML is parsed with ``defusedxml`` when installed and
otherwise with ``xml.etree.ElementTree`` after refusing any ``<!DOCTYPE``/``<!ENTITY``
(the entity-expansion attacks need a DTD), and feed fetches run under a hard deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import httpx

_xml_fromstring: Callable[[bytes], Element]
try:  # pragma: no cover - depends on the environment
    from defusedxml.ElementTree import fromstring as _defused_fromstring

    _xml_fromstring = _defused_fromstring
    HAVE_DEFUSEDXML = True
except ImportError:  # pragma: no cover - depends on the environment
    from xml.etree.ElementTree import fromstring as _stdlib_fromstring

    _xml_fromstring = _stdlib_fromstring
    HAVE_DEFUSEDXML = False

logger = logging.getLogger(__name__)

MAX_FEED_BYTES = 2_000_000
"""Larger feed bodies are rejected (a feed is a few hundred kB at most)."""

_ATOM = "{http://www.w3.org/2005/Atom}"


@dataclass(frozen=True)
class NewsItem:
    """One headline, normalised from any source."""

    published: datetime
    """Publication time, timezone-aware UTC."""

    source: str
    """Where it came from (feed or file name, or the ``source`` field)."""

    title: str
    """The headline."""

    summary: str = ""
    """Optional body/summary text."""

    symbols: tuple[str, ...] = field(default_factory=tuple)
    """Tickers the item is tagged with, if any."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (ISO time) for prompts, digests and the audit trail."""
        return {
            "published": self.published.isoformat(),
            "source": self.source,
            "title": self.title,
            "summary": self.summary,
            "symbols": list(self.symbols),
        }


def parse_time(value: str) -> datetime:
    """Parse ISO 8601 or RFC 822 (RSS) times into aware UTC; naive times are taken as UTC.

    Raises:
        ValueError: If the string is neither format.
    """
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"unparseable time {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def item_from_mapping(data: object, default_source: str) -> NewsItem:
    """Validate one JSON object into a :class:`NewsItem`.

    Raises:
        ValueError: If required fields are missing or of the wrong type.
    """
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    title = data.get("title")
    published = data.get("published")
    if not isinstance(title, str) or not title.strip():
        raise ValueError("missing 'title'")
    if not isinstance(published, str):
        raise ValueError("missing 'published'")
    summary = data.get("summary") or ""
    symbols = data.get("symbols") or []
    source = data.get("source") or default_source
    if not isinstance(summary, str) or not isinstance(source, str):
        raise ValueError("'summary' and 'source' must be strings")
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise ValueError("'symbols' must be a list of strings")
    return NewsItem(
        published=parse_time(published),
        source=source,
        title=title.strip(),
        summary=summary.strip(),
        symbols=tuple(symbols),
    )


def read_jsonl(path: Path) -> tuple[list[NewsItem], int]:
    """Read one JSON-lines file; returns the items and the number of rejected lines."""
    items: list[NewsItem] = []
    rejected = 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                items.append(item_from_mapping(json.loads(line), path.name))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                rejected += 1
                logger.warning("%s:%d: skipped headline line: %s", path, lineno, exc)
    return items, rejected


def read_paths(paths: Iterable[str | Path]) -> list[NewsItem]:
    """Read files and directories (``*.jsonl`` inside, sorted); a missing path is logged."""
    items: list[NewsItem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(path.glob("*.jsonl"))
        elif path.is_file():
            files = [path]
        else:
            logger.warning("headline path %s does not exist", path)
            continue
        for file in files:
            got, _ = read_jsonl(file)
            items.extend(got)
    return items


def _text(elem: Element | None) -> str:
    return "".join(elem.itertext()).strip() if elem is not None else ""


def parse_feed(body: str | bytes, source: str) -> list[NewsItem]:
    """Parse an RSS 2.0 or Atom document into items; entries without a time are skipped.

    Raises:
        ValueError: If the document declares a DTD (refused without defusedxml) or is not
            well-formed XML.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if not HAVE_DEFUSEDXML and (b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper()):
        raise ValueError(f"{source}: feed declares a DTD; refused (install defusedxml)")
    try:
        root = _xml_fromstring(raw)
    except (ParseError, ValueError) as exc:  # defusedxml's refusals are ValueErrors
        raise ValueError(f"{source}: not a valid feed: {type(exc).__name__}: {exc}") from exc
    items: list[NewsItem] = []
    if root.tag == f"{_ATOM}feed":
        entries = [
            (
                _text(e.find(f"{_ATOM}title")),
                _text(e.find(f"{_ATOM}summary")) or _text(e.find(f"{_ATOM}content")),
                _text(e.find(f"{_ATOM}updated")) or _text(e.find(f"{_ATOM}published")),
            )
            for e in root.iter(f"{_ATOM}entry")
        ]
    else:
        entries = [
            (_text(e.find("title")), _text(e.find("description")), _text(e.find("pubDate")))
            for e in root.iter("item")
        ]
    for title, summary, when in entries:
        if not title or not when:
            continue
        try:
            published = parse_time(when)
        except ValueError:
            logger.warning("%s: skipped entry with bad time %r", source, when)
            continue
        items.append(NewsItem(published=published, source=source, title=title, summary=summary))
    return items


async def fetch_feed(client: httpx.AsyncClient, url: str, timeout_s: float) -> list[NewsItem]:
    """Fetch and parse one feed within ``timeout_s`` seconds of wall-clock time in total.

    Raises:
        ValueError: On HTTP errors, oversize bodies, timeouts or bad XML.
    """

    async def _get() -> bytes:
        async with client.stream("GET", url, timeout=timeout_s) as resp:
            if resp.status_code != 200:
                raise ValueError(f"{url}: HTTP {resp.status_code}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_FEED_BYTES:
                    raise ValueError(f"{url}: feed larger than {MAX_FEED_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    try:
        body = await asyncio.wait_for(_get(), timeout=timeout_s)
    except asyncio.TimeoutError as exc:
        raise ValueError(f"{url}: no complete answer within {timeout_s:.1f} s") from exc
    except httpx.HTTPError as exc:
        raise ValueError(f"{url}: {type(exc).__name__}") from exc
    return parse_feed(body, source=url)


async def collect(
    paths: Sequence[str | Path],
    feed_urls: Sequence[str],
    timeout_s: float,
    client: httpx.AsyncClient | None = None,
) -> tuple[list[NewsItem], list[str]]:
    """Gather items from every configured source; a failing source is reported, not fatal.

    Returns:
        The items and one error string per failed feed.
    """
    items = read_paths(paths)
    errors: list[str] = []
    if not feed_urls:
        return items, errors
    owned = client is None
    http = client or httpx.AsyncClient(follow_redirects=True)
    try:
        results = await asyncio.gather(
            *(fetch_feed(http, url, timeout_s) for url in feed_urls), return_exceptions=True
        )
    finally:
        if owned:
            await http.aclose()
    for url, result in zip(feed_urls, results, strict=True):
        if isinstance(result, BaseException):
            errors.append(str(result) if isinstance(result, ValueError) else f"{url}: {result!r}")
            logger.warning("feed failed: %s", errors[-1])
        else:
            items.extend(result)
    return items, errors
