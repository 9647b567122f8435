"""Routing a new hit: its story, and its outbox rows (channel, mode, quiet hours).

:class:`StoryRouter` runs inside the poll's one transaction
(:meth:`monitor.store.Store.record_poll`), so a story is found or created and
the rows are written atomically with the hit: two feeds polled at once cannot
both open the same story (their writes are serialised), and a crash leaves
all of it or none.

For each channel the rule names (else every hit channel), one row per e-mail
recipient:

- on a feed's first poll (baseline): ``skipped``;
- ``mode: digest``: ``pending``, due when the rule's schedule period ends
  (read in the rule's ``timezone``), marked with the schedule so the
  dispatcher bundles it;
- ``immediate``: ``pending`` now, unless an earlier hit of the same story
  already alerted that channel (then ``skipped``, noting the story), or,
  for a rule with ``updates: true``, ``pending`` and marked as an update
  (the message says so and lists the story's other outlets) unless the same
  article already alerted the channel through another rule; during the
  channel's quiet hours it waits for their end and is bundled.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import sqlite_utils

from monitor.alert.channels import delivery_targets, split_channel
from monitor.config import Secret
from monitor.digest import QUIET, QuietHours, next_run
from monitor.rules import RuleSet
from monitor.store import NewEntry, Route, iso
from monitor.stories import WINDOW, StoryKey, entities, pick_story, story_key
from monitor.types import Match

log = logging.getLogger(__name__)


def term_roles(rule_sources: Sequence[str]) -> dict[tuple[str, str], str]:
    """(term, role) -> company or counterpart name, from the rule and entity files.

    The same table ``monitor browse`` shows; an unreadable file gives no roles
    (stories then rest on near-duplicate titles and texts alone).
    """
    from monitor.browse import rule_files, term_roles_from_rules

    try:
        triples = term_roles_from_rules(rule_files(rule_sources))
    except (OSError, ValueError) as e:
        log.warning("no company/counterpart roles for stories: %s", e)
        return {}
    return {(term, role): name for term, role, name in triples}


def _event_at(entry: NewEntry, now: datetime) -> datetime:
    if entry.published:
        try:
            dt = datetime.fromisoformat(entry.published)
        except ValueError:
            return now
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return now


class StoryRouter:
    """Assigns each new hit to a story and decides its outbox rows; see the module doc."""

    def __init__(
        self,
        *,
        rules: RuleSet,
        channels: Mapping[str, Secret],
        roles: Mapping[tuple[str, str], str],
        quiet: Mapping[str, QuietHours] | None = None,
    ) -> None:
        self.rules = {r.name: r for r in rules.rules}
        self.channels = dict(channels)
        self.roles = dict(roles)
        self.quiet = dict(quiet or {})

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
    ) -> Sequence[Route]:
        story_id, new = self.assign(
            db, hit_id=hit_id, entry_id=entry_id, entry=entry, match=match, now=now
        )
        rule = self.rules.get(match.rule)
        digest = rule.schedule if rule is not None and rule.mode == "digest" else None
        tz = rule.timezone if rule is not None else None
        updates = rule is not None and rule.updates
        routes: list[Route] = []
        for channel in delivery_targets(self.channels, match.channels or channels):
            update = False
            if baseline:
                routes.append(Route(channel, "skipped", now, note="first poll of the feed"))
                continue
            if digest is not None:
                # The label names the zone, so a digest says which 08:00 it means.
                label = f"{digest} {tz}" if tz else digest
                routes.append(Route(channel, "pending", next_run(digest, now, tz), digest=label))
                continue
            if not new and self._alerted(db, story_id, channel):
                if not updates or self._entry_alerted(db, entry_id, channel):
                    note = f"story #{story_id} already alerted"
                    routes.append(Route(channel, "skipped", now, note=note))
                    continue
                update = True
            quiet = self.quiet.get(split_channel(channel)[0])
            until = quiet.until(now) if quiet is not None else None
            if until is not None:
                routes.append(Route(channel, "pending", until, digest=QUIET, update=update))
            else:
                routes.append(Route(channel, "pending", now, update=update))
        return routes

    def assign(
        self,
        db: sqlite_utils.Database,
        *,
        hit_id: int,
        entry_id: int,
        entry: NewEntry,
        match: Match,
        now: datetime,
    ) -> tuple[int, bool]:
        """Set the hit's story; returns (story id, True if the story is new)."""
        row = db.execute(
            "SELECT story_id FROM hits WHERE entry_id = ? AND story_id IS NOT NULL LIMIT 1",
            [entry_id],
        ).fetchone()
        if row is not None:
            story_id, new = int(row[0]), False
        else:
            company, counterpart = entities(match.terms, match.tags, self.roles)
            key = story_key(
                entry.title,
                entry.text,
                company=company,
                counterpart=counterpart,
                event_at=_event_at(entry, now),
            )
            found = pick_story(key, self._candidates(db, key))
            if found is not None:
                story_id, new = found, False
            else:
                cur = db.execute(
                    "INSERT INTO stories (title, company, counterpart, event_at, created_at, "
                    "title_words, sketch) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        entry.title,
                        company,
                        counterpart,
                        iso(key.event_at),
                        iso(now),
                        json.dumps(sorted(key.title_words), ensure_ascii=False),
                        json.dumps(list(key.sketch)),
                    ],
                )
                story_id, new = int(cur.lastrowid or 0), True
        db.execute("UPDATE hits SET story_id = ? WHERE id = ?", [story_id, hit_id])
        return story_id, new

    def _candidates(self, db: sqlite_utils.Database, key: StoryKey) -> list[tuple[int, StoryKey]]:
        rows = db.execute(
            "SELECT id, title_words, sketch, company, counterpart, event_at FROM stories "
            "WHERE event_at BETWEEN ? AND ?",
            [iso(key.event_at - WINDOW), iso(key.event_at + WINDOW)],
        ).fetchall()
        return [
            (
                int(r[0]),
                StoryKey(
                    title_words=frozenset(json.loads(r[1])),
                    sketch=tuple(json.loads(r[2])),
                    company=r[3].casefold() if r[3] else None,
                    counterpart=r[4].casefold() if r[4] else None,
                    event_at=datetime.fromisoformat(r[5]),
                ),
            )
            for r in rows
        ]

    @staticmethod
    def _alerted(db: sqlite_utils.Database, story_id: int, channel: str) -> bool:
        """True if an earlier hit of the story has a message of its own for ``channel``."""
        row = db.execute(
            "SELECT 1 FROM alerts JOIN hits ON hits.id = alerts.hit_id "
            "WHERE hits.story_id = ? AND alerts.channel = ? "
            "AND alerts.status IN ('pending', 'sending', 'sent', 'dead') "
            "AND (alerts.digest IS NULL OR alerts.digest = ?) LIMIT 1",
            [story_id, channel, QUIET],
        ).fetchone()
        return row is not None

    @staticmethod
    def _entry_alerted(db: sqlite_utils.Database, entry_id: int, channel: str) -> bool:
        """True if another rule's hit of the same article has a message for ``channel``:
        an update is a later *report*, not a second rule matching the same one."""
        row = db.execute(
            "SELECT 1 FROM alerts JOIN hits ON hits.id = alerts.hit_id "
            "WHERE hits.entry_id = ? AND alerts.channel = ? "
            "AND alerts.status IN ('pending', 'sending', 'sent', 'dead') LIMIT 1",
            [entry_id, channel],
        ).fetchone()
        return row is not None


__all__ = ["StoryRouter", "term_roles"]
