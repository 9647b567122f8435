"""The FAULTS.md cases that had no test elsewhere, each named by its id.

Real parts: a loopback feed server, the real Monitor and SQLite file, the real
scheduler wiring; the clock is the Monitor's injected ``now``. Cases:
A15, B4, B6, B7, B22, B23, B24, B26, C23, D6, D9, D18, D19, D20, D21.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.config import FeedConfig, FetchConfig, Secret, Settings
from monitor.daemon import Daemon
from monitor.exceptions import StoreError
from monitor.extract import ExtractedPage, ProcessExtractor
from monitor.parse import parse_feed
from monitor.pipeline import EDIT_INTERVAL, Monitor, make_monitor
from monitor.rules import rules_from_text
from monitor.scheduler import (
    add_interval_job,
    make_scheduler,
    next_poll_after,
    watchdog_healthy,
)
from monitor.store import from_iso, open_store
from monitor.types import FeedResult, FetchedResponse, PollSummary
from tests import servers

RULES = rules_from_text(
    """
rules:
  - name: walkout
    all:
      - [employees, workers]
      - [walkout, walked out]
"""
)
RSS = {"content-type": "application/rss+xml"}
T0 = datetime(2025, 3, 30, 0, 0, tzinfo=UTC)


def item(guid: str, title: str, *, day: int | None = None, summary: str = "Text.") -> str:
    date = ""
    if day is not None:
        when = T0 - timedelta(days=day)
        date = f"<pubDate>{when.strftime('%a, %d %b %Y %H:%M:%S GMT')}</pubDate>"
    return (
        f"<item><guid>{guid}</guid><title>{title}</title>"
        f"<description>{summary}</description>{date}</item>"
    )


def rss(*items: str, title: str = "T") -> str:
    return f'<rss version="2.0"><channel><title>{title}</title>{"".join(items)}</channel></rss>'


class Clock:
    """An injectable wall clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t


class NoNotifier:
    async def send(self, channel: str, message: Any) -> None:  # pragma: no cover - unused
        raise AssertionError("these tests never deliver")


def serve_in_turn(server: HTTPServer, path: str, responses: list[Response]) -> list[int]:
    """Answer each request with the next response (the last repeats); returns a hit counter."""
    count = [0]

    def handler(_request: Request) -> Response:
        count[0] += 1
        return responses[min(count[0], len(responses)) - 1]

    server.expect_request(path).respond_with_handler(handler)
    return count


def monitor(tmp_path: Path, url: str, *, clock: Clock | None = None, **kw: Any) -> Monitor:
    settings = Settings(
        path=None,
        database=tmp_path / "m.db",
        rules=(),
        feeds=(FeedConfig(url=url, name="T", alert_on_first_poll=kw.pop("first", False)),),
        channels={"c": Secret("console://")},
        fetch=FetchConfig(allow_networks=("127.0.0.1/32",), total_timeout=3, read_timeout=2),
    )
    m = make_monitor(settings, _rules=RULES, _notifier=NoNotifier(), _now=clock, **kw)  # type: ignore[arg-type]
    m.sync_feeds()
    return m


def polls(
    m: Monitor, n: int, clock: Clock | None = None, step: timedelta = timedelta(hours=1)
) -> list[FeedResult]:
    async def go() -> list[FeedResult]:
        out = []
        try:
            for _ in range(n):
                (result,) = await m.poll_all()
                out.append(result)
                if clock is not None:
                    clock.t += step
        finally:
            await m.aclose()
        return out

    return asyncio.run(go())


def alerts(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT entries.guid, alerts.status FROM alerts JOIN hits ON hits.id = alerts.hit_id "
            "JOIN entries ON entries.id = hits.entry_id ORDER BY entries.guid"
        ).fetchall()


# -- A: network -------------------------------------------------------------


