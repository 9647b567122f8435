"""Operator notices: the daemon telling its operator that something needs a look.

Stale or gone feeds, a broken rules edit, and (issue #4) dead alerts all go
through :class:`OperatorNotices`:

- routed to ``alerts.operator_channel``; without one they are logged only;
- a notice *about* the operator channel itself (say, alerts to it are dead)
  is logged, never sent through it, and a failed notice is recorded and
  logged but never causes another notice, so nothing can loop (Home
  Assistant #30665 sent 500k notices about a failing notifier);
- rate-limited: at most ``max_per_hour`` notices go out per hour; the rest
  are recorded as ``suppressed`` and logged;
- every notice is a row in ``operator_notices`` with the channel *name*.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from monitor.alert import Message, Notifier
from monitor.exceptions import AlertError, StoreError
from monitor.store import Store

log = logging.getLogger(__name__)

#: Notices sent per rolling hour before the rest are only logged.
MAX_PER_HOUR = 10


class OperatorNotices:
    """Sends rate-limited notices to the operator channel and records each one."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        channel: str | None,
        now: Callable[[], datetime],
        *,
        max_per_hour: int = MAX_PER_HOUR,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.channel = channel
        self.now = now
        self.max_per_hour = max_per_hour

    async def notify(
        self,
        kind: str,
        subject: str,
        title: str,
        body: str,
        *,
        about_channel: str | None = None,
    ) -> str:
        """Tell the operator; returns how it went: sent, failed, logged or suppressed.

        ``kind`` names the situation (``feed-health``, ``rules-invalid``,
        ``alert-dead``), ``subject`` what it is about (``feed:3``, ``rules``).
        ``about_channel`` names a channel the notice concerns; a notice is never
        sent through the channel it is about. Never raises.
        """
        now = self.now()
        channel = self.channel
        error: str | None = None
        if channel is None or channel == about_channel:
            status = "logged"
        elif self._recent(now) >= self.max_per_hour:
            status = "suppressed"
        else:
            try:
                await self.notifier.send(channel, Message(title=title, body=body))
                status = "sent"
            except AlertError as e:
                # Recorded and logged; deliberately no notice about a failed notice.
                status, error = "failed", e.reason
            except Exception as e:  # a notifier bug must not take the daemon down
                status, error = "failed", f"{type(e).__name__}: {e}"
        level = logging.WARNING if status in ("sent", "logged") else logging.ERROR
        log.log(
            level,
            "operator notice %s: %s",
            status,
            title,
            extra={"event": "operator_notice", "kind": kind, "subject": subject},
        )
        try:
            self.store.add_operator_notice(
                kind=kind,
                subject=subject,
                title=title,
                body=body,
                channel=channel,
                status=status,
                error=error,
                now=now,
            )
        except StoreError:
            log.exception("could not record an operator notice")
        return status

    def _recent(self, now: datetime) -> int:
        try:
            return self.store.operator_notices_since(now - timedelta(hours=1))
        except StoreError:
            return 0


__all__ = ["MAX_PER_HOUR", "OperatorNotices"]
