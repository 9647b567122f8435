"""The daemon's small parts: sd_notify, operator notices, key=value logs, credentials."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alert import Message, install_redaction
from monitor.config import Secret, load_settings
from monitor.exceptions import AlertError, ConfigError
from monitor.logs import KeyValueFormatter, quote
from monitor.operator import OperatorNotices
from monitor.sdnotify import notify, reloading_message, watchdog_interval
from monitor.store import open_store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_notify_is_a_no_op_outside_systemd() -> None:
    assert notify("READY=1", environ={}) is False


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"monitor-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"READY=1"


def test_notify_failure_is_not_fatal(tmp_path: Path) -> None:
    assert notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "nobody")}) is False


def test_watchdog_interval_respects_watchdog_pid() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "4000000"}) == 4.0
    assert watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    mine = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine) == 4.0
    assert watchdog_interval({}) is None and watchdog_interval({"WATCHDOG_USEC": "x"}) is None
    assert reloading_message().startswith("RELOADING=1\nMONOTONIC_USEC=")


class Flaky:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, Message]] = []
        self.fail = fail

    async def send(self, channel: str, message: Message) -> None:
        self.sent.append((channel, message))
        if self.fail:
            raise AlertError(channel, "HTTP 500")


def test_operator_notices_are_rate_limited_and_recorded(tmp_path: Path) -> None:
    store = open_store(tmp_path / "m.db")
    notifier = Flaky()
    clock = [NOW]
    notices = OperatorNotices(store, notifier, "ops", lambda: clock[0], max_per_hour=3)

    async def go() -> list[str]:
        out = [await notices.notify("feed-health", f"feed:{i}", f"t{i}", "b") for i in range(5)]
        clock[0] += timedelta(hours=2)
        out.append(await notices.notify("feed-health", "feed:9", "later", "b"))
        return out

    assert asyncio.run(go()) == ["sent"] * 3 + ["suppressed"] * 2 + ["sent"]
    assert len(notifier.sent) == 4
    rows = store.operator_notices()
    assert [r["status"] for r in rows][:3] == ["sent", "suppressed", "suppressed"]
    assert {r["channel"] for r in rows} == {"ops"}
    store.close()


def test_a_notice_never_goes_through_the_channel_it_is_about(tmp_path: Path) -> None:
    """HA #30665: a failing channel must not be told about itself, nor loop."""
    store = open_store(tmp_path / "m.db")
    notifier = Flaky(fail=True)
    notices = OperatorNotices(store, notifier, "ops", lambda: NOW)

    async def go() -> tuple[str, str]:
        about_ops = await notices.notify(
            "alert-dead", "alert:1", "alerts to ops are dead", "b", about_channel="ops"
        )
        failed = await notices.notify("alert-dead", "alert:2", "alerts to team are dead", "b")
        return about_ops, failed

    assert asyncio.run(go()) == ("logged", "failed")
    # One attempt for the failing notice, none for the one about ops, and no notice
    # about the failed notice.
    assert len(notifier.sent) == 1
    assert [r["status"] for r in store.operator_notices()] == ["failed", "logged"]
    store.close()


def test_without_an_operator_channel_notices_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path / "m.db")
    notices = OperatorNotices(store, Flaky(), None, lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="monitor.operator"):
        assert asyncio.run(notices.notify("feed-health", "feed:1", "feed X is failing", "b")) == (
            "logged"
        )
    assert "feed X is failing" in caplog.text
    store.close()


def _record(msg: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
    record = logging.getLogger("monitor.test").makeRecord(
        "monitor.test", level, __file__, 1, msg, args, None, extra={"feed_id": 3}
    )
    return record


def test_key_value_lines_with_and_without_journald() -> None:
    plain = KeyValueFormatter(journald=False).format(_record("feed %s failed", "x y"))
    assert plain.endswith('level=warning logger=monitor.test msg="feed x y failed" feed_id=3')
    assert plain[:4].isdigit()
    journal = KeyValueFormatter(journald=True).format(_record("ok", level=logging.ERROR))
    assert journal == "<3>level=error logger=monitor.test msg=ok feed_id=3"
    assert quote('say "hi"\nbye') == '"say \\"hi\\"\\nbye"'


def test_logged_lines_carry_no_channel_secret() -> None:
    """FAULTS C20: the redaction filter works under the key=value formatter too."""
    token = "T0KENabcdef123456"
    install_redaction({"team": Secret(f"json://hooks.example.org/hook/{token}")})
    try:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(KeyValueFormatter(journald=True))
        logger = logging.getLogger("monitor.test.redact")
        logger.addHandler(handler)
        logger.propagate = False
        logger.warning("posting to json://hooks.example.org/hook/%s failed", token)
        logger.removeHandler(handler)
        assert token not in stream.getvalue() and "<channel team>" in stream.getvalue()
    finally:
        install_redaction({})


def test_channel_urls_from_systemd_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hook-url").write_text("json://127.0.0.1:9/hook/s3cret\n")
    config = tmp_path / "monitor.yaml"
    config.write_text(
        'channels:\n  hook: "${credential:hook-url}"\n  ops: console://\n'
        "alerts:\n  operator_channel: ops\n"
        "daemon:\n  min_interval: 1m\n  max_interval: 2h\n  metrics_port: 9464\n"
    )
    s = load_settings(config, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.channels["hook"].reveal() == "json://127.0.0.1:9/hook/s3cret"
    assert s.alerts.operator_channel == "ops"
    assert (s.daemon.min_interval, s.daemon.max_interval, s.daemon.metrics_port) == (
        60,
        7200,
        9464,
    )
    with pytest.raises(ConfigError) as e:
        load_settings(config, environ={})
    assert "credential:hook-url" in str(e.value) and "s3cret" not in str(e.value)


def test_operator_channel_must_be_configured(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(
        "channels:\n  ops: console://\nalerts:\n  operator_channel: pager\n"
        "daemon:\n  min_interval: 3h\n  max_interval: 1h\n  metrics_port: 0\n"
    )
    with pytest.raises(ConfigError) as e:
        load_settings(config, environ={})
    text = str(e.value)
    assert "monitor.yaml:4: alerts.operator_channel: channel 'pager' is not configured" in text
    assert "daemon.min_interval" in text and "daemon.metrics_port" in text


def test_metrics_endpoint_listens_on_loopback_only() -> None:
    import urllib.request

    from monitor.exceptions import FetchError
    from monitor.metrics import Metrics
    from monitor.types import FeedResult, PollSummary
    from tests.conftest import free_port

    m = Metrics()
    port = free_port()
    m.serve(port)
    try:
        m.observe_poll(FeedResult("u", PollSummary(entries_new=2, hits_new=1)), 0.3)
        m.observe_poll(FeedResult("u", FetchError("u", "timeout")), 4.0)
        feed = {"id": 1, "active": 1, "last_success_at": (NOW - timedelta(hours=1)).isoformat()}
        m.refresh({"pending": 2, "dead": 1}, [feed], {1: "failing"}, NOW)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert m._server.server_address[0] == "127.0.0.1"
    finally:
        m.close()
    assert 'monitor_polls_total{outcome="ok"} 1.0' in text
    assert 'monitor_poll_failures_total{type="FetchError"} 1.0' in text
    assert "monitor_hits_total 1.0" in text and "monitor_entries_total 2.0" in text
    assert 'monitor_alerts{status="dead"} 1.0' in text
    assert 'monitor_feed_lag_seconds{feed="1"} 3600.0' in text
    assert 'monitor_feeds{state="failing"} 1.0' in text
