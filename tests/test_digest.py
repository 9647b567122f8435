"""Digest schedules and quiet hours in a time zone, across daylight-saving changes (issue #4).

Europe/Berlin moves to summer time on 2026-03-29 (02:00 CET -> 03:00 CEST)
and back on 2026-10-25 (03:00 CEST -> 02:00 CET).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.config import Secret
from monitor.digest import QuietHours, next_run, zone
from monitor.exceptions import RuleError
from monitor.rules import load_rules
from tests.alert_helpers import Clock, entry, match, new_store, store_poll

BERLIN = "Europe/Berlin"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def runs(schedule: str, start: datetime, n: int, tz: str | None = BERLIN) -> list[datetime]:
    out = [next_run(schedule, start, tz)]
    while len(out) < n:
        out.append(next_run(schedule, out[-1], tz))
    return out


def test_daily_0800_berlin_is_0800_on_the_wall_across_both_changes() -> None:
    spring = runs("daily 08:00", utc("2026-03-27 12:00"), 3)
    assert spring == [utc("2026-03-28 07:00"), utc("2026-03-29 06:00"), utc("2026-03-30 06:00")]
    autumn = runs("daily 08:00", utc("2026-10-23 12:00"), 3)
    assert autumn == [utc("2026-10-24 06:00"), utc("2026-10-25 07:00"), utc("2026-10-26 07:00")]
    for t in spring + autumn:
        assert t.tzinfo is UTC
        assert t.astimezone(zone(BERLIN)).strftime("%H:%M") == "08:00"


def test_a_skipped_or_repeated_time_runs_once() -> None:
    # 02:30 does not exist on 2026-03-29: it runs at 03:30 CEST (01:30 UTC), once.
    spring = runs("daily 02:30", utc("2026-03-28 12:00"), 2)
    assert spring == [utc("2026-03-29 01:30"), utc("2026-03-30 00:30")]
    # 02:30 happens twice on 2026-10-25: it runs the first time (CEST), once.
    autumn = runs("daily 02:30", utc("2026-10-24 12:00"), 2)
    assert autumn == [utc("2026-10-25 00:30"), utc("2026-10-26 01:30")]


def test_hourly_and_weekly_in_a_zone() -> None:
    # Across the autumn change the hour 02:00-03:00 happens twice: each is a period.
    hours = runs("hourly", utc("2026-10-24 23:10"), 4)
    assert hours == [utc(f"2026-10-25 0{h}:00") for h in range(4)]
    # India is 5:30 ahead: its hours start at half past in UTC.
    assert next_run("hourly", utc("2026-03-02 10:10"), "Asia/Kolkata") == utc("2026-03-02 10:30")
    weekly = runs("weekly sun 08:00", utc("2026-03-21 12:00"), 2)
    assert weekly == [utc("2026-03-22 07:00"), utc("2026-03-29 06:00")]


def test_utc_remains_the_default() -> None:
    t = utc("2026-03-04 09:30")
    assert (
        next_run("daily 08:00", t) == next_run("daily 08:00", t, "UTC") == utc("2026-03-05 08:00")
    )
    assert next_run("hourly", t) == utc("2026-03-04 10:00")


def test_quiet_hours_in_berlin_end_at_0700_local() -> None:
    q = QuietHours.parse("22:00-07:00", BERLIN)
    # The spring night is an hour shorter; both end at 07:00 on the wall.
    assert q.until(utc("2026-03-28 21:30")) == utc("2026-03-29 05:00")  # 22:30 CET
    assert q.until(utc("2026-10-24 20:30")) == utc("2026-10-25 06:00")  # 22:30 CEST
    assert q.until(utc("2026-03-29 04:59")) == utc("2026-03-29 05:00")  # 06:59 CEST
    assert q.until(utc("2026-03-29 05:00")) is None
    assert q.until(utc("2026-03-28 20:59")) is None  # 21:59 CET
    day = QuietHours.parse("12:00-13:00", BERLIN)
    assert day.until(utc("2026-07-01 10:30")) == utc("2026-07-01 11:00")
    assert day.until(utc("2026-07-01 11:00")) is None


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Atlantis'"):
        zone("Europe/Atlantis")
    with pytest.raises(ValueError, match="unknown time zone"):
        next_run("daily 08:00", utc("2026-03-02 00:00"), "../../etc/passwd")


RULES = """\
rules:
  - name: digest-berlin
    channels: [team]
    mode: digest
    schedule: daily 08:00
    timezone: Europe/Berlin
    all: [employees, letter]
"""


def test_rule_timezone_sets_when_a_digest_row_is_due(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    rules = load_rules([path])
    assert rules.rules[0].timezone == BERLIN
    store = new_store(tmp_path)
    clock = Clock(utc("2026-03-28 12:00"))
    store_poll(
        store,
        "Outlet",
        [entry("a", "Staff letter", "t", [match("digest-berlin", ["team"])])],
        now=clock(),
        channels={"team": Secret("console://")},
        rules=rules,
    )
    (row,) = store.db.execute("SELECT digest, next_attempt_at FROM alerts").fetchall()
    assert row[0] == "daily 08:00 Europe/Berlin"
    assert datetime.fromisoformat(row[1]) == utc("2026-03-29 06:00")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "{name: r, mode: digest, schedule: daily 08:00, timezone: Mars/Base, any: [x]}",
            "rules.yaml:2: rules[0].timezone: unknown time zone 'Mars/Base'",
        ),
        (
            "{name: r, timezone: Europe/Berlin, any: [x]}",
            "rules.yaml:2: rules[0].timezone: only a digest rule has a timezone",
        ),
        (
            "{name: r, mode: digest, schedule: hourly, timezone: [UTC], any: [x]}",
            "rules.yaml:2: rules[0].timezone: expected a time zone name",
        ),
        ("{name: r, updates: often, any: [x]}", "rules.yaml:2: rules[0].updates: expected true"),
    ],
)
def test_rule_timezone_and_updates_errors(tmp_path: Path, rule: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(f"rules:\n  - {rule}\n", encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_rules([path])
    assert any(message in e for e in info.value.errors), info.value.errors
