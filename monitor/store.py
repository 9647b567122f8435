"""SQLite storage through sqlite-utils: schema, migrations, one writer.

Tables:

``feeds``    one row per polled feed, with its validators and health
``entries``  one row per feed entry ever seen, with the article text (full-text indexed)
``hits``     entry x rule, with the matched terms and the sentence
``alerts``   the outbox: one row per hit x channel, with its delivery state

Each feed's results (entries, hits, outbox rows, new validators, health) are
written in one ``BEGIN IMMEDIATE`` transaction: a deferred read that later
upgrades to a write ignores ``busy_timeout`` (FAULTS D8). Channel *names*
are stored, never their URLs.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast

import sqlite_utils
from sqlite_utils.migrations import Migrations

from monitor.exceptions import StoreError
from monitor.types import Match

BUSY_TIMEOUT_S = 5.0

migrations = Migrations("monitor")


@migrations(name="0001_wal", transactional=False)
def _m0001_wal(db: sqlite_utils.Database) -> None:
    db.enable_wal()


@migrations(name="0002_schema")
def _m0002_schema(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE feeds (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            name TEXT,
            -- where the feed came from: 'config' (monitor.yaml) or 'cli' (feeds add/import)
            source TEXT NOT NULL DEFAULT 'config',
            -- 1 while the feed is polled; config feeds removed from the file become 0
            active INTEGER NOT NULL DEFAULT 1,
            interval_s REAL NOT NULL DEFAULT 900,
            alert_on_first_poll INTEGER NOT NULL DEFAULT 0,
            title TEXT,
            etag TEXT,
            last_modified TEXT,
            created_at TEXT NOT NULL,
            last_polled_at TEXT,
            last_success_at TEXT,
            last_new_entry_at TEXT,
            last_error TEXT,
            last_error_at TEXT,
            consecutive_failures INTEGER NOT NULL DEFAULT 0,
            next_poll_at TEXT
        );
        CREATE TABLE entries (
            id INTEGER PRIMARY KEY,
            feed_id INTEGER NOT NULL REFERENCES feeds(id),
            -- identity within the feed: guid:..., link:... or hash:...
            key TEXT NOT NULL,
            guid TEXT,
            link TEXT,
            -- the link without scheme, fragment and tracking parameters: a second identity
            link_norm TEXT,
            title TEXT NOT NULL,
            summary TEXT NOT NULL,
            author TEXT,
            published TEXT,
            first_seen_at TEXT NOT NULL,
            text TEXT NOT NULL,
            -- 'article' when extracted from the page, 'summary' when the feed's summary stood in
            text_source TEXT NOT NULL,
            extract_error TEXT,
            language TEXT,
            UNIQUE (feed_id, key)
        );
        CREATE INDEX entries_link_norm ON entries(feed_id, link_norm);
        CREATE TABLE hits (
            id INTEGER PRIMARY KEY,
            entry_id INTEGER NOT NULL REFERENCES entries(id),
            rule TEXT NOT NULL,
            terms TEXT NOT NULL,
            sentence TEXT NOT NULL,
            matched_at TEXT NOT NULL,
            UNIQUE (entry_id, rule)
        );
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            hit_id INTEGER NOT NULL REFERENCES hits(id),
            channel TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'skipped', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            next_attempt_at TEXT,
            lease_until TEXT,
            sent_at TEXT,
            UNIQUE (hit_id, channel)
        );
        CREATE INDEX alerts_due ON alerts(status, next_attempt_at);
        """
    )


@migrations(name="0003_entries_fts")
def _m0003_entries_fts(db: sqlite_utils.Database) -> None:
    db.table("entries").enable_fts(["title", "text"], create_triggers=True, tokenize="porter")