def test_a15_404_once_then_200_recovers_and_resets_the_counter(
    tmp_path: Path, server: HTTPServer
) -> None:
    serve_in_turn(
        server,
        "/feed",
        [
            Response("gone?", status=404),
            Response(rss(item("1", "Hello")), content_type="application/rss+xml"),
        ],
    )
    m = monitor(tmp_path, server.url_for("/feed"))
    feed_rows: list[tuple[Any, ...]] = []

    async def go() -> list[FeedResult]:
        out = []
        try:
            for _ in range(2):
                (r,) = await m.poll_all()
                out.append(r)
                feed_rows.append(
                    m.store.db.execute(
                        "SELECT consecutive_failures, state, last_error IS NOT NULL FROM feeds"
                    ).fetchone()
                )
        finally:
            await m.aclose()
        return out

    first, second = asyncio.run(go())
    assert not first.ok and "404" in str(first.value)
    assert feed_rows[0] == (1, "ok", 1)  # transient: not 'gone', not disabled
    assert second.ok
    assert feed_rows[1] == (0, "ok", 0)


# -- B: content -------------------------------------------------------------


def test_b4_latin1_declared_utf8_bytes_are_read_as_utf8() -> None:
    """B4: the documented mojibake risk does not happen here: feedparser tries
    UTF-8 before the declared latin-1, and these bytes are valid UTF-8."""
    body = '<?xml version="1.0" encoding="iso-8859-1"?>' + rss(item("1", "café naïve"))
    feed = parse_feed("https://x.example/f", body.encode("utf-8"), RSS)
    assert feed.entries[0].title == "café naïve"


def test_b6_undeclared_cp1252_smart_quotes_parse_with_a_warning_at_most() -> None:
    body = rss(item("1", "\u201cWalkout\u201d \u2013 staff\u2019s letter")).encode("cp1252")
    feed = parse_feed("https://x.example/f", body, {"content-type": "application/xml"})
    assert feed.entries[0].title == "\u201cWalkout\u201d \u2013 staff\u2019s letter"


def test_b7_one_invalid_byte_does_not_misdecode_the_whole_feed() -> None:
    body = rss(item("1", "Grüße \xff kaputt"), item("2", "Straße")).encode("utf-8")
    body = body.replace("\xff".encode(), b"\xff")
    feed = parse_feed(
        "https://x.example/f", body, {"content-type": "application/rss+xml; charset=utf-8"}
    )
    titles = [e.title for e in feed.entries]
    assert len(titles) == 2
    # Either decoded as UTF-8 with the bad byte replaced, or read as cp1252 with a
    # warning; never an exception. The second entry's umlaut must survive either way
    # when UTF-8 wins.
    assert titles[1] in ("Straße", "StraÃŸe")
    assert "Gr" in titles[0] and "kaputt" in titles[0]


def entry_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT guid, title, summary, text, updated_at FROM entries ORDER BY guid"
        ).fetchall()


def test_b22_b23_edited_or_ever_changing_entries_never_alert_twice(
    tmp_path: Path, server: HTTPServer
) -> None:
    """B22: same guid, edited text: the stored entry is updated, no second alert.
    B23: a timestamp in the body on every poll: the entry is taken in at most once
    per EDIT_INTERVAL (one update, not one per poll), and never alerts again."""
    versions = [
        rss(item("1", "Employees stage a walkout", summary=f"Updated at poll {i}."))
        for i in range(6)
    ]
    serve_in_turn(
        server, "/feed", [Response(v, content_type="application/rss+xml") for v in versions]
    )
    clock = Clock()
    m = monitor(tmp_path, server.url_for("/feed"), first=True, clock=clock)
    # Polls an hour apart, then one after the edit interval has passed.
    steps = [timedelta(hours=1)] * 3 + [EDIT_INTERVAL, timedelta(hours=1)]

    async def go() -> list[FeedResult]:
        out = []
        try:
            for step in [*steps, timedelta(0)]:
                (result,) = await m.poll_all()
                out.append(result)
                clock.t += step
        finally:
            await m.aclose()
        return out

    results = asyncio.run(go())
    assert [isinstance(r.value, PollSummary) and r.value.entries_new for r in results] == [
        1,
        0,
        0,
        0,
        0,
        0,
    ]
    assert alerts(tmp_path / "m.db") == [("1", "pending")]
    # Poll 1 took the edit in; polls 2 and 3 fell within the interval (B23); poll 4
    # came after it and took the next version in; poll 5 again within it.
    ((guid, title, summary, text, updated_at),) = entry_rows(tmp_path / "m.db")
    assert (guid, title) == ("1", "Employees stage a walkout")
    # No link, so the stored text is the summary, and follows it.
    assert summary == text == "Updated at poll 4."
    assert from_iso(updated_at) == T0 + 3 * timedelta(hours=1) + EDIT_INTERVAL


