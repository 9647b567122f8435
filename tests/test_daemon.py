"""The daemon as a real subprocess with real signals (issue #6's "Done when").

``NOTIFY_SOCKET`` points at a datagram socket this test reads, so the test
sees what systemd would: READY=1, WATCHDOG=1, RELOADING=1, STOPPING=1.
Cited FAULTS cases: C16, D1, D3, D4, D11, D22, D23.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import ROOT, Webhook, write_config
from tests.servers import RawServer, drip

pytestmark = pytest.mark.slow

RULE_WALKOUT = """\
rules:
  - name: walkout
    all:
      - [employees, workers]
      - [walkout, walked out]
"""
RULE_PETITION = """\
rules:
  - name: petition
    all:
      - [employees, workers]
      - [petition]
"""
# An unknown key and a bad group: the whole file must be refused.
RULE_BROKEN = """\
rules:
  - name: walkout
    colour: blue
    all: 42
"""

# Runs the real CLI; when the file named by $WEDGE exists, the next poll blocks
# the event loop, the way a wedged daemon would (FAULTS D22's test hook).
WEDGE_WRAPPER = """
import os, sys, time, pathlib
from monitor import pipeline
_orig = pipeline.Monitor.poll_feed
async def poll_feed(self, feed):
    if pathlib.Path(os.environ["WEDGE"]).exists():
        time.sleep(3600)
    return await _orig(self, feed)
pipeline.Monitor.poll_feed = poll_feed
from monitor.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Notifications:
    """A NOTIFY_SOCKET listener: every datagram the daemon sends, in order."""

    path: str
    messages: list[str] = field(default_factory=list)
    sock: socket.socket | None = None

    def start(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode())

    def count(self, prefix: str) -> int:
        return sum(1 for m in list(self.messages) if m.startswith(prefix))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


@pytest.fixture
def notify() -> Iterator[Notifications]:
    # AF_UNIX paths are short (108 bytes): pytest's tmp_path can be too long.
    d = tempfile.mkdtemp(prefix="mon-")
    n = Notifications(os.path.join(d, "notify.sock"))
    n.start()
    yield n
    n.close()
    os.unlink(n.path)
    os.rmdir(d)


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


