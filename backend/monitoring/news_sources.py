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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import httpx

from backend.utils.text_sanitize import clean_text

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

MAX_TITLE_CHARS = 500
"""Headlines are cut to this many characters (after normalization)."""
MAX_SUMMARY_CHARS = 2000
"""Summaries are cut to this many characters."""
MAX_SOURCE_CHARS = 200
"""Source names are cut to this many characters."""
MAX_SYMBOLS = 20
"""At most this many ticker tags are kept per item."""
MAX_LINE_BYTES = 65536
"""A JSON-lines line longer than this is skipped unread (no headline is that long)."""


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

    def __post_init__(self) -> None:
        # The one edge every headline passes: whatever built it (file, feed, test), the
        # text is normalized and bounded here, so nothing downstream sees raw input.
        object.__setattr__(self, "title", clean_text(self.title, MAX_TITLE_CHARS))
        object.__setattr__(self, "summary", clean_text(self.summary, MAX_SUMMARY_CHARS))
        object.__setattr__(self, "source", clean_text(self.source, MAX_SOURCE_CHARS))
        symbols = tuple(clean_text(s, 16) for s in tuple(self.symbols)[:MAX_SYMBOLS])
        object.__setattr__(self, "symbols", tuple(s for s in symbols if s))

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
    try:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc)
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"time out of range {value!r}") from exc


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
    item = NewsItem(
        published=parse_time(published),
        source=source,
        title=title,
        summary=summary,
        symbols=tuple(symbols),
    )
    if not item.title:
        raise ValueError("'title' is empty once hidden characters are removed")
    return item


@dataclass
class ReadBudget:
    """What one poll may read from files: bytes, items and wall-clock time.

    Reading stops (and says so in ``notes``) at the first limit reached; files are read
    newest first and a file larger than the bytes left is read from its end (the newest
    lines of an appended file), so a truncated poll still sees the latest headlines.
    """

    max_bytes: int = 8_000_000
    """Bytes read from all files of one poll together."""
    max_items: int = 5000
    """Headlines kept from all files of one poll together."""
    max_seconds: float = 5.0
    """Wall-clock budget of the file reading of one poll."""
    bytes_read: int = 0
    """Bytes read so far."""
    notes: list[str] = field(default_factory=list)
    """One line per truncation, for the log and the audit row."""
    _deadline: float | None = None

    def start(self) -> ReadBudget:
        """Start the clock (idempotent)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.max_seconds
        return self

    def out_of_time(self) -> bool:
        """Whether the time budget is spent."""
        return self._deadline is not None and time.monotonic() > self._deadline

    def note(self, message: str) -> None:
        """Record (and log) one truncation."""
        self.notes.append(message)
        logger.warning("headline input truncated: %s", message)


def _iter_lines(path: Path, budget: ReadBudget | None) -> Iterator[tuple[int | None, bytes]]:
    """Yield ``(line number or None when reading a tail, raw line)`` within the budget."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        tail = False
        if budget is not None:
            left = budget.max_bytes - budget.bytes_read
            if left <= 0:
                budget.note(f"{path}: not read, poll byte limit {budget.max_bytes} reached")
                return
            if size > left:
                budget.note(
                    f"{path}: {size} bytes, read only its last {left} "
                    f"(poll byte limit {budget.max_bytes})"
                )
                fh.seek(size - left)
                fh.readline()  # drop the partial first line
                tail = True
        lineno = 0
        while True:
            line = fh.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            lineno += 1
            if budget is not None:
                budget.bytes_read += len(line)
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                # An endless line: skip the rest of it without holding it in memory.
                while line and not line.endswith(b"\n"):
                    line = fh.readline(MAX_LINE_BYTES + 1)
                    if budget is not None:
                        budget.bytes_read += len(line)
                logger.warning(
                    "%s:%d: skipped headline line longer than %d bytes",
                    path,
                    lineno,
                    MAX_LINE_BYTES,
                )
                continue
            yield (None if tail else lineno), line


def read_jsonl(
    path: Path, budget: ReadBudget | None = None, items_left: int | None = None
) -> tuple[list[NewsItem], int]:
    """Read one JSON-lines file; returns the items and the number of rejected lines.

    Bad lines (bad UTF-8, bad JSON, missing fields) are counted and skipped. With a
    ``budget`` the file is read within its bytes/time limits and at most ``items_left``
    items are kept.
    """
    items: list[NewsItem] = []
    rejected = 0
    for lineno, raw in _iter_lines(path, budget):
        if items_left is not None and len(items) >= items_left:
            if budget is not None:
                budget.note(f"{path}: stopped at the poll item limit {budget.max_items}")
            break
        if budget is not None and len(items) % 256 == 0 and budget.out_of_time():
            budget.note(f"{path}: stopped at the poll time limit {budget.max_seconds:.1f} s")
            break
        line = raw.decode("utf-8", errors="replace")
        if not line.strip():
            continue
        where = f"{path}:{lineno}" if lineno is not None else f"{path} (tail)"
        try:
            items.append(item_from_mapping(json.loads(line), path.name))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            rejected += 1
            logger.warning("%s: skipped headline line: %s", where, clean_text(exc, 200))
    return items, rejected


def read_paths(paths: Iterable[str | Path], budget: ReadBudget | None = None) -> list[NewsItem]:
    """Read files and directories (``*.jsonl`` inside); a missing path is logged.

    Without a budget, files are read in name order; with one, newest (mtime) first, and
    reading stops at the budget's limits (each truncation noted in ``budget.notes``).
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(path.glob("*.jsonl")))
        elif path.is_file():
            files.append(path)
        else:
            logger.warning("headline path %s does not exist", path)
    if budget is not None:
        budget.start()

        def _mtime(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:
                return 0.0

        files.sort(key=_mtime, reverse=True)
    items: list[NewsItem] = []
    for k, file in enumerate(files):
        left = None
        if budget is not None:
            left = budget.max_items - len(items)
            if left <= 0 or budget.out_of_time():
                why = "item" if left <= 0 else "time"
                budget.note(f"{len(files) - k} file(s) not read: poll {why} limit reached")
                break
        try:
            got, _ = read_jsonl(file, budget, left)
        except OSError as exc:
            logger.warning("headline file %s unreadable: %s", file, type(exc).__name__)
            continue
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
    budget: ReadBudget | None = None,
) -> tuple[list[NewsItem], list[str]]:
    """Gather items from every configured source; a failing source is reported, not fatal.

    Files are read in a worker thread (never on the event loop, so the API keeps
    answering during a large poll) within ``budget`` (a default one if none is given).

    Returns:
        The items and one error string per failed feed or truncated input.
    """
    budget = budget if budget is not None else ReadBudget()
    items = await asyncio.to_thread(read_paths, paths, budget)
    errors: list[str] = list(budget.notes)
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
            text = str(result) if isinstance(result, ValueError) else f"{url}: {result!r}"
            errors.append(clean_text(text, 500))
            logger.warning("feed failed: %s", errors[-1])
        else:
            items.extend(result)
    if len(items) > budget.max_items:
        note = f"{len(items)} headlines from files and feeds, kept {budget.max_items}"
        logger.warning("headline input truncated: %s", note)
        errors.append(note)
        items = items[: budget.max_items]
    return items, errors
