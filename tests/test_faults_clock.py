"""D19 (the wall clock goes back) and D6 (a long reader grows the WAL), with the
real daemon object, the real APScheduler and a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import DaemonConfig
from monitor.daemon import Daemon
from monitor.scheduler import CLOCK_JUMP_S, add_interval_job, make_scheduler, rewind_jobs
from monitor.store import from_iso, iso
from tests.test_faults import (
    Clock,
    CountingFetcher,
    daemon_for,
    item,
    rss,
    settle,
    shift_scheduler_clock,
)


def test_d19_a_backward_jump_is_noticed_and_the_feed_polled_within_its_interval(
    tmp_path: Path,
) -> None:
    """Without the monotonic check a feed waits out the whole jump (an hour here);
    with it, its next poll moves back by the jump."""
    clock = Clock()
    fetcher = CountingFetcher(rss(item("1", "Hello")))
    d = daemon_for(tmp_path, fetcher, clock)

    async def go() -> None:
        assert d.check_clock(clock.t, 100.0) == 0.0  # the first reading is the mark
        await d.tick()
        await settle(d)
        assert fetcher.gets == 1
        (feed,) = d.monitor.store.active_feeds()
        due_before = from_iso(feed.next_poll_at)
        assert due_before is not None
        clock.t -= timedelta(hours=1)  # NTP steps the clock back an hour
        shift = d.check_clock(clock.t, 101.0)
        assert shift == pytest.approx(-3601.0)
        (feed,) = d.monitor.store.active_feeds()
        due = from_iso(feed.next_poll_at)
        assert due == due_before - timedelta(seconds=3601)
        assert due - clock.t <= timedelta(seconds=feed.interval_s)
        clock.t = due
        await d.tick()
        await settle(d)
        await d.monitor.aclose()

    asyncio.run(go())
    assert fetcher.gets == 2


def test_d19_small_drift_and_forward_jumps_leave_the_schedule_alone(tmp_path: Path) -> None:
    clock = Clock()
    d = daemon_for(tmp_path, CountingFetcher(rss(item("1", "Hello"))), clock)
    d.monitor.store.set_feed_health(1, next_poll_at=iso(clock.t + timedelta(hours=1)))
    d.check_clock(clock.t, 0.0)
    clock.t += timedelta(seconds=1 - CLOCK_JUMP_S / 2)  # NTP slewing a little
    d.check_clock(clock.t, 1.0)
    clock.t += timedelta(days=1)  # forward: D18 handles it by coalescing
    d.check_clock(clock.t, 2.0)
    (feed,) = d.monitor.store.active_feeds()
    assert feed.next_poll_at == iso(
        clock.t - timedelta(days=1) + timedelta(hours=1, seconds=CLOCK_JUMP_S / 2 - 1)
    )
    asyncio.run(d.monitor.aclose())


def test_d19_pull_schedule_back_moves_future_rows_only_and_never_before_now(
    tmp_path: Path,
) -> None:
    clock = Clock()
    d = daemon_for(tmp_path, CountingFetcher(""), clock)
    store = d.monitor.store
    now = clock.t
    store.set_feed_health(1, next_poll_at=iso(now + timedelta(minutes=10)))
    assert store.pull_schedule_back(3600, now) == 1
    (feed,) = store.active_feeds()
    assert feed.next_poll_at == iso(now)  # not an hour in the past
    assert store.pull_schedule_back(3600, now) == 0  # due rows stay as they are
    asyncio.run(d.monitor.aclose())


def test_d19_scheduler_jobs_stall_after_a_backward_jump_until_rewound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real APScheduler keeps run times in wall-clock time: after the clock
    goes back an hour its 1 s job sleeps an hour. ``rewind_jobs`` (what the daemon
    does on noticing the jump) makes it run again at once."""
    offset = shift_scheduler_clock(monkeypatch)
    runs: list[float] = []

    async def job() -> None:
        runs.append(time.monotonic())

    async def go() -> None:
        scheduler = make_scheduler()
        add_interval_job(scheduler, "tick", job, 0.5, start=datetime.now(UTC), jitter=0)
        scheduler.start()
        await asyncio.sleep(1.2)
        assert runs
        offset[0] = -timedelta(hours=1)
        await asyncio.sleep(1.0)  # let the pending timer fire under the new clock
        stalled = len(runs)
        await asyncio.sleep(1.5)
        assert len(runs) == stalled  # the failure mode: nothing runs
        assert rewind_jobs(scheduler, datetime.now(UTC) + offset[0]) == 1
        await asyncio.sleep(1.5)
        scheduler.shutdown(wait=False)
        assert len(runs) >= stalled + 2  # runs again, every 0.5 s of the new clock

    asyncio.run(go())


def wal_metric(d: Daemon) -> float:
    value = d.metrics.registry.get_sample_value("monitor_wal_bytes")
    assert value is not None
    return value


def test_d6_a_reader_holding_the_wal_open_tells_the_operator_once(tmp_path: Path) -> None:
    """D6: writers go on while a reader holds a snapshot, but the log cannot be
    checkpointed and grows; past ``daemon.wal_warn_mb`` the operator hears once,
    the metric shows the size, and shrinking below half re-arms the notice."""
    clock = Clock()
    d = daemon_for(tmp_path, CountingFetcher(""), clock)
    m = d.monitor
    m.settings = dataclasses.replace(
        m.settings,
        daemon=DaemonConfig(wal_warn_mb=64 / 1024),  # 64 KB
    )
    db = m.store.path

    def notices() -> list[tuple[str, str]]:
        return [(n["kind"], n["status"]) for n in m.store.operator_notices()]

    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM feeds").fetchone()
        for i in range(200):  # each write appends pages the checkpoint cannot pass
            m.store.set_daemon_status(reload_error="x" * 2000 + str(i))
        asyncio.run(d.check_wal())
        size = m.store.wal_bytes()
        assert size > 64 * 1024
        assert wal_metric(d) > 64 * 1024
        assert notices() == [("wal-large", "logged")]  # no operator channel: logged
        (notice,) = m.store.operator_notices()
        assert "write-ahead log" in notice["title"]
        (body,) = m.store.db.execute("SELECT body FROM operator_notices").fetchone()
        assert "A reader is holding the database open" in body
        asyncio.run(d.check_wal())
        assert len(notices()) == 1  # once, not every minute
    finally:
        reader.execute("COMMIT")
        reader.close()
    m.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    asyncio.run(d.check_wal())
    assert wal_metric(d) < 32 * 1024
    assert d._wal_told is False
    assert len(notices()) == 1
    asyncio.run(m.aclose())
