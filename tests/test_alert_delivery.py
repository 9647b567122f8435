"""Delivery through the outbox with real servers: SMTP (aiosmtpd), webhooks, a killed process.

FAULTS D12-D17, C14. The clock is the test's: nothing here sleeps to wait for a backoff.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.alert import AppriseNotifier, Message, dispatch
from monitor.config import AlertConfig, Secret
from monitor.operator import OperatorNotices
from monitor.store import Store
from tests.alert_helpers import Clock, entry, match, new_store, statuses, store_poll
from tests.conftest import ROOT, free_port
from tests.servers import RawServer, silent

CONFIG = AlertConfig(max_attempts=3, base_backoff=60, max_backoff=600, send_timeout=5)


class Mailbox:
    """An SMTP handler: refuses one address (550), greylists another once (451)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.greylisted: set[str] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("bad@"):
            return "550 5.1.1 no such user"
        if address.startswith("grey@") and address not in self.greylisted:
            self.greylisted.add(address)
            return "451 4.7.1 greylisted, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def to(self, address: str) -> list[bytes]:
        return [m for rcpts, m in self.messages if address in rcpts]


class Hook:
    """A webhook receiver whose answers the test scripts."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.posts: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.delay = 0.0

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.server.port}/{path}"

    def handler(self, request: Request) -> Response:
        self.posts.append(
            {
                "path": request.path,
                "json": request.get_json(silent=True),
                "key": request.headers.get("Idempotency-Key"),
            }
        )
        if self.delay:
            time.sleep(self.delay)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return Response("ok", status=status, headers=headers)


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    h = Hook(server)
    server.expect_request("/hook", method="POST").respond_with_handler(h.handler)
    server.expect_request("/ops", method="POST").respond_with_handler(h.handler)
    server.start()
    yield h
    server.clear()
    server.stop()


def _mailto(port: int, to: str) -> str:
    return f"mailto://127.0.0.1:{port}?from=monitor@example.org&to={to}&mode=insecure"


def _run(
    store: Store,
    notifier: AppriseNotifier,
    clock: Clock,
    config: AlertConfig = CONFIG,
    operator: str | None = "ops",
) -> Any:
    notices = OperatorNotices(store, notifier, operator, clock)
    return asyncio.run(dispatch(store, notifier, config, clock, notices=notices, rand=lambda: 0.5))


def test_d12_d13_smtp_down_up_550_and_451_each_recipient_once(tmp_path: Path, hook: Hook) -> None:
    """SMTP down, then up; one recipient refused (550), one greylisted (451).

    Each recipient has its own outbox row: the good ones get the alert exactly
    once, the refused one ends dead, and the operator hears about it once.
    """
    port = free_port()
    channels = {
        "inbox": Secret(_mailto(port, "good@example.org,bad@example.org,grey@example.org")),
        "ops": Secret(hook.url("ops")),
    }
    clock = Clock()
    store = new_store(tmp_path)
    store_poll(
        store,
        "Outlet",
        [entry("a1", "Salesforce staff sign letter against ICE contract", "text", [match()])],
        now=clock(),
        channels=channels,
        hit_channels=["inbox"],
    )
    assert [c for c, _ in statuses(store)] == ["inbox#1", "inbox#2", "inbox#3"]
    notifier = AppriseNotifier(channels, timeout=5)

    # 1. The server is down: every row waits, one attempt counted (D12).
    summary = _run(store, notifier, clock)
    assert (summary.sent, summary.dead) == (0, 0)
    rows = store.alerts()
    assert {r["status"] for r in rows} == {"pending"}
    assert all(r["attempts"] == 1 and "unreachable" in r["last_error"] for r in rows)

    # 2. Up again, after the backoff: good delivered, bad dead (550), grey greylisted (451).
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        clock.advance(3600)
        summary = _run(store, notifier, clock)
        assert (summary.sent, summary.dead) == (1, 1)
        clock.advance(3600)
        summary = _run(store, notifier, clock)
        assert (summary.sent, summary.dead) == (1, 0)
        clock.advance(3 * 3600)
        assert _run(store, notifier, clock).sent == 0
    finally:
        smtp.stop()
    assert dict(statuses(store)) == {"inbox#1": "sent", "inbox#2": "dead", "inbox#3": "sent"}
    assert len(mailbox.to("good@example.org")) == 1
    assert len(mailbox.to("grey@example.org")) == 1
    assert mailbox.to("bad@example.org") == []
    # Each message went to one recipient only, with a Message-ID from hit and channel.
    assert all(len(rcpts) == 1 for rcpts, _ in mailbox.messages)
    ids = {message_from_bytes(m)["Message-ID"] for _, m in mailbox.messages}
    assert ids == {"<monitor.hit-1.inbox-1@example.org>", "<monitor.hit-1.inbox-3@example.org>"}
    assert "550" in store.alerts(status="dead")[0]["last_error"]
    # The operator hears once about the dead row (and, separately, once that
    # inbox#3 has been failing for an hour: down, then greylisted).
    ops = [p["json"]["title"] for p in hook.posts if p["path"] == "/ops"]
    assert [t for t in ops if "dead" in t] == ["[monitor] alerts to channel inbox#2 are dead"]
    assert len(ops) == 2 and "inbox#3 has been failing" in ops[1]


def test_c14_crlf_title_one_recipient_and_clean_subject(tmp_path: Path) -> None:
    """FAULTS C14: a title with CR/LF and a Bcc line reaches one recipient, one subject line."""
    port = free_port()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        channels = {"inbox": Secret(_mailto(port, "me@example.org"))}
        clock = Clock()
        store = new_store(tmp_path)
        evil = "Staff protest\r\nBcc: victim@example.org\r\nX-Evil: 1"
        store_poll(
            store, "Outlet", [entry("c14", evil, "text", [match()])], now=clock(), channels=channels
        )
        assert _run(store, AppriseNotifier(channels), clock, operator=None).sent == 1
    finally:
        smtp.stop()
    ((rcpts, raw),) = mailbox.messages
    assert rcpts == ["me@example.org"]
    msg = message_from_bytes(raw)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert "Bcc: victim@example.org" in str(msg["Subject"]).replace("\n", "")


def test_d14_tarpit_smtp_does_not_hold_other_channels(tmp_path: Path, hook: Hook) -> None:
    """FAULTS D14: an SMTP server that never greets costs its rows one timeout, not the others."""
    with RawServer(silent) as tarpit:
        channels = {
            "inbox": Secret(_mailto(tarpit.port, "me@example.org")),
            "hook": Secret(hook.url()),
        }
        clock = Clock()
        store = new_store(tmp_path)
        store_poll(
            store, "Outlet", [entry("d14", "T", "t", [match()])], now=clock(), channels=channels
        )
        config = AlertConfig(max_attempts=3, base_backoff=60, send_timeout=1)
        started = time.monotonic()
        summary = _run(store, AppriseNotifier(channels, timeout=1), clock, config, operator=None)
        elapsed = time.monotonic() - started
    assert (summary.sent, summary.failed) == (1, 1)
    assert len(hook.posts) == 1
    assert elapsed < 15  # a generous bound: one 1 s deadline, not a hang
    assert dict(statuses(store)) == {"hook": "sent", "inbox": "pending"}


def test_d15_webhook_429_retry_after_is_honoured(tmp_path: Path, hook: Hook) -> None:
    """FAULTS D15: 429 with Retry-After: 30, then 200. No request before 30 s, then one delivery."""
    hook.answers = [(429, {"Retry-After": "30"})]
    channels = {"hook": Secret(hook.url())}
    clock = Clock()
    store = new_store(tmp_path)
    store_poll(
        store,
        "Outlet",
        [entry(f"d15-{i}", f"Story {i}", "t", [match()]) for i in range(3)],
        now=clock(),
        channels=channels,
    )
    config = AlertConfig(max_attempts=5, base_backoff=1, send_timeout=5)
    notifier = AppriseNotifier(channels)
    first = _run(store, notifier, clock, config, operator=None)
    # One request; the two other rows were not tried against a server that asked us to wait.
    assert len(hook.posts) == 1
    assert (first.sent, first.failed, first.deferred) == (0, 1, 2)
    for wait in (1, 10, 18.9):
        clock.advance(wait)  # up to 29.9 s after the 429
        _run(store, notifier, clock, config, operator=None)
        assert len(hook.posts) == 1, f"a request at {clock.t}, before Retry-After passed"
    clock.advance(0.1)
    done = _run(store, notifier, clock, config, operator=None)
    assert done.sent == 3
    assert len(hook.posts) == 4  # the refused one again, and the two that waited
    assert hook.posts[0]["key"] == hook.posts[1]["key"] == "hit-1.hook"
    assert hook.posts[0]["json"]["message"] == hook.posts[1]["json"]["message"]
    assert {s for _, s in statuses(store)} == {"sent"}


def test_d1_a_lease_left_by_a_dead_process_is_released_by_a_later_round(
    tmp_path: Path, hook: Hook
) -> None:
    """D1: a process killed mid-send leaves its row 'sending'. A daemon restarted
    within the lease must not strand it: once the lease runs out, the next round
    sends it (once), without another restart."""
    channels = {"hook": Secret(hook.url())}
    clock = Clock()
    store = new_store(tmp_path)
    store_poll(
        store, "Outlet", [entry("d1", "Story", "t", [match()])], now=clock(), channels=channels
    )
    lease = timedelta(seconds=CONFIG.send_timeout * 2 + 30)
    assert len(store.claim_due_alerts(clock(), lease)) == 1  # the dead process's claim
    notifier = AppriseNotifier(channels)
    early = _run(store, notifier, clock, CONFIG, operator=None)
    assert (early.sent, hook.posts) == (0, [])  # the lease still holds: not ours to send
    clock.advance(lease.total_seconds())
    late = _run(store, notifier, clock, CONFIG, operator=None)
    assert late.sent == 1 and len(hook.posts) == 1
    assert statuses(store) == [("hook", "sent")]


def test_d16_webhook_500s_dead_and_one_operator_notice_no_loop(tmp_path: Path, hook: Hook) -> None:
    """FAULTS D16: 500 every time: backoff, dead after max_attempts, ONE operator notice.

    The operator channel fails too: its failure is recorded, never noticed about.
    """
    hook.answers = [(500, {})] * 50
    channels = {"hook": Secret(hook.url()), "ops": Secret(hook.url("ops"))}
    clock = Clock()
    store = new_store(tmp_path)
    store_poll(
        store,
        "Outlet",
        [entry(f"d16-{i}", f"Story {i}", "t", [match()]) for i in range(2)],
        now=clock(),
        channels=channels,
        hit_channels=["hook"],
    )
    notifier = AppriseNotifier(channels)
    for _ in range(8):
        _run(store, notifier, clock)
        clock.advance(3600)
    assert {s for _, s in statuses(store)} == {"dead"}
    hook_posts = [p for p in hook.posts if p["path"] == "/hook"]
    ops_posts = [p for p in hook.posts if p["path"] == "/ops"]
    # Two rows, three attempts each at most: backoff, no tight loop.
    assert 3 <= len(hook_posts) <= 6
    # The operator channel (failing too) was tried once about the dead rows, and
    # once about the channel failing for an hour; no notice about those notices.
    kinds = sorted((n["kind"], n["status"]) for n in store.operator_notices())
    assert kinds == [("alert-dead", "failed"), ("channel-failing", "failed")]
    assert len(ops_posts) == 2


def test_d17_slow_200_is_an_unknown_outcome_and_retried(tmp_path: Path, hook: Hook) -> None:
    """FAULTS D17: a 200 after our deadline counts as failed; the retry may repeat (same key)."""
    hook.delay = 2.0
    channels = {"hook": Secret(hook.url())}
    clock = Clock()
    store = new_store(tmp_path)
    store_poll(
        store, "Outlet", [entry("d17", "Slow", "t", [match()])], now=clock(), channels=channels
    )
    config = AlertConfig(max_attempts=3, base_backoff=60, send_timeout=0.5)
    notifier = AppriseNotifier(channels, timeout=0.5)
    summary = _run(store, notifier, clock, config, operator=None)
    assert summary.failed == 1
    assert "outcome unknown" in store.alerts()[0]["last_error"]
    hook.delay = 0.0
    clock.advance(3600)
    assert _run(store, notifier, clock, config, operator=None).sent == 1
    assert len(hook.posts) == 2
    assert hook.posts[0]["key"] == hook.posts[1]["key"]


KILLER = """
import asyncio, os, signal, sys
from datetime import datetime
from monitor.alert import AppriseNotifier, dispatch
from monitor.config import AlertConfig, Secret
from monitor.store import open_store

