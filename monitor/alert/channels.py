"""Delivery: one message to one named channel, with an outcome the outbox can act on.

apprise parses every channel URL, but it sends only what it cannot hide from
us. Its ``notify()`` returns a bare bool: no HTTP status, no Retry-After
(apprise sleeps and retries on its own clock), no SMTP reply code, and its
e-mail plugin sends one message to all recipients and sets its own random
``Message-ID``. The outbox needs all four, so three kinds of URL are sent
here and everything else through apprise:

- ``mailto://`` / ``mailtos://``: parsed by apprise, sent with :mod:`smtplib`
  to ONE recipient per outbox row (a channel ``inbox`` with two recipients is
  delivered as ``inbox#1`` and ``inbox#2``), with a ``Message-ID`` built from
  the hit and the channel, a text and an HTML part; a 5xx refusal is
  permanent (dead at once), a 4xx or a connection failure is retried (D12-D14);
- ``json://`` / ``jsons://``: apprise's JSON payload, POSTed with aiohttp, so a
  429/503 ``Retry-After`` reaches the outbox (D15) and a 4xx is permanent;
- Slack webhooks (``slack://A/B/C`` or ``https://hooks.slack.com/services/...``):
  our escaped mrkdwn, POSTed the same way (C13);
- ``console://`` prints to standard output.

Everything else goes through apprise, so it cannot honour Retry-After (apprise
returns only True or False; it retries on its own clock). Slack through a bot
token (``slack://xoxb-.../#channel``) is one of these, and apprise's Slack
plugin turns ``<!channel>`` (even escaped as ``&lt;!channel&gt;``) and
``<url|text>`` in a body back into live mentions and links; see
:func:`apprise_text` for what it is given instead.

Nothing here puts a URL in an error or a log line: channels go by name.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parsedate_to_datetime
from typing import Any, Protocol, TextIO

from monitor.alert.render import Message, slack_escape
from monitor.config import Secret
from monitor.exceptions import AlertError

#: Separates a channel's name from a recipient's number in outbox rows (``inbox#2``).
#: Channel names cannot hold it (config.py allows letters, digits, ``_ . -``).
RECIPIENT_SEP = "#"
#: Retry-After values beyond this are capped: a misconfigured server must not park alerts for weeks.
MAX_RETRY_AFTER_S = 6 * 3600.0


class DeliveryError(AlertError):
    """A send failed; says whether retrying can help and when the server allows it."""

    def __init__(
        self,
        channel: str,
        reason: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(channel, reason)
        #: Seconds the server asked us to wait (HTTP Retry-After), if it said.
        self.retry_after = retry_after
        #: True when the same message will never be accepted (SMTP 5xx, HTTP 4xx).
        self.permanent = permanent


class Notifier(Protocol):
    """Sends one message to one named channel, or raises AlertError."""

    async def send(self, channel: str, message: Message) -> None: ...


def split_channel(channel: str) -> tuple[str, int | None]:
    """``inbox#2`` -> (``inbox``, 2); ``inbox`` -> (``inbox``, None)."""
    name, sep, number = channel.partition(RECIPIENT_SEP)
    if sep and number.isdigit() and int(number) >= 1:
        return name, int(number)
    return channel, None


def _email_plugin(url: str) -> Any | None:
    if not url.startswith(("mailto://", "mailtos://")):
        return None
    import apprise

    return apprise.Apprise.instantiate(url)


def recipients(secret: Secret) -> int:
    """How many e-mail recipients a channel URL names (0 for anything but mailto)."""
    plugin = _email_plugin(secret.reveal())
    return len(plugin.targets) if plugin is not None else 0