@migrations(name="0004_hit_metadata")
def _m0004_hit_metadata(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        ALTER TABLE hits ADD COLUMN category TEXT;
        ALTER TABLE hits ADD COLUMN score REAL NOT NULL DEFAULT 1.0;
        -- JSON list of the rule's tags
        ALTER TABLE hits ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
        """
    )


@migrations(name="0020_browse_term_roles")
def _m0020_browse_term_roles(db: sqlite_utils.Database) -> None:
    # Which matched terms name a company and which a counterpart (ICE, the
    # Pentagon, ...). `monitor browse` fills it from the rules' entities and
    # term lists, so the hits view can show and facet on them.
    db.executescript(
        """
        CREATE TABLE term_roles (
            -- a term as stored in hits.terms, e.g. 'Salesforce' or 'Googler*'
            term TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('company', 'counterpart')),
            -- the company or counterpart it names, e.g. 'Microsoft' for 'HoloLens'
            name TEXT NOT NULL,
            PRIMARY KEY (term, role)
        );
        """
    )


@migrations(name="0020_browse_hit_list")
def _m0020_browse_hit_list(db: sqlite_utils.Database) -> None:
    # The hits as people read them (Datasette, `monitor hits`): one row per
    # hit with its article, outlet, company and counterpart. The company and
    # counterpart come from a rule tag ('company:Microsoft') when a rule sets
    # one, else from the first matched term that term_roles names. Links that
    # are not http(s) are dropped so no `javascript:` link is ever rendered.
    db.executescript(
        """
        CREATE VIEW hit_list AS
        SELECT
            hits.id AS id,
            hits.matched_at AS matched_at,
            hits.rule AS rule,
            hits.terms AS terms,
            hits.sentence AS sentence,
            entries.title AS title,
            CASE WHEN entries.link LIKE 'http://%' OR entries.link LIKE 'https://%'
                 THEN entries.link END AS link,
            entries.published AS published,
            entries.language AS language,
            coalesce(feeds.name, feeds.title, feeds.url) AS outlet,
            coalesce(date(entries.published), date(hits.matched_at)) AS day,
            hits.category AS category,
            coalesce(
                (SELECT substr(t.value, 9) FROM json_each(hits.tags) AS t
                 WHERE t.value LIKE 'company:_%' ORDER BY t.key LIMIT 1),
                (SELECT r.name FROM json_each(hits.terms) AS t
                 JOIN term_roles AS r ON r.term = t.value AND r.role = 'company'
                 ORDER BY t.key LIMIT 1)
            ) AS company,
            coalesce(
                (SELECT substr(t.value, 13) FROM json_each(hits.tags) AS t
                 WHERE t.value LIKE 'counterpart:_%' ORDER BY t.key LIMIT 1),
                (SELECT r.name FROM json_each(hits.terms) AS t
                 JOIN term_roles AS r ON r.term = t.value AND r.role = 'counterpart'
                 ORDER BY t.key LIMIT 1)
            ) AS counterpart,
            hits.score AS score,
            hits.entry_id AS entry_id,
            entries.feed_id AS feed_id
        FROM hits
        JOIN entries ON entries.id = hits.entry_id
        JOIN feeds ON feeds.id = entries.feed_id;
        """
    )


@migrations(name="0030_health_feeds")
def _m0030_health_feeds(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        -- 'ok' while polled; 'gone' after a 410 (polling stops until the URL changes)
        ALTER TABLE feeds ADD COLUMN state TEXT NOT NULL DEFAULT 'ok';
        -- the error's type alone (FetchTimeoutError, HTTPStatusError, ...), for metrics
        ALTER TABLE feeds ADD COLUMN last_error_type TEXT;
        -- a permanent redirect seen on recent polls, and on how many in a row
        ALTER TABLE feeds ADD COLUMN redirect_to TEXT;
        ALTER TABLE feeds ADD COLUMN redirect_seen INTEGER NOT NULL DEFAULT 0;
        -- the URL before a permanent redirect was adopted
        ALTER TABLE feeds ADD COLUMN previous_url TEXT;
        -- the learnt seconds between polls, and the median seconds between new entries
        ALTER TABLE feeds ADD COLUMN learnt_interval_s REAL;
        ALTER TABLE feeds ADD COLUMN rhythm_s REAL;
        -- the health state the operator was last told about ('ok', 'stale', 'silent', 'gone')
        ALTER TABLE feeds ADD COLUMN notified_health TEXT NOT NULL DEFAULT 'ok';
        """
    )