class FeedServer:
    """An RSS feed whose items the test changes while the daemon polls it."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.items: list[tuple[str, str]] = []
        #: Give each item a link to /page/<guid> (the poll then fetches it).
        self.links = False
        server.expect_request("/feed").respond_with_handler(self._feed)

    def _feed(self, _request: Request) -> Response:
        body = "".join(
            f"<item><title>{title}</title><guid>{guid}</guid>"
            + (f"<link>{self.server.url_for('/page/' + guid)}</link>" if self.links else "")
            + f"<description>{title}.</description></item>"
            for guid, title in self.items
        )
        return Response(
            f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{body}'
            "</channel></rss>",
            content_type="application/rss+xml",
        )

    @property
    def url(self) -> str:
        return self.server.url_for("/feed")

    @property
    def polls(self) -> int:
        return sum(1 for req, _ in self.server.log if req.path == "/feed")


@pytest.fixture
def feed() -> Iterator[FeedServer]:
    s = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    s.start()
    yield FeedServer(s)
    s.clear()
    s.stop()


class Daemon:
    """``monitor run`` in a subprocess; stderr goes to a file the test can read."""

    def __init__(self, tmp_path: Path, config: Path, env: dict[str, str], argv0: list[str]):
        self.log = tmp_path / f"daemon-{time.monotonic_ns()}.log"
        self._err = self.log.open("w")
        full_env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
        full_env.update(env)
        self.proc = subprocess.Popen(
            [*argv0, "-v", "--config", str(config), "run"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            env=full_env,
        )

    def stderr(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._err.close()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(config: Path, env: dict[str, str] | None = None, *, wedge: bool = False) -> Daemon:
        argv0 = (
            [sys.executable, "-c", WEDGE_WRAPPER] if wedge else [sys.executable, "-m", "monitor"]
        )
        d = Daemon(tmp_path, config, {"PYTHONPATH": str(ROOT), **(env or {})}, argv0)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def _config(tmp_path: Path, feed_url: str, webhook: Webhook, *, extra: str = "") -> Path:
    return write_config(
        tmp_path / "monitor.yaml",
        database=tmp_path / "m.db",
        feeds=[{"url": feed_url, "name": "Live", "interval": "1s", "alert_on_first_poll": True}],
        channels={"hook": webhook.url("hook/alerts"), "ops": webhook.url("hook/ops")},
        extra="  operator_channel: ops\n" + extra,
    )


def _db(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "m.db", timeout=10) as conn:
        return conn.execute(sql).fetchall()


def test_ready_then_watchdog_from_progress_and_silence_when_wedged(
    tmp_path: Path,
    feed: FeedServer,
    webhook: Webhook,
    notify: Notifications,
    start_daemon: Callable[..., Daemon],
) -> None:
    """FAULTS D22: READY=1 once, WATCHDOG=1 while polls progress, none once wedged."""
    feed.items = [("g1", "Quarterly numbers")]
    wedge = tmp_path / "wedge"
    d = start_daemon(
        _config(tmp_path, feed.url, webhook),
        {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000", "WEDGE": str(wedge)},
        wedge=True,
    )
    assert wait_for(lambda: notify.count("READY=1") == 1, 30), d.stderr()
    assert wait_for(lambda: notify.count("WATCHDOG=1") >= 3 and feed.polls >= 2, 20), d.stderr()
    assert any(m.startswith("STATUS=1 feeds") for m in notify.messages), notify.messages
    wedge.touch()
    polls = feed.polls
    # The next poll blocks the loop; give it time to start, then expect silence.
    assert wait_for(lambda: feed.polls == polls, 5)
    time.sleep(2.5)
    before = notify.count("WATCHDOG=1")
    time.sleep(3)
    assert notify.count("WATCHDOG=1") == before, "pings kept coming from a wedged daemon"
    assert notify.count("READY=1") == 1


def test_sighup_with_broken_rules_keeps_the_last_good_rules(
    tmp_path: Path,
    feed: FeedServer,
    webhook: Webhook,
    notify: Notifications,
    start_daemon: Callable[..., Daemon],
) -> None:
    """FAULTS C16, D23; issue #3: a running daemon given a broken rule edit keeps
    matching with the last good rules; a fixed file takes effect."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(RULE_WALKOUT)
    config = _config(tmp_path, feed.url, webhook)
    config.write_text(config.read_text().replace(f"rules: {ROOT / 'rules'}", f"rules: {rules}"))
    d = start_daemon(config, {"NOTIFY_SOCKET": notify.path})
    assert wait_for(lambda: notify.count("READY=1") == 1 and feed.polls >= 1, 30), d.stderr()

    (rules / "r.yaml").write_text(RULE_BROKEN)
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: notify.count("READY=1") >= 2, 20), d.stderr()
    reloading = [m for m in notify.messages if m.startswith("RELOADING=1")]
    assert reloading and "MONOTONIC_USEC=" in reloading[0]
    # A new story the old rule matches: still matched.
    feed.items.append(("g1", "Employees stage a walkout over the contract"))
    assert wait_for(lambda: _db(tmp_path, "SELECT rule FROM hits") == [("walkout",)], 20), (
        d.stderr()
    )
    # The same broken file again: logged again, but the operator hears once.
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: notify.count("READY=1") >= 3, 20)

    (rules / "r.yaml").write_text(RULE_PETITION)
    d.signal(signal.SIGHUP)
    assert wait_for(lambda: notify.count("READY=1") >= 4, 20)
    feed.items.append(("g2", "Workers sign a petition against the deal"))
    feed.items.append(("g3", "Employees plan another walkout"))
    assert wait_for(lambda: ("petition",) in _db(tmp_path, "SELECT rule FROM hits"), 20), d.stderr()
    time.sleep(1.5)
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0
    assert sorted(_db(tmp_path, "SELECT rule FROM hits")) == [("petition",), ("walkout",)]
    err = d.stderr()
    assert "reload refused" in err and "colour" in err
    assert "STOPPING=1" in notify.messages
    ops = [p for p in webhook.posts if p["path"] == "/hook/ops"]
    assert len(ops) == 1 and "refused" in ops[0]["json"]["title"], ops
    assert "colour" in ops[0]["json"]["message"]
    assert _db(tmp_path, "SELECT reload_error FROM daemon_status") == [(None,)]


