"""The dispatcher: deliver due outbox rows, at least once, with the timing ours.

- Due rows are claimed with a lease (``sending``), sent, then marked sent. A
  process that dies between send and mark-sent leaves the row ``sending``;
  on start the expired lease puts it back to ``pending`` and it goes out once
  more with the same token (``Message-ID`` from hit and channel; the hit id in
  chat text). That crash window is the only way a message repeats.
- A failure backs off exponentially with jitter (:func:`backoff`); a server's
  Retry-After is honoured as a floor, for that row and for every other row
  of the channel (they are deferred without counting an attempt). After
  ``alerts.max_attempts`` attempts, or at once for a permanent refusal (SMTP
  5xx, HTTP 4xx), the row is ``dead``.
- Channels are served concurrently (a tarpitted SMTP server holds only its
  own rows, D14) and each one at most once per ``min_interval`` (the
  channel's ``rate_limit``; Slack webhooks default to one message a second),
  counted from its last delivery, also one made by an earlier run. Short
  waits are slept (on the injected ``sleep``, so tests move a fake clock);
  once a channel has waited :data:`MAX_RATE_SLEEP` in one run, its other
  rows are put back, due when the limit allows, without counting an attempt.
- A channel in its quiet hours gets nothing: due rows (a retry, a digest,
  rows a stopped daemon left) are put back until the quiet hours end, the
  untried ones joining the message after them. Hits found in them were
  already routed to wait for that end (:mod:`~monitor.alert.routing`).
- Digest rows (``digest`` set) due for a channel go out as ONE message,
  grouped by story, each story listing every outlet that told it.
- A dead row, or a channel failing for an hour, tells the operator through
  :class:`~monitor.operator.OperatorNotices`: once per channel until it delivers
  again, never through the channel concerned, never about a notice (no loops).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from monitor.alert.channels import DeliveryError, Notifier, split_channel
from monitor.alert.render import AlertView, DigestStory, Message, render_alert, render_digest
from monitor.config import AlertConfig, ChannelConfig, Secret
from monitor.digest import QUIET, QuietHours
from monitor.exceptions import AlertError, StoreError
from monitor.store import DueAlert, Store

log = logging.getLogger(__name__)

#: A channel failing this long (every attempt since its oldest failing row) tells the operator.
FAILING_NOTICE_AFTER = timedelta(hours=1)
#: Seconds one channel may wait for its rate limit within one dispatch run; the rest
#: of its rows wait in the outbox instead, so a slow limit cannot hold the run.
MAX_RATE_SLEEP = 30.0


def backoff(attempts: int, config: AlertConfig, rand: Callable[[], float] = random.random) -> float:
    """Seconds before the next try after ``attempts`` failures: doubling, capped, jittered."""
    delay = min(config.max_backoff, config.base_backoff * 2.0 ** max(0, attempts - 1))
    return float(delay * (0.8 + 0.4 * rand()))


@dataclass(frozen=True)
class ChannelPolicy:
    """Per-channel delivery options (``channels.NAME`` as a mapping in the configuration)."""

    #: Least seconds between two messages to the channel.
    min_interval: float = 0.0
    #: ``title`` / ``text`` / ``markdown`` / ``html`` -> a :class:`string.Template`
    #: replacing that rendering.
    templates: Mapping[str, str] = field(default_factory=dict)
    #: Hours in which the channel gets no messages.
    quiet: QuietHours | None = None


#: Least seconds between messages to a Slack webhook (Slack takes about one a second).
SLACK_MIN_INTERVAL = 1.0


def channel_policies(
    channels: Mapping[str, Secret], options: Mapping[str, ChannelConfig] | None = None
) -> dict[str, ChannelPolicy]:
    """Each channel's policy from its configured options.

    Without a ``rate_limit``, Slack webhooks get one message a second and other
    channels no limit.
    """
    out: dict[str, ChannelPolicy] = {}
    for name, secret in channels.items():
        url = secret.reveal()
        slack = url.startswith("slack://") or url.startswith("https://hooks.slack.com/")
        config = (options or {}).get(name, ChannelConfig())
        interval = config.min_interval
        if interval is None:
            interval = SLACK_MIN_INTERVAL if slack else 0.0
        out[name] = ChannelPolicy(
            min_interval=interval, templates=dict(config.templates), quiet=config.quiet_hours
        )
    return out


class Notices(Protocol):
    """What the dispatcher needs of :class:`monitor.operator.OperatorNotices`."""

    async def notify(
        self, kind: str, subject: str, title: str, body: str, *, about_channel: str | None = None
    ) -> str: ...


@dataclass(frozen=True)
class DispatchSummary:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    #: Rows put back untried (Retry-After, or their channel failed a moment ago).
    deferred: int = 0


def view(alert: DueAlert, also: Sequence[str] = ()) -> AlertView:
    """What a message shows about one claimed row."""
    return AlertView(
        update=alert.update,
        hit_id=alert.hit_id,
        title=alert.entry_title,
        outlet=alert.feed_name,
        published=alert.published,
        link=alert.link,
        rule=alert.rule,
        category=alert.category,
        terms=alert.terms,
        sentence=alert.sentence,
        also=tuple(also),
    )


def token(alert: DueAlert) -> str:
    """The row's idempotency token: from hit and channel, the same on every attempt."""
    return f"hit-{alert.hit_id}.{alert.channel}"


