"""The long-running daemon: scheduler, signals, reload, feed health, systemd.

Life of the process::

    migrations (open_store), rules, config feeds synced, expired leases released
    scheduler up: tick (polls due feeds), dispatch (outbox), heartbeat
    READY=1
    loop:   SIGHUP or a changed rules/config file -> RELOADING=1, reload, READY=1
            SIGTERM/SIGINT -> STOPPING=1, running polls get daemon.stop_grace
            seconds, then are cancelled; exit 0

Signal handlers only set an event. A poll writes everything in one
transaction at its end, and that write has no ``await`` inside, so cancelling
a poll can never leave half of it written (FAULTS D1, D4); an alert being
sent keeps its lease and goes back to pending on the next start (D3).

``WATCHDOG=1`` is sent only from real progress: after a completed poll, and
from the heartbeat job, which runs on the scheduler (proving the event loop
and the scheduler work) and refuses to ping while any poll has outlived its
hard deadline (D22). There is no free-running timer: a wedged loop stops the
pings, and systemd restarts us.

Reload keeps the last good state: a configuration or rules file with errors
is refused whole, every error is logged, and the operator hears once per
distinct set of errors (FAULTS C16, D23). Feeds, rules, channels and the
daemon's intervals take effect on reload; the database path and the fetch
settings on restart.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor import sdnotify
from monitor.alert import AppriseNotifier, install_redaction
from monitor.config import check_rule_channels, load_settings
from monitor.exceptions import MonitorError, StoreError
from monitor.health import (
    HealthChange,
    describe_change,
    feed_state,
    health_changes,
    wal_change,
)
from monitor.metrics import Metrics
from monitor.operator import OperatorNotices
from monitor.pipeline import Monitor
from monitor.rules import load_rules
from monitor.scheduler import (
    CLOCK_JUMP_S,
    add_interval_job,
    clock_shift,
    make_scheduler,
    rewind_jobs,
    watchdog_healthy,
)
from monitor.store import iso
from monitor.types import FeedResult, PollSummary

log = logging.getLogger(__name__)

#: Seconds between looks for due feeds; a feed's own schedule lives in next_poll_at.
TICK_S = 1.0
DISPATCH_INTERVAL_S = 30.0
#: Heartbeat period without a systemd watchdog.
HEARTBEAT_S = 30.0
#: Seconds between feed-health checks (stale, silent, gone).
HEALTH_EVERY_S = 60.0


def sd_notify(message: str) -> bool:
    """Kept for callers of the first version; see :func:`monitor.sdnotify.notify`."""
    return sdnotify.notify(message)


async def check_feed_health(monitor: Monitor, notices: OperatorNotices) -> list[HealthChange]:
    """Tell the operator about every feed whose health changed since they were last told.

    One notice per change: a feed failing for days sends one ``stale`` notice,
    and the next one only when it recovers or turns ``gone``.
    """
    now = monitor.now()
    changes = health_changes(
        monitor.store.feed_health(), now, stale_after=monitor.settings.daemon.stale_after
    )
    for change in changes:
        title, body = describe_change(change)
        await notices.notify("feed-health", f"feed:{change.feed_id}", title, body)
        # Recorded even when the notice failed: it was tried, and a retry every
        # minute is exactly the loop operators dread.
        monitor.store.set_feed_health(change.feed_id, notified_health=change.after)
    return changes


def _mtimes(paths: list[Path]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in paths:
        candidates = (
            [c for c in p.rglob("*") if c.suffix in (".yaml", ".yml")] if p.is_dir() else [p]
        )
        for c in candidates:
            try:
                out[str(c)] = c.stat().st_mtime
            except OSError:
                out[str(c)] = -1.0
    return out


class Daemon:
    """Runs a :class:`Monitor` on a schedule until asked to stop."""

    def __init__(
        self,
        monitor: Monitor,
        *,
        config_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.monitor = monitor
        self.config_path = config_path or monitor.settings.path
        self.environ = os.environ if environ is None else environ
        self.stop = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.metrics = Metrics()
        self.notices = OperatorNotices(
            monitor.store,
            monitor.notifier,
            monitor.settings.alerts.operator_channel,
            monitor.now,
        )
        #: Running poll tasks, with the monotonic time each started.
        self._polls: dict[int, tuple[asyncio.Task[Any], float]] = {}
        self._dispatch_lock = asyncio.Lock()
        self._dispatch_task: asyncio.Task[None] | None = None
        self._watchdog = sdnotify.watchdog_interval(self.environ)
        self._last_health = -HEALTH_EVERY_S
        self._told_reload_error: str | None = None
        self._watched = _mtimes(self._watch_paths())
        #: The last (wall, monotonic) clock reading, to notice the wall clock jumping (D19).
        self._clock_mark: tuple[datetime, float] | None = None
        self._scheduler: Any = None
        #: Whether the operator has been told that the write-ahead log is too big (D6).
        self._wal_told = False

    # -- jobs ---------------------------------------------------------------

    async def tick(self) -> None:
        """Start a poll for every due feed that is not already being polled."""
        if self.stop.is_set():
            return
        m = self.monitor
        for feed in m.store.due_feeds(m.now()):
            if feed.id in self._polls:
                continue
            task = asyncio.create_task(self._poll(feed.id), name=f"poll:{feed.id}")
            self._polls[feed.id] = (task, time.monotonic())
            task.add_done_callback(functools.partial(self._poll_done, feed.id))

    def _poll_done(self, feed_id: int, _task: asyncio.Task[Any]) -> None:
        self._polls.pop(feed_id, None)

    async def _poll(self, feed_id: int) -> None:
        m = self.monitor
        try:
            feed = m.store.feed(feed_id)
        except StoreError:
            return
        started = time.monotonic()
        try:
            # poll_feed has its own hard deadline; this outer one only guards
            # against a bug that swallows the inner cancellation (D21).
            result = await asyncio.wait_for(m.poll_feed(feed), timeout=m.feed_deadline + 15)
        except TimeoutError:
            log.error("poll of feed %s overran every deadline", feed.url)
            return
        except Exception:
            log.exception("poll of feed %s failed unexpectedly", feed.url)
            return
        self._progress(result, time.monotonic() - started)
        if isinstance(result.value, PollSummary) and result.value.alerts_queued:
            self._start_dispatch()

    def _progress(self, result: FeedResult, seconds: float) -> None:
        """A completed poll: real progress, so the watchdog hears from us."""
        self.metrics.observe_poll(result, seconds)
        try:
            self.monitor.store.set_daemon_status(last_cycle_at=iso(self.monitor.now()))
        except StoreError:
            log.exception("could not record the daemon's progress")
        if self._watchdog is not None:
            sdnotify.notify("WATCHDOG=1", self.environ)
        self._status()

    def _start_dispatch(self) -> None:
        if self._dispatch_task is None or self._dispatch_task.done():
            self._dispatch_task = asyncio.create_task(self.dispatch())

    async def dispatch(self) -> None:
        async with self._dispatch_lock:
            try:
                await self.monitor.dispatch()
            except Exception:
                log.exception("alert delivery failed; it is retried on the next round")

    async def heartbeat(self) -> None:
        """Runs on the scheduler: liveness, status, metrics, feed health, file changes."""
        now = time.monotonic()
        m = self.monitor
        if self._watchdog is not None and watchdog_healthy(
            now=now,
            running_since=[since for _, since in self._polls.values()],
            job_deadline=m.feed_deadline,
        ):
            sdnotify.notify("WATCHDOG=1", self.environ)
        try:
            m.store.set_daemon_status(heartbeat_at=iso(m.now()))
        except StoreError:
            log.exception("could not record the heartbeat")
        if now - self._last_health >= HEALTH_EVERY_S:
            self._last_health = now
            try:
                await check_feed_health(m, self.notices)
                self._refresh_metrics()
                await self.check_wal()
            except StoreError:
                log.exception("feed health check failed; it runs again shortly")
        if _mtimes(self._watch_paths()) != self._watched:
            log.info("a rules or configuration file changed; reloading")
            self.reload_requested.set()

    async def check_wal(self) -> None:
        """Watch the write-ahead log (D6): a reader holding a snapshot open (a long
        Datasette query, a backup) keeps checkpoints from finishing, and the log
        grows. Writers are unaffected, so this is a notice, not an error."""
        m = self.monitor
        size = m.store.wal_bytes()
        self.metrics.wal.set(size)
        limit = int(m.settings.daemon.wal_warn_mb * 1024 * 1024)
        change = wal_change(size, limit, told=self._wal_told)
        if change is None:
            return
        self._wal_told = change
        mb = size / 1024 / 1024
        if change:
            busy, frames, copied = m.store.checkpoint()
            # A passive checkpoint stops at the oldest reader's snapshot.
            held = " A reader is holding the database open." if busy or copied < frames else ""
            await self.notices.notify(
                "wal-large",
                "database",
                f"monitor: the database's write-ahead log is {mb:.0f} MB",
                f"{m.store.path}-wal has grown to {mb:.0f} MB (daemon.wal_warn_mb is "
                f"{m.settings.daemon.wal_warn_mb:g}); {copied} of {frames} pages could be "
                f"written back.{held} Look for a long-running query or backup on this file; "
                "new polls are stored as usual.",
            )
        else:
            log.info("the write-ahead log is back to %.0f MB", mb)

    def check_clock(self, wall: datetime, mono: float) -> float:
        """Compare the wall clock with the monotonic one; act on a backward jump (D19).

        After the wall clock goes back, everything scheduled in wall-clock time
        (APScheduler's jobs, each feed's next poll, alert retries) would wait the
        jump out. They are moved back by as much. Returns the shift in seconds.
        """
        mark, self._clock_mark = self._clock_mark, (wall, mono)
        if mark is None:
            return 0.0
        shift = clock_shift(mark, (wall, mono))
        if shift < -CLOCK_JUMP_S:
            log.warning("the wall clock went back %.0f s; rescheduling polls and retries", -shift)
            try:
                self.monitor.store.pull_schedule_back(-shift, wall)
            except StoreError:
                log.exception("could not move the schedule back; polls resume when due")
            if self._scheduler is not None:
                rewind_jobs(self._scheduler, wall)
        elif shift > CLOCK_JUMP_S:
            # Forward jumps need nothing: due work runs once, coalesced (D18).
            log.info("the wall clock jumped ahead %.0f s", shift)
        return shift

    async def _watch_clock(self) -> None:
        """Reads both clocks every tick; asyncio's sleep runs on the monotonic clock,
        so this keeps going when the scheduler's wall-clock timers would not."""
        while not self.stop.is_set():
            self.check_clock(self.monitor.now(), time.monotonic())
            await asyncio.sleep(TICK_S)

    def _refresh_metrics(self) -> None:
        m = self.monitor
        feeds = m.store.feed_health()
        now = m.now()
        states = {
            int(f["id"]): feed_state(f, now, stale_after=m.settings.daemon.stale_after)
            for f in feeds
        }
        self.metrics.refresh(m.store.alert_counts(), feeds, states, now)

    def _status(self) -> None:
        store = self.monitor.store
        try:
            counts = store.alert_counts()
            text = (
                f"STATUS={store.active_feed_count()} feeds, {store.hit_count()} hits, "
                f"{counts.get('pending', 0)} alerts pending, {counts.get('dead', 0)} dead"
            )
        except StoreError:
            return
        sdnotify.notify(text, self.environ)

    # -- reload -------------------------------------------------------------

    def _watch_paths(self) -> list[Path]:
        paths = [Path(p) for p in self.monitor.settings.rules]
        if self.config_path is not None:
            paths.append(Path(self.config_path))
        return paths

    async def reload(self) -> bool:
        """Re-read the configuration and rules; keep the last good ones on any error."""
        m = self.monitor
        sdnotify.notify(sdnotify.reloading_message(), self.environ)
        try:
            if self.config_path is None:
                settings = m.settings
            else:
                settings = load_settings(self.config_path, environ=self.environ)
            rules = load_rules(settings.rules)
            check_rule_channels(settings, [(r.source, c) for r in rules.rules for c in r.channels])
        except MonitorError as e:
            lines = str(e).splitlines() or [type(e).__name__]
            for line in lines:
                log.error(
                    "reload refused, still running on the last good rules and feeds: %s",
                    line,
                    extra={"event": "reload_refused"},
                )
            text = "\n".join(lines)
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest != self._told_reload_error:
                self._told_reload_error = digest
                await self.notices.notify(
                    "rules-invalid",
                    "reload",
                    "[monitor] a configuration or rules edit was refused",
                    "monitor keeps running on the last good rules and feeds.\n\n" + text,
                )
            ok = False
            error: str | None = text
        else:
            install_redaction(settings.channels)
            if isinstance(m.notifier, AppriseNotifier):
                m.notifier = AppriseNotifier(
                    settings.channels, timeout=settings.alerts.send_timeout
                )
            m.settings = settings
            m.rules = rules
            self.notices.notifier = m.notifier
            self.notices.channel = settings.alerts.operator_channel
            m.sync_feeds()
            self._told_reload_error = None
            log.info(
                "reloaded: %d feeds, %d rules",
                len(settings.feeds),
                len(rules.rules),
                extra={"event": "reloaded"},
            )
            ok = True
            error = None
        self._watched = _mtimes(self._watch_paths())
        try:
            m.store.set_daemon_status(last_reload_at=iso(m.now()), reload_error=error)
        except StoreError:
            log.exception("could not record the reload")
        sdnotify.notify("READY=1", self.environ)
        self._status()
        return ok

    # -- the process --------------------------------------------------------

    async def run(self) -> int:
        """Schedule everything, serve until SIGTERM/SIGINT; return the exit code."""
        m = self.monitor
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        m.sync_feeds()
        m.store.set_daemon_status(
            pid=os.getpid(), started_at=iso(m.now()), stopped_at=None, reload_error=None
        )
        if m.settings.daemon.metrics_port:
            self.metrics.serve(m.settings.daemon.metrics_port)
        scheduler = make_scheduler()
        now = m.now()
        add_interval_job(scheduler, "tick", self.tick, TICK_S, start=now, jitter=0)
        add_interval_job(
            scheduler, "dispatch", self.dispatch, DISPATCH_INTERVAL_S, start=now, jitter=0
        )
        beat = HEARTBEAT_S if self._watchdog is None else min(HEARTBEAT_S, self._watchdog / 4)
        add_interval_job(
            scheduler,
            "heartbeat",
            self.heartbeat,
            beat,
            start=now + timedelta(seconds=min(beat, 1.0)),
            jitter=0,
        )
        scheduler.start()
        self._scheduler = scheduler
        clock_watch = asyncio.create_task(self._watch_clock(), name="clock")
        log.info(
            "monitor started: %d feeds, %d rules",
            len(m.store.active_feeds()),
            len(m.rules.rules),
            extra={"event": "started", "pid": os.getpid()},
        )
        sdnotify.notify("READY=1", self.environ)
        self._status()
        while not self.stop.is_set():
            stop = asyncio.ensure_future(self.stop.wait())
            hup = asyncio.ensure_future(self.reload_requested.wait())
            await asyncio.wait({stop, hup}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            hup.cancel()
            if self.reload_requested.is_set() and not self.stop.is_set():
                self.reload_requested.clear()
                await self.reload()
        clock_watch.cancel()
        return await self._shutdown(scheduler)

    async def _shutdown(self, scheduler: Any) -> int:
        m = self.monitor
        sdnotify.notify("STOPPING=1", self.environ)
        grace = m.settings.daemon.stop_grace
        running = [task for task, _ in self._polls.values()]
        if self._dispatch_task is not None and not self._dispatch_task.done():
            running.append(self._dispatch_task)
        log.info(
            "stopping: waiting up to %gs for %d running jobs",
            grace,
            len(running),
            extra={"event": "stopping"},
        )
        scheduler.shutdown(wait=False)
        self._scheduler = None
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                # Safe: a poll's one write has no await inside, so it is all or nothing.
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        try:
            m.store.set_daemon_status(stopped_at=iso(m.now()))
        except StoreError:
            log.exception("could not record the stop")
        self.metrics.close()
        await m.aclose()
        log.info("stopped", extra={"event": "stopped"})
        return 0


__all__ = ["Daemon", "check_feed_health", "sd_notify"]
