"""Feed health: backoff, stale-feed notices, 410 Gone, 301 moves, adaptive polling.

Pure decisions are tested without fixtures; the rest runs the real Monitor
against loopback servers with an injected clock, so "a simulated day" of
HTTP 500s takes a second (FAULTS A8, A11, A13, A14).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.config import load_settings
from monitor.daemon import check_feed_health
from monitor.health import feed_state, health_changes, notice_level
from monitor.operator import OperatorNotices
from monitor.pipeline import REDIRECT_POLLS, Monitor, make_monitor
from monitor.scheduler import (
    MAX_BACKOFF_S,
    cache_hint,
    learn_interval,
    next_success_poll,
    watchdog_healthy,
)
from monitor.store import from_iso
from tests.conftest import Webhook, write_config

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RSS = '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'


# -- pure decisions -----------------------------------------------------------


def _row(**kw: Any) -> dict[str, Any]:
    base = {
        "id": 1,
        "url": "https://example.org/feed",
        "name": "Example",
        "active": 1,
        "state": "ok",
        "consecutive_failures": 0,
        "last_success_at": None,
        "created_at": (NOW - timedelta(days=3)).isoformat(),
        "rhythm_s": None,
        "last_new_entry_at": None,
        "notified_health": "ok",
        "last_error": None,
    }
    return {**base, **kw}


def test_failing_becomes_stale_only_after_stale_after() -> None:
    hour_ago = (NOW - timedelta(hours=1)).isoformat()
    two_days = (NOW - timedelta(days=2)).isoformat()
    assert (
        feed_state(_row(consecutive_failures=3, last_success_at=hour_ago), NOW, stale_after=86400)
        == "failing"
    )
    assert (
        feed_state(_row(consecutive_failures=3, last_success_at=two_days), NOW, stale_after=86400)
        == "stale"
    )
    # Never polled fine: measured from when the feed was added.
    assert feed_state(_row(consecutive_failures=1), NOW, stale_after=86400) == "stale"
    assert feed_state(_row(state="gone", consecutive_failures=1), NOW, stale_after=86400) == "gone"


def test_silent_means_far_beyond_its_own_rhythm() -> None:
    hourly = {"rhythm_s": 3600.0, "last_success_at": NOW.isoformat()}
    quiet_2d = (NOW - timedelta(days=2)).isoformat()
    quiet_5h = (NOW - timedelta(hours=5)).isoformat()
    assert (
        feed_state(_row(**hourly, last_new_entry_at=quiet_2d), NOW, stale_after=86400) == "silent"
    )
    assert feed_state(_row(**hourly, last_new_entry_at=quiet_5h), NOW, stale_after=86400) == "ok"
    weekly = {"rhythm_s": 7 * 86400.0, "last_success_at": NOW.isoformat()}
    assert feed_state(_row(**weekly, last_new_entry_at=quiet_2d), NOW, stale_after=86400) == "ok"


def test_a_notice_only_when_the_level_changes() -> None:
    stale = _row(consecutive_failures=9)
    assert [c.after for c in health_changes([stale], NOW, stale_after=86400)] == ["stale"]
    told = _row(consecutive_failures=9, notified_health="stale")
    assert health_changes([told], NOW, stale_after=86400) == []
    recovered = _row(last_success_at=NOW.isoformat(), notified_health="stale")
    assert [c.after for c in health_changes([recovered], NOW, stale_after=86400)] == ["ok"]
    assert notice_level("failing") == "ok"
    assert health_changes([_row(active=0, consecutive_failures=9)], NOW, stale_after=86400) == []


def test_learn_interval_from_the_feeds_rhythm() -> None:
    hourly = [NOW - timedelta(hours=i) for i in range(10)]
    interval, rhythm = learn_interval(hourly, 900, min_interval=300, max_interval=21600)
    assert rhythm == 3600 and interval == 1800
    # Bounded both ways; too few dates teach nothing.
    minutely = [NOW - timedelta(minutes=i) for i in range(10)]
    assert learn_interval(minutely, 900, min_interval=300, max_interval=21600)[0] == 300
    monthly = [NOW - timedelta(days=30 * i) for i in range(10)]
    assert learn_interval(monthly, 900, min_interval=300, max_interval=21600)[0] == 21600
    assert learn_interval(hourly[:3], 900, min_interval=300, max_interval=21600) == (900, None)
    # An operator's explicit 30 s interval lowers the floor.
    assert learn_interval(minutely, 30, min_interval=300, max_interval=21600)[0] == 30


def test_cache_hints_stretch_the_interval_up_to_the_maximum() -> None:
    assert cache_hint({"cache-control": "public, max-age=3600"}, NOW) == 3600
    assert cache_hint({"cache-control": "no-cache, max-age=3600"}, NOW) is None
    expires = (NOW + timedelta(hours=2)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert cache_hint({"expires": expires}, NOW) == 7200
    assert cache_hint({}, NOW, ttl_minutes=60) == 3600
    assert cache_hint({"expires": "garbage"}, NOW) is None
    due = next_success_poll(NOW, 900, hint=10 * 86400, max_interval=21600)
    assert due == NOW + timedelta(seconds=21600)
    assert next_success_poll(NOW, 900, hint=60, max_interval=21600) == NOW + timedelta(seconds=900)


def test_watchdog_refuses_while_a_job_outlives_its_deadline() -> None:
    """FAULTS D22: the heartbeat says nothing while a poll is stuck past its deadline."""
    assert watchdog_healthy(now=1000.0, running_since=[], job_deadline=100)
    assert watchdog_healthy(now=1000.0, running_since=[950.0], job_deadline=100)
    assert not watchdog_healthy(now=1000.0, running_since=[950.0, 800.0], job_deadline=100)


# -- the real Monitor, a loopback server and a simulated clock ----------------


class Clock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t


def _setup(
    tmp_path: Path, server: HTTPServer, webhook: Webhook, clock: Clock, path: str = "/feed"
) -> tuple[Path, Monitor, OperatorNotices]:
    config = write_config(
        tmp_path / "monitor.yaml",
        database=tmp_path / "m.db",
        feeds=[{"url": server.url_for(path), "name": "Flaky"}],
        channels={"hook": webhook.url("hook/alerts"), "ops": webhook.url("hook/ops")},
        extra="  operator_channel: ops\n",
    )
    settings = load_settings(config)
    m = make_monitor(settings, _now=clock)
    m.sync_feeds()
    notices = OperatorNotices(m.store, m.notifier, settings.alerts.operator_channel, clock)
    return config, m, notices


def _run(coro_factory: Callable[[], Any]) -> Any:
    return asyncio.run(coro_factory())


def test_a_day_of_500s_sends_one_stale_notice_and_status_shows_it(
    tmp_path: Path, server: HTTPServer, webhook: Webhook, run_cli: Any
) -> None:
    """FAULTS A8: backoff with a cap, never disabled, one operator alert."""
    server.expect_request("/feed").respond_with_data("boom", status=500)
    # Start 30 h ago so that `monitor status`, on the real clock, agrees it is stale.
    clock = Clock(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=30))
    start = clock.t
    config, m, notices = _setup(tmp_path, server, webhook, clock)
    delays: list[float] = []

    async def simulate() -> None:
        try:
            while clock.t < start + timedelta(hours=28):
                (feed,) = m.store.active_feeds()
                await m.poll_feed(feed)
                await check_feed_health(m, notices)
                (feed,) = m.store.active_feeds()
                due = from_iso(feed.next_poll_at)
                assert due is not None
                delays.append((due - clock.t).total_seconds())
                clock.t = due
        finally:
            await m.aclose()

    _run(simulate)
    ops = [p for p in webhook.posts if p["path"] == "/hook/ops"]
    assert len(ops) == 1, ops
    assert "is failing" in ops[0]["json"]["title"] and "Flaky" in ops[0]["json"]["title"]
    assert "HTTP 500" in ops[0]["json"]["message"]
    # Doubling from 15 min, capped, never disabled: it was still being polled at the end.
    assert delays[:4] == [1800.0, 3600.0, 7200.0, 14400.0]
    assert max(delays) == MAX_BACKOFF_S and delays[-1] == MAX_BACKOFF_S
    assert len(server.log) == len(delays)

    result = run_cli("--config", str(config), "status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (feed,) = report["feeds"]
    assert feed["health"] == "stale" and feed["notified_health"] == "stale"
    assert feed["consecutive_failures"] == len(delays)
    assert feed["last_error_type"] == "HTTPStatusError"
    assert [(n["kind"], n["status"], n["channel"]) for n in report["operator_notices"]] == [
        ("feed-health", "sent", "ops")
    ]
    table = run_cli("--config", str(config), "status")
    assert table.returncode == 0 and "stale" in table.stdout and "HTTP 500" in table.stdout


def test_gone_pauses_the_feed_with_one_notice(
    tmp_path: Path, server: HTTPServer, webhook: Webhook
) -> None:
    """FAULTS A14: 410 stops polling, one notice; the URL stays on record."""
    server.expect_request("/feed").respond_with_data("gone", status=410)
    clock = Clock(NOW)
    _, m, notices = _setup(tmp_path, server, webhook, clock)

    async def go() -> None:
        try:
            for _ in range(3):
                (feed,) = m.store.active_feeds()
                await m.poll_feed(feed)
                await check_feed_health(m, notices)
                clock.t += timedelta(days=1)
        finally:
            await m.aclose()

    _run(go)
    assert len(server.log) == 1
    ops = [p for p in webhook.posts if p["path"] == "/hook/ops"]
    assert len(ops) == 1 and "gone" in ops[0]["json"]["title"]
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT state, notified_health FROM feeds").fetchall() == [
            ("gone", "gone")
        ]


def test_a_permanent_redirect_is_stored_only_after_several_polls(
    tmp_path: Path, server: HTTPServer, webhook: Webhook
) -> None:
    """FAULTS A11: follow at once, persist after REDIRECT_POLLS polls; the old URL is kept."""
    server.expect_request("/old").respond_with_response(
        Response(status=301, headers={"Location": server.url_for("/new")})
    )
    server.expect_request("/new").respond_with_data(
        RSS.format(items=""), content_type="application/rss+xml"
    )
    clock = Clock(NOW)
    _, m, _ = _setup(tmp_path, server, webhook, clock, path="/old")
    urls: list[str] = []

    async def go() -> None:
        try:
            for _ in range(REDIRECT_POLLS + 1):
                (feed,) = m.store.active_feeds()
                result = await m.poll_feed(feed)
                assert result.ok, result.value
                (feed,) = m.store.active_feeds()
                urls.append(feed.url)
            # The configuration still names the old URL: still one feed, the moved one.
            m.sync_feeds()
            assert [f.url for f in m.store.active_feeds()] == [server.url_for("/new")]
        finally:
            await m.aclose()

    _run(go)
    old, new = server.url_for("/old"), server.url_for("/new")
    assert urls == [old] * (REDIRECT_POLLS - 1) + [new, new]
    with sqlite3.connect(tmp_path / "m.db") as conn:
        assert conn.execute("SELECT previous_url FROM feeds").fetchall() == [(old,)]


def test_a_redirect_to_a_blocked_address_is_never_stored(
    tmp_path: Path, server: HTTPServer, webhook: Webhook
) -> None:
    """FAULTS A13: a 301 to an address the fetcher refuses fails the poll; the URL stays."""
    server.expect_request("/feed").respond_with_response(
        Response(status=301, headers={"Location": "http://127.0.0.2:9/feed"})
    )
    clock = Clock(NOW)
    config = write_config(
        tmp_path / "monitor.yaml",
        database=tmp_path / "m.db",
        feeds=[{"url": server.url_for("/feed")}],
        channels={"hook": webhook.url()},
    )
    text = config.read_text().replace("[127.0.0.0/8]", "[127.0.0.1/32]")
    config.write_text(text)
    m = make_monitor(load_settings(config), _now=clock)
    m.sync_feeds()

    async def go() -> None:
        try:
            for _ in range(REDIRECT_POLLS + 1):
                (feed,) = m.store.active_feeds()
                result = await m.poll_feed(feed)
                assert not result.ok
                clock.t += timedelta(days=1)
            (feed,) = m.store.active_feeds()
            assert feed.url == server.url_for("/feed") and feed.redirect_to is None
        finally:
            await m.aclose()

    _run(go)


def test_success_learns_the_rhythm_and_honours_cache_control(
    tmp_path: Path, server: HTTPServer, webhook: Webhook
) -> None:
    items = "".join(
        f"<item><title>t{i}</title><guid>g{i}</guid>"
        f"<pubDate>{(NOW - timedelta(hours=2 * i)).strftime('%a, %d %b %Y %H:%M:%S +0000')}"
        "</pubDate></item>"
        for i in range(8)
    )

    def handler(_r: Request) -> Response:
        return Response(
            RSS.format(items=items),
            content_type="application/rss+xml",
            headers={"Cache-Control": "max-age=10800"},
        )

    server.expect_request("/feed").respond_with_handler(handler)
    clock = Clock(NOW)
    _, m, _ = _setup(tmp_path, server, webhook, clock)

    async def go() -> None:
        try:
            (feed,) = m.store.active_feeds()
            assert (await m.poll_feed(feed)).ok
        finally:
            await m.aclose()

    _run(go)
    with sqlite3.connect(tmp_path / "m.db") as conn:
        rhythm, learnt, due = conn.execute(
            "SELECT rhythm_s, learnt_interval_s, next_poll_at FROM feeds"
        ).fetchone()
    assert rhythm == 7200 and learnt == 3600
    # The server said three hours; that beats the learnt hour.
    assert datetime.fromisoformat(due) == NOW + timedelta(hours=3)