def render(
    alert: DueAlert, templates: Mapping[str, str] | None = None, also: Sequence[str] = ()
) -> Message:
    """The message for one hit: title, source, date, link, rule, terms and the sentence."""
    return render_alert(view(alert, also), token=token(alert), templates=templates)


@dataclass
class _Run:
    store: Store
    notifier: Notifier
    config: AlertConfig
    now: Callable[[], datetime]
    policies: Mapping[str, ChannelPolicy]
    sleep: Callable[[float], Awaitable[None]]
    rand: Callable[[], float]
    sent: int = 0
    failed: int = 0
    dead: int = 0
    deferred: int = 0
    dead_channels: set[str] = field(default_factory=set)
    failing_channels: set[str] = field(default_factory=set)
    #: Channel -> when it was last sent to (this run, else the outbox's record).
    last_send: dict[str, datetime] = field(default_factory=dict)

    def units(self, rows: Sequence[DueAlert]) -> list[tuple[list[DueAlert], Message]]:
        """Messages for one channel's rows: one per immediate row, one for all digest rows."""
        out: list[tuple[list[DueAlert], Message]] = []
        policy = self.policies.get(split_channel(rows[0].channel)[0], ChannelPolicy())
        digest: list[DueAlert] = []
        for row in rows:
            if row.digest is None:
                out.append(([row], render(row, policy.templates, self.also(row))))
            else:
                digest.append(row)
        if digest:
            out.append((digest, self.digest_message(digest)))
        return out

    def also(self, row: DueAlert) -> list[str]:
        """For an update: the other outlets that reported its story ("also reported by")."""
        if not row.update or row.story_id is None:
            return []
        try:
            outlets = self.store.story_outlets(row.story_id)
        except StoreError:
            log.exception("could not read the outlets of story %d", row.story_id)
            return []
        return [o for o in outlets if o != row.feed_name]

    def defer(
        self, unit: Sequence[DueAlert], until: datetime, reason: str | None, *, quiet: bool = False
    ) -> None:
        """Put ``unit`` back untried, due at ``until``.

        ``quiet``: held by quiet hours. Rows never tried then join the message
        after them; one already tried keeps its own message, so a repeat of an
        unknown outcome keeps its token (D17).
        """
        for row in unit:
            bundle = QUIET if quiet and row.digest is None and row.attempts == 0 else None
            self.store.defer_alert(row.id, until, reason, digest=bundle)
        self.deferred += len(unit)

    def ready_at(self, channel: str, policy: ChannelPolicy) -> datetime | None:
        """When the channel's rate limit next allows a message, or None if it allows one now."""
        if policy.min_interval <= 0:
            return None
        now = self.now()
        last = self.last_send.get(channel)
        if last is None:
            last = self.store.channel_last_sent(channel)
        if last is None:
            return None
        # Capped at one interval from now: a clock set back must not park the channel.
        ready = min(last, now) + timedelta(seconds=policy.min_interval)
        return ready if ready > now else None

    def digest_message(self, rows: Sequence[DueAlert]) -> Message:
        stories: dict[object, list[DueAlert]] = {}
        for row in rows:
            stories.setdefault(row.story_id or f"hit:{row.hit_id}", []).append(row)
        items = []
        for story_id, members in stories.items():
            outlets: list[str] = []
            if isinstance(story_id, int):
                try:
                    outlets = self.store.story_outlets(story_id)
                except StoreError:
                    log.exception("could not read the outlets of story %d", story_id)
            outlets = list(dict.fromkeys([*outlets, *(m.feed_name for m in members)]))
            items.append(
                DigestStory(
                    view=view(members[0]),
                    outlets=tuple(outlets),
                    hit_ids=tuple(m.hit_id for m in members),
                )
            )
        schedules = sorted({r.digest or "" for r in rows})
        label = "after quiet hours" if schedules == [QUIET] else ", ".join(schedules)
        first = min(r.id for r in rows)
        return render_digest(label, items, token=f"digest-{first}.{rows[0].channel}")

    async def channel(self, rows: Sequence[DueAlert]) -> None:
        channel = rows[0].channel
        policy = self.policies.get(split_channel(channel)[0], ChannelPolicy())
        # Once set, the channel's remaining rows are put back untried, due at ``hold``;
        # ``note`` (a failure) goes on them, quiet hours and rate limits leave none.
        hold: datetime | None = None
        note: str | None = None
        slept = 0.0
        quiet = False
        for unit, message in self.units(rows):
            if hold is None and policy.quiet is not None:
                quiet_until = policy.quiet.until(self.now())
                if quiet_until is not None:
                    hold, quiet = quiet_until, True
            if hold is not None:
                self.defer(unit, hold, note, quiet=quiet)
                continue
            ready = self.ready_at(channel, policy)
            if ready is not None:
                wait = (ready - self.now()).total_seconds()
                if slept + wait > MAX_RATE_SLEEP:
                    hold, note = ready, None
                    self.defer(unit, hold, None)
                    continue
                await self.sleep(wait)
                slept += wait
            try:
                await self.notifier.send(channel, message)
            except AlertError as e:
                self.last_send[channel] = self.now()
                hold = self.failed_unit(unit, e)
                note = f"not tried: the channel failed ({e.reason})"
                continue
            self.last_send[channel] = self.now()
            for row in unit:
                try:
                    self.store.mark_sent(row.id, self.now())
                except StoreError:
                    # Sent but not recorded: the lease expires and it goes again,
                    # with the same token (D3).
                    log.exception("alert %d was sent but could not be marked sent", row.id)
                    raise
                log.info("alert %d sent to channel %r", row.id, channel)
            self.sent += len(unit)

    def failed_unit(self, unit: Sequence[DueAlert], e: AlertError) -> datetime | None:
        """Record a failed send of ``unit``; returns until when the channel is held."""
        now = self.now()
        permanent = isinstance(e, DeliveryError) and e.permanent
        retry_after = e.retry_after if isinstance(e, DeliveryError) else None
        hold: datetime | None = None
        for row in unit:
            attempts = row.attempts + 1
            if permanent or attempts >= self.config.max_attempts:
                self.store.mark_failed(row.id, e.reason, None)
                self.dead += 1
                self.dead_channels.add(row.channel)
                log.error(
                    "alert %d to channel %r is dead after %d attempts: %s",
                    row.id,
                    row.channel,
                    attempts,
                    e.reason,
                )
                continue
            delay = backoff(attempts, self.config, self.rand)
            if retry_after is not None:
                delay = max(delay, retry_after)
            retry = now + timedelta(seconds=delay)
            hold = retry if hold is None else min(hold, retry)
            self.store.mark_failed(row.id, e.reason, retry)
            self.failed += 1
            self.failing_channels.add(row.channel)
            log.warning(
                "alert %d to channel %r failed (attempt %d): %s; retry at %s",
                row.id,
                row.channel,
                attempts,
                e.reason,
                retry.isoformat(timespec="seconds"),
            )
        if permanent and hold is None:
            # A refusal of this message says nothing about the channel's next one.
            return None
        return hold or now + timedelta(seconds=backoff(1, self.config, self.rand))

    async def tell_operator(self, notices: Notices) -> None:
        now = self.now()
        for channel in sorted(self.dead_channels):
            subject = f"channel:{channel}"
            # Once per channel until it delivers again: a hundred dead rows are one problem.
            delivered = self.store.channel_last_sent(channel) or datetime.min.replace(tzinfo=UTC)
            if self.store.notice_since("alert-dead", subject, delivered):
                continue
            dead = self.store.alerts(status="dead", limit=1000)
            mine = [a for a in dead if a["channel"] == channel]
            last = mine[0]["last_error"] if mine else "unknown"
            await notices.notify(
                "alert-dead",
                subject,
                f"[monitor] alerts to channel {channel} are dead",
                f"{len(mine)} alert(s) to channel {channel!r} could not be delivered and were "
                f"given up; the last error: {last}.\n\n"
                "See `monitor alerts list --status dead`; `monitor alerts retry ID` tries again.",
                about_channel=split_channel(channel)[0],
            )
        for channel in sorted(self.failing_channels - self.dead_channels):
            since = self.store.channel_failing_since(channel)
            if since is None or now - since < FAILING_NOTICE_AFTER:
                continue
            subject = f"channel:{channel}"
            if self.store.notice_since("channel-failing", subject, since):
                continue
            await notices.notify(
                "channel-failing",
                subject,
                f"[monitor] channel {channel} has been failing since "
                f"{since.isoformat(timespec='minutes')}",
                f"Every attempt to deliver to channel {channel!r} since "
                f"{since.isoformat(timespec='minutes')} failed; alerts wait in the outbox "
                "and are retried. `monitor alerts list --status pending` shows them.",
                about_channel=split_channel(channel)[0],
            )


