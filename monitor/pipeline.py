"""One poll of one feed, and one cycle over all feeds.

The pipeline, as pseudocode::

    for each due feed (at most fetch.concurrency at once):
        response = fetch(feed.url, If-None-Match/If-Modified-Since)   # fetch.py
        if 304, or the very bytes parsed last time: record success, done
        feed_data = parse(response.bytes, response.headers)           # parse.py
              (stored entries with unchanged blocks are cut out first; big
              bodies go to worker processes, small ones to a thread)
        new = entries whose identity (guid, else link, else content hash,
              plus the normalised link as a second key) is not stored yet
        edited = stored entries whose block changed (at most once per
              EDIT_INTERVAL each): title/summary updated, re-matched if
              daemon.rematch_edits; no second alert per (entry, rule)
        for each new entry (4 at once, within a time budget):
            page = fetch(entry.link); article = extract(page)          # extract.py
            on failure: article = the feed's summary, and why
        matches = match(article, rules) for each article               # match.py
        in ONE transaction: entries, hits, outbox rows (skipped on the
            feed's first poll), validators, health                     # store.py
        on any error: the error goes on the feed's row, backoff; other feeds go on
    deliver due outbox rows, one apprise URL each                      # alert.py

A feed's outcome is a :class:`~monitor.types.FeedResult` value; only bugs raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from monitor.alert import (
    AppriseNotifier,
    DispatchSummary,
    Notifier,
    StoryRouter,
    channel_policies,
    dispatch,
    term_roles,
)
from monitor.config import FetchConfig, Settings, check_rule_channels
from monitor.exceptions import (
    BlockedAddressError,
    ExtractError,
    FetchError,
    HTTPStatusError,
    MonitorError,
    ParseError,
    StoreError,
)
from monitor.extract import Extractor, ProcessExtractor
from monitor.fetch import PAGE_MAX_BYTES, Fetcher, GuardedFetcher, check_url
from monitor.match import match_article
from monitor.parse import ParsePool, parse_feed
from monitor.rules import RuleSet, load_rules
from monitor.scheduler import cache_hint, learn_interval, next_poll_after, next_success_poll
from monitor.store import EntryEdit, FeedRow, NewEntry, Store, iso, open_store
from monitor.types import (
    Article,
    EntryData,
    FeedResult,
    FetchedResponse,
    Match,
    PollSummary,
)

log = logging.getLogger(__name__)

#: Article pages fetched at once within one feed.
ARTICLE_CONCURRENCY = 4
_TRACKING = ("utm_", "fbclid", "gclid", "mc_cid", "mc_eid")
_HTML_TYPES = ("text/html", "application/xhtml+xml", "")
#: A permanent redirect is adopted after it was seen on this many polls in a row (A11).
REDIRECT_POLLS = 3
#: A stored entry's changed block is taken in at most once in this long (B23): a
#: feed that stamps the time into every item costs one parse and update per entry
#: per interval, not one per poll.
EDIT_INTERVAL = timedelta(hours=6)
#: Edited entries taken in per poll; the rest wait for a later poll (B23).
MAX_EDITS_PER_POLL = 20
_TTL = re.compile(rb"<ttl>\s*(\d{1,6})\s*</ttl>", re.IGNORECASE)


# -- pure decisions ---------------------------------------------------------


def normalize_link(link: str | None) -> str | None:
    """The link without scheme, ``www.``, fragment, tracking parameters or trailing slash.

    Used as a second identity so a publisher switching ``http`` to ``https``
    or changing GUIDs does not make an old story new again (FAULTS B21).
    """
    if not link:
        return None
    parts = urlsplit(link.strip())
    host = (parts.hostname or "").lower()
    if not host:
        return None
    host = host.removeprefix("www.")
    if parts.port and parts.port not in (80, 443):
        host = f"{host}:{parts.port}"
    query = urlencode(
        sorted(
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not k.lower().startswith(_TRACKING)
        )
    )
    path = parts.path.rstrip("/") or "/"
    return urlunsplit(("", host, path, query, "")).lstrip("/")


def entry_key(entry: EntryData) -> str:
    """The entry's identity in its feed: guid, else link, else a content hash (B14)."""
    if entry.guid:
        return f"guid:{entry.guid}"
    link = normalize_link(entry.link)
    if link:
        return f"link:{link}"
    digest = hashlib.sha256(
        "\x1f".join(
            [entry.title, entry.summary, entry.published.isoformat() if entry.published else ""]
        ).encode()
    ).hexdigest()
    return f"hash:{digest[:32]}"


