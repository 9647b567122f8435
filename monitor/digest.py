"""Digest schedules and quiet hours: pure functions of a schedule and a clock.

A digest rule's ``schedule`` (see the rules file header) is ``hourly``,
``daily [HH:MM]`` (default 08:00) or ``weekly [mon..sun] [HH:MM]`` (default
Monday 08:00), in UTC. A digest row waits in the outbox until the end of its
period, :func:`next_run`; the dispatcher then sends one message per channel
holding every due row, grouped by story, and an empty period sends nothing
because it has no rows.

Quiet hours (``HH:MM-HH:MM``, UTC, may wrap midnight) hold a channel's
messages: hits found during them wait until the quiet hours end and go out
together in one message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SCHEDULE = re.compile(
    r"(?P<kind>hourly|daily|weekly)(?: (?P<day>mon|tue|wed|thu|fri|sat|sun))?"
    r"(?: (?P<h>\d\d):(?P<m>\d\d))?"
)
_QUIET = re.compile(r"(\d\d):(\d\d)\s*-\s*(\d\d):(\d\d)")
#: The schedule name of rows held by quiet hours.
QUIET = "quiet"


def next_run(schedule: str, after: datetime) -> datetime:
    """The first period end strictly after ``after`` (UTC).

    >>> next_run("daily 08:00", datetime(2026, 3, 1, 9, 0, tzinfo=UTC)).isoformat()
    '2026-03-02T08:00:00+00:00'
    """
    m = _SCHEDULE.fullmatch(schedule.strip())
    if m is None:
        raise ValueError(f"not a digest schedule: {schedule!r}")
    after = after.astimezone(UTC)
    if m["kind"] == "hourly":
        return after.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    at = time(int(m["h"] or 8), int(m["m"] or 0), tzinfo=UTC)
    candidate = datetime.combine(after.date(), at)
    if m["kind"] == "daily":
        return candidate if candidate > after else candidate + timedelta(days=1)
    day = _DAYS.index(m["day"] or "mon")
    candidate += timedelta(days=(day - candidate.weekday()) % 7)
    return candidate if candidate > after else candidate + timedelta(days=7)


@dataclass(frozen=True)
class QuietHours:
    """A daily window (UTC) in which a channel gets no messages."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """``"22:00-07:00"`` -> QuietHours; ValueError if it is not that shape."""
        m = _QUIET.fullmatch(text.strip())
        if m is None:
            raise ValueError("expected quiet hours as HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
            raise ValueError("expected quiet hours as HH:MM-HH:MM (two different times)")
        return cls(time(h1, m1), time(h2, m2))

    def until(self, now: datetime) -> datetime | None:
        """When the quiet hours holding ``now`` end, or None if ``now`` is not in them."""
        now = now.astimezone(UTC)
        t = now.time().replace(tzinfo=None)
        today_end = datetime.combine(now.date(), self.end, tzinfo=UTC)
        if self.start < self.end:
            return today_end if self.start <= t < self.end else None
        # Wrapping midnight, e.g. 22:00-07:00.
        if t >= self.start:
            return today_end + timedelta(days=1)
        if t < self.end:
            return today_end
        return None


__all__ = ["QUIET", "QuietHours", "next_run"]