def delivery_targets(channels: Mapping[str, Secret], names: Sequence[str]) -> tuple[str, ...]:
    """The outbox channels for ``names``: one per e-mail recipient (D13), else the name.

    apprise's e-mail plugin fails a whole send when one recipient is refused,
    and a retry would resend to everyone; one row per recipient retries only
    the refused one.
    """
    out: list[str] = []
    for name in names:
        secret = channels.get(name)
        n = recipients(secret) if secret is not None else 0
        out += [f"{name}{RECIPIENT_SEP}{i}" for i in range(1, n + 1)] if n > 1 else [name]
    return tuple(out)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), capped; None if absent."""
    if not value:
        return None
    value = value.strip()
    seconds: float
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, min(seconds, MAX_RETRY_AFTER_S))


@dataclass(frozen=True)
class _Webhook:
    url: str
    payload: dict[str, Any]
    headers: dict[str, str]
    auth: tuple[str, str] | None = None


class AppriseNotifier:
    """Delivers to configured channels: SMTP and webhooks here, the rest through apprise."""

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
        name, recipient = split_channel(channel)
        secret = self._channels.get(name)
        if secret is None:
            raise DeliveryError(channel, "no such channel in the configuration", permanent=True)
        url = secret.reveal()
        if url.startswith("console://"):
            stream = self._stream or sys.stdout
            stream.write(f"\n=== {channel}: {message.title}\n{message.body}\n")
            stream.flush()
            return
        email = _email_plugin(url)
        if email is not None:
            await self._run(channel, _smtp_send, channel, email, recipient, message, self._timeout)
            return
        hook = _webhook(url, message)
        if hook is not None:
            await self._post(channel, hook, message)
            return
        ok = await self._run(channel, _apprise_send, url, message)
        if not ok:
            raise DeliveryError(channel, "delivery failed (apprise reported an error)")

    async def _run(self, channel: str, func: Any, *args: Any) -> Any:
        try:
            return await asyncio.wait_for(asyncio.to_thread(func, *args), timeout=self._timeout)
        except TimeoutError:
            # The message may have gone out: the retry can repeat it, with the same token.
            raise DeliveryError(
                channel, f"no answer within {self._timeout:g}s (outcome unknown)"
            ) from None

    async def _post(self, channel: str, hook: _Webhook, message: Message) -> None:
        import aiohttp

        headers = {"User-Agent": "monitor", **hook.headers}
        if message.token:
            headers["Idempotency-Key"] = message.token
        auth = aiohttp.BasicAuth(*hook.auth) if hook.auth else None
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout)) as s,
                s.post(
                    hook.url, json=hook.payload, headers=headers, auth=auth, allow_redirects=False
                ) as r,
            ):
                status = r.status
                retry_after = parse_retry_after(r.headers.get("Retry-After"))
                await r.read()
        except TimeoutError:
            raise DeliveryError(
                channel, f"no answer within {self._timeout:g}s (outcome unknown)"
            ) from None
        except aiohttp.ClientError as e:
            # The exception text can hold the URL; only its type is kept.
            raise DeliveryError(channel, f"connection failed ({type(e).__name__})") from None
        if 200 <= status < 300:
            return
        transient = status in (408, 425, 429) or status >= 500
        raise DeliveryError(
            channel,
            f"HTTP {status}" + (f", Retry-After {retry_after:g}s" if retry_after else ""),
            retry_after=retry_after if status in (429, 503) else None,
            permanent=not transient,
        )


def _webhook(url: str, message: Message) -> _Webhook | None:
    """The POST for a JSON or Slack webhook URL, or None for every other service."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("json", "jsons", "slack", "https"):
        return None
    import apprise

    plugin: Any = apprise.Apprise.instantiate(url)
    if plugin is None:
        return None
    kind = type(plugin).__name__
    if kind == "NotifyJSON":
        host = f"[{plugin.host}]" if ":" in plugin.host else plugin.host
        port = f":{plugin.port}" if plugin.port else ""
        target = f"{'https' if plugin.secure else 'http'}://{host}{port}{plugin.fullpath or '/'}"
        payload: dict[str, Any] = {
            "version": "1.0",
            "title": message.title,
            "message": message.body,
            "attachments": [],
            "type": "info",
        }
        payload.update(getattr(plugin, "payload_extras", None) or {})
        auth = (plugin.user, plugin.password or "") if plugin.user else None
        return _Webhook(target, payload, dict(plugin.headers or {}), auth)
    if kind == "NotifySlack" and getattr(plugin, "mode", None) == "hook":
        target = (
            f"https://hooks.slack.com/services/{plugin.token_a}/{plugin.token_b}/{plugin.token_c}"
        )
        text = message.markdown if message.markdown is not None else slack_escape(message.body)
        slack: dict[str, Any] = {"text": text, "mrkdwn": True}
        channels = [c for c in getattr(plugin, "channels", []) or [] if c]
        if channels:
            slack["channel"] = channels[0]
        return _Webhook(target, slack, {})
    return None


#: Look-alikes for ``<`` and ``>`` in text that apprise's Slack plugin would read as markup.
_SLACK_NEUTRAL = str.maketrans({"<": "\u2039", ">": "\u203a"})