def test_b22_rematch_is_off_by_default_and_on_never_alerts_twice(
    tmp_path: Path, server: HTTPServer
) -> None:
    """B22: an edit that only now matches a rule makes no hit unless
    daemon.rematch_edits is on; with it on, the edit is matched again, the new
    (entry, rule) alerts once, and a further edit that still matches does not."""
    dull = rss(item("1", "Quarterly report", summary="Numbers."))
    walkout = rss(item("1", "Employees stage a walkout", summary="Staff left at noon."))
    again = rss(item("1", "Employees stage a walkout", summary="Staff left at noon; more."))
    for rematch in (False, True):
        path = f"/feed{int(rematch)}"
        serve_in_turn(
            server,
            path,
            [Response(v, content_type="application/rss+xml") for v in (dull, walkout, again)],
        )
        tmp = tmp_path / str(rematch)
        tmp.mkdir()
        clock = Clock()
        m = monitor(tmp, server.url_for(path), first=True, clock=clock)
        m.settings = replace(m.settings, daemon=replace(m.settings.daemon, rematch_edits=rematch))
        polls(m, 3, clock, step=EDIT_INTERVAL + timedelta(minutes=1))
        ((_, title, summary, _, updated_at),) = entry_rows(tmp / "m.db")
        assert (title, summary) == ("Employees stage a walkout", "Staff left at noon; more.")
        assert updated_at is not None
        assert alerts(tmp / "m.db") == ([("1", "pending")] if rematch else [])


def test_b22_unchanged_block_is_not_parsed_again_and_a_changed_one_is(
    tmp_path: Path, server: HTTPServer
) -> None:
    """B22 and issue #8: of a feed whose second entry was edited, only that entry is
    parsed again (the unchanged one is cut out before feedparser sees it)."""
    first = rss(item("a", "First"), item("b", "Second"))
    second = rss(item("a", "First"), item("b", "Second, corrected"))
    serve_in_turn(
        server, "/feed", [Response(v, content_type="application/rss+xml") for v in (first, second)]
    )
    clock = Clock()
    m = monitor(tmp_path, server.url_for("/feed"), clock=clock)
    results = polls(m, 2, clock)
    summary = results[1].value
    assert isinstance(summary, PollSummary)
    assert (summary.entries_new, summary.entries_seen) == (0, 2)
    rows = entry_rows(tmp_path / "m.db")
    assert [(g, t, u is not None) for g, t, _, _, u in rows] == [
        ("a", "First", False),
        ("b", "Second, corrected", True),
    ]


def test_b24_resurfacing_old_items_do_not_alert(tmp_path: Path, server: HTTPServer) -> None:
    """B24 (hookshot #768): ten items, then the top three deleted and three old ones
    shown: the old ones are stored, their hits kept, no alert queued. A genuinely
    new item in the same poll still alerts."""
    walkout = "Employees stage a walkout"
    first = [item(f"b{i}", f"{walkout} {i}", day=i) for i in range(10)]
    old = [item(f"old{i}", f"{walkout} old {i}", day=30 + i) for i in range(3)]
    fresh = item("new", f"{walkout} today", day=0)
    serve_in_turn(
        server,
        "/feed",
        [
            Response(rss(*first), content_type="application/rss+xml"),
            Response(rss(fresh, *first[3:], *old), content_type="application/rss+xml"),
        ],
    )
    m = monitor(tmp_path, server.url_for("/feed"), clock=Clock())
    results = polls(m, 2)
    assert all(r.ok for r in results)
    rows = alerts(tmp_path / "m.db")
    assert [s for g, s in rows if g.startswith("b")] == ["skipped"] * 10  # the baseline
    assert [s for g, s in rows if g.startswith("old")] == ["skipped"] * 3
    assert [s for g, s in rows if g == "new"] == ["pending"]