class KillAfterSend:
    def __init__(self, inner):
        self.inner = inner
    async def send(self, channel, message):
        await self.inner.send(channel, message)
        os.kill(os.getpid(), signal.SIGKILL)  # after the send, before mark-sent

store = open_store(sys.argv[1])
notifier = KillAfterSend(AppriseNotifier({"inbox": Secret(sys.argv[2])}))
now = lambda: datetime.fromisoformat(sys.argv[3])
asyncio.run(dispatch(store, notifier, AlertConfig(send_timeout=5), now))
"""


def test_killed_between_send_and_mark_sent_repeats_once_with_the_same_token(
    tmp_path: Path,
) -> None:
    """The crash window: SIGKILL after the send. On restart: one repeat, same Message-ID."""
    port = free_port()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        url = _mailto(port, "me@example.org")
        channels = {"inbox": Secret(url)}
        clock = Clock()
        store = new_store(tmp_path)
        store_poll(
            store, "Outlet", [entry("k", "Killed", "t", [match()])], now=clock(), channels=channels
        )
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, str(store.path), url, clock().isoformat()],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert len(mailbox.messages) == 1
        assert dict(statuses(store)) == {"inbox": "sending"}
        # Restart: the lease has expired, the row is pending again and goes out once more.
        clock.advance(3600)
        assert store.release_expired_leases(clock()) == 1
        assert _run(store, AppriseNotifier(channels), clock, operator=None).sent == 1
        clock.advance(3600)
        store.release_expired_leases(clock())
        assert _run(store, AppriseNotifier(channels), clock, operator=None).sent == 0
    finally:
        smtp.stop()
    assert len(mailbox.messages) == 2
    first, second = (message_from_bytes(m) for _, m in mailbox.messages)
    assert first["Message-ID"] == second["Message-ID"] == "<monitor.hit-1.inbox@example.org>"
    assert dict(statuses(store)) == {"inbox": "sent"}


def test_console_channel_prints() -> None:
    stream = io.StringIO()
    notifier = AppriseNotifier({"c": Secret("console://")}, stream=stream)
    asyncio.run(notifier.send("c", Message(title="t", body="b")))
    assert "=== c: t" in stream.getvalue()
