"""The whole pipeline with real parts: feeds and pages on a loopback HTTP
server, a real SMTP server, a real webhook receiver, a real SQLite file and
the real ``monitor`` command in a subprocess (issue #2's "Done when")."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SMTP, Site, Webhook, needs_shared, write_config

pytestmark = [needs_shared, pytest.mark.slow]

SEED_TITLES = {
    "Salesforce employees ask Benioff to rethink the company's CBP contract",
    "Salesforce-Beschäftigte verlangen von Benioff eine klare Haltung gegen ICE",
}


def _config(
    tmp_path: Path, site: Site, smtp: SMTP, webhook: Webhook, *, first: bool = True
) -> Path:
    return write_config(
        tmp_path / "monitor.yaml",
        database=tmp_path / "state" / "monitor.db",
        feeds=[
            {"url": site.url("feed.rss"), "name": "Test Tribune", "alert_on_first_poll": first},
            {"url": site.url("feed.atom"), "name": "Test Wire", "alert_on_first_poll": first},
        ],
        channels={"inbox": smtp.url(), "hook": webhook.url()},
    )


def _hit_titles(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {
            row[0]
            for row in conn.execute(
                "SELECT entries.title FROM hits JOIN entries ON entries.id = hits.entry_id"
            )
        }


def _alerts(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT channel, status FROM alerts ORDER BY id"))


def test_seeds_alert_once_per_channel_and_never_again(
    tmp_path: Path, site: Site, smtp: SMTP, webhook: Webhook, run_cli: Any
) -> None:
    site.serve_fixture_site()
    config = _config(tmp_path, site, smtp, webhook)
    db = tmp_path / "state" / "monitor.db"

    first = run_cli("--config", str(config), "run", "--once")
    assert first.returncode == 0, first.stderr
    assert "2 feeds, 0 failed" in first.stdout
    assert _hit_titles(db) == SEED_TITLES

    # Exactly one e-mail and one webhook POST per hit.
    assert len(smtp.messages) == 2
    assert len(webhook.posts) == 2
    subjects = sorted(m.content.decode("utf-8", "replace") for m in smtp.messages)
    assert any("CBP" in s for s in subjects)
    bodies = [p["json"]["message"] for p in webhook.posts]
    assert all("Rule: " in b and "Link: http://127.0.0.1" in b and "> " in b for b in bodies)
    assert {tuple(a) for a in _alerts(db)} == {("inbox", "sent"), ("hook", "sent")}

    # Running again, and restarting the process, sends nothing new.
    for _ in range(2):
        again = run_cli("--config", str(config), "run", "--once")
        assert again.returncode == 0, again.stderr
    assert len(smtp.messages) == 2
    assert len(webhook.posts) == 2
    assert len(_alerts(db)) == 4


def test_first_poll_is_a_silent_baseline(
    tmp_path: Path, site: Site, smtp: SMTP, webhook: Webhook, run_cli: Any
) -> None:
    site.serve_fixture_site()
    config = _config(tmp_path, site, smtp, webhook, first=False)
    db = tmp_path / "state" / "monitor.db"

    result = run_cli("--config", str(config), "run", "--once")
    assert result.returncode == 0, result.stderr
    assert "baseline" in result.stdout
    # Stored and matched, but nothing sent: adding a feed never floods an inbox.
    assert _hit_titles(db) == SEED_TITLES
    assert {status for _, status in _alerts(db)} == {"skipped"}
    assert smtp.messages == [] and webhook.posts == []

    second = run_cli("--config", str(config), "run", "--once")
    assert second.returncode == 0, second.stderr
    assert smtp.messages == [] and webhook.posts == []


def test_smtp_down_then_up_delivers_each_alert_once(
    tmp_path: Path, site: Site, smtp: SMTP, webhook: Webhook, run_cli: Any
) -> None:
    """FAULTS D12."""
    site.serve_fixture_site()
    config = _config(tmp_path, site, smtp, webhook)
    db = tmp_path / "state" / "monitor.db"

    smtp.stop()
    down = run_cli("--config", str(config), "run", "--once")
    assert down.returncode == 0, down.stderr
    statuses = _alerts(db)
    assert sorted(s for c, s in statuses if c == "inbox") == ["pending", "pending"]
    assert sorted(s for c, s in statuses if c == "hook") == ["sent", "sent"]
    with sqlite3.connect(db) as conn:
        errors = {
            r[0] for r in conn.execute("SELECT last_error FROM alerts WHERE channel = 'inbox'")
        }
    assert errors and all(e and "127.0.0.1" not in e for e in errors)

    smtp.start()
    time.sleep(1.5)  # base_backoff is 1s (x0.8-1.2 jitter) in the test config
    up = run_cli("--config", str(config), "run", "--once")
    assert up.returncode == 0, up.stderr
    assert len(smtp.messages) == 2
    assert {s for _, s in _alerts(db)} == {"sent"}

    run_cli("--config", str(config), "run", "--once")
    assert len(smtp.messages) == 2
    assert len(webhook.posts) == 2


def test_broken_feeds_do_not_stop_the_others(
    tmp_path: Path, site: Site, smtp: SMTP, webhook: Webhook, run_cli: Any
) -> None:
    """A 500 (A8), a timeout (A2) and an HTML page (B2) each fail alone."""
    site.serve_fixture_site()
    site.server.expect_request("/broken.xml").respond_with_data("oops", status=500)
    site.serve("page.xml", "<html><body><h1>Not a feed</h1><p>Hello</p></body></html>", "text/html")

    def slow(_request: Any) -> Any:
        time.sleep(6)
        from werkzeug import Response

        return Response("<rss/>", content_type="application/rss+xml")

    site.server.expect_request("/slow.xml").respond_with_handler(slow)
    db = tmp_path / "state" / "monitor.db"
    config = write_config(
        tmp_path / "monitor.yaml",
        database=db,
        feeds=[
            {"url": site.url("broken.xml")},
            {"url": site.url("slow.xml")},
            {"url": site.url("page.xml")},
            {"url": site.url("feed.rss"), "alert_on_first_poll": True},
        ],
        channels={"hook": webhook.url()},
    )
    result = run_cli("--config", str(config), "run", "--once")
    assert result.returncode == 0, result.stderr
    assert "4 feeds, 3 failed" in result.stdout
    assert len(webhook.posts) == 1  # the English seed still alerted

    listing = run_cli("--config", str(config), "feeds", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    errors = {row["url"].rsplit("/", 1)[-1]: row for row in json.loads(listing.stdout)}
    assert "HTTP 500" in errors["broken.xml"]["last_error"]
    assert "Timeout" in errors["slow.xml"]["last_error"]
    assert "not a feed" in errors["page.xml"]["last_error"]
    assert errors["feed.rss"]["last_error"] is None
    assert all(
        errors[n]["consecutive_failures"] == 1 for n in ("broken.xml", "slow.xml", "page.xml")
    )
    text = run_cli("--config", str(config), "feeds", "list").stdout
    assert "HTTP 500" in text and "1 failures" in text


def test_hits_command_lists_and_exports(
    tmp_path: Path, site: Site, smtp: SMTP, webhook: Webhook, run_cli: Any
) -> None:
    site.serve_fixture_site()
    config = _config(tmp_path, site, smtp, webhook)
    assert run_cli("--config", str(config), "run", "--once").returncode == 0
    as_json = json.loads(run_cli("--config", str(config), "hits", "--json").stdout)
    assert {h["title"] for h in as_json} == SEED_TITLES
    assert all(h["terms"] and h["sentence"] for h in as_json)
    as_csv = run_cli("--config", str(config), "hits", "--csv").stdout.splitlines()
    assert as_csv[0].startswith("id,matched_at,rule,terms,sentence,title,link")
    assert len(as_csv) >= 3
    none = run_cli("--config", str(config), "hits", "--rule", "no-such-rule").stdout
    assert none.strip() == "no hits"


def test_secrets_stay_out_of_database_and_logs(
    tmp_path: Path, site: Site, smtp: SMTP, webhook: Webhook, run_cli: Any
) -> None:
    """FAULTS C20: a failing channel whose URL holds a token."""
    site.serve_fixture_site()
    webhook.status = 500
    token = "SECRETTOKEN0123456789"
    db = tmp_path / "state" / "monitor.db"
    config = write_config(
        tmp_path / "monitor.yaml",
        database=db,
        feeds=[{"url": site.url("feed.rss"), "alert_on_first_poll": True}],
        channels={"team": "${TEAM_URL}"},
    )
    url = webhook.url(f"hook/{token}")
    result = run_cli("-vv", "--config", str(config), "run", "--once", env={"TEAM_URL": url})
    assert result.returncode == 0, result.stderr
    assert "1 to retry" in result.stdout
    assert token not in result.stdout + result.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes() or path.name == "monitor.yaml", path
