"""Alerts: render a hit into a message, deliver outbox rows through apprise.

Delivery is at-least-once from the outbox (``alerts`` table): due rows are
claimed with a lease, sent one apprise URL at a time, then marked sent; a
failure schedules a retry with exponential backoff and jitter, and after
``max_attempts`` the row is dead. A sent row is never sent again.

Apprise URLs carry tokens, so nothing here logs a URL or puts one in an
error: channels are referred to by name. :class:`RedactingFilter` scrubs the
URLs from every log record as a second line of defence, and apprise's own
logger is kept at WARNING (at DEBUG it prints whole webhook URLs, FAULTS C20).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TextIO
from urllib.parse import parse_qsl, urlsplit

from monitor.config import AlertConfig, Secret
from monitor.exceptions import AlertError, StoreError
from monitor.store import DueAlert, Store

log = logging.getLogger(__name__)

_CRLF = re.compile(r"[\r\n]+")


@dataclass(frozen=True)
class Message:
    """A rendered alert, ready for any channel."""

    title: str
    body: str


def render(alert: DueAlert) -> Message:
    """The message for one hit: title, source, date, link, rule, terms and the sentence.

    Pure. The title has no CR/LF, so it cannot inject e-mail headers (C14).
    The hit id rides along as a human-visible idempotency token: a repeat
    after a crash carries the same id.
    """
    title = _CRLF.sub(" ", f"[monitor] {alert.rule}: {alert.entry_title}").strip()
    lines = [
        alert.entry_title,
        "",
        f"Source: {alert.feed_name}",
        f"Date: {alert.published or 'unknown'}",
        f"Link: {alert.link or '(none)'}",
        f"Rule: {alert.rule}",
        f"Matched: {', '.join(alert.terms)}",
        "",
        f"> {alert.sentence}",
        "",
        f"monitor hit #{alert.hit_id}",
    ]
    return Message(title=title[:250], body="\n".join(lines))


def backoff(attempts: int, config: AlertConfig, rand: Callable[[], float] = random.random) -> float:
    """Seconds before the next try after ``attempts`` failures: doubling, capped, jittered."""
    delay = min(config.max_backoff, config.base_backoff * 2.0 ** max(0, attempts - 1))
    return float(delay * (0.8 + 0.4 * rand()))


class Notifier(Protocol):
    """Sends one message to one named channel, or raises AlertError."""

    async def send(self, channel: str, message: Message) -> None: ...


class AppriseNotifier:
    """Delivers through apprise, one URL per call; ``console://`` prints to a stream."""

    def __init__(
        self,
        channels: Mapping[str, Secret],
        *,
        timeout: float = 30.0,
        stream: TextIO | None = None,
    ) -> None:
        self._channels = dict(channels)
        self._timeout = timeout
        self._stream = stream

    async def send(self, channel: str, message: Message) -> None:
        secret = self._channels.get(channel)
        if secret is None:
            raise AlertError(channel, "no such channel in the configuration")
        url = secret.reveal()
        if url.startswith("console://"):
            stream = self._stream or sys.stdout
            stream.write(f"\n=== {channel}: {message.title}\n{message.body}\n")
            stream.flush()
            return
        try:
            ok = await asyncio.wait_for(
                asyncio.to_thread(_apprise_send, url, message), timeout=self._timeout
            )
        except TimeoutError:
            raise AlertError(channel, f"no answer within {self._timeout:g}s") from None
        if not ok:
            raise AlertError(channel, "delivery failed (apprise reported an error)")


def _apprise_send(url: str, message: Message) -> bool:
    import apprise

    a = apprise.Apprise()
    if not a.add(url):
        return False
    return bool(a.notify(title=message.title, body=message.body))


@dataclass(frozen=True)
class DispatchSummary:
    sent: int = 0
    failed: int = 0
    dead: int = 0


async def dispatch(
    store: Store,
    notifier: Notifier,
    config: AlertConfig,
    now: Callable[[], datetime],
) -> DispatchSummary:
    """Deliver every due outbox row once; failures are rescheduled or made dead."""
    lease = timedelta(seconds=config.send_timeout * 2 + 30)
    sent = failed = dead = 0
    while True:
        due = store.claim_due_alerts(now(), lease)
        if not due:
            break
        for alert in due:
            try:
                await notifier.send(alert.channel, render(alert))
            except AlertError as e:
                attempts = alert.attempts + 1
                if attempts >= config.max_attempts:
                    store.mark_failed(alert.id, e.reason, None)
                    dead += 1
                    log.error(
                        "alert %d to channel %r is dead after %d attempts: %s",
                        alert.id,
                        alert.channel,
                        attempts,
                        e.reason,
                    )
                else:
                    retry = now() + timedelta(seconds=backoff(attempts, config))
                    store.mark_failed(alert.id, e.reason, retry)
                    failed += 1
                    log.warning(
                        "alert %d to channel %r failed (attempt %d): %s; retry at %s",
                        alert.id,
                        alert.channel,
                        attempts,
                        e.reason,
                        retry.isoformat(timespec="seconds"),
                    )
                continue
            try:
                store.mark_sent(alert.id, now())
            except StoreError:
                # The message went out but we could not record it: the lease
                # expires and it is sent again with the same hit id (D3).
                log.exception("alert %d was sent but could not be marked sent", alert.id)
                raise
            sent += 1
            log.info("alert %d sent to channel %r", alert.id, alert.channel)
    return DispatchSummary(sent=sent, failed=failed, dead=dead)


class RedactingFilter(logging.Filter):
    """Replaces every configured channel URL (and its path and query) in log records."""

    def __init__(self, secrets: Iterable[tuple[str, Secret]]) -> None:
        super().__init__()
        self._needles: list[tuple[str, str]] = []
        for name, secret in secrets:
            url = secret.reveal()
            self._needles.append((url, f"<channel {name}>"))
            # Tokens also appear alone (e.g. in apprise's privacy URLs).
            for part in _secret_parts(url):
                self._needles.append((part, "***"))
        self._needles.sort(key=lambda n: -len(n[0]))

    def scrub(self, text: str) -> str:
        for needle, replacement in self._needles:
            if needle in text:
                text = text.replace(needle, replacement)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._needles:
            return True
        msg = record.getMessage()
        clean = self.scrub(msg)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        if clean != msg:
            record.msg = clean
            record.args = None
        return True


def _secret_parts(url: str) -> list[str]:
    """The pieces of a URL that may be tokens: user info, path segments, query values.

    The host is left out: masking "127.0.0.1" or "hooks.slack.com" in every
    log line hides nothing secret and makes the logs useless.
    """
    parts = urlsplit(url)
    pieces = [parts.username or "", parts.password or ""]
    pieces += parts.path.split("/")
    pieces += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    # Short pieces (ports, "hook", "to=me") are not worth masking and would mangle logs.
    return [p for p in pieces if len(p) >= 8]


_installed: RedactingFilter | None = None


def install_redaction(secrets: Mapping[str, Secret]) -> RedactingFilter:
    """Scrub channel URLs from every log record and quiet apprise's logger.

    The filter runs in the log record factory, so it applies to every
    logger and every handler, including ones added later.
    """
    global _installed
    logging.getLogger("apprise").setLevel(logging.WARNING)
    f = RedactingFilter(secrets.items())
    if _installed is None:
        base = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = base(*args, **kwargs)
            if _installed is not None:
                _installed.filter(record)
            return record

        logging.setLogRecordFactory(factory)
    _installed = f
    return f
