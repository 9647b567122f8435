"""The long-running daemon: scheduler, signals, systemd notification.

Signal handlers only set an event. On SIGTERM or SIGINT the scheduler stops
taking new work, running polls get :data:`STOP_GRACE_S` seconds to finish,
and the process exits 0 with the outbox consistent (a row being sent keeps
its lease and goes back to pending on the next start).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from monitor.pipeline import Monitor
from monitor.scheduler import add_interval_job, first_run_delay, make_scheduler
from monitor.store import from_iso
from monitor.types import PollSummary

log = logging.getLogger(__name__)

STOP_GRACE_S = 20.0
DISPATCH_INTERVAL_S = 30.0


def sd_notify(message: str) -> bool:
    """Send a datagram to systemd's ``NOTIFY_SOCKET``; a no-op (False) outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as e:
        log.warning("sd_notify failed: %s", e)
        return False
    return True


class Daemon:
    """Runs a :class:`Monitor` on a schedule until asked to stop."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.stop = asyncio.Event()
        self._running: set[asyncio.Task[Any]] = set()
        self._dispatch_lock = asyncio.Lock()

    def _track(self, make: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            if self.stop.is_set():
                return
            task = asyncio.ensure_future(make())
            self._running.add(task)
            try:
                await task
            finally:
                self._running.discard(task)

        return job

    async def poll(self, feed_id: int) -> None:
        """Poll one feed if it is due (a failing feed's backoff can push it out)."""
        m = self.monitor
        try:
            feed = m.store.feed(feed_id)
        except Exception:
            log.exception("feed %d vanished from the database", feed_id)
            return
        due = from_iso(feed.next_poll_at)
        if due is not None and due > m.now() + timedelta(seconds=1):
            log.debug("feed %s backing off until %s", feed.url, feed.next_poll_at)
            return
        result = await m.poll_feed(feed)
        if isinstance(result.value, PollSummary) and result.value.alerts_queued:
            await self.dispatch()
        self._status()
        sd_notify("WATCHDOG=1")

    async def dispatch(self) -> None:
        async with self._dispatch_lock:
            try:
                await self.monitor.dispatch()
            except Exception:
                log.exception("alert delivery failed; it is retried on the next round")

    def _status(self) -> None:
        counts = self.monitor.store.alert_counts()
        sd_notify(
            f"STATUS={len(self.monitor.store.active_feeds())} feeds, "
            f"{counts.get('pending', 0)} alerts pending, {counts.get('dead', 0)} dead"
        )

    async def run(self) -> int:
        """Schedule every active feed and the outbox; return the exit code."""
        m = self.monitor
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        m.sync_feeds()
        released = m.store.release_expired_leases(m.now())
        if released:
            log.warning("%d alerts were being sent when the last run stopped; resending", released)
        scheduler = make_scheduler()
        now = m.now()
        feeds = m.store.active_feeds()
        for feed in feeds:
            start = now + timedelta(seconds=first_run_delay(from_iso(feed.next_poll_at), now))
            add_interval_job(
                scheduler,
                f"feed:{feed.id}",
                self._track(functools.partial(self.poll, feed.id)),
                feed.interval_s,
                start=start,
            )
        add_interval_job(
            scheduler,
            "dispatch",
            self._track(self.dispatch),
            DISPATCH_INTERVAL_S,
            start=now,
            jitter=0,
        )
        scheduler.start()
        log.info("monitor started: %d feeds, %d rules", len(feeds), len(m.rules.rules))
        sd_notify("READY=1")
        self._status()
        await self.stop.wait()
        sd_notify("STOPPING=1")
        log.info(
            "stopping: waiting up to %gs for %d running jobs", STOP_GRACE_S, len(self._running)
        )
        scheduler.shutdown(wait=False)
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        await m.aclose()
        log.info("stopped")
        return 0