def test_sigterm_during_a_slow_fetch_exits_0_within_the_bound(
    tmp_path: Path, webhook: Webhook, start_daemon: Callable[..., Daemon]
) -> None:
    """FAULTS D4: the running poll is cancelled after stop_grace; nothing half-written."""
    with RawServer(drip(interval=0.2)) as slow:
        config = write_config(
            tmp_path / "monitor.yaml",
            database=tmp_path / "m.db",
            feeds=[{"url": slow.url + "feed", "interval": "1s"}],
            channels={"hook": webhook.url()},
            extra="daemon:\n  stop_grace: 2s\n",
        )
        config.write_text(
            config.read_text()
            .replace("read_timeout: 3s", "read_timeout: 60s")
            .replace("total_timeout: 4s", "total_timeout: 60s")
        )
        d = start_daemon(config)
        assert wait_for(lambda: slow.connections >= 1, 30), d.stderr()
        time.sleep(0.5)
        began = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(20) == 0, d.stderr()
        # stop_grace (2 s) plus the cancelled task's cleanup; far below TimeoutStopSec.
        assert time.monotonic() - began < 12
    assert _db(tmp_path, "PRAGMA integrity_check") == [("ok",)]
    assert _db(
        tmp_path, "SELECT consecutive_failures, last_polled_at, last_success_at FROM feeds"
    ) == [(0, None, None)]
    assert _db(tmp_path, "SELECT count(*) FROM entries") == [(0,)]
    assert _db(tmp_path, "SELECT stopped_at IS NOT NULL FROM daemon_status") == [(1,)]


def test_kill_9_and_restart_loses_no_hit_and_sends_nothing_twice(
    tmp_path: Path, feed: FeedServer, webhook: Webhook, start_daemon: Callable[..., Daemon]
) -> None:
    """FAULTS D1, D3, D11: SIGKILL mid-poll and after sending; restart; exactly once."""
    slow = threading.Event()
    slow.set()
    asked = threading.Event()

    def page(_request: Request) -> Response:
        asked.set()
        if slow.is_set():
            time.sleep(3)
        return Response("<html><body><p>x</p></body></html>", content_type="text/html")

    feed.server.expect_request(re.compile("^/page/")).respond_with_handler(page)
    titles = ["Employees stage a walkout", "Workers walked out at the plant office"]
    feed.items = [(f"g{i}", t) for i, t in enumerate(titles)]
    # Entries with a link: the poll fetches each page before it writes anything.
    feed.links = True
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(RULE_WALKOUT)
    config = _config(tmp_path, feed.url, webhook)
    config.write_text(config.read_text().replace(f"rules: {ROOT / 'rules'}", f"rules: {rules}"))

    # 1. Killed while the article pages are being fetched: nothing stored, nothing lost.
    d = start_daemon(config)
    # (The server's own log records a request only once it is answered.)
    assert wait_for(asked.is_set, 30), d.stderr()
    d.kill()
    assert _db(tmp_path, "PRAGMA integrity_check") == [("ok",)]
    assert _db(tmp_path, "SELECT count(*) FROM entries") == [(0,)]

    # 2. Restarted: the poll is redone; both hits alert once; then killed again.
    slow.clear()
    d = start_daemon(config)
    assert wait_for(lambda: len(webhook.posts) >= 2, 40), d.stderr()
    assert wait_for(
        lambda: (
            _db(tmp_path, "SELECT status, count(*) FROM alerts GROUP BY status") == [("sent", 2)]
        ),
        20,
    )
    d.kill()

    # 3. Restarted once more: several polls of the unchanged feed, nothing re-sent.
    polls = feed.polls
    d = start_daemon(config)
    assert wait_for(lambda: feed.polls >= polls + 3, 30), d.stderr()
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0
    assert len(webhook.posts) == 2
    hit_ids = sorted(str(p["json"]["message"]).rsplit("#", 1)[1] for p in webhook.posts)
    assert hit_ids == sorted(str(i) for (i,) in _db(tmp_path, "SELECT id FROM hits"))
    assert _db(tmp_path, "SELECT count(*) FROM hits") == [(2,)]
