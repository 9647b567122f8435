"""``updates: true``: later reports of a story alert again, marked as updates (issue #4).

The default stays one alert per story. Real SQLite, the real StoryRouter and
dispatcher, and a real loopback webhook receiver.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.alert import AppriseNotifier, dispatch
from monitor.config import AlertConfig, Secret
from monitor.rules import load_rules
from tests.alert_helpers import Clock, entry, match, new_store, statuses, store_poll
from tests.conftest import Webhook

ROLES = {("Salesforce", "company"): "Salesforce", ("ICE", "counterpart"): "ICE"}
RULES = """\
rules:
  - name: activism
    channels: [team]
    all: [employees, letter]
  - name: activism-updates
    channels: [watch]
    updates: true
    all: [employees, letter]
"""
REPORTS = [
    ("Tribune", "Salesforce employees sign letter against ICE contract"),
    ("Wire", "Hundreds at Salesforce protest the company's work for ICE"),
    ("Zeitung", "Salesforce-Beschäftigte verlangen Haltung gegen ICE"),
]
TERMS = ("Salesforce", "employees", "letter", "ICE")


def test_updates_alert_later_reports_marked_as_updates(tmp_path: Path, webhook: Webhook) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    rules = load_rules([path])
    assert [r.updates for r in rules.rules] == [False, True]
    channels = {"team": Secret(webhook.url("hook-team")), "watch": Secret(webhook.url("hook-w"))}
    store = new_store(tmp_path, [outlet for outlet, _ in REPORTS])
    clock = Clock()
    notifier = AppriseNotifier(channels, timeout=5)
    for i, (outlet, title) in enumerate(REPORTS):
        hits = [match("activism", ["team"], terms=TERMS)]
        hits.append(match("activism-updates", ["watch"], terms=TERMS))
        e = entry(f"r{i}", title, f"{title}. Text {i}.", hits)
        store_poll(store, outlet, [e], now=clock(), channels=channels, rules=rules, roles=ROLES)
        asyncio.run(dispatch(store, notifier, AlertConfig(send_timeout=5), clock))
        clock.advance(1800)
    assert len({r[0] for r in store.db.execute("SELECT story_id FROM hits")}) == 1
    # The default rule: one alert for the story, later reports skipped.
    team = [s for c, s in statuses(store) if c == "team"]
    assert team == ["sent", "skipped", "skipped"]
    # The updates rule: every report alerts; the later ones say they are updates.
    watch = [p["json"] for p in webhook.posts if p["path"] == "/hook-w"]
    assert len(watch) == 3
    assert watch[0]["title"] == f"[monitor] activism-updates: {REPORTS[0][1]}"
    assert "Update" not in watch[0]["message"]
    assert watch[1]["title"] == f"[monitor] update: activism-updates: {REPORTS[1][1]}"
    assert watch[1]["message"].startswith("Update: a later report of a story already alerted")
    assert "Also reported by: Tribune\n" in watch[1]["message"]
    assert "Also reported by: Tribune, Wire\n" in watch[2]["message"]
    rows = store.db.execute(
        "SELECT is_update FROM alerts WHERE channel = 'watch' ORDER BY id"
    ).fetchall()
    assert [r[0] for r in rows] == [0, 1, 1]


def test_a_second_rule_on_the_same_article_is_not_an_update(tmp_path: Path) -> None:
    """An update is a later report: two rules matching one article still alert once."""
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        RULES.replace("channels: [team]", "channels: [watch]\n    updates: true"),
        encoding="utf-8",
    )
    rules = load_rules([rules_file])
    channels = {"watch": Secret("console://")}
    store = new_store(tmp_path)
    hits = [
        match("activism", ["watch"], terms=TERMS),
        match("activism-updates", ["watch"], terms=TERMS),
    ]
    store_poll(
        store,
        "Outlet",
        [entry("one", REPORTS[0][1], "t", hits)],
        now=Clock()(),
        channels=channels,
        rules=rules,
        roles=ROLES,
    )
    assert sorted(s for _, s in statuses(store)) == ["pending", "skipped"]