def _hang_on_slow(content: bytes, url: str, content_type: str) -> ExtractedPage:
    """Runs in the extraction worker: the page at /slow never finishes."""
    if url.endswith("/slow"):
        time.sleep(3600)
    return ExtractedPage(
        title=None, text="Employees walked out. " * 10, author=None, date=None, language=None
    )


def test_b26_pathological_page_costs_its_time_limit_and_the_entry_is_kept(
    tmp_path: Path, server: HTTPServer
) -> None:
    base = server.url_for("").rstrip("/")
    feed = rss(
        f"<item><guid>1</guid><title>Employees stage a walkout</title><link>{base}/slow</link>"
        "<description>Staff walked out.</description></item>"
    )
    server.expect_request("/feed").respond_with_data(feed, content_type="application/rss+xml")
    server.expect_request("/slow").respond_with_data(
        "<html><body>" + "<div>" * 10_000 + "</body></html>", content_type="text/html"
    )
    extractor = ProcessExtractor(timeout=0.5, _extract=_hang_on_slow)
    m = monitor(tmp_path, server.url_for("/feed"), first=True, _extractor=extractor)
    started = time.monotonic()
    (result,) = polls(m, 1)
    assert time.monotonic() - started < 0.5 + 15  # generous: start-up on a busy machine
    assert result.ok and extractor.killed == 1
    with sqlite3.connect(tmp_path / "m.db") as conn:
        row = conn.execute("SELECT text_source, extract_error, text FROM entries").fetchone()
    assert row == ("summary", "ExtractError: extraction timed out after 0.5s", "Staff walked out.")
    assert alerts(tmp_path / "m.db") == [("1", "pending")]  # matched on title and summary


# -- C: hostile names -------------------------------------------------------


def test_c23_hostile_feed_and_entry_names_never_become_paths(
    tmp_path: Path, server: HTTPServer
) -> None:
    """C23: nothing is written outside the database's files, whatever the names say."""
    evil = "../../../../tmp/monitor-c23-evil"
    server.expect_request("/feed").respond_with_data(
        rss(item("../../x", f"{evil} walkout"), title=evil), content_type="application/rss+xml"
    )
    before = set(tmp_path.parent.iterdir())
    m = monitor(tmp_path, server.url_for("/feed"))
    (result,) = polls(m, 1)
    assert result.ok
    assert set(tmp_path.parent.iterdir()) == before
    assert {p.name for p in tmp_path.iterdir()} <= {"m.db", "m.db-wal", "m.db-shm"}
    assert not Path("/tmp/monitor-c23-evil").exists()


# -- D: storage and clock ---------------------------------------------------


def test_d6_long_reader_does_not_block_the_writer_but_does_block_checkpoints(
    tmp_path: Path, server: HTTPServer
) -> None:
    server.expect_request("/feed").respond_with_data(
        rss(item("1", "Employees stage a walkout")), content_type="application/rss+xml"
    )
    db = tmp_path / "m.db"
    m = monitor(tmp_path, server.url_for("/feed"), first=True)
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM entries").fetchone() == (0,)
        started = time.monotonic()
        (result,) = polls(m, 1)
        assert result.ok
        assert time.monotonic() - started < 10  # not busy_timeout-bound on the reader
        # The reader keeps its snapshot; a checkpoint cannot pass it.
        assert reader.execute("SELECT count(*) FROM entries").fetchone() == (0,)
        writer = sqlite3.connect(db, isolation_level=None, timeout=0)
        busy, _log, _done = writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 1
        reader.execute("COMMIT")
        assert writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        writer.close()
    finally:
        reader.close()
    assert open_store(db).db.execute("SELECT count(*) FROM entries").fetchone() == (1,)