def new_entries(
    entries: Sequence[EntryData], known_keys: set[str], known_links: set[str]
) -> list[tuple[str, EntryData]]:
    """The entries not stored yet, each once, with its key.

    An entry is known if its key or its normalised link is stored. Duplicate
    GUIDs within one feed keep the first (B20).
    """
    out: list[tuple[str, EntryData]] = []
    keys = set(known_keys)
    links = set(known_links)
    for entry in entries:
        key = entry_key(entry)
        link = normalize_link(entry.link)
        if key in keys or (link is not None and link in links):
            continue
        keys.add(key)
        if link is not None:
            links.add(link)
        out.append((key, entry))
    return out


def known_blocks(
    blocks: Mapping[str, tuple[str | None, str | None]], since: str
) -> dict[str, str | None]:
    """Stored guid -> the block hash an unchanged entry has, for :func:`parse_feed`.

    ``blocks`` is :meth:`Store.parse_state`'s (hash, last taken in); an entry taken
    in after ``since`` (ISO time), or stored before hashes were, maps to None:
    dropped before parsing whatever its block says (B23).
    """
    return {
        guid: None if sha is None or (checked is not None and checked > since) else sha
        for guid, (sha, checked) in blocks.items()
    }


def edited_entries(
    entries: Sequence[EntryData],
    blocks: Mapping[str, tuple[str | None, str | None]],
    since: str,
) -> list[EntryData]:
    """Stored entries whose block hash changed, not taken in after ``since``; each
    guid once, at most :data:`MAX_EDITS_PER_POLL` (B22, B23)."""
    out: list[EntryData] = []
    seen: set[str] = set()
    for entry in entries:
        if not entry.guid or not entry.block_sha or entry.guid in seen:
            continue
        seen.add(entry.guid)
        sha, checked = blocks.get(entry.guid, (None, None))
        if sha is None or sha == entry.block_sha or (checked is not None and checked > since):
            continue
        out.append(entry)
        if len(out) == MAX_EDITS_PER_POLL:
            break
    return out


def describe_error(error: BaseException) -> str:
    """A short, storable error line: type and message, never a secret."""
    if isinstance(error, FetchError | ParseError | ExtractError):
        return f"{type(error).__name__}: {error.reason}"
    return f"{type(error).__name__}: {error}"


# -- orchestration ----------------------------------------------------------


@dataclass(frozen=True)
class CycleSummary:
    """What ``run --once`` did."""

    results: tuple[FeedResult, ...]
    alerts: DispatchSummary = field(default_factory=DispatchSummary)

    @property
    def failed(self) -> tuple[FeedResult, ...]:
        return tuple(r for r in self.results if not r.ok)