def apprise_text(plugin: Any, message: Message) -> tuple[str, str]:
    """The (title, body) apprise's ``plugin`` is given for ``message`` (C13 beyond webhooks).

    Slack through a bot token: with ``?blocks=yes`` apprise sends the body as
    mrkdwn untouched, so it gets our escaped mrkdwn. Without it (apprise's
    default), apprise escapes ``&``, ``<`` and ``>`` and then turns every
    ``!name>``, ``@name>`` and ``url|text>`` back into a mention or link, the
    escaped forms included; so it gets the plain text with ``<`` and ``>``
    shown as look-alikes (U+2039, U+203A): nothing is left for it to turn into markup.
    Every other service gets the plain text.
    """
    if type(plugin).__name__ == "NotifySlack":
        if getattr(plugin, "use_blocks", False):
            text = message.markdown if message.markdown is not None else slack_escape(message.body)
            # The title goes in a plain_text header; neutral anyway, in case Slack changes.
            return message.title.translate(_SLACK_NEUTRAL), text
        return message.title.translate(_SLACK_NEUTRAL), message.body.translate(_SLACK_NEUTRAL)
    return message.title, message.body


def _apprise_send(url: str, message: Message) -> bool:
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return False
    a = apprise.Apprise()
    a.add(plugin)
    title, body = apprise_text(plugin, message)
    return bool(a.notify(title=title, body=body))


def message_id(token: str, domain: str) -> str:
    """An RFC 5322 Message-ID from an outbox token: the same on every attempt."""
    safe = "".join(c if c.isalnum() or c in ".-_" else "-" for c in token)
    return f"<monitor.{safe}@{domain or 'monitor.invalid'}>"


def _smtp_send(
    channel: str, plugin: Any, recipient: int | None, message: Message, timeout: float
) -> None:
    """One SMTP transaction; raises DeliveryError with the server's verdict."""
    targets = [addr for _, addr in plugin.targets]
    if recipient is not None:
        if recipient > len(targets):
            raise DeliveryError(channel, "that recipient is no longer configured", permanent=True)
        targets = [targets[recipient - 1]]
    sender_name, sender = plugin.from_addr
    domain = sender.rpartition("@")[2]
    msg = EmailMessage()
    # EmailMessage refuses CR/LF in headers; the subject is also cleaned upstream (C14).
    msg["Subject"] = message.title
    msg["From"] = formataddr((sender_name or "", sender)) if sender_name else sender
    msg["To"] = ", ".join(targets)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id(message.token, domain) if message.token else make_msgid()
    msg.set_content(message.body)
    if message.html:
        msg.add_alternative(message.html, subtype="html")
    mode = str(plugin.secure_mode or "insecure")
    host = plugin.smtp_host or plugin.host
    port = plugin.port or {"ssl": 465, "starttls": 587}.get(mode, 25)
    try:
        smtp: smtplib.SMTP
        if mode == "ssl":
            smtp = smtplib.SMTP_SSL(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if mode == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if plugin.user and plugin.password:
                smtp.login(plugin.user, plugin.password)
            refused = smtp.send_message(msg, from_addr=sender, to_addrs=targets)
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        raise DeliveryError(
            channel, f"SMTP {code}: {_reply(text)}", permanent=500 <= code < 600
        ) from None
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as e:
        raise DeliveryError(
            channel, f"SMTP {e.smtp_code}: {_reply(e.smtp_error)}", permanent=e.smtp_code >= 500
        ) from None
    except smtplib.SMTPResponseException as e:
        raise DeliveryError(channel, f"SMTP {e.smtp_code}: {_reply(e.smtp_error)}") from None
    except (smtplib.SMTPException, OSError) as e:
        raise DeliveryError(channel, f"SMTP server unreachable ({type(e).__name__})") from None
    if refused:
        # Only with several recipients (operator notices): the accepted ones have it.
        codes = ", ".join(str(c) for c, _ in refused.values())
        raise DeliveryError(channel, f"SMTP refused {len(refused)} recipients ({codes})")


def _reply(text: bytes | str) -> str:
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return " ".join(s.split())[:200]


__all__ = [
    "AppriseNotifier",
    "DeliveryError",
    "Notifier",
    "apprise_text",
    "delivery_targets",
    "message_id",
    "parse_retry_after",
    "recipients",
    "split_channel",
]
