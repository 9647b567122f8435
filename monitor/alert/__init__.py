"""Alerts: the outbox, routing, rendering and delivery.

A hit becomes outbox rows (``alerts`` table) when it is stored
(:mod:`~monitor.alert.routing`: its story, one row per channel and e-mail
recipient, digest or immediate, quiet hours). :func:`dispatch`
(:mod:`~monitor.alert.outbox`) delivers due rows at least once, with backoff,
Retry-After, rate limits and dead rows the operator hears about.
:mod:`~monitor.alert.render` writes the messages (plain text, Slack mrkdwn,
e-mail HTML, each escaped for its sink) and :mod:`~monitor.alert.channels`
sends them (SMTP and webhooks ourselves, so the outbox sees every status;
other services through apprise).

Apprise URLs carry tokens, so nothing here logs a URL or puts one in an
error: channels are referred to by name, and :mod:`~monitor.alert.redact`
scrubs the URLs from every log record as a second line of defence.
"""

from __future__ import annotations

from monitor.alert.channels import (
    AppriseNotifier,
    DeliveryError,
    Notifier,
    delivery_targets,
    split_channel,
)
from monitor.alert.outbox import (
    ChannelPolicy,
    DispatchSummary,
    backoff,
    channel_policies,
    dispatch,
    render,
)
from monitor.alert.redact import RedactingFilter, install_redaction
from monitor.alert.render import AlertView, DigestStory, Message, render_alert, render_digest
from monitor.alert.routing import StoryRouter, term_roles

__all__ = [
    "AlertView",
    "AppriseNotifier",
    "ChannelPolicy",
    "DeliveryError",
    "DigestStory",
    "DispatchSummary",
    "Message",
    "Notifier",
    "RedactingFilter",
    "StoryRouter",
    "backoff",
    "channel_policies",
    "delivery_targets",
    "dispatch",
    "install_redaction",
    "render",
    "render_alert",
    "render_digest",
    "split_channel",
    "term_roles",
]