class Monitor:
    """The pipeline wired to its parts; build one with :func:`make_monitor`."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        fetcher: Fetcher,
        extractor: Extractor,
        notifier: Notifier,
        rules: RuleSet,
        now: Callable[[], datetime],
        parser: ParsePool | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.fetcher = fetcher
        self.extractor = extractor
        self.notifier = notifier
        self.rules = rules
        self.now = now
        #: Feed bodies are parsed here, off the event loop (threads unless given a pool).
        self.parser = parser or ParsePool(workers=0)
        self._feed_semaphore = asyncio.Semaphore(settings.fetch.concurrency)
        self._router: tuple[tuple[int, int], StoryRouter] | None = None

    @property
    def feed_deadline(self) -> float:
        """Hard limit on one feed's poll: fetch, parse, articles and store."""
        f = self.settings.fetch
        return f.total_timeout * 2 + f.extract_timeout * 2 + 30

    @property
    def hit_channels(self) -> tuple[str, ...]:
        """Where hits of rules that name no channel go: every channel but the operator's.

        The operator channel carries notices about the daemon itself; it gets hits
        only when a rule names it, or when it is the only channel there is.
        """
        channels = tuple(self.settings.channels)
        operator = self.settings.alerts.operator_channel
        rest = tuple(c for c in channels if c != operator)
        return rest or channels

    @property
    def router(self) -> StoryRouter:
        """Stories and outbox rows for new hits (issue #4); rebuilt when rules or settings change."""
        key = (id(self.rules), id(self.settings))
        if self._router is None or self._router[0] != key:
            router = StoryRouter(
                rules=self.rules,
                channels=self.settings.channels,
                roles=term_roles([str(p) for p in self.settings.rules]),
                quiet={
                    name: c.quiet_hours
                    for name, c in self.settings.channel_options.items()
                    if c.quiet_hours is not None
                },
            )
            self._router = (key, router)
        return self._router[1]

    def sync_feeds(self) -> None:
        """Bring the configuration's feed list into the database."""
        self.store.sync_config_feeds(
            [
                {
                    "url": f.url,
                    "name": f.name,
                    "interval": f.interval,
                    "alert_on_first_poll": f.alert_on_first_poll,
                }
                for f in self.settings.feeds
            ],
            self.now(),
        )

    async def poll_feed(self, feed: FeedRow) -> FeedResult:
        """Poll one feed; any failure is recorded on its row and returned, not raised."""
        if feed.state == "gone":
            # 410 Gone stopped it (A14); editing the URL in the configuration resumes.
            return FeedResult(feed.url, FetchError(feed.url, "gone (HTTP 410); not polled"))
        async with self._feed_semaphore:
            try:
                summary = await asyncio.wait_for(self._poll(feed), timeout=self.feed_deadline)
            except (MonitorError, TimeoutError) as e:
                if isinstance(e, TimeoutError):
                    e = FetchError(feed.url, f"poll took longer than {self.feed_deadline:g}s")
                self._record_failure(feed, e)
                return FeedResult(feed.url, e)
            return FeedResult(feed.url, summary)

    def _record_failure(self, feed: FeedRow, error: MonitorError) -> None:
        now = self.now()
        retry_after = error.retry_after if isinstance(error, FetchError) else None
        # Backoff starts from the feed's usual interval (learnt or configured),
        # doubles per failure up to a cap, and never disables the feed (A8).
        next_poll = next_poll_after(
            now,
            feed.learnt_interval_s or feed.interval_s,
            failures=feed.consecutive_failures + 1,
            retry_after=retry_after,
        )
        gone = isinstance(error, HTTPStatusError) and error.status == 410
        log.warning(
            "feed %s failed: %s%s",
            feed.url,
            describe_error(error),
            "; polling stopped until its URL changes" if gone else "",
            extra={
                "event": "poll_failed",
                "feed_id": feed.id,
                "failures": feed.consecutive_failures + 1,
            },
        )
        try:
            self.store.record_failure(
                feed.id,
                describe_error(error),
                now,
                next_poll,
                error_type=type(error).__name__,
                gone=gone,
            )
        except StoreError:
            log.exception("could not record the failure of feed %s", feed.url)

    def _after_success(self, feed: FeedRow, response: FetchedResponse) -> None:
        """Health bookkeeping after a good poll: redirects, learnt interval, next poll.

        A permanent redirect is followed at once by the fetcher (which vets every
        hop), but the stored URL changes only after :data:`REDIRECT_POLLS` polls
        in a row saw the same target (A11, A12, A13). The next poll comes after the
        interval learnt from the feed's rhythm, stretched by Cache-Control,
        Expires or the feed's ``<ttl>`` up to ``daemon.max_interval``.
        """
        d = self.settings.daemon
        now = self.now()
        values: dict[str, Any] = {}
        target = response.permanent_redirect
        if target and target != feed.url:
            seen = feed.redirect_seen + 1 if feed.redirect_to == target else 1
            values.update(redirect_to=target, redirect_seen=seen)
            if seen >= REDIRECT_POLLS:
                try:
                    check_url(target)
                except BlockedAddressError as e:
                    log.warning("feed %s: not moving to %s: %s", feed.url, e.url, e.reason)
                else:
                    if self.store.move_feed(feed.id, target):
                        log.warning(
                            "feed %s moved permanently to %s; the new URL is stored",
                            feed.url,
                            target,
                            extra={"event": "feed_moved", "feed_id": feed.id},
                        )
                        values.update(redirect_to=None, redirect_seen=0)
        elif feed.redirect_to is not None:
            values.update(redirect_to=None, redirect_seen=0)
        interval = feed.interval_s
        if d.adaptive:
            learnt, rhythm = learn_interval(
                self.store.entry_times(feed.id),
                feed.interval_s,
                min_interval=d.min_interval,
                max_interval=d.max_interval,
            )
            if rhythm is not None:
                interval = learnt
                values.update(learnt_interval_s=learnt, rhythm_s=rhythm)
        ttl = _TTL.search(response.content[:65536])
        hint = cache_hint(response.headers, now, ttl_minutes=float(ttl.group(1)) if ttl else None)
        values["next_poll_at"] = iso(
            next_success_poll(now, interval, hint=hint, max_interval=d.max_interval)
        )
        self.store.set_feed_health(feed.id, **values)

    async def _poll(self, feed: FeedRow) -> PollSummary:
        headers = {
            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"
        }
        if feed.etag:
            headers["If-None-Match"] = feed.etag
        if feed.last_modified:
            headers["If-Modified-Since"] = feed.last_modified
        response = await self.fetcher.get(feed.url, headers=headers)
        if response.not_modified:
            return self._unchanged(feed, response, feed.etag, feed.last_modified)
        body_sha = hashlib.blake2b(response.content, digest_size=16).hexdigest()
        stored_sha, blocks = self.store.parse_state(feed.id)
        if body_sha == stored_sha:
            # The server said 200 but sent the bytes we parsed last time (no or
            # broken validators): nothing in it can be new (issue #8).
            return self._unchanged(
                feed,
                response,
                response.headers.get("etag"),
                response.headers.get("last-modified"),
            )
        keys, links = self.store.known_identities(feed.id)
        # Stored entries whose block is unchanged need not be parsed at all
        # (issue #8); a changed block is parsed, at most once per EDIT_INTERVAL (B22, B23).
        since = iso(self.now() - EDIT_INTERVAL) or ""
        data = await self.parser.parse(
            response.final_url,
            response.content,
            response.headers,
            known_guids=known_blocks(blocks, since),
        )
        for warning in data.warnings:
            log.info("feed %s: %s", feed.url, warning)
        fresh = new_entries(data.entries, keys, links)
        edits, rematch = self._edits(feed, edited_entries(data.entries, blocks, since))
        articles = await self._articles([e for _, e in fresh] + [e for _, e in rematch])
        baseline = feed.baseline and not feed.alert_on_first_poll
        # Entries older than anything the feed ever showed us are old stories
        # resurfacing (its top items were deleted), not news: no alerts (B24).
        window = None if feed.baseline else self.store.oldest_published(feed.id)
        rows = [
            _new_entry(
                key,
                entry,
                article,
                match_article(article, self.rules),
                resurfaced=_older(entry.published, window),
            )
            for (key, entry), article in zip(fresh, articles[: len(fresh)], strict=True)
        ]
        for (key, entry), article in zip(rematch, articles[len(fresh) :], strict=True):
            edits[key] = replace(
                edits[key],
                rematched=_new_entry(key, entry, article, match_article(article, self.rules)),
            )
        if any(r.baseline for r in rows):
            log.info(
                "feed %s: %d entries older than its window are stored without alerts",
                feed.url,
                sum(r.baseline for r in rows),
            )
        now = self.now()
        hits, queued = self.store.record_poll(
            feed,
            now=now,
            next_poll=next_poll_after(now, feed.interval_s),
            title=data.title,
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            entries=rows,
            channels=self.hit_channels,
            baseline=baseline,
            router=self.router,
            body_sha=body_sha,
            edits=tuple(edits.values()),
        )
        self._after_success(feed, response)
        return PollSummary(
            entries_seen=len(data.entries) + data.known_skipped,
            entries_new=len(rows),
            hits_new=hits,
            alerts_queued=queued,
            baseline=baseline,
            warnings=data.warnings,
        )

    def _unchanged(
        self,
        feed: FeedRow,
        response: FetchedResponse,
        etag: str | None,
        last_modified: str | None,
    ) -> PollSummary:
        """Record a poll that brought nothing to parse: a 304, or the same bytes again."""
        now = self.now()
        self.store.record_poll(
            feed,
            now=now,
            next_poll=next_poll_after(now, feed.interval_s),
            title=None,
            etag=etag,
            last_modified=last_modified,
            entries=(),
            channels=(),
            baseline=False,
        )
        self._after_success(feed, response)
        return PollSummary(not_modified=True)

    def _edits(
        self, feed: FeedRow, edited: Sequence[EntryData]
    ) -> tuple[dict[str, EntryEdit], list[tuple[str, EntryData]]]:
        """The stored entries to update, and those whose article is matched again (B22).

        A block can change without its title or summary changing (a comment
        count, a timestamp): then only its hash is refreshed. Re-matching is
        ``daemon.rematch_edits``, off by default.
        """
        if not edited:
            return {}, []
        keys = [entry_key(e) for e in edited]
        stored = self.store.entry_texts(feed.id, keys)
        edits: dict[str, EntryEdit] = {}
        rematch: list[tuple[str, EntryData]] = []
        for key, entry in zip(keys, edited, strict=True):
            if key not in stored:
                continue
            if stored[key] == (entry.title, entry.summary):
                edits[key] = EntryEdit(key, entry.block_sha)
                continue
            edits[key] = EntryEdit(key, entry.block_sha, title=entry.title, summary=entry.summary)
            if self.settings.daemon.rematch_edits:
                rematch.append((key, entry))
        changed = sum(e.title is not None for e in edits.values())
        if changed:
            log.info(
                "feed %s: %d stored entries were edited%s",
                feed.url,
                changed,
                "; matching them again" if rematch else "",
                extra={"event": "entries_edited", "feed_id": feed.id},
            )
        return edits, rematch

    async def _articles(self, entries: Sequence[EntryData]) -> list[Article]:
        """Fetch and extract each entry's page; fall back to the feed's summary."""
        semaphore = asyncio.Semaphore(ARTICLE_CONCURRENCY)

        async def one(entry: EntryData) -> Article:
            async with semaphore:
                return await self.article(entry)

        return list(await asyncio.gather(*(one(e) for e in entries)))

    async def article(self, entry: EntryData) -> Article:
        """The entry's article text, or its summary and the reason why."""
        return await fetch_article(self.fetcher, self.extractor, entry)

    async def poll_all(self, feeds: Sequence[FeedRow] | None = None) -> list[FeedResult]:
        """Poll the given feeds (default: every active feed) concurrently."""
        targets = self.store.active_feeds() if feeds is None else list(feeds)
        return list(await asyncio.gather(*(self.poll_feed(f) for f in targets)))

    async def dispatch(self) -> DispatchSummary:
        """Deliver every due alert once."""
        # operator.py imports monitor.alert, so it is imported here, late, to avoid a cycle.
        from monitor.operator import OperatorNotices

        notices = OperatorNotices(
            self.store, self.notifier, self.settings.alerts.operator_channel, self.now
        )
        return await dispatch(
            self.store,
            self.notifier,
            self.settings.alerts,
            self.now,
            notices=notices,
            policies=channel_policies(self.settings.channels, self.settings.channel_options),
        )

    async def run_once(self) -> CycleSummary:
        """One cycle: every active feed regardless of schedule, then delivery."""
        results = await self.poll_all()
        alerts = await self.dispatch()
        return CycleSummary(results=tuple(results), alerts=alerts)

    async def aclose(self) -> None:
        await self.fetcher.aclose()
        # Wait (off the loop, a few seconds at most) for the parse workers to exit,
        # so none is left behind while the interpreter shuts down.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(self.parser.close, wait=True), 5)
        close = getattr(self.extractor, "close", None)
        if callable(close):
            close()
        self.store.close()


