"""Feed health: pure decisions on whether a feed is fine, stale, silent or gone.

Every reader in the survey fails the same way: a feed stops working and
nobody notices (Miniflux gives up after three errors, FAULTS A8, #879). Here a
feed is never disabled by transient errors; instead its health is computed
from its row and the operator hears once when it changes:

``ok``       polled fine recently (or failing for less than ``stale_after``)
``failing``  the last polls failed, for less than ``stale_after``; no notice yet
``stale``    failing for more than ``stale_after`` (one notice)
``silent``   polls work but nothing new for far longer than its own rhythm (one notice)
``gone``     the server said 410 Gone; polling stopped (one notice)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.fetch import redact_url

#: States worth telling the operator about; the others count as ``ok`` for notices.
NOTICE_STATES = frozenset({"stale", "silent", "gone"})
#: A feed is silent after this many of its own rhythms without a new entry.
SILENT_RHYTHMS = 10


def _dt(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value))


def feed_state(feed: Mapping[str, Any], now: datetime, *, stale_after: float) -> str:
    """The health of one feed row (as :meth:`Store.feed_health` returns it). Pure."""
    if feed.get("state") == "gone":
        return "gone"
    if feed.get("consecutive_failures"):
        since = _dt(feed.get("last_success_at")) or _dt(feed.get("created_at"))
        if since is not None and (now - since).total_seconds() > stale_after:
            return "stale"
        return "failing"
    rhythm = feed.get("rhythm_s")
    last_new = _dt(feed.get("last_new_entry_at"))
    if rhythm and last_new is not None:
        quiet = (now - last_new).total_seconds()
        if quiet > max(stale_after, SILENT_RHYTHMS * float(rhythm)):
            return "silent"
    return "ok"


def notice_level(state: str) -> str:
    """The state as far as notices go: ``failing`` is not worth a notice yet."""
    return state if state in NOTICE_STATES else "ok"


@dataclass(frozen=True)
class HealthChange:
    """A feed whose notice level changed since the operator was last told."""

    feed_id: int
    name: str
    url: str
    #: The level the operator was last told about.
    before: str
    #: The level now.
    after: str
    last_error: str | None


def health_changes(
    feeds: Sequence[Mapping[str, Any]], now: datetime, *, stale_after: float
) -> list[HealthChange]:
    """Active feeds whose notice level differs from ``notified_health``. Pure."""
    out = []
    for f in feeds:
        if not f.get("active"):
            continue
        level = notice_level(feed_state(f, now, stale_after=stale_after))
        before = f.get("notified_health") or "ok"
        if level != before:
            out.append(
                HealthChange(
                    feed_id=int(f["id"]),
                    name=str(f.get("name") or f.get("title") or f["url"]),
                    url=redact_url(str(f["url"])),
                    before=before,
                    after=level,
                    last_error=f.get("last_error"),
                )
            )
    return out


def describe_change(change: HealthChange) -> tuple[str, str]:
    """Title and body of the operator notice for one change."""
    what = {
        "stale": "is failing",
        "silent": "has published nothing for far longer than usual",
        "gone": "is gone (HTTP 410); polling stopped",
        "ok": "works again",
    }[change.after]
    title = f"[monitor] feed {change.name} {what}"
    lines = [
        f"Feed: {change.name}",
        f"URL: {change.url}",
        f"State: {change.before} -> {change.after}",
    ]
    if change.last_error and change.after != "ok":
        lines.append(f"Last error: {change.last_error}")
    if change.after == "gone":
        lines.append("Edit or remove the feed's URL in the configuration to resume.")
    lines.append("You hear about this feed again only when its state changes.")
    return title, "\n".join(lines)


def wal_change(size: int, limit: int, *, told: bool) -> bool | None:
    """Whether the write-ahead log's size is news for the operator (D6). Pure.

    ``True``: it passed ``limit`` and nobody was told yet; ``False``: it was
    reported and has shrunk below half the limit again (the halfway mark keeps
    a log hovering at the limit from sending a notice every minute); ``None``:
    nothing to say.

    >>> wal_change(300, 256, told=False), wal_change(200, 256, told=True)
    (True, None)
    """
    if not told and size > limit:
        return True
    if told and size < limit / 2:
        return False
    return None


__all__ = [
    "NOTICE_STATES",
    "HealthChange",
    "describe_change",
    "feed_state",
    "health_changes",
    "notice_level",
    "wal_change",
]
