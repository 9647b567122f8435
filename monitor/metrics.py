"""An optional Prometheus endpoint on 127.0.0.1 (``daemon.metrics_port``).

Counters are bumped where things happen (each poll, each cycle); gauges that
need the database (alerts by status, feed lag) are refreshed by the daemon's
heartbeat on the event loop, because the HTTP server runs in its own thread
and the SQLite connection belongs to the loop's thread. Without a port,
:class:`Metrics` still counts but nothing listens.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from monitor.types import FeedResult, PollSummary

log = logging.getLogger(__name__)


class Metrics:
    """The daemon's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("monitor_polls", "Feed polls, by outcome.", ["outcome"], registry=r)
        self.failures = Counter(
            "monitor_poll_failures", "Failed feed polls, by error type.", ["type"], registry=r
        )
        self.entries = Counter("monitor_entries", "New entries stored.", registry=r)
        self.hits = Counter("monitor_hits", "New hits stored.", registry=r)
        self.alerts = Gauge("monitor_alerts", "Outbox rows, by status.", ["status"], registry=r)
        self.feed_lag = Gauge(
            "monitor_feed_lag_seconds",
            "Seconds since each active feed's last successful poll.",
            ["feed"],
            registry=r,
        )
        self.feeds = Gauge("monitor_feeds", "Active feeds, by health state.", ["state"], registry=r)
        self.cycle = Histogram(
            "monitor_poll_duration_seconds",
            "Seconds one feed poll took.",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.heartbeat = Gauge(
            "monitor_heartbeat_timestamp_seconds", "When the scheduler last ran.", registry=r
        )
        self.wal = Gauge(
            "monitor_wal_bytes",
            "Size of the database's write-ahead log; it grows while a reader holds it (D6).",
            registry=r,
        )
        self._server: Any = None

    def serve(self, port: int) -> None:
        """Listen on 127.0.0.1:``port`` only; the numbers are nobody else's business."""
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self._server = server
        log.info("metrics on http://127.0.0.1:%d/metrics", port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def observe_poll(self, result: FeedResult, seconds: float) -> None:
        self.cycle.observe(seconds)
        value = result.value
        if isinstance(value, PollSummary):
            self.polls.labels("not_modified" if value.not_modified else "ok").inc()
            self.entries.inc(value.entries_new)
            self.hits.inc(value.hits_new)
        else:
            self.polls.labels("error").inc()
            self.failures.labels(type(value).__name__).inc()

    def refresh(
        self,
        alert_counts: Mapping[str, int],
        feeds: Sequence[Mapping[str, Any]],
        states: Mapping[int, str],
        now: datetime,
    ) -> None:
        for status in ("pending", "sending", "sent", "skipped", "dead"):
            self.alerts.labels(status).set(alert_counts.get(status, 0))
        self.feed_lag.clear()
        counts: dict[str, int] = {}
        for f in feeds:
            if not f.get("active"):
                continue
            since = f.get("last_success_at") or f.get("created_at")
            if since:
                lag = (now - datetime.fromisoformat(str(since))).total_seconds()
                self.feed_lag.labels(str(f["id"])).set(max(0.0, lag))
            state = states.get(int(f["id"]), "ok")
            counts[state] = counts.get(state, 0) + 1
        for state in ("ok", "failing", "stale", "silent", "gone"):
            self.feeds.labels(state).set(counts.get(state, 0))
        self.heartbeat.set(now.timestamp())


__all__ = ["Metrics"]
