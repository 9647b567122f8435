"""Bytes + headers -> :class:`FeedData` / :class:`EntryData`, with feedparser.

We hand feedparser the bytes the guarded fetcher already fetched, never a URL
or a string it might take for a path, so it cannot fetch or open anything
itself. Everything it returns is distrusted: text is reduced to plain text and
cleaned of control characters, links must be absolute http(s) URLs, and dates
that disagree with their own raw string are dropped.

Security notes (tested in ``tests/test_parse.py``):

* feedparser strips the DOCTYPE and every ``<!ENTITY>`` declaration except
  simple literal ones before parsing (``sanitizer.replace_doctype``), and its
  SAX parser runs with external general entities off, so external DTDs (C3),
  ``SYSTEM`` entities (C1) and entity bombs (C2) are never resolved.
* feedparser only gunzips bodies it fetched itself; we sniff the gzip magic
  number and decompress with a cap instead (B13, B11).
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import io
import logging
import multiprocessing
import os
import re
import threading
import zlib
from collections.abc import Collection, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
from feedparser.exceptions import NonXMLContentType

from monitor.exceptions import ParseError
from monitor.types import EntryData, FeedData

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "MAX_ENTRIES",
    "POOL_MIN_BYTES",
    "ParsePool",
    "Prepared",
    "block_sha",
    "html_to_text",
    "parse_feed",
    "parse_prepared",
    "prepare",
    "strip_controls",
]

log = logging.getLogger(__name__)

#: Entries kept per feed (B10): the first ones, which are the newest in practice.
MAX_ENTRIES = 500
#: Cap on a gzip body we decompress ourselves (B13); the fetcher's cap is for the wire.
MAX_DECOMPRESSED_BYTES = 10 * 1024 * 1024

_GZIP_MAGIC = b"\x1f\x8b"
_WARNING_MAX = 300


# --- text cleaning -----------------------------------------------------------------------------


def _control_table() -> dict[int, str | None]:
    # C0 except \t and \n (\r is normalised to \n first), DEL, C1, and the bidi
    # embedding/override/isolate controls that can disguise text (Trojan Source).
    # LRM/RLM (U+200E/F) are kept: they are ordinary marks in RTL text.
    # Vertical tab, form feed and NEL separate words, so they become a space,
    # and Unicode's line/paragraph separators become the newline that they are.
    codes = [c for c in range(0x20) if c not in (0x09, 0x0A)]
    codes += list(range(0x7F, 0xA0))
    codes += list(range(0x202A, 0x202F)) + list(range(0x2066, 0x206A))
    table: dict[int, str | None] = dict.fromkeys(codes)
    table.update({0x0B: " ", 0x0C: " ", 0x85: " ", 0x2028: "\n", 0x2029: "\n"})
    return table


_CONTROLS = _control_table()


def strip_controls(text: str) -> str:
    """Remove NUL, C0/C1 control characters (except newline and tab) and bidi overrides (B8).

    Carriage returns and U+2028/U+2029 become newlines (``"a\\r\\nb"`` is
    ``"a\\nb"``); vertical tab, form feed and NEL become a space.

    >>> strip_controls("a\\x00b\\u202ec\\r\\nd")
    'abc\\nd'
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.translate(_CONTROLS)


