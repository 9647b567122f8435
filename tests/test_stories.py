"""One alert per story: five outlets (two German) are one story; 2018 and 2026 letters are two."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.alert import dispatch
from monitor.config import AlertConfig, Secret
from monitor.digest import QuietHours, next_run
from monitor.rules import load_rules
from monitor.stories import same_story, story_key
from tests.alert_helpers import Clock, Recorder, entry, match, new_store, statuses, store_poll

ROLES = {
    ("Salesforce", "company"): "Salesforce",
    ("ICE", "counterpart"): "ICE",
    ("CBP", "counterpart"): "CBP",
}
RULES = """
rules:
  - name: activism
    channels: [team]
    all: [[employees, Beschäftigte], [letter, Brief]]
  - name: activism-digest
    channels: [inbox]
    mode: digest
    schedule: daily 08:00
    all: [[employees, Beschäftigte], [letter, Brief]]
"""
REPORTS = [
    ("Tribune", "Salesforce employees sign letter against ICE contract", "en"),
    ("Wire", "Hundreds at Salesforce protest the company's work for ICE", "en"),
    ("Gazette", "Salesforce workers call on Benioff to drop ICE", "en"),
    ("Zeitung", "Salesforce-Beschäftigte verlangen Haltung gegen ICE", "de"),
    ("Rundschau", "Offener Brief: Salesforce-Mitarbeiter gegen ICE-Vertrag", "de"),
]


def test_five_outlets_two_german_one_alert_one_digest_entry(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES, encoding="utf-8")
    rules = load_rules([rules_file])
    channels = {"team": Secret("console://"), "inbox": Secret("console://")}
    store = new_store(tmp_path, [name for name, _, _ in REPORTS])
    clock = Clock()
    for i, (outlet, title, lang) in enumerate(REPORTS):
        terms = ("Salesforce", "employees", "letter", "ICE")
        hits = [
            match("activism", ["team"], terms=terms),
            match("activism-digest", ["inbox"], terms=terms),
        ]
        e = entry(f"r{i}", title, f"{title}. Text {i}.", hits, language=lang)
        store_poll(store, outlet, [e], now=clock(), channels=channels, rules=rules, roles=ROLES)
        clock.advance(1800)
    stories = {r[0] for r in store.db.execute("SELECT story_id FROM hits")}
    assert len(stories) == 1
    team = [s for c, s in statuses(store) if c == "team"]
    assert sorted(team) == ["pending"] + ["skipped"] * 4
    notifier = Recorder()
    asyncio.run(dispatch(store, notifier, AlertConfig(), clock))
    assert [c for c, _ in notifier.sent] == ["team"]  # one immediate alert, the digest waits
    clock.t = next_run("daily 08:00", clock.t)
    asyncio.run(dispatch(store, notifier, AlertConfig(), clock))
    assert [c for c, _ in notifier.sent] == ["team", "inbox"]
    digest = notifier.sent[1][1]
    assert "1 story" in digest.title
    assert "5 outlets: Tribune, Wire, Gazette, Zeitung, Rundschau" in digest.body
    assert digest.html is not None and "5 outlets" in digest.html
    # An empty period sends nothing.
    clock.t = next_run("daily 08:00", clock.t)
    asyncio.run(dispatch(store, notifier, AlertConfig(), clock))
    assert len(notifier.sent) == 2
    # Browsing shows the story and its outlets.
    rows = store.hits()
    assert {r["story_outlets"] for r in rows} == {5}


def test_2018_and_2026_salesforce_letters_are_two_stories(tmp_path: Path) -> None:
    channels = {"team": Secret("console://")}
    store = new_store(tmp_path, ["A", "B"])
    clock = Clock()
    old = entry(
        "2018",
        "Salesforce employees sign letter against CBP contract",
        "Salesforce employees asked Benioff to rethink the CBP contract.",
        [match(terms=("Salesforce", "employees", "letter", "CBP"))],
        published="2018-06-25T10:00:00+00:00",
    )
    new = entry(
        "2026",
        "Salesforce employees sign letter against ICE contract",
        "Salesforce employees asked Benioff to end the work for ICE.",
        [match(terms=("Salesforce", "employees", "letter", "ICE"))],
        published="2026-02-20T10:00:00+00:00",
    )
    store_poll(store, "A", [old], now=clock(), channels=channels, roles=ROLES)
    store_poll(store, "B", [new], now=clock(), channels=channels, roles=ROLES)
    assert len({r[0] for r in store.db.execute("SELECT story_id FROM hits")}) == 2
    assert [s for _, s in statuses(store)] == ["pending", "pending"]


def test_same_story_rules() -> None:
    t = datetime(2026, 3, 1, tzinfo=UTC)
    text = " ".join(f"word{i}" for i in range(200))

    def key(title: str, body: str, company: str | None, cp: str | None, at: datetime):  # type: ignore[no-untyped-def]
        return story_key(title, body, company=company, counterpart=cp, event_at=at)

    a = key("Google workers walk out over Project Nimbus", text, "Google", None, t)
    # near-duplicate text, other words in the title
    assert same_story(key("Staff leave desks", text, None, None, t + timedelta(hours=5)), a)
    # 73 hours later: a new story
    assert not same_story(key("Staff leave desks", text, None, None, t + timedelta(hours=73)), a)
    # similar title but another counterpart: apart
    b = key("Google workers walk out over Project Nimbus", "x y z", "Google", "IDF", t)
    c = key("Google workers walk out over Project Nimbus", "x y z", "Google", "ICE", t)
    assert not same_story(b, c)
    # near-duplicate title, no entities
    d = key("Google workers walk out over Project Nimbus deal", "a b c", None, None, t)
    assert same_story(d, a)


def test_digest_schedules_and_quiet_hours() -> None:
    t = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)  # a Wednesday
    assert next_run("hourly", t) == datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    assert next_run("daily 08:00", t) == datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
    assert next_run("daily 10:15", t) == datetime(2026, 3, 4, 10, 15, tzinfo=UTC)
    assert next_run("weekly mon 07:00", t) == datetime(2026, 3, 9, 7, 0, tzinfo=UTC)
    assert next_run("weekly", t) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    q = QuietHours.parse("22:00-07:00")
    assert q.until(datetime(2026, 3, 4, 23, 0, tzinfo=UTC)) == datetime(
        2026, 3, 5, 7, 0, tzinfo=UTC
    )
    assert q.until(datetime(2026, 3, 4, 3, 0, tzinfo=UTC)) == datetime(2026, 3, 4, 7, 0, tzinfo=UTC)
    assert q.until(t) is None
