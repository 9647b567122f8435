"""Frozen data types, named for where they sit in the flow.

``FetchedResponse`` -> ``FeedData`` / ``EntryData`` -> ``Article`` ->
``Match`` -> stored hit -> alert. A per-feed outcome is a value
(``FeedResult``), not an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class FetchedResponse:
    """What the guarded fetcher got for one URL (after redirects)."""

    #: The URL asked for.
    url: str
    #: The URL the body came from, after following redirects.
    final_url: str
    #: HTTP status of the final response (200, or 304 for "not modified").
    status: int
    #: Response headers, keys lower-cased.
    headers: Mapping[str, str]
    #: The decoded body (empty for 304).
    content: bytes
    #: Set when every redirect hop was permanent (301/308): where the URL moved.
    permanent_redirect: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class EntryData:
    """One feed entry as the feed described it, cleaned of control characters."""

    #: The entry's guid/id, if it had one.
    guid: str | None
    #: The entry's link, only if it is an http(s) URL.
    link: str | None
    title: str
    #: The feed's own summary or content, as plain text.
    summary: str
    #: Publication date in UTC, if the feed gave a believable one.
    published: datetime | None = None
    author: str | None = None
    #: Hash of the entry's raw block in the feed, when it has one plain guid (B22);
    #: bookkeeping, not content, so it takes no part in equality.
    block_sha: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class FeedData:
    """A parsed feed."""

    url: str
    #: feedparser's format name (``rss20``, ``atom10``, ...).
    version: str
    title: str | None
    link: str | None
    entries: tuple[EntryData, ...]
    #: Problems that did not stop the parse (bozo, skipped entries).
    warnings: tuple[str, ...] = ()
    #: Entries left out before parsing because their guid was already stored.
    known_skipped: int = 0


@dataclass(frozen=True)
class Article:
    """An entry's article: extracted text, or the feed's summary as a fallback."""

    #: The page the text came from (the entry link), if any.
    url: str | None
    title: str
    text: str
    author: str | None = None
    #: Publication date as extracted from the page (ISO date string), if any.
    date: str | None = None
    #: ISO 639-1 language code, if known.
    language: str | None = None
    #: ``article`` when extracted from the page, ``summary`` for the fallback.
    source: str = "article"
    #: Why extraction was not used, when ``source == "summary"``.
    extract_error: str | None = None


@dataclass(frozen=True)
class Match:
    """Evidence that one rule matched one article."""

    rule: str
    #: The terms that matched, in first-seen order, as the rule wrote them.
    terms: tuple[str, ...]
    #: The sentence holding the most matched terms.
    sentence: str
    #: Channel names the rule alerts; empty means every configured channel.
    channels: tuple[str, ...] = ()
    #: The rule's category (e.g. ``government-contracts``), if it has one.
    category: str | None = None
    #: The rule's score for this article (1.0 for rules without weights).
    score: float = 1.0
    #: The rule's tags.
    tags: tuple[str, ...] = ()
    #: False for a tag-only rule (``alert: false``): record the hit, send nothing by default.
    alert: bool = True


@dataclass(frozen=True)
class PollSummary:
    """What one successful poll of one feed did."""

    #: True when the server said 304 Not Modified.
    not_modified: bool = False
    entries_seen: int = 0
    entries_new: int = 0
    hits_new: int = 0
    alerts_queued: int = 0
    #: True when this was the feed's first poll (alerts recorded as skipped).
    baseline: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedResult:
    """The outcome of polling one feed: a summary or the error, never raised."""

    url: str
    value: PollSummary | Exception

    @property
    def ok(self) -> bool:
        return isinstance(self.value, PollSummary)


@dataclass(frozen=True)
class OutgoingMessage:
    """A rendered alert, ready for one channel."""

    title: str
    body: str
    #: Extra headers/metadata a channel may use (e.g. an idempotency token).
    meta: Mapping[str, str] = field(default_factory=dict)