async def dispatch(
    store: Store,
    notifier: Notifier,
    config: AlertConfig,
    now: Callable[[], datetime],
    *,
    notices: Notices | None = None,
    policies: Mapping[str, ChannelPolicy] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> DispatchSummary:
    """Deliver every due outbox row once; failures are rescheduled or made dead."""
    lease = timedelta(seconds=config.send_timeout * 2 + 30)
    run = _Run(store, notifier, config, now, policies or {}, sleep, rand)
    # A lease that ran out belongs to a process that died mid-send (this one's
    # earlier rounds have finished): releasing it only on start would strand
    # the row until the next restart when the daemon came back within the lease.
    released = store.release_expired_leases(now())
    if released:
        log.warning("%d alerts were left mid-send by a stopped process; resending", released)
    while True:
        due = store.claim_due_alerts(now(), lease)
        if not due:
            break
        by_channel: dict[str, list[DueAlert]] = {}
        for row in due:
            by_channel.setdefault(row.channel, []).append(row)
        results = await asyncio.gather(
            *(run.channel(rows) for rows in by_channel.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
    if notices is not None and (run.dead_channels or run.failing_channels):
        try:
            await run.tell_operator(notices)
        except StoreError:
            log.exception("could not tell the operator about failing channels")
    return DispatchSummary(sent=run.sent, failed=run.failed, dead=run.dead, deferred=run.deferred)


__all__ = [
    "ChannelPolicy",
    "DispatchSummary",
    "Notices",
    "backoff",
    "channel_policies",
    "dispatch",
    "render",
    "token",
    "view",
]
