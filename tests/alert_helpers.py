"""Helpers for the alert tests: a controllable clock, a recording notifier, hits in a real store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.alert import Message, StoryRouter
from monitor.config import Secret
from monitor.rules import RuleSet
from monitor.store import NewEntry, Store, open_store
from monitor.types import Match

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@dataclass
class Clock:
    """A clock the test moves by hand."""

    t: datetime = T0

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@dataclass
class Recorder:
    """A notifier that records every message."""

    sent: list[tuple[str, Message]] = field(default_factory=list)

    async def send(self, channel: str, message: Message) -> None:
        self.sent.append((channel, message))


def new_store(tmp_path: Path, feeds: Sequence[str] = ("Outlet",)) -> Store:
    store = open_store(tmp_path / "m.db")
    store.sync_config_feeds(
        [
            {
                "url": f"https://example.org/{i}.rss",
                "name": name,
                "interval": 900.0,
                "alert_on_first_poll": True,
            }
            for i, name in enumerate(feeds)
        ],
        T0,
    )
    return store


def entry(
    key: str,
    title: str,
    text: str,
    matches: Sequence[Match],
    *,
    published: str | None = None,
    language: str = "en",
    link: str | None = None,
) -> NewEntry:
    return NewEntry(
        key=key,
        guid=key,
        link=link or f"https://news.example.org/{key}",
        link_norm=None,
        title=title,
        summary=text[:100],
        author=None,
        published=published,
        text=text,
        text_source="article",
        extract_error=None,
        language=language,
        hits=tuple(matches),
    )


def match(rule: str = "activism", channels: Sequence[str] = (), **kw: object) -> Match:
    return Match(
        rule=rule,
        terms=tuple(kw.pop("terms", ("Salesforce", "employees", "letter", "ICE"))),  # type: ignore[arg-type]
        sentence=str(kw.pop("sentence", "Salesforce employees signed a letter about ICE.")),
        channels=tuple(channels),
        category="government-contracts",
    )


def store_poll(
    store: Store,
    feed_name: str,
    entries: Sequence[NewEntry],
    *,
    now: datetime,
    channels: Mapping[str, Secret],
    rules: RuleSet | None = None,
    roles: Mapping[tuple[str, str], str] | None = None,
    hit_channels: Sequence[str] | None = None,
) -> tuple[int, int]:
    """One feed's poll written through the real record_poll and StoryRouter."""
    feed = next(f for f in store.active_feeds() if f.name == feed_name)
    router = StoryRouter(rules=rules or RuleSet(rules=()), channels=channels, roles=roles or {})
    return store.record_poll(
        feed,
        now=now,
        next_poll=now + timedelta(minutes=15),
        title=None,
        etag=None,
        last_modified=None,
        entries=entries,
        channels=tuple(hit_channels if hit_channels is not None else channels),
        baseline=False,
        router=router,
    )


def statuses(store: Store) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in store.db.execute("SELECT channel, status FROM alerts ORDER BY channel, id")
    ]