# Elements whose boundaries separate words or lines when rendered.
_BLOCK_TAG_NAMES = (
    "address article aside blockquote br dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 h6 "
    "header hr li main nav ol p pre section table td th tr ul"
)
_BLOCK_TAGS = frozenset(_BLOCK_TAG_NAMES.split())
# Elements whose content is never reader-visible text.
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "head", "title"})
_SPACES = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r"\s*\n\s*")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Reduce an HTML fragment to plain text.

    Tags are dropped (with ``<script>``/``<style>`` content), entities are
    unescaped, control characters are stripped, runs of spaces become one
    space, and block elements become single line breaks.

    >>> html_to_text("<p>Caf&eacute; <b>news</b></p><script>x()</script><p>two</p>")
    'Café news\\ntwo'
    """
    if "<" not in html and "&" not in html:
        text = html
    else:
        collector = _TextCollector()
        collector.feed(html)
        collector.close()
        text = "".join(collector.parts)
    text = strip_controls(text)
    text = _SPACES.sub(" ", text)
    return _NEWLINES.sub("\n", text).strip()


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- dates -------------------------------------------------------------------------------------

_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            (),
            ("jan", "january", "januar", "jän", "jänner"),
            ("feb", "february", "februar"),
            ("mar", "march", "mär", "märz", "maerz"),
            ("apr", "april"),
            ("may", "mai"),
            ("jun", "june", "juni"),
            ("jul", "july", "juli"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october", "okt", "oktober"),
            ("nov", "november"),
            ("dec", "december", "dez", "dezember"),
        ]
    )
    for name in names
}


def _believable(raw: str, value: datetime) -> bool:
    """True when the digits (and month name) of ``raw`` agree with the parsed date (B18).

    The parsed value is UTC, so the calendar day may be one off from the raw
    local date; any of the day before, the day itself and the day after will do.
    """
    numbers = {int(n) for n in re.findall(r"\d+", raw)}
    words = [w.lower() for w in re.findall(r"[^\W\d_]+", raw)]
    named = {_MONTHS[w] for w in words if w in _MONTHS}
    for shift in (-1, 0, 1):
        try:
            d = value + timedelta(days=shift)
        except OverflowError:  # year 1 or 9999
            continue
        year_ok = d.year in numbers or (d.year % 100 in numbers and d.year >= 1970)
        month_ok = d.month in named if named else d.month in numbers
        if year_ok and month_ok and d.day in numbers:
            return True
    return False


def _published(entry: dict[str, Any]) -> datetime | None:
    for key in ("published", "updated", "created"):
        # dict.get, not FeedParserDict's: that one maps a missing "updated" to
        # "published" with a DeprecationWarning.
        parsed = dict.get(entry, f"{key}_parsed")
        if not parsed:
            continue
        raw = dict.get(entry, key) or ""
        try:
            # feedparser's struct_time is UTC; timegm avoids any local-time math (B19).
            value = datetime.fromtimestamp(calendar.timegm(parsed), tz=UTC)
        except (OverflowError, ValueError, OSError):
            return None
        return value if _believable(str(raw), value) else None
    return None


# --- the parse ---------------------------------------------------------------------------------


def _join(base: str, link: str) -> str:
    try:
        return urljoin(base, link)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return link


def _http_url(value: object, base: str | None = None) -> str | None:
    """``value`` as an absolute http(s) URL (resolved against ``base``), else None."""
    if not isinstance(value, str):
        return None
    value = strip_controls(value).strip()
    if base is not None:
        value = _join(base, value)
    try:
        parts = urlsplit(value)
        if parts.scheme.lower() in ("http", "https") and parts.hostname:
            return value
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        pass
    return None


def _text_of(detail: Mapping[str, Any] | None, value: str, atom: bool) -> str:
    # An Atom text construct of type="text" is literal text: "<script>" in it is
    # the title's wording, not markup (C12). Every other title is treated as
    # HTML, since RSS titles carry entities and tags in the wild.
    if atom and detail is not None and detail.get("type") == "text/plain":
        return _one_line(strip_controls(value))
    return html_to_text(value)


def _entry(raw: dict[str, Any], atom: bool, base: str, hashes: Mapping[str, str]) -> EntryData:
    guid = strip_controls(str(raw.get("id") or "")).strip() or None
    title = _one_line(_text_of(raw.get("title_detail"), str(raw.get("title") or ""), atom))
    summary = html_to_text(str(raw.get("summary") or ""))
    for content in raw.get("content") or ():
        text = html_to_text(str(content.get("value") or ""))
        if len(text) > len(summary):
            summary = text
        break
    author = _one_line(html_to_text(str(raw.get("author") or ""))) or None
    return EntryData(
        guid=guid,
        # A link feedparser copied from a permalink guid is taken as written:
        # "same" is not a relative URL (B15).
        link=_http_url(raw.get("link"), None if raw.get("guidislink") else base),
        title=title,
        summary=summary,
        published=_published(raw),
        author=author,
        block_sha=hashes.get(guid) if guid else None,
    )


def _gunzip(url: str, content: bytes) -> bytes:
    # 16 + MAX_WBITS: expect a gzip header; max_length bounds the output (B11, B13).
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(content, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as e:
        raise ParseError(url, f"corrupt gzip body: {e}") from e
    if len(data) > MAX_DECOMPRESSED_BYTES or decompressor.unconsumed_tail:
        raise ParseError(url, f"gzip body over {MAX_DECOMPRESSED_BYTES} bytes when decompressed")
    if data.startswith(_GZIP_MAGIC):
        raise ParseError(url, "gzip body inside a gzip body")  # the B12 class
    return data


_ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s>/]")
_ENTRY_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\s*>")


def _cut_entries(content: bytes, max_entries: int) -> bytes | None:
    """Drop every entry after the first ``max_entries`` before parsing (B10).

    feedparser spends ~0.4 ms per entry, so 20k entries cost 8 s of CPU even
    though we keep 500. We splice the bytes up to the first surplus entry onto
    whatever follows the last entry (``</channel></rss>``, ``</feed>``...) so
    the document stays well-formed. Returns None when nothing needs cutting.
    """
    starts = _ENTRY_START.finditer(content)
    cut = None
    for i, match in enumerate(starts):
        if i == max_entries:
            cut = match.start()
            break
    if cut is None:
        return None
    ends = list(_ENTRY_END.finditer(content, cut))
    tail = content[ends[-1].end() :] if ends else b""
    return content[:cut] + tail


_GUID = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?(guid|id)(?:\s[^>]*)?>([^<&\]]{1,2000})</(?:[A-Za-z_][\w.-]*:)?\1\s*>"
)


def block_sha(block: bytes) -> str:
    """The hash that identifies one raw ``<item>``/``<entry>`` block (B22)."""
    return hashlib.blake2b(block, digest_size=16).hexdigest()


def _drop_known(
    content: bytes, known: Mapping[str, str | None] | Collection[str]
) -> tuple[bytes, int, dict[str, str]]:
    """Remove entries already stored and unchanged, so feedparser parses only the rest.

    A changed feed usually brings a few new entries among dozens we have; parsing
    only those is what keeps a poll's cost near the cost of its new articles
    (issue #8). Conservative: an entry is dropped only when its block holds
    exactly one plain-text ``<guid>``/``<id>`` (no entity, no CDATA) that is
    known; on anything unexpected (unbalanced tags, nesting) nothing is dropped.

    ``known`` maps a stored guid to the hash of its block when stored; a block
    whose hash differs is kept, so an edit is parsed (B22). A guid mapped to
    None (or a plain collection of guids) is dropped whatever its block says.
    Returns the bytes, how many entries were dropped, and the hash of every
    block that has one plain guid, by guid.
    """
    hashes: dict[str, str] = {}
    starts = [m.start() for m in _ENTRY_START.finditer(content)]
    if not starts:
        return content, 0, hashes
    ends = [m.end() for m in _ENTRY_END.finditer(content)]
    if len(starts) != len(ends):
        return content, 0, hashes
    stored: Mapping[str, str | None] = known if isinstance(known, Mapping) else dict.fromkeys(known)
    pieces: list[bytes] = []
    position = dropped = 0
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if end <= start or (i + 1 < len(starts) and starts[i + 1] < end):
            return content, 0, {}
        ids = _GUID.findall(content, start, end)
        if len(ids) != 1:
            continue
        guid = ids[0][1].strip().decode("utf-8", "replace")
        sha = block_sha(content[start:end])
        hashes.setdefault(guid, sha)
        if guid in stored and stored[guid] in (None, sha):
            pieces.append(content[position:start])
            position = end
            dropped += 1
    if not dropped:
        return content, 0, hashes
    pieces.append(content[position:])
    return b"".join(pieces), dropped, hashes


def _not_a_feed(content: bytes) -> str:
    head = content[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        return "not a feed: empty body"
    if head.startswith((b"{", b"[")):
        return "not a feed: JSON (JSON Feed is not supported)"
    if b"<html" in head or b"<!doctype html" in head:
        return "not a feed: an HTML page"
    return "not a feed: no RSS, Atom or RDF document found"


def _bozo_warning(result: Mapping[str, Any]) -> str:
    exc = result.get("bozo_exception")
    text = _one_line(strip_controls(f"{type(exc).__name__}: {exc}"))
    return f"bozo: {text}"[:_WARNING_MAX]


@dataclass(frozen=True)
class Prepared:
    """A body made ready for feedparser: unzipped, cut to ``max_entries``, known entries out."""

    content: bytes
    #: Entries left out because their guid is stored and their block unchanged.
    dropped: int
    #: Block hash by guid, for every block with one plain guid (B22).
    hashes: Mapping[str, str]
    warnings: tuple[str, ...]
    #: True when entries past ``max_entries`` were cut off (B10).
    cut: bool


def prepare(
    url: str,
    content: bytes,
    *,
    max_entries: int = MAX_ENTRIES,
    known_guids: Mapping[str, str | None] | Collection[str] = (),
) -> Prepared:
    """The cheap first half of :func:`parse_feed`: regular expressions and hashes, no feedparser.

    Raises :class:`ParseError` for an empty or unusable gzip body.
    """
    warnings: list[str] = []
    if content.startswith(_GZIP_MAGIC):
        content = _gunzip(url, content)
        warnings.append("body was gzip-compressed without Content-Encoding")
    if not content.strip():
        raise ParseError(url, "not a feed: empty body")
    cut = _cut_entries(content, max_entries)
    if cut is not None:
        content = cut
    content, dropped, hashes = _drop_known(content, known_guids)
    return Prepared(content, dropped, hashes, tuple(warnings), cut is not None)


def parse_feed(
    url: str,
    content: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    max_entries: int = MAX_ENTRIES,
    known_guids: Mapping[str, str | None] | Collection[str] = (),
) -> FeedData:
    """Parse fetched feed bytes into a :class:`FeedData`.

    ``headers`` are the response headers: ``content-type`` (charset) and
    ``content-location`` (base for relative links) are honoured; relative
    links otherwise resolve against ``url``. Only the first ``max_entries``
    entries are kept; entries whose guid is in ``known_guids`` may be left
    out before parsing (they are not new); given a mapping of guid to block
    hash, only those whose block is unchanged (see :func:`_drop_known`).
    Each entry carries its block's hash when it has one. Problems that leave
    a usable feed (bozo, a skipped entry, a cut) are listed in
    ``FeedData.warnings``.

    Raises :class:`ParseError` when the bytes are not a feed (an HTML page,
    JSON, an empty body) or are an unusable gzip body.

    >>> parse_feed("https://example.org/f", b'<rss version="2.0"><channel>'
    ...            b"<item><title>Hi</title></item></channel></rss>").entries[0].title
    'Hi'
    """
    ready = prepare(url, content, max_entries=max_entries, known_guids=known_guids)
    return parse_prepared(url, ready, headers, max_entries=max_entries)


def parse_prepared(
    url: str,
    ready: Prepared,
    headers: Mapping[str, str] | None = None,
    *,
    max_entries: int = MAX_ENTRIES,
) -> FeedData:
    """The feedparser half of :func:`parse_feed`, on a :class:`Prepared` body."""
    content, dropped, hashes = ready.content, ready.dropped, ready.hashes
    warnings = list(ready.warnings)
    response_headers = {k.lower(): v for k, v in (headers or {}).items()}
    # Relative links resolve against Content-Location (itself relative to the
    # feed URL). We resolve them ourselves: given a base, feedparser would also
    # turn a non-URL guid such as "same" into a plausible URL (B15).
    base = _join(url, response_headers.pop("content-location", ""))
    response_headers.pop("content-encoding", None)  # the body is already decoded

    try:
        # A file object, never bytes or str: given bytes, feedparser first tries
        # open() on them as a path name, and given a str URL it fetches it.
        result = feedparser.parse(io.BytesIO(content), response_headers=response_headers)
    except Exception as e:  # feedparser or sgmllib choking on hostile input
        raise ParseError(url, f"feedparser failed: {type(e).__name__}") from e

    version = str(result.get("version") or "")
    raw_entries = result.get("entries") or []
    if not version and not raw_entries and not dropped:
        raise ParseError(url, _not_a_feed(content))
    # Without a Content-Type header feedparser always says NonXMLContentType;
    # that says nothing about the feed, so it is only kept for a real header.
    no_type = "content-type" not in response_headers
    if result.get("bozo") and not (
        no_type and isinstance(result.get("bozo_exception"), NonXMLContentType)
    ):
        warnings.append(_bozo_warning(result))
    if not version:
        warnings.append("feed type not recognised; entries parsed leniently")

    atom = version.startswith("atom")
    entries: list[EntryData] = []
    skipped = 0
    for raw in raw_entries:
        if len(entries) >= max_entries:
            break
        try:
            entry = _entry(raw, atom, base, hashes)
        except (AttributeError, KeyError, OverflowError, TypeError, ValueError) as e:
            skipped += 1
            log.debug("skipping entry in %s: %r", url, e)
            continue
        entries.append(entry)
    if skipped:
        warnings.append(f"skipped {skipped} malformed entries")
    if ready.cut or len(raw_entries) > max_entries:
        warnings.append(f"kept the first {max_entries} entries; the feed has more")

    feed = result.get("feed") or {}
    title = _one_line(_text_of(feed.get("title_detail"), str(feed.get("title") or ""), atom))
    return FeedData(
        url=url,
        version=version,
        title=title or None,
        link=_http_url(feed.get("link"), base),
        entries=tuple(entries),
        warnings=tuple(warnings),
        known_skipped=dropped,
    )


# --- parsing off the event loop ------------------------------------------------------------------

#: Bodies that still hold at least this many bytes once known entries are cut out
#: are parsed in a worker process; smaller ones in a thread. Measured (bench/run.py
#: and the numbers in the issue note): shipping a body and its result costs about
#: 1-3 ms of CPU per feed, as much as parsing 3 new entries; at 8 KB (about 20
#: entries, ~8 ms of feedparser) it is under a fifth of the parse.
POOL_MIN_BYTES = 8 * 1024


def _parse_in_worker(
    url: str, ready: Prepared, headers: Mapping[str, str] | None
) -> FeedData | str:
    """In a worker process: the parse, or a ParseError's reason (it does not pickle)."""
    try:
        return parse_prepared(url, ready, headers)
    except ParseError as e:
        return e.reason


class ParsePool:
    """Parses feed bodies off the event loop, on every core (issue #8).

    feedparser is pure Python and holds the GIL: in a thread it still competes
    with the event loop for the one interpreter, and it uses one core. Every
    body is first made ready in a thread (:func:`prepare`: regular expressions
    and hashes that cut known entries out); what is left goes to a worker
    process when it has at least ``min_bytes`` (workers start on first use from
    a forkserver, ``workers`` of them, default the CPU count), else it is parsed
    in the same thread, where shipping it across processes would cost more than
    the parse. ``workers=0`` keeps every parse in a thread. A worker that dies
    fails its parse with :class:`ParseError`; the pool starts afresh on the
    next big body.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        min_bytes: int = POOL_MIN_BYTES,
        start_method: str = "forkserver",
    ) -> None:
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.min_bytes = min_bytes
        self._start_method = start_method
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False
        self._lock = threading.Lock()
        #: Bodies parsed so far, and how many of them in a worker process.
        self.parsed = 0
        self.in_workers = 0

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("parse pool is closed")
            if self._executor is None:
                ctx = multiprocessing.get_context(self._start_method)
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
            return self._executor

    def _start(
        self,
        url: str,
        content: bytes,
        headers: Mapping[str, str] | None,
        known_guids: Mapping[str, str | None] | Collection[str],
    ) -> FeedData | tuple[ProcessPoolExecutor, Future[FeedData | str]]:
        """In a thread: prepare, then parse here or hand the rest to a worker.

        Submitting happens here, not on the event loop, because a submit may
        start a worker process (and the first one the forkserver), which blocks.
        """
        ready = prepare(url, content, known_guids=known_guids)
        if self.workers <= 0 or len(ready.content) < self.min_bytes:
            return parse_prepared(url, ready, headers)
        pool = self._pool()
        try:
            return pool, pool.submit(_parse_in_worker, url, ready, headers)
        except BrokenProcessPool as e:  # a worker died earlier: start afresh next time
            with self._lock:
                if self._executor is pool:
                    self._executor = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise ParseError(url, "the parser worker died") from e

    async def parse(
        self,
        url: str,
        content: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        known_guids: Mapping[str, str | None] | Collection[str] = (),
    ) -> FeedData:
        """:func:`parse_feed`, off the event loop: in a thread or a worker process."""
        if self._closed:
            raise RuntimeError("parse pool is closed")
        self.parsed += 1
        started = await asyncio.to_thread(self._start, url, content, headers, known_guids)
        if isinstance(started, FeedData):
            return started
        self.in_workers += 1
        pool, future = started
        try:
            result = await asyncio.wrap_future(future)
        except BrokenProcessPool as e:
            with self._lock:
                if self._executor is pool:
                    self._executor = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise ParseError(url, "the parser worker died") from e
        if isinstance(result, str):
            raise ParseError(url, result)
        return result

    def close(self, *, wait: bool = False) -> None:
        """Stop the worker processes; parses still running end with an error.

        ``wait`` blocks until the workers have exited (after their current parse).
        """
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)
