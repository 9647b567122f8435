"""``monitor alerts list|retry`` and ``monitor test-alert``: the outbox from the command line."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import click

from monitor.alert import AppriseNotifier, render_alert
from monitor.alert.render import AlertView
from monitor.exceptions import AlertError
from monitor.store import open_store

STATUSES = ("pending", "sending", "sent", "skipped", "dead")


@click.group("alerts")
def alerts_group() -> None:
    """The outbox: one row per hit x channel (and e-mail recipient)."""


@alerts_group.command("list")
@click.option(
    "--status", type=click.Choice(STATUSES), default=None, help="Only rows in this state."
)
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many rows.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
@click.pass_context
def list_alerts(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """List outbox rows, newest first.

    Example: monitor alerts list --status dead
    """
    from monitor.cli import _settings, errors_exit

    with errors_exit():
        store = open_store(_settings(ctx).database)
        rows = store.alerts(status=status, limit=limit)
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no alerts")
    for r in rows:
        when = r["sent_at"] or r["next_attempt_at"] or ""
        kind = f" digest {r['digest']}" if r["digest"] else ""
        kind += " (update)" if r.get("is_update") else ""
        click.echo(
            f"#{r['id']}  {r['status']:<8} {r['channel']}{kind}  hit #{r['hit_id']}  "
            f"attempts {r['attempts']}  {when}"
        )
        click.echo(f"    {r['title']}")
        if r["last_error"]:
            click.echo(f"    {r['last_error']}")


@alerts_group.command("retry")
@click.argument("alert_id", type=int)
@click.pass_context
def retry_alert(ctx: click.Context, alert_id: int) -> None:
    """Send a dead (or skipped) alert again: due now, attempts reset.

    Example: monitor alerts retry 42
    """
    from monitor.cli import _settings, errors_exit

    with errors_exit():
        store = open_store(_settings(ctx).database)
        ok = store.retry_alert(alert_id, datetime.now(UTC))
        store.close()
    if not ok:
        raise click.ClickException(f"no alert #{alert_id} that could be retried (see alerts list)")
    click.echo(f"alert #{alert_id} is pending; the daemon (or run --once) sends it")


@click.command("test-alert")
@click.argument("channel")
@click.pass_context
def test_alert(ctx: click.Context, channel: str) -> None:
    """Send a test message to CHANNEL now and print the result.

    The channel's own templates, if it has any, render the message, so this
    also shows what they look like.

    Example: monitor test-alert inbox
    """
    from monitor.cli import _settings, errors_exit

    with errors_exit():
        settings = _settings(ctx)
    if channel.partition("#")[0] not in settings.channels:
        names = ", ".join(sorted(settings.channels)) or "none"
        raise click.ClickException(f"no channel {channel!r} (configured: {names})")
    view = AlertView(
        hit_id=0,
        title="monitor test alert",
        outlet="monitor",
        published=datetime.now(UTC).isoformat(timespec="seconds"),
        link=None,
        rule="test-alert",
        category=None,
        terms=("test",),
        sentence="This is a test message from monitor; no action is needed.",
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    options = settings.channel_options.get(channel.partition("#")[0])
    message = render_alert(
        view,
        token=f"test-{stamp}.{channel}",
        templates=options.templates if options is not None else None,
    )
    notifier = AppriseNotifier(settings.channels, timeout=settings.alerts.send_timeout)
    try:
        asyncio.run(notifier.send(channel, message))
    except AlertError as e:
        click.echo(f"FAILED: {e}", err=True)
        ctx.exit(1)
    click.echo(f"sent a test message to channel {channel!r}")


__all__ = ["alerts_group", "test_alert"]
