"""When feeds are polled: a pure ``next_poll_after`` and the APScheduler wiring.

APScheduler 3's defaults skip runs silently (``misfire_grace_time=1``) and a
job that never returns blocks its feed for good under ``max_instances=1``
(FAULTS D21). So every job coalesces, has a generous grace time, and runs the
poll under a hard deadline (``Monitor.feed_deadline``); listeners log missed
and failed jobs.
"""

from __future__ import annotations

import itertools
import logging
import random
import re
import statistics
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

#: Failing feeds back off up to this many seconds, and are never disabled.
MAX_BACKOFF_S = 6 * 3600.0
#: A server's Retry-After is honoured up to this many seconds.
MAX_RETRY_AFTER_S = 24 * 3600.0


def next_poll_after(
    now: datetime,
    interval: float,
    *,
    failures: int = 0,
    retry_after: float | None = None,
) -> datetime:
    """When a feed is next due.

    Pure. After ``failures`` consecutive failures the interval doubles each
    time up to :data:`MAX_BACKOFF_S` (never "disabled", FAULTS A8); a
    Retry-After pushes the next poll out at least that far (A6, A7).
    """
    delay = interval
    if failures > 0:
        delay = min(max(MAX_BACKOFF_S, interval), interval * 2 ** min(failures, 20))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return now + timedelta(seconds=delay)


def learn_interval(
    times: Sequence[datetime],
    base: float,
    *,
    min_interval: float,
    max_interval: float,
) -> tuple[float, float | None]:
    """The poll interval learnt from when a feed's entries appeared, and its rhythm.

    Pure. ``times`` are the latest entries' dates; the rhythm is the median gap
    between them. A feed is polled about twice per rhythm, within
    ``[min_interval, max_interval]``; a configured ``base`` below the floor lowers
    the floor (the operator asked for it). Fewer than four dates teach nothing:
    the configured interval stands.
    """
    ordered = sorted(times)
    gaps = [
        (b - a).total_seconds()
        for a, b in itertools.pairwise(ordered)
        if (b - a).total_seconds() > 0
    ]
    if len(gaps) < 3:
        return base, None
    rhythm = statistics.median(gaps)
    floor = min(min_interval, base)
    return max(floor, min(max_interval, rhythm / 2)), rhythm


_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def cache_hint(
    headers: Mapping[str, str], now: datetime, *, ttl_minutes: float | None = None
) -> float | None:
    """Seconds the server says the feed stays fresh: Cache-Control, Expires or RSS ``<ttl>``.

    Pure. The longest hint wins (each is the publisher saying "not before");
    ``no-cache``/``no-store`` and past dates give no hint. The caller caps it.
    """
    hints: list[float] = []
    control = headers.get("cache-control", "")
    if "no-cache" not in control.lower() and "no-store" not in control.lower():
        m = _MAX_AGE.search(control)
        if m:
            hints.append(float(m.group(1)))
        elif headers.get("expires"):
            try:
                expires = parsedate_to_datetime(headers["expires"])
            except (TypeError, ValueError, IndexError):
                expires = None
            if expires is not None:
                if expires.tzinfo is None:
                    expires = expires.replace(tzinfo=UTC)
                hints.append((expires - now).total_seconds())
    if ttl_minutes is not None:
        hints.append(ttl_minutes * 60)
    good = [h for h in hints if h > 0]
    return max(good) if good else None


def next_success_poll(
    now: datetime, interval: float, *, hint: float | None, max_interval: float
) -> datetime:
    """When a feed that just polled fine is due: its interval, stretched by a cache hint.

    Pure. A hint never pushes a poll beyond ``max(max_interval, interval)``.
    """
    delay = interval
    if hint is not None:
        delay = max(delay, min(hint, max(max_interval, interval)))
    return now + timedelta(seconds=delay)


def watchdog_healthy(
    *,
    now: float,
    running_since: Sequence[float],
    job_deadline: float,
) -> bool:
    """May the heartbeat tell systemd we are alive? Pure; times are monotonic seconds.

    The heartbeat job running at all proves the event loop and the scheduler
    work; a job running past its hard deadline (plus slack) proves the deadline
    did not fire, so the loop is wedged and systemd should restart us (D22).
    """
    return all(now - started <= job_deadline + 30 for started in running_since)


def jitter_for(interval: float) -> float:
    """Seconds of jitter for a feed's schedule: 10% of the interval, at most a minute."""
    return min(60.0, interval * 0.1)


def first_run_delay(next_poll_at: datetime | None, now: datetime) -> float:
    """Seconds until a feed's first poll after start: now if due, else when it is due."""
    if next_poll_at is None or next_poll_at <= now:
        return random.uniform(0, 5)
    return (next_poll_at - now).total_seconds()


def make_scheduler() -> AsyncIOScheduler:
    """An AsyncIOScheduler with safe job defaults and listeners that log trouble."""
    scheduler = AsyncIOScheduler(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
    )

    def listener(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("job %s missed its run at %s", event.job_id, event.scheduled_run_time)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("job %s is still running; this run was skipped", event.job_id)
        elif event.code == EVENT_JOB_ERROR:
            log.error("job %s failed: %r", event.job_id, event.exception)

    scheduler.add_listener(listener, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES)
    return scheduler


def add_interval_job(
    scheduler: AsyncIOScheduler,
    job_id: str,
    func: Callable[[], Awaitable[Any]],
    interval: float,
    *,
    start: datetime,
    jitter: float | None = None,
) -> None:
    """Run ``func`` every ``interval`` seconds from ``start`` (UTC), replacing any job of that id."""
    scheduler.add_job(
        func,
        IntervalTrigger(
            seconds=interval,
            start_date=start,
            jitter=jitter_for(interval) if jitter is None else jitter,
            timezone="UTC",
        ),
        id=job_id,
        replace_existing=True,
        next_run_time=start,
    )


#: A wall clock that drifts from the monotonic one by more than this counts as a jump.
CLOCK_JUMP_S = 30.0


def clock_shift(before: tuple[datetime, float], after: tuple[datetime, float]) -> float:
    """Seconds the wall clock moved on its own between two (wall, monotonic) readings.

    Negative when it went back (D19): NTP stepping a fast clock, a VM restored
    from a snapshot. Pure.

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> clock_shift((t, 100.0), (t - timedelta(hours=1) + timedelta(seconds=1), 101.0))
    -3600.0
    """
    return (after[0] - before[0]).total_seconds() - (after[1] - before[1])


def rewind_jobs(scheduler: AsyncIOScheduler, now: datetime) -> int:
    """Make every job scheduled beyond ``now`` run now; returns how many moved.

    APScheduler 3 keeps next run times in wall-clock time, so after the clock
    goes back an hour every job would sleep an hour (D19). Running each once
    now restarts its interval from the new clock.
    """
    moved = 0
    for job in scheduler.get_jobs():
        if job.next_run_time is not None and job.next_run_time > now:
            job.modify(next_run_time=now)
            moved += 1
    return moved