async def fetch_article(fetcher: Fetcher, extractor: Extractor, entry: EntryData) -> Article:
    """Fetch and extract the entry's page; on failure the feed's summary and the reason."""
    if not entry.link:
        return _fallback(entry, "entry has no http(s) link")
    try:
        page = await fetcher.get(
            entry.link,
            headers={"Accept": "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"},
            max_bytes=PAGE_MAX_BYTES,
        )
        extracted = await extractor.extract(page.content, page.final_url, page.content_type)
    except (FetchError, ExtractError) as e:
        log.info("article %s: %s; using the feed's summary", entry.link, describe_error(e))
        return _fallback(entry, describe_error(e))
    return Article(
        url=entry.link,
        title=entry.title or extracted.title or "",
        text=extracted.text,
        author=extracted.author or entry.author,
        date=extracted.date,
        language=extracted.language,
        source="article",
    )


async def check_feed_source(
    source: str,
    fetcher: Fetcher,
    extractor: Extractor,
    rules: RuleSet,
    *,
    articles: bool = True,
) -> dict[str, Any]:
    """Dry run for one feed URL or local file: entries and their matches, or the error."""
    try:
        if "://" in source:
            response = await fetcher.get(source)
            data = parse_feed(response.final_url, response.content, response.headers)
        else:
            try:
                content = Path(source).read_bytes()
            except OSError as e:
                return {"source": source, "error": f"cannot read {source}: {e.strerror}"}
            data = parse_feed(Path(source).resolve().as_uri(), content, {})
    except MonitorError as e:
        return {"source": source, "error": describe_error(e)}
    entries = []
    for entry in data.entries:
        article = (
            await fetch_article(fetcher, extractor, entry)
            if articles
            else _fallback(entry, "articles not fetched (--no-articles)")
        )
        entries.append(
            {
                "title": entry.title,
                "link": entry.link,
                "published": iso(entry.published),
                "text_source": article.source,
                "extract_error": article.extract_error,
                "language": article.language,
                "matches": [
                    {"rule": m.rule, "terms": list(m.terms), "sentence": m.sentence}
                    for m in match_article(article, rules)
                ],
            }
        )
    return {
        "source": source,
        "title": data.title,
        "version": data.version,
        "warnings": list(data.warnings),
        "entries": entries,
    }