@migrations(name="0031_health_operator_notices")
def _m0031_health_operator_notices(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        -- Notices to the operator (stale feeds, dead alerts, broken rules). Channel
        -- names only, never URLs.
        CREATE TABLE operator_notices (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            -- what the notice is about, e.g. 'feed:3' or 'rules'
            subject TEXT NOT NULL,
            title TEXT NOT NULL,
            body TEXT NOT NULL,
            channel TEXT,
            -- 'sent', 'failed', 'logged' (no channel to send to) or 'suppressed' (rate limit)
            status TEXT NOT NULL,
            error TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX operator_notices_created ON operator_notices(created_at);
        -- One row: what the running (or last) daemon did, for `monitor status`.
        CREATE TABLE daemon_status (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER,
            started_at TEXT,
            heartbeat_at TEXT,
            last_cycle_at TEXT,
            last_reload_at TEXT,
            -- the last reload's errors (one per line), NULL when the last reload worked
            reload_error TEXT,
            stopped_at TEXT
        );
        """
    )


@migrations(name="0040_alerts_stories_and_digests")
def _m0040_alerts_stories_and_digests(db: sqlite_utils.Database) -> None:
    # Issue #4. A story is one event told by several outlets (monitor/stories.py):
    # its first hit alerts, later ones attach. Digest rows wait in the outbox
    # until their period ends and go out as one message per channel.
    db.executescript(
        """
        CREATE TABLE stories (
            id INTEGER PRIMARY KEY,
            -- the first hit's article title, and its company and counterpart if known
            title TEXT NOT NULL,
            company TEXT,
            counterpart TEXT,
            -- when the story happened (the first article's date, else when it was found)
            event_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            -- JSON: the first article's title words and text shingle sketch
            title_words TEXT NOT NULL DEFAULT '[]',
            sketch TEXT NOT NULL DEFAULT '[]'
        );
        CREATE INDEX stories_event ON stories(event_at);
        ALTER TABLE hits ADD COLUMN story_id INTEGER REFERENCES stories(id);
        CREATE INDEX hits_story ON hits(story_id);
        -- NULL: sent on its own; else the digest schedule ('daily 08:00', or
        -- 'quiet' after a channel's quiet hours) whose message carries it
        ALTER TABLE alerts ADD COLUMN digest TEXT;
        """
    )


@migrations(name="0040_alerts_hit_list_stories")
def _m0040_alerts_hit_list_stories(db: sqlite_utils.Database) -> None:
    # The hits view gains each hit's story and how many outlets told it. The
    # view is rebuilt from its stored definition so the columns before stay as they are.
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'hit_list'").fetchone()
    head, sep, tail = sql.rpartition("FROM hits")
    if not sep:
        raise sqlite3.OperationalError("hit_list has an unexpected definition")
    extra = (
        ",\n            hits.story_id AS story_id,\n"
        "            (SELECT count(DISTINCT e2.feed_id) FROM hits AS h2\n"
        "             JOIN entries AS e2 ON e2.id = h2.entry_id\n"
        "             WHERE h2.story_id = hits.story_id) AS story_outlets\n        "
    )
    db.execute("DROP VIEW hit_list")
    db.execute(head.rstrip() + extra + sep + tail)


@migrations(name="0050_parse_hashes")
def _m0050_parse_hashes(db: sqlite_utils.Database) -> None:
    # Issue #8 and FAULTS B22/B23: a body seen before is not parsed again, and
    # an entry whose raw block changed is parsed again to pick up an edit.
    db.executescript(
        """
        -- hash of the last feed body that was parsed and stored
        ALTER TABLE feeds ADD COLUMN parse_body_sha TEXT;
        -- hash of the entry's raw <item>/<entry> block when last stored or checked
        ALTER TABLE entries ADD COLUMN parse_block_sha TEXT;
        -- when a changed block was last taken in (the edit cap, B23)
        ALTER TABLE entries ADD COLUMN parse_checked_at TEXT;
        -- when the title or summary last changed after the entry was first stored (B22)
        ALTER TABLE entries ADD COLUMN updated_at TEXT;
        """
    )


@migrations(name="0060_alerts_updates_and_rate_limits")
def _m0060_alerts_updates_and_rate_limits(db: sqlite_utils.Database) -> None:
    # Issue #4. A rule with `updates: true` alerts again on a later report of a
    # story; its row is marked so the message says it is an update. Rate limits
    # read each channel's last delivery, which the index keeps cheap.
    db.executescript(
        """
        ALTER TABLE alerts ADD COLUMN is_update INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX alerts_channel_sent ON alerts(channel, status, sent_at);
        """
    )


# New migrations go above this line, each a small function with a new name.


def iso(dt: datetime | None) -> str | None:
    """UTC ISO 8601 with seconds, the one format dates are stored in."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class FeedRow:
    """A feed as stored."""

    id: int
    url: str
    name: str | None
    interval_s: float
    alert_on_first_poll: bool
    etag: str | None
    last_modified: str | None
    last_success_at: str | None
    consecutive_failures: int
    next_poll_at: str | None
    #: 'ok', or 'gone' after a 410 (not polled).
    state: str = "ok"
    #: A permanent redirect seen on the last polls, and how many in a row.
    redirect_to: str | None = None
    redirect_seen: int = 0
    #: The interval learnt from the feed's rhythm, when there is one.
    learnt_interval_s: float | None = None

    @property
    def baseline(self) -> bool:
        """True until the feed's first successful poll."""
        return self.last_success_at is None


@dataclass(frozen=True)
class NewEntry:
    """An entry to insert, with its hits."""

    key: str
    guid: str | None
    link: str | None
    link_norm: str | None
    title: str
    summary: str
    author: str | None
    published: str | None
    text: str
    text_source: str
    extract_error: str | None
    language: str | None
    #: The rules that matched this entry's article.
    hits: tuple[Match, ...]
    #: Record its alerts as 'skipped': an old entry resurfacing, not news (B24).
    baseline: bool = False
    #: Hash of the entry's raw block in the feed, to notice a later edit (B22).
    block_sha: str | None = None


@dataclass(frozen=True)
class EntryEdit:
    """A stored entry whose raw block changed since it was stored or last checked (B22)."""

    key: str
    #: The block's new hash; stored with the time, which caps re-checks (B23).
    block_sha: str | None
    #: The new title and summary; None when neither changed (only the hash is refreshed).
    title: str | None = None
    summary: str | None = None
    #: The entry re-extracted and re-matched, when re-matching is configured: its
    #: text replaces the stored one and its hits are added for rules without one.
    rematched: NewEntry | None = None


@dataclass(frozen=True)
class DueAlert:
    """A claimed outbox row with what the message needs."""

    id: int
    hit_id: int
    channel: str
    attempts: int
    rule: str
    terms: tuple[str, ...]
    sentence: str
    entry_title: str
    link: str | None
    published: str | None
    feed_name: str
    category: str | None = None
    #: The hit's story (issue #4), if it has one.
    story_id: int | None = None
    #: NULL for a message of its own; else the digest schedule the row waits for.
    digest: str | None = None
    #: A later report of a story that already alerted the channel (``updates: true``).
    update: bool = False


@dataclass(frozen=True)
class Route:
    """One outbox row to write for a new hit: where, in which state, and when due."""

    channel: str
    status: str
    next_attempt_at: datetime
    #: The digest schedule the row waits for; None sends it on its own.
    digest: str | None = None
    #: Why it is not sent (e.g. the story already alerted); stored in last_error.
    note: str | None = None
    #: A later report of a story that already alerted the channel (``updates: true``).
    update: bool = False


class HitRouter(Protocol):
    """Decides a new hit's outbox rows inside the poll's transaction (stories, digests)."""

    def __call__(
        self,
        db: sqlite_utils.Database,
        *,
        hit_id: int,
        entry_id: int,
        entry: NewEntry,
        match: Match,
        channels: Sequence[str],
        baseline: bool,
        now: datetime,
    ) -> Sequence[Route]: ...


class Store:
    """The one writer. Open with :func:`open_store`."""

    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self.db = db
        self.path = path

    # -- transactions -------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One ``BEGIN IMMEDIATE`` transaction; rolled back on any error."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot start a write: {e}") from e
        try:
            yield self.db
        except sqlite3.Error as e:
            # SQLite may already have rolled back itself (e.g. SQLITE_FULL).
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"{self.path}: write failed and was rolled back: {e}") from e
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(f"{self.path}: commit failed: {e}") from e

    def close(self) -> None:
        self.db.close()

    # -- feeds --------------------------------------------------------------

    def sync_config_feeds(self, feeds: Sequence[Mapping[str, Any]], now: datetime) -> None:
        """Make the config's feeds present and active; deactivate config feeds no longer listed."""
        urls = [f["url"] for f in feeds]
        with self.write() as db:
            for f in feeds:
                # A feed that moved (301 adopted) is still the same feed under its old URL.
                moved = db.execute(
                    "SELECT id FROM feeds WHERE previous_url = ? AND url != ?", [f["url"], f["url"]]
                ).fetchone()
                if moved:
                    db.execute(
                        "UPDATE feeds SET name = ?, active = 1, interval_s = ?, "
                        "alert_on_first_poll = ? WHERE id = ?",
                        [f["name"], f["interval"], int(f["alert_on_first_poll"]), moved[0]],
                    )
                    continue
                db.execute(
                    """
                    INSERT INTO feeds (url, name, source, active, interval_s,
                                       alert_on_first_poll, created_at)
                    VALUES (?, ?, 'config', 1, ?, ?, ?)
                    ON CONFLICT(url) DO UPDATE SET
                        name = excluded.name, active = 1, interval_s = excluded.interval_s,
                        alert_on_first_poll = excluded.alert_on_first_poll
                    """,
                    [f["url"], f["name"], f["interval"], int(f["alert_on_first_poll"]), iso(now)],
                )
            placeholders = ",".join("?" for _ in urls)
            keep = (
                f"AND url NOT IN ({placeholders}) "
                f"AND (previous_url IS NULL OR previous_url NOT IN ({placeholders}))"
                if urls
                else ""
            )
            db.execute(f"UPDATE feeds SET active = 0 WHERE source = 'config' {keep}", urls + urls)

    def add_feed(self, url: str, name: str | None, interval: float, now: datetime) -> bool:
        """Add a feed from the command line; False if it was already there."""
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO feeds (url, name, source, interval_s, created_at) "
                "VALUES (?, ?, 'cli', ?, ?) ON CONFLICT(url) DO NOTHING",
                [url, name, interval, iso(now)],
            )
            return cur.rowcount == 1

    def active_feeds(self) -> list[FeedRow]:
        return self._feed_rows("active = 1")

    def due_feeds(self, now: datetime) -> list[FeedRow]:
        """Active feeds whose next poll is due; gone feeds are never due.

        The daemon asks every second: only the due rows are read and built.
        """
        return self._feed_rows(
            "active = 1 AND state IS NOT 'gone' AND (next_poll_at IS NULL OR next_poll_at <= ?)",
            [iso(now)],
        )

    def active_feed_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM feeds WHERE active = 1").fetchone()[0])

    def _feed_rows(self, where: str, params: Sequence[Any] = ()) -> list[FeedRow]:
        rows = self.db.execute(
            "SELECT id, url, name, interval_s, alert_on_first_poll, etag, last_modified, "
            "last_success_at, consecutive_failures, next_poll_at, state, redirect_to, "
            f"redirect_seen, learnt_interval_s FROM feeds WHERE {where} ORDER BY id",
            params,
        ).fetchall()
        return [
            FeedRow(
                id=r[0],
                url=r[1],
                name=r[2],
                interval_s=r[3],
                alert_on_first_poll=bool(r[4]),
                etag=r[5],
                last_modified=r[6],
                last_success_at=r[7],
                consecutive_failures=r[8],
                next_poll_at=r[9],
                state=r[10],
                redirect_to=r[11],
                redirect_seen=r[12],
                learnt_interval_s=r[13],
            )
            for r in rows
        ]

    def feed(self, feed_id: int) -> FeedRow:
        # One row by key: the daemon reads a feed before every poll.
        for f in self._feed_rows("active = 1 AND id = ?", [feed_id]):
            return f
        raise StoreError(f"no active feed with id {feed_id}")

    def feed_health(self) -> list[dict[str, Any]]:
        """Every feed with its health, for ``monitor feeds list``."""
        cur = self.db.execute(
            "SELECT id, url, name, source, active, title, last_polled_at, last_success_at, "
            "last_new_entry_at, consecutive_failures, last_error, last_error_at, next_poll_at, "
            "(SELECT count(*) FROM entries WHERE feed_id = feeds.id) AS entries, "
            "created_at, interval_s, state, last_error_type, previous_url, redirect_to, "
            "learnt_interval_s, rhythm_s, notified_health "
            "FROM feeds ORDER BY id"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def known_identities(self, feed_id: int) -> tuple[set[str], set[str]]:
        """The entry keys and normalised links already stored for a feed."""
        keys: set[str] = set()
        links: set[str] = set()
        for key, link_norm in self.db.execute(
            "SELECT key, link_norm FROM entries WHERE feed_id = ?", [feed_id]
        ):
            keys.add(key)
            if link_norm:
                links.add(link_norm)
        return keys, links

    def parse_state(
        self, feed_id: int
    ) -> tuple[str | None, dict[str, tuple[str | None, str | None]]]:
        """The hash of the feed's last parsed body, and per stored guid its block's
        hash and when a changed block was last taken in (issue #8, B22, B23)."""
        row = self.db.execute("SELECT parse_body_sha FROM feeds WHERE id = ?", [feed_id]).fetchone()
        blocks = {
            guid: (sha, checked)
            for guid, sha, checked in self.db.execute(
                "SELECT guid, parse_block_sha, parse_checked_at FROM entries "
                "WHERE feed_id = ? AND guid IS NOT NULL",
                [feed_id],
            )
        }
        return (row[0] if row else None), blocks

    def entry_texts(self, feed_id: int, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Stored (title, summary) of the given entry keys, to tell an edit from a no-op."""
        out: dict[str, tuple[str, str]] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            marks = ",".join("?" for _ in chunk)
            for key, title, summary in self.db.execute(
                f"SELECT key, title, summary FROM entries WHERE feed_id = ? AND key IN ({marks})",
                [feed_id, *chunk],
            ):
                out[key] = (title, summary)
        return out

    def record_failure(
        self,
        feed_id: int,
        error: str,
        now: datetime,
        next_poll: datetime,
        *,
        error_type: str | None = None,
        gone: bool = False,
    ) -> None:
        """Count a failed poll; ``gone`` (410) stops polling the feed until its URL changes."""
        with self.write() as db:
            db.execute(
                "UPDATE feeds SET last_polled_at = ?, last_error = ?, last_error_at = ?, "
                "consecutive_failures = consecutive_failures + 1, next_poll_at = ?, "
                "last_error_type = ?, state = CASE WHEN ? THEN 'gone' ELSE state END "
                "WHERE id = ?",
                [iso(now), error, iso(now), iso(next_poll), error_type, gone, feed_id],
            )

    _HEALTH_COLUMNS = frozenset(
        {
            "state",
            "redirect_to",
            "redirect_seen",
            "learnt_interval_s",
            "rhythm_s",
            "notified_health",
            "next_poll_at",
        }
    )

    def set_feed_health(self, feed_id: int, **values: Any) -> None:
        """Update a feed's health bookkeeping columns (see migration 0030)."""
        unknown = set(values) - self._HEALTH_COLUMNS
        if unknown:
            raise ValueError(f"not health columns: {sorted(unknown)}")
        if not values:
            return
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.write() as db:
            db.execute(f"UPDATE feeds SET {cols} WHERE id = ?", [*values.values(), feed_id])

    def move_feed(self, feed_id: int, new_url: str) -> bool:
        """Adopt a permanent redirect: new URL, old one kept, validators reset (A11).

        False (nothing changed) if another feed already has the new URL.
        """
        with self.write() as db:
            taken = db.execute("SELECT 1 FROM feeds WHERE url = ?", [new_url]).fetchone()
            if taken:
                return False
            db.execute(
                "UPDATE feeds SET previous_url = url, url = ?, etag = NULL, "
                "last_modified = NULL, redirect_to = NULL, redirect_seen = 0 WHERE id = ?",
                [new_url, feed_id],
            )
            return True

    def entry_times(self, feed_id: int, limit: int = 20) -> list[datetime]:
        """When the feed's latest entries were published (else first seen), newest first."""
        rows = self.db.execute(
            "SELECT coalesce(published, first_seen_at) AS t FROM entries WHERE feed_id = ? "
            "ORDER BY t DESC LIMIT ?",
            [feed_id, limit],
        ).fetchall()
        out = []
        for (t,) in rows:
            try:
                dt = datetime.fromisoformat(t)
            except (TypeError, ValueError):
                continue
            out.append(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
        return out

    def oldest_published(self, feed_id: int) -> datetime | None:
        """The oldest publication date among the feed's stored entries (B24)."""
        row = self.db.execute(
            "SELECT min(published) FROM entries WHERE feed_id = ?", [feed_id]
        ).fetchone()
        return from_iso(row[0]) if row and row[0] else None

    def hit_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM hits").fetchone()[0])

    # -- operator notices and daemon status --------------------------------

    def add_operator_notice(
        self,
        *,
        kind: str,
        subject: str,
        title: str,
        body: str,
        channel: str | None,
        status: str,
        error: str | None,
        now: datetime,
    ) -> int:
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO operator_notices (kind, subject, title, body, channel, status, "
                "error, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [kind, subject, title, body, channel, status, error, iso(now)],
            )
            return cast(int, cur.lastrowid)

    def operator_notices_since(self, since: datetime, *, sent_only: bool = True) -> int:
        """How many notices went out (or were attempted) since ``since``."""
        where = "status IN ('sent', 'failed') AND " if sent_only else ""
        return int(
            self.db.execute(
                f"SELECT count(*) FROM operator_notices WHERE {where}created_at >= ?",
                [iso(since)],
            ).fetchone()[0]
        )

    def operator_notices(self, limit: int = 20) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT id, kind, subject, title, channel, status, error, created_at "
            "FROM operator_notices ORDER BY id DESC LIMIT ?",
            [limit],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    _STATUS_COLUMNS = frozenset(
        {
            "pid",
            "started_at",
            "heartbeat_at",
            "last_cycle_at",
            "last_reload_at",
            "reload_error",
            "stopped_at",
        }
    )

    def set_daemon_status(self, **values: Any) -> None:
        """Update the one ``daemon_status`` row (created on first use)."""
        unknown = set(values) - self._STATUS_COLUMNS
        if unknown:
            raise ValueError(f"not daemon status columns: {sorted(unknown)}")
        cols = ", ".join(f"{k} = excluded.{k}" for k in values)
        names = ", ".join(["id", *values])
        marks = ", ".join("?" for _ in range(len(values) + 1))
        with self.write() as db:
            db.execute(
                f"INSERT INTO daemon_status ({names}) VALUES ({marks}) "
                f"ON CONFLICT(id) DO UPDATE SET {cols}",
                [1, *values.values()],
            )

    def daemon_status(self) -> dict[str, Any]:
        cur = self.db.execute("SELECT * FROM daemon_status WHERE id = 1")
        row = cur.fetchone()
        if row is None:
            return {}
        return {d[0]: v for d, v in zip(cur.description, row, strict=True) if d[0] != "id"}

    def pull_schedule_back(self, seconds: float, now: datetime) -> int:
        """The wall clock went back ``seconds`` (D19): move every feed poll and
        alert retry that was scheduled under the old clock back by as much,
        never before ``now``. Returns how many rows moved."""
        cutoff = iso(now)
        moved = 0
        with self.write() as db:
            for table, column in (("feeds", "next_poll_at"), ("alerts", "next_attempt_at")):
                rows = db.execute(
                    f"SELECT id, {column} FROM {table} WHERE {column} > ?", [cutoff]
                ).fetchall()
                for row_id, at in rows:
                    when = max(now, datetime.fromisoformat(at) - timedelta(seconds=seconds))
                    db.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", [iso(when), row_id])
                moved += len(rows)
        return moved

    def wal_bytes(self) -> int:
        """Size of the write-ahead log; it grows while a reader holds a snapshot (D6)."""
        try:
            return os.stat(f"{self.path}-wal").st_size
        except OSError:
            return 0

    def checkpoint(self) -> tuple[bool, int, int]:
        """A passive WAL checkpoint: (busy, frames in the log, frames copied back)."""
        busy, log_frames, done = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return bool(busy), int(log_frames), int(done)

    def record_poll(
        self,
        feed: FeedRow,
        *,
        now: datetime,
        next_poll: datetime,
        title: str | None,
        etag: str | None,
        last_modified: str | None,
        entries: Sequence[NewEntry],
        channels: Sequence[str],
        baseline: bool,
        router: HitRouter | None = None,
        body_sha: str | None = None,
        edits: Sequence[EntryEdit] = (),
    ) -> tuple[int, int]:
        """Store one successful poll atomically; returns (hits, alerts queued).

        Entries, hits, outbox rows and the feed's validators and health go in
        one transaction, so a crash leaves all of them or none (FAULTS D1, D2).
        Validators are written here and only here: after the body parsed (A17).
        ``body_sha`` is the hash of the parsed body (kept unless None); ``edits``
        update stored entries, adding hits only for rules the entry had none of.
        """
        hits = 0
        queued = 0
        with self.write() as db:
            for e in entries:
                cur = db.execute(
                    """
                    INSERT INTO entries (feed_id, key, guid, link, link_norm, title, summary,
                        author, published, first_seen_at, text, text_source, extract_error,
                        language, parse_block_sha)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(feed_id, key) DO NOTHING
                    """,
                    [
                        feed.id,
                        e.key,
                        e.guid,
                        e.link,
                        e.link_norm,
                        e.title,
                        e.summary,
                        e.author,
                        e.published,
                        iso(now),
                        e.text,
                        e.text_source,
                        e.extract_error,
                        e.language,
                        e.block_sha,
                    ],
                )
                if cur.rowcount != 1:
                    continue
                entry_id = cast(int, cur.lastrowid)
                n_hits, n_queued = self._add_hits(db, entry_id, e, now, channels, baseline, router)
                hits += n_hits
                queued += n_queued
            for edit in edits:
                n_hits, n_queued = self._edit_entry(db, feed.id, edit, now, channels, router)
                hits += n_hits
                queued += n_queued
            db.execute(
                """
                UPDATE feeds SET title = coalesce(?, title), etag = ?, last_modified = ?,
                    last_polled_at = ?, last_success_at = ?, consecutive_failures = 0,
                    last_error = NULL, next_poll_at = ?,
                    last_new_entry_at = CASE WHEN ? THEN ? ELSE last_new_entry_at END,
                    parse_body_sha = coalesce(?, parse_body_sha)
                WHERE id = ?
                """,
                [
                    title,
                    etag,
                    last_modified,
                    iso(now),
                    iso(now),
                    iso(next_poll),
                    bool(entries),
                    iso(now),
                    body_sha,
                    feed.id,
                ],
            )
        return hits, queued

    def _edit_entry(
        self,
        db: sqlite_utils.Database,
        feed_id: int,
        edit: EntryEdit,
        now: datetime,
        channels: Sequence[str],
        router: HitRouter | None,
    ) -> tuple[int, int]:
        """Apply one :class:`EntryEdit` inside record_poll's transaction (B22)."""
        row = db.execute(
            "SELECT id FROM entries WHERE feed_id = ? AND key = ?", [feed_id, edit.key]
        ).fetchone()
        if row is None:
            return 0, 0
        entry_id = int(row[0])
        db.execute(
            "UPDATE entries SET parse_block_sha = ?, parse_checked_at = ? WHERE id = ?",
            [edit.block_sha, iso(now), entry_id],
        )
        if edit.title is not None and edit.summary is not None:
            # A text that was the summary follows the summary; an article's text
            # changes only when the page is extracted again (re-matching).
            db.execute(
                "UPDATE entries SET title = ?, summary = ?, updated_at = ?, "
                "text = CASE WHEN text_source = 'summary' THEN ? ELSE text END WHERE id = ?",
                [edit.title, edit.summary, iso(now), edit.summary, entry_id],
            )
        e = edit.rematched
        if e is None:
            return 0, 0
        db.execute(
            "UPDATE entries SET text = ?, text_source = ?, extract_error = ?, language = ?, "
            "author = coalesce(?, author) WHERE id = ?",
            [e.text, e.text_source, e.extract_error, e.language, e.author, entry_id],
        )
        # UNIQUE (entry_id, rule): a rule that already hit this entry gets no second
        # hit, so no second alert; a rule that matches only the edit does.
        return self._add_hits(db, entry_id, e, now, channels, False, router)

    def _add_hits(
        self,
        db: sqlite_utils.Database,
        entry_id: int,
        e: NewEntry,
        now: datetime,
        channels: Sequence[str],
        baseline: bool,
        router: HitRouter | None,
    ) -> tuple[int, int]:
        """Insert the entry's hits and their outbox rows; returns (hits, alerts queued)."""
        hits = 0
        queued = 0
        status = "skipped" if baseline else "pending"
        for m in e.hits:
            hit = db.execute(
                "INSERT INTO hits (entry_id, rule, terms, sentence, matched_at, "
                "category, score, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(entry_id, rule) DO NOTHING",
                [
                    entry_id,
                    m.rule,
                    json.dumps(list(m.terms), ensure_ascii=False),
                    m.sentence,
                    iso(now),
                    m.category,
                    m.score,
                    json.dumps(list(m.tags), ensure_ascii=False),
                ],
            )
            if hit.rowcount != 1:
                continue
            hits += 1
            hit_id = cast(int, hit.lastrowid)
            # A tag-only rule (alert: false) records the hit and sends nothing.
            routes: Sequence[Route] = ()
            if m.alert and router is not None:
                routes = router(
                    db,
                    hit_id=hit_id,
                    entry_id=entry_id,
                    entry=e,
                    match=m,
                    channels=channels,
                    baseline=baseline or e.baseline,
                    now=now,
                )
            elif m.alert:
                routes = [
                    Route(c, "skipped" if e.baseline else status, now)
                    for c in (m.channels or channels)
                ]
            for r in routes:
                db.execute(
                    "INSERT INTO alerts (hit_id, channel, status, created_at, "
                    "next_attempt_at, digest, last_error, is_update) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(hit_id, channel) DO NOTHING",
                    [
                        hit_id,
                        r.channel,
                        r.status,
                        iso(now),
                        iso(r.next_attempt_at),
                        r.digest,
                        r.note,
                        r.update,
                    ],
                )
                queued += r.status == "pending"
        return hits, queued

    # -- outbox -------------------------------------------------------------

    def release_expired_leases(self, now: datetime) -> int:
        """Rows left 'sending' by a process that died go back to pending."""
        with self.write() as db:
            cur = db.execute(
                "UPDATE alerts SET status = 'pending', lease_until = NULL "
                "WHERE status = 'sending' AND lease_until <= ?",
                [iso(now)],
            )
            return cur.rowcount

    def claim_due_alerts(self, now: datetime, lease: timedelta, limit: int = 100) -> list[DueAlert]:
        """Mark due pending rows 'sending' with a lease and return them."""
        with self.write() as db:
            rows = db.execute(
                """
                SELECT alerts.id, alerts.hit_id, alerts.channel, alerts.attempts, hits.rule,
                       hits.terms, hits.sentence, entries.title, entries.link, entries.published,
                       coalesce(feeds.name, feeds.title, feeds.url), hits.category,
                       hits.story_id, alerts.digest, alerts.is_update
                FROM alerts
                JOIN hits ON hits.id = alerts.hit_id
                JOIN entries ON entries.id = hits.entry_id
                JOIN feeds ON feeds.id = entries.feed_id
                WHERE alerts.status = 'pending' AND alerts.next_attempt_at <= ?
                ORDER BY alerts.id LIMIT ?
                """,
                [iso(now), limit],
            ).fetchall()
            ids = [r[0] for r in rows]
            if ids:
                db.execute(
                    f"UPDATE alerts SET status = 'sending', lease_until = ? "
                    f"WHERE id IN ({','.join('?' for _ in ids)})",
                    [iso(now + lease), *ids],
                )
        return [
            DueAlert(
                id=r[0],
                hit_id=r[1],
                channel=r[2],
                attempts=r[3],
                rule=r[4],
                terms=tuple(json.loads(r[5])),
                sentence=r[6],
                entry_title=r[7],
                link=r[8],
                published=r[9],
                feed_name=r[10],
                category=r[11],
                story_id=r[12],
                digest=r[13],
                update=bool(r[14]),
            )
            for r in rows
        ]

    def mark_sent(self, alert_id: int, now: datetime) -> None:
        with self.write() as db:
            db.execute(
                "UPDATE alerts SET status = 'sent', sent_at = ?, lease_until = NULL, "
                "attempts = attempts + 1, last_error = NULL WHERE id = ?",
                [iso(now), alert_id],
            )

    def mark_failed(self, alert_id: int, error: str, next_attempt: datetime | None) -> None:
        """Count a failed attempt; ``next_attempt=None`` makes the row dead."""
        with self.write() as db:
            db.execute(
                "UPDATE alerts SET status = ?, attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ?, lease_until = NULL WHERE id = ?",
                [
                    "dead" if next_attempt is None else "pending",
                    error,
                    iso(next_attempt),
                    alert_id,
                ],
            )

    def defer_alert(
        self,
        alert_id: int,
        until: datetime,
        reason: str | None = None,
        *,
        digest: str | None = None,
    ) -> None:
        """Put a claimed row back, due at ``until``, without counting an attempt.

        For a channel that asked us to wait (Retry-After), just failed, is in
        its quiet hours or at its rate limit. ``digest`` (if given) makes the
        row part of that digest (quiet hours bundle what they held).
        """
        with self.write() as db:
            db.execute(
                "UPDATE alerts SET status = 'pending', lease_until = NULL, next_attempt_at = ?, "
                "last_error = coalesce(?, last_error), digest = coalesce(?, digest) "
                "WHERE id = ? AND status = 'sending'",
                [iso(until), reason, digest, alert_id],
            )

    def retry_alert(self, alert_id: int, now: datetime) -> bool:
        """Make a dead (or pending) row due now with a fresh attempt count; False if not found."""
        with self.write() as db:
            cur = db.execute(
                "UPDATE alerts SET status = 'pending', attempts = 0, next_attempt_at = ?, "
                "lease_until = NULL WHERE id = ? AND status IN ('dead', 'pending', 'skipped')",
                [iso(now), alert_id],
            )
            return cur.rowcount == 1

    def alerts(self, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Outbox rows, newest first, with their hit's title and rule (``monitor alerts list``)."""
        where, params = ("WHERE alerts.status = ?", [status]) if status else ("", [])
        cur = self.db.execute(
            f"""
            SELECT alerts.id, alerts.hit_id, alerts.channel, alerts.status, alerts.attempts,
                   alerts.digest, alerts.next_attempt_at, alerts.sent_at, alerts.last_error,
                   alerts.is_update, hits.rule, hits.story_id, entries.title
            FROM alerts JOIN hits ON hits.id = alerts.hit_id
            JOIN entries ON entries.id = hits.entry_id
            {where} ORDER BY alerts.id DESC LIMIT ?
            """,
            [*params, limit],
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def story_outlets(self, story_id: int) -> list[str]:
        """Every outlet that reported a story, first reporter first, each once."""
        rows = self.db.execute(
            "SELECT coalesce(feeds.name, feeds.title, feeds.url) FROM hits "
            "JOIN entries ON entries.id = hits.entry_id JOIN feeds ON feeds.id = entries.feed_id "
            "WHERE hits.story_id = ? ORDER BY hits.id",
            [story_id],
        ).fetchall()
        return list(dict.fromkeys(r[0] for r in rows))

    def notice_since(self, kind: str, subject: str, since: datetime) -> bool:
        """True if an operator notice of this kind about this subject was made since ``since``."""
        row = self.db.execute(
            "SELECT 1 FROM operator_notices WHERE kind = ? AND subject = ? AND created_at >= ? "
            "LIMIT 1",
            [kind, subject, iso(since)],
        ).fetchone()
        return row is not None

    def channel_last_sent(self, channel: str) -> datetime | None:
        """When the channel last delivered a message, if ever."""
        row = self.db.execute(
            "SELECT max(sent_at) FROM alerts WHERE channel = ? AND status = 'sent'", [channel]
        ).fetchone()
        return from_iso(row[0]) if row else None

    def channel_failing_since(self, channel: str) -> datetime | None:
        """When the channel's oldest still-failing row was queued, if none was sent since."""
        row = self.db.execute(
            "SELECT min(created_at) FROM alerts WHERE channel = ? AND status IN "
            "('pending', 'sending') AND attempts > 0",
            [channel],
        ).fetchone()
        since = from_iso(row[0]) if row else None
        if since is None:
            return None
        sent = self.db.execute(
            "SELECT 1 FROM alerts WHERE channel = ? AND status = 'sent' AND sent_at > ? LIMIT 1",
            [channel, iso(since)],
        ).fetchone()
        return None if sent else since

    def alert_counts(self) -> dict[str, int]:
        return {
            status: n
            for status, n in self.db.execute("SELECT status, count(*) FROM alerts GROUP BY status")
        }

    # -- reading ------------------------------------------------------------

    def hits(self, *, since: str | None = None, rule: str | None = None) -> list[dict[str, Any]]:
        """Hits, newest first: the rows and columns of the ``hit_list`` view."""
        where = ["1 = 1"]
        params: list[Any] = []
        if since:
            where.append("matched_at >= ?")
            params.append(since)
        if rule:
            where.append("rule = ?")
            params.append(rule)
        cur = self.db.execute(
            f"SELECT * FROM hit_list WHERE {' AND '.join(where)} ORDER BY matched_at DESC, id DESC",
            params,
        )
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(names, row, strict=True))
            d["terms"] = json.loads(d["terms"])
            out.append(d)
        return out


def open_store(path: str | Path, *, migrate: bool = True) -> Store:
    """Open (creating if needed) the database, check it, and apply migrations.

    Refuses a corrupt file with a clear message instead of touching it (D10).
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE.
        conn = sqlite3.connect(str(p), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise StoreError(
            f"{p}: not a usable SQLite database ({e}); restore a backup or move it away"
        ) from e
    except OSError as e:
        raise StoreError(f"{p}: cannot open: {e.strerror}") from e
    if ok != "ok":
        conn.close()
        raise StoreError(f"{p}: integrity check failed ({ok}); restore a backup or move it away")
    db = sqlite_utils.Database(conn)
    if migrate:
        try:
            migrations.apply(db)
        except sqlite3.Error as e:
            raise StoreError(f"{p}: migration failed: {e}") from e
        # The WAL migration ran once; someone may have reset the mode since (D9).
        # Switching back needs no other connection in the file, else we refuse.
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.Error as e:
            mode = str(e)
        if mode != "wal":
            conn.close()
            raise StoreError(
                f"{p}: cannot put the database in WAL mode ({mode}); "
                "stop other programs using it and start again"
            )
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a killed
        # process still loses nothing (the kill -9 soak proves it); only a power
        # cut can take back the last commits, which then count as not yet seen
        # or sent (the outbox's at-least-once window). FULL cost a 50-entry
        # feed's write 12 ms of fsync on the event loop, up to 260 ms under load.
        conn.execute("PRAGMA synchronous = NORMAL")
    return Store(db, p)
