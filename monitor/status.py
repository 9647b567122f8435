"""``monitor status``: the daemon's last cycle, each feed's health, alerts by status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from monitor.health import feed_state
from monitor.store import Store


def status_report(store: Store, now: datetime, *, stale_after: float) -> dict[str, Any]:
    """Everything ``monitor status`` shows, as plain data (the ``--json`` output)."""
    daemon = store.daemon_status()
    beat = daemon.get("heartbeat_at")
    if beat:
        daemon["heartbeat_age_s"] = round((now - datetime.fromisoformat(beat)).total_seconds(), 1)
    feeds = []
    for f in store.feed_health():
        feeds.append(
            {
                "id": f["id"],
                "name": f["name"] or f["title"],
                "url": f["url"],
                "active": bool(f["active"]),
                "health": feed_state(f, now, stale_after=stale_after)
                if f["active"]
                else "inactive",
                "notified_health": f["notified_health"],
                "consecutive_failures": f["consecutive_failures"],
                "last_success_at": f["last_success_at"],
                "last_error": f["last_error"],
                "last_error_type": f["last_error_type"],
                "last_error_at": f["last_error_at"],
                "last_new_entry_at": f["last_new_entry_at"],
                "next_poll_at": f["next_poll_at"],
                "interval_s": f["learnt_interval_s"] or f["interval_s"],
                "entries": f["entries"],
            }
        )
    return {
        "daemon": daemon,
        "feeds": feeds,
        "alerts": store.alert_counts(),
        "operator_notices": store.operator_notices(limit=10),
    }


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the daemon's last cycle, each feed's health and alerts by status.

    Example: monitor status --json
    """
    from monitor.cli import _settings, errors_exit
    from monitor.store import open_store

    with errors_exit():
        settings = _settings(ctx)
        store = open_store(settings.database)
        try:
            report = status_report(
                store, datetime.now(UTC), stale_after=settings.daemon.stale_after
            )
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    d = report["daemon"]
    if not d:
        click.echo("daemon: never ran")
    else:
        state = "stopped " + d["stopped_at"] if d.get("stopped_at") else f"pid {d.get('pid')}"
        beat = d.get("heartbeat_age_s")
        click.echo(
            f"daemon: {state}; started {d.get('started_at')}; last poll {d.get('last_cycle_at')}"
            + (f"; heartbeat {_human(beat)} ago" if beat is not None else "")
        )
        if d.get("reload_error"):
            click.echo("  last reload was refused:")
            for line in str(d["reload_error"]).splitlines():
                click.echo(f"    {line}")
    alerts = report["alerts"]
    click.echo(
        "alerts: " + (", ".join(f"{n} {s}" for s, n in sorted(alerts.items())) or "none yet")
    )
    click.echo(f"{'id':>3}  {'health':<8} {'fails':>5}  {'last success':<25} feed")
    for f in report["feeds"]:
        click.echo(
            f"{f['id']:>3}  {f['health']:<8} {f['consecutive_failures']:>5}  "
            f"{f['last_success_at'] or 'never':<25} {f['name'] or f['url']}"
        )
        if f["last_error"] and f["health"] != "ok":
            click.echo(f"{'':>16}{f['last_error']}")
    notices = report["operator_notices"]
    if notices:
        click.echo("recent operator notices:")
        for n in notices:
            click.echo(f"  {n['created_at']}  {n['status']:<10} {n['title']}")


__all__ = ["status", "status_report"]