def _fallback(entry: EntryData, reason: str) -> Article:
    return Article(
        url=entry.link,
        title=entry.title,
        text=entry.summary,
        author=entry.author,
        source="summary",
        extract_error=reason,
    )


def _older(published: datetime | None, window: datetime | None) -> bool:
    return published is not None and window is not None and published < window


def _new_entry(
    key: str, entry: EntryData, article: Article, matches: list[Match], *, resurfaced: bool = False
) -> NewEntry:
    return NewEntry(
        key=key,
        guid=entry.guid,
        link=entry.link,
        link_norm=normalize_link(entry.link),
        title=entry.title,
        summary=entry.summary,
        author=article.author,
        published=iso(entry.published),
        text=article.text,
        text_source=article.source,
        extract_error=article.extract_error,
        language=article.language,
        hits=tuple(matches),
        baseline=resurfaced,
        block_sha=entry.block_sha,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_fetcher(fetch: FetchConfig) -> GuardedFetcher:
    """The guarded fetcher with the configured allow-list and timeouts."""
    return GuardedFetcher(
        allow_networks=fetch.allow_networks,
        connect_timeout=fetch.connect_timeout,
        read_timeout=fetch.read_timeout,
        total_timeout=fetch.total_timeout,
    )


def make_monitor(
    settings: Settings,
    *,
    _store: Store | None = None,
    _fetcher: Fetcher | None = None,
    _extractor: Extractor | None = None,
    _notifier: Notifier | None = None,
    _rules: RuleSet | None = None,
    _now: Callable[[], datetime] | None = None,
    _parser: ParsePool | None = None,
) -> Monitor:
    """Wire the real parts from settings; tests pass their own for any of them.

    Raises RuleError, ConfigError or StoreError before anything is fetched.
    """
    rules = _rules if _rules is not None else load_rules(settings.rules)
    check_rule_channels(settings, [(r.source, c) for r in rules.rules for c in r.channels])
    store = _store if _store is not None else open_store(settings.database)
    fetcher = _fetcher or make_fetcher(settings.fetch)
    # Worker processes, so a pathological page costs at most extract_timeout (B26).
    extractor = _extractor or ProcessExtractor(timeout=settings.fetch.extract_timeout)
    notifier = _notifier or AppriseNotifier(settings.channels, timeout=settings.alerts.send_timeout)
    return Monitor(
        settings,
        store=store,
        fetcher=fetcher,
        extractor=extractor,
        notifier=notifier,
        rules=rules,
        now=_now or utcnow,
        # Worker processes, one per core, for bodies big enough to be worth shipping (issue #8).
        parser=_parser or ParsePool(),
    )


__all__ = [
    "CycleSummary",
    "Monitor",
    "entry_key",
    "make_monitor",
    "new_entries",
    "normalize_link",
]