def test_d9_a_database_reset_to_delete_mode_is_put_back_in_wal(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    open_store(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    assert not Path(f"{db}-wal").exists()
    store = open_store(db)
    assert store.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def test_d9_refuses_when_wal_cannot_be_set(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    open_store(db).close()
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode = DELETE")
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM feeds").fetchone()  # holds a shared lock
        with pytest.raises(StoreError, match="WAL"):
            open_store(db)
    finally:
        other.close()


def test_d18_d19_next_poll_and_backoff_follow_the_clock_given() -> None:
    """Pure: a jump in either direction just moves "now"; nothing accumulates."""
    for now in (T0, T0 + timedelta(days=1), T0 - timedelta(hours=1)):
        assert next_poll_after(now, 900) == now + timedelta(seconds=900)
        assert next_poll_after(now, 900, failures=3) == now + timedelta(seconds=7200)


def test_d19_watchdog_health_is_on_the_monotonic_clock() -> None:
    # A poll started at monotonic 100 is fine at 110 whatever the wall clock did.
    assert watchdog_healthy(now=110.0, running_since=[100.0], job_deadline=60)
    assert not watchdog_healthy(now=200.0, running_since=[100.0], job_deadline=60)


class CountingFetcher:
    """Serves one fixed feed, counting requests; ``hang`` makes every get block."""

    def __init__(self, body: str, *, hang: bool = False) -> None:
        self.body = body.encode()
        self.hang = hang
        self.gets = 0

    async def get(
        self, url: str, headers: Any = None, max_bytes: int | None = None
    ) -> FetchedResponse:
        self.gets += 1
        if self.hang:
            await asyncio.Event().wait()
        return FetchedResponse(url, url, 200, {"content-type": "application/rss+xml"}, self.body)

    async def aclose(self) -> None:
        pass


class QuickMonitor(Monitor):
    feed_deadline = 0.3  # type: ignore[assignment]  # the real one is at least 30 s


def daemon_for(
    tmp_path: Path, fetcher: CountingFetcher, clock: Clock, cls: type[Monitor] = Monitor
) -> Daemon:
    m = monitor(tmp_path, "http://feeds.example/f", clock=clock, _fetcher=fetcher)
    if cls is not Monitor:
        m.__class__ = cls
    return Daemon(m, environ={})


async def settle(d: Daemon, seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)
    while d._polls:
        await asyncio.sleep(0.02)


def test_d18_forward_jump_gives_one_poll_not_a_catch_up_storm(tmp_path: Path) -> None:
    clock = Clock()
    fetcher = CountingFetcher(rss(item("1", "Hello")))
    d = daemon_for(tmp_path, fetcher, clock)

    async def go() -> None:
        await d.tick()
        await settle(d)
        assert fetcher.gets == 1
        clock.t += timedelta(days=1)  # the wall clock jumps a day
        for _ in range(20):
            await d.tick()
        await settle(d)
        (feed,) = d.monitor.store.active_feeds()
        due = from_iso(feed.next_poll_at)
        assert due is not None and due > clock.t  # scheduled from the new "now"
        await d.monitor.aclose()

    asyncio.run(go())
    assert fetcher.gets == 2


def shift_scheduler_clock(monkeypatch: pytest.MonkeyPatch) -> list[timedelta]:
    """Make APScheduler's wall clock (scheduler and executor) run ``offset[0]``
    away from the real one; the caller moves it by setting ``offset[0]``."""
    import apscheduler.executors.base as executors
    import apscheduler.schedulers.base as base

    offset = [timedelta(0)]
    real = base.datetime

    class Shifted(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.now(tz) + offset[0]

    monkeypatch.setattr(base, "datetime", Shifted)
    # The executor checks misfires against its own clock: it moves too.
    monkeypatch.setattr(executors, "datetime", Shifted)
    return offset


def test_d18_scheduler_coalesces_missed_runs_after_a_jump(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real APScheduler wiring: a 1 s job, then the wall clock jumps a day.
    86,400 runs were missed; coalescing makes them one."""
    offset = shift_scheduler_clock(monkeypatch)
    runs: list[float] = []

    async def job() -> None:
        runs.append(time.monotonic())

    async def go() -> None:
        scheduler = make_scheduler()
        add_interval_job(scheduler, "tick", job, 1.0, start=datetime.now(UTC), jitter=0)
        scheduler.start()
        await asyncio.sleep(1.5)
        before = len(runs)
        offset[0] = timedelta(days=1)
        await asyncio.sleep(2.5)
        scheduler.shutdown(wait=False)
        assert before >= 1
        # At most a few runs in the 2.5 s after the jump, never a storm.
        assert 1 <= len(runs) - before <= 4

    asyncio.run(go())


def test_d19_backward_jump_delays_polls_by_at_most_the_jump(tmp_path: Path) -> None:
    """D19: after the wall clock goes back an hour, the feed is polled again once the
    clock reaches its stored due time: delayed by the jump, never stopped."""
    clock = Clock()
    fetcher = CountingFetcher(rss(item("1", "Hello")))
    d = daemon_for(tmp_path, fetcher, clock)

    async def go() -> None:
        await d.tick()
        await settle(d)
        clock.t -= timedelta(hours=1)
        await d.tick()
        await settle(d)
        assert fetcher.gets == 1  # not due on the jumped-back clock
        (feed,) = d.monitor.store.active_feeds()
        due = from_iso(feed.next_poll_at)
        assert due is not None and due - clock.t <= timedelta(hours=1, seconds=feed.interval_s)
        clock.t = due
        await d.tick()
        await settle(d)
        await d.monitor.aclose()

    asyncio.run(go())
    assert fetcher.gets == 2


def test_d20_utc_interval_trigger_across_the_berlin_dst_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """D20: at 2025-03-30 01:59 Europe/Berlin the local clock skips an hour; the
    jobs run in UTC, so the fire times stay one interval apart."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        scheduler = make_scheduler()
        start = datetime(2025, 3, 30, 0, 58, tzinfo=UTC)  # 01:58 CET

        async def job() -> None:
            pass

        add_interval_job(scheduler, "tick", job, 60.0, start=start, jitter=0)
        trigger = scheduler.get_job("tick").trigger
        fire, times = start, [start]
        for _ in range(4):
            fire = trigger.get_next_fire_time(fire, fire)
            times.append(fire)
        gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
        assert gaps == {60.0}
        assert next_poll_after(start, 3600) == start + timedelta(hours=1)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_d21_a_hung_fetch_is_freed_by_the_deadline_and_polled_again(tmp_path: Path) -> None:
    """D21: the fetch never returns; the poll's hard deadline frees the job, the
    failure is recorded, and later ticks poll again (no stuck "max instances")."""
    clock = Clock()
    fetcher = CountingFetcher("", hang=True)
    d = daemon_for(tmp_path, fetcher, clock, QuickMonitor)

    async def go() -> None:
        for _ in range(3):
            await d.tick()
            await settle(d, 0.5)
            clock.t += timedelta(days=1)  # past any backoff
        (feed,) = d.monitor.store.active_feeds()
        assert feed.consecutive_failures == fetcher.gets
        await d.monitor.aclose()

    asyncio.run(go())
    assert fetcher.gets >= 2


def test_d21_silent_server_with_the_real_fetcher(tmp_path: Path) -> None:
    """D21 on the wire: a raw server that never answers; three ticks, at least two
    connections, each poll ended by the fetcher's total deadline."""
    with servers.RawServer(servers.silent) as raw:
        settings = Settings(
            path=None,
            database=tmp_path / "m.db",
            rules=(),
            feeds=(FeedConfig(url=f"http://127.0.0.1:{raw.port}/feed", name="T"),),
            channels={"c": Secret("console://")},
            fetch=FetchConfig(
                allow_networks=("127.0.0.1/32",),
                total_timeout=0.4,
                read_timeout=0.3,
                connect_timeout=0.3,
            ),
        )
        clock = Clock()
        m = make_monitor(settings, _rules=RULES, _notifier=NoNotifier(), _now=clock)  # type: ignore[arg-type]
        m.sync_feeds()
        d = Daemon(m, environ={})

        async def go() -> None:
            for _ in range(3):
                await d.tick()
                await settle(d, 0.2)
                clock.t += timedelta(days=1)
            failures = m.store.db.execute("SELECT consecutive_failures FROM feeds").fetchone()[0]
            assert failures >= 2
            await m.aclose()

        asyncio.run(go())
        assert raw.connections >= 2
