"""Digest schedules and quiet hours: pure functions of a schedule, a time zone and a clock.

A digest rule's ``schedule`` (see the rules file header) is ``hourly``,
``daily [HH:MM]`` (default 08:00) or ``weekly [mon..sun] [HH:MM]`` (default
Monday 08:00), read in the rule's ``timezone`` (an IANA name such as
``Europe/Berlin``; UTC when it has none). A digest row waits in the outbox
until the end of its period, :func:`next_run`; the dispatcher then sends one
message per channel holding every due row, grouped by story, and an empty
period sends nothing because it has no rows.

Times are wall-clock times in the zone, so "daily 08:00" in Europe/Berlin is
08:00 on both sides of a daylight-saving change (07:00 UTC in winter, 06:00
UTC in summer). A time the clocks skip (02:30 on the spring-forward night)
runs when the clocks say 03:30, once; a time they pass twice (02:30 on the
fall-back night) runs the first time, once. "hourly" is the top of each
hour in the zone (it differs from UTC's only in zones offset by part of an
hour).

Quiet hours (``HH:MM-HH:MM``, may wrap midnight, in the channel's
``timezone``, default UTC) hold a channel's messages: hits found during them
wait until the quiet hours end and go out together in one message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SCHEDULE = re.compile(
    r"(?P<kind>hourly|daily|weekly)(?: (?P<day>mon|tue|wed|thu|fri|sat|sun))?"
    r"(?: (?P<h>\d\d):(?P<m>\d\d))?"
)
_QUIET = re.compile(r"(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)")
#: The schedule name of rows held by quiet hours.
QUIET = "quiet"


def zone(name: str | None) -> tzinfo:
    """The time zone named ``name`` (IANA, e.g. ``Europe/Berlin``); UTC for None or "UTC".

    Raises ValueError for a name the system's time zone database does not know.
    """
    if name is None or name.strip().upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: a name like "../x" that is not a key at all.
        raise ValueError(
            f"unknown time zone {name!r} (expected an IANA name such as Europe/Berlin or UTC)"
        ) from None


def _local(day: datetime, at: time, tz: tzinfo) -> datetime:
    """Wall-clock ``at`` on ``day``'s date in ``tz`` (fold=0: the first of a repeated time)."""
    return datetime.combine(day.date(), at).replace(tzinfo=tz)


def next_run(schedule: str, after: datetime, tz: tzinfo | str | None = None) -> datetime:
    """The first period end strictly after ``after``, in UTC; the schedule is read in ``tz``.

    >>> next_run("daily 08:00", datetime(2026, 3, 1, 9, 0, tzinfo=UTC)).isoformat()
    '2026-03-02T08:00:00+00:00'
    >>> next_run("daily 08:00", datetime(2026, 3, 29, 0, 0, tzinfo=UTC), "Europe/Berlin").isoformat()
    '2026-03-29T06:00:00+00:00'
    """
    m = _SCHEDULE.fullmatch(schedule.strip())
    if m is None:
        raise ValueError(f"not a digest schedule: {schedule!r}")
    where = zone(tz) if tz is None or isinstance(tz, str) else tz
    after = after.astimezone(UTC)
    if m["kind"] == "hourly":
        # Step through UTC quarter hours (every zone's offset is a multiple of
        # 15 minutes) to the first one that is the top of an hour on the zone's
        # clock; wall-clock arithmetic would misstep across a DST change.
        t = after.replace(minute=after.minute - after.minute % 15, second=0, microsecond=0)
        while True:
            t += timedelta(minutes=15)
            if t.astimezone(where).minute == 0:
                return t
    at = time(int(m["h"] or 8), int(m["m"] or 0))
    local_after = after.astimezone(where)
    candidate = _local(local_after, at, where)
    if m["kind"] == "weekly":
        day = _DAYS.index(m["day"] or "mon")
        candidate = _local(candidate + timedelta(days=(day - candidate.weekday()) % 7), at, where)
    step = timedelta(days=7 if m["kind"] == "weekly" else 1)
    # Compare instants, not wall times; each step is rebuilt from the date so a
    # skipped or repeated hour on the way does not shift later runs.
    while _normal(candidate) <= after:
        candidate = _local(candidate + step, at, where)
    return _normal(candidate)


def _normal(local: datetime) -> datetime:
    """A zone's wall-clock time as a UTC instant.

    fold=0 (PEP 495) reads a time the clocks skipped with the offset from
    before the jump, which lands it as far after the jump as it was meant to be
    after the hour before (02:30 -> 03:30), and a repeated time as its first
    occurrence.
    """
    return local.replace(fold=0).astimezone(UTC)


@dataclass(frozen=True)
class QuietHours:
    """A daily window, on the clock of ``tz``, in which a channel gets no messages."""

    start: time
    end: time
    #: The zone whose clock ``start`` and ``end`` are read on.
    tz: tzinfo = UTC

    @classmethod
    def parse(cls, text: str, tz: tzinfo | str | None = None) -> QuietHours:
        """``"22:00-07:00"`` -> QuietHours; ValueError if it is not that shape (or ``tz`` is unknown)."""
        m = _QUIET.fullmatch(text.strip())
        if m is None:
            raise ValueError("expected quiet hours as HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
            raise ValueError("expected quiet hours as HH:MM-HH:MM (two different times)")
        where = zone(tz) if tz is None or isinstance(tz, str) else tz
        return cls(time(h1, m1), time(h2, m2), where)

    def until(self, now: datetime) -> datetime | None:
        """When the quiet hours holding ``now`` end (UTC), or None if ``now`` is not in them."""
        local = now.astimezone(self.tz)
        t = local.time().replace(tzinfo=None, fold=0)
        if self.start < self.end:
            inside = self.start <= t < self.end
            end_day = local
        else:  # wrapping midnight, e.g. 22:00-07:00
            inside = t >= self.start or t < self.end
            end_day = local + timedelta(days=1) if t >= self.start else local
        if not inside:
            return None
        return _normal(_local(end_day, self.end, self.tz))


__all__ = ["QUIET", "QuietHours", "next_run", "zone"]
