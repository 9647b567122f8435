"""Per-channel options in monitor.yaml: quiet hours, rate limits, templates (issue #4).

Real parts: the configuration is a YAML file read by ``load_settings``, the
outbox is a real SQLite file, deliveries go to a real loopback webhook
receiver or a real SMTP server (aiosmtpd). The clock is the test's; waits for
a rate limit go through the dispatcher's injectable ``sleep``, which moves
that clock, so nothing here asserts on wall time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from itertools import pairwise
from pathlib import Path

import pytest

from monitor.alert import AppriseNotifier, channel_policies, dispatch, render_alert
from monitor.alert.render import AlertView
from monitor.config import AlertConfig, Settings, load_settings, parse_rate
from monitor.exceptions import ConfigError
from monitor.extract import ThreadExtractor
from monitor.pipeline import Monitor, make_monitor
from monitor.rules import RuleSet
from monitor.store import NewEntry, Store
from tests.alert_helpers import Clock, entry, match, new_store, statuses
from tests.conftest import SMTP, Webhook

CONFIG = AlertConfig(max_attempts=3, base_backoff=60, max_backoff=600, send_timeout=5)
TOKEN = "s3cr3t-T0KEN"


def _settings(tmp_path: Path, channels: str) -> Settings:
    path = tmp_path / "monitor.yaml"
    path.write_text(f"rules: {tmp_path}\nchannels:\n{channels}", encoding="utf-8")
    return load_settings(path, environ={"TOKEN": TOKEN})


def _monitor(settings: Settings, store: Store, clock: Clock) -> Monitor:
    return make_monitor(
        settings,
        _store=store,
        _rules=RuleSet(rules=()),
        _extractor=ThreadExtractor(timeout=5),
        _now=clock,
    )


def _poll(monitor: Monitor, entries: Sequence[NewEntry], now: datetime) -> None:
    """One feed's poll written as the pipeline writes it: its router, its hit channels."""
    store = monitor.store
    feed = next(f for f in store.active_feeds() if f.name == "Outlet")
    store.record_poll(
        feed,
        now=now,
        next_poll=now + timedelta(minutes=15),
        title=None,
        etag=None,
        last_modified=None,
        entries=entries,
        channels=monitor.hit_channels,
        baseline=False,
        router=monitor.router,
    )


STORIES = (
    "Salesforce staff sign a letter against the ICE contract",
    "Microsoft workers walk out over Pentagon cloud deal",
    "Google engineers petition leadership about drone imaging",
    "Amazon warehouse organisers rally outside Seattle headquarters",
)


def _story(i: int) -> NewEntry:
    """Report ``i`` of a distinct story (nothing in common), so none is skipped as a repeat."""
    return entry(f"e{i}", STORIES[i], f"Text {i}.", [match(terms=("employees", "letter"))])


# -- the configuration ---------------------------------------------------------


def test_channel_mapping_is_read_beside_plain_urls(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        """\
  plain: console://
  team:
    url: "json://user:${TOKEN}@127.0.0.1/hook"
    quiet_hours: "22:00-07:00"
    timezone: Europe/Berlin
    rate_limit: 20/min
    template:
      title: "${update}[$category] $title"
      text: "$title ($outlet) $link"
""",
    )
    assert set(settings.channels) == {"plain", "team"}
    assert TOKEN in settings.channels["team"].reveal()
    team = settings.channel_options["team"]
    assert team.min_interval == 3.0
    assert team.quiet_hours is not None and str(team.quiet_hours.tz) == "Europe/Berlin"
    assert team.templates == {
        "title": "${update}[$category] $title",
        "text": "$title ($outlet) $link",
    }
    assert settings.channel_options["plain"].quiet_hours is None
    assert settings.channel_options["plain"].min_interval is None
    policies = channel_policies(settings.channels, settings.channel_options)
    assert policies["team"].min_interval == 3.0 and policies["plain"].min_interval == 0.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1/s", 1.0), ("20/min", 3.0), ("1/5m", 300.0), ("100/h", 36.0), ("2/10s", 5.0)],
)
def test_rate_limit_forms(text: str, seconds: float) -> None:
    assert parse_rate(text) == seconds
    assert parse_rate("none") == 0.0


def test_every_channel_error_at_once_with_file_line_and_no_url(tmp_path: Path) -> None:
    """All problems in one ConfigError, each ``file:line: path: message``; the URL never shown."""
    with pytest.raises(ConfigError) as info:
        _settings(
            tmp_path,
            """\
  team:
    url: "json://user:${TOKEN}@127.0.0.1/hook"
    quiet_hours: 25:00-07:00
    timezone: Mars/Olympus_Mons
    rate_limit: fast
    colour: red
    template:
      text: "${title.__class__}"
      markdown: "$nope and $title"
      sms: hi
  nourl:
    timezone: UTC
  badurl:
    url: "nosuchscheme://${TOKEN}"
    rate_limit: 1/s
""",
        )
    text = str(info.value)
    where = str(tmp_path / "monitor.yaml")
    expected = [
        f"{where}:5: channels.team.quiet_hours: expected quiet hours as HH:MM-HH:MM",
        f"{where}:6: channels.team.timezone: unknown time zone 'Mars/Olympus_Mons'",
        f"{where}:7: channels.team.rate_limit: expected a rate like 1/s, 20/min",
        f"{where}:8: channels.team.colour: unknown key",
        f"{where}:10: channels.team.template.text: a '$' that starts no placeholder",
        f"{where}:11: channels.team.template.markdown: unknown placeholder $nope (known: $title",
        f"{where}:12: channels.team.template.sms: unknown key (known: title, text, markdown, html)",
        f"{where}:13: channels.nourl.url: missing; a channel needs its apprise URL",
        f"{where}:16: channels.badurl.url: not a URL apprise can send to",
    ]
    for line in expected:
        assert line in text, f"{line!r} not in:\n{text}"
    assert len(info.value.errors) == len(expected)
    assert TOKEN not in text and "nosuchscheme" not in text and "127.0.0.1" not in text


# -- quiet hours -------------------------------------------------------------------


def test_quiet_hours_hold_alerts_then_one_message_after(tmp_path: Path, webhook: Webhook) -> None:
    """Hits found in a channel's quiet hours (Berlin time, on the spring-forward night)
    wait and go out together in the first message after the quiet hours end; a
    channel without quiet hours gets them at once."""
    settings = _settings(
        tmp_path,
        f"""\
  team:
    url: "{webhook.url("hook-team")}"
    quiet_hours: "22:00-07:00"
    timezone: Europe/Berlin
  plain: "{webhook.url("hook-plain")}"
""",
    )
    # 23:30 in Berlin (CET); the quiet hours end at 07:00 CEST = 05:00 UTC.
    clock = Clock(datetime(2026, 3, 28, 22, 30, tzinfo=UTC))
    store = new_store(tmp_path)
    monitor = _monitor(settings, store, clock)
    try:
        _poll(monitor, [_story(0), _story(1)], clock())
        # Routed to wait for the end of the quiet hours, as one bundle.
        team_rows = [r for r in store.alerts() if r["channel"] == "team"]
        assert {(r["digest"], r["next_attempt_at"][:19]) for r in team_rows} == {
            ("quiet", "2026-03-29T05:00:00")
        }
        asyncio.run(monitor.dispatch())
        assert sorted(p["path"] for p in webhook.posts) == ["/hook-plain"] * 2
        clock.t = datetime(2026, 3, 29, 4, 59, tzinfo=UTC)  # 06:59 CEST: still quiet
        _poll(monitor, [_story(2)], clock())
        asyncio.run(monitor.dispatch())
        assert [p["path"] for p in webhook.posts].count("/hook-team") == 0
        clock.t = datetime(2026, 3, 29, 5, 0, tzinfo=UTC)
        summary = asyncio.run(monitor.dispatch())
        assert summary.sent == 3
        team = [p["json"] for p in webhook.posts if p["path"] == "/hook-team"]
        assert len(team) == 1, "one message after the quiet hours, not one per hit"
        assert team[0]["title"] == "[monitor] digest after quiet hours: 3 stories"
        for i in range(3):
            assert STORIES[i] in team[0]["message"]
        assert {s for _, s in statuses(store)} == {"sent"}
    finally:
        asyncio.run(monitor.aclose())


def test_a_row_due_in_quiet_hours_waits_for_their_end(tmp_path: Path, webhook: Webhook) -> None:
    """Rows that became due before the quiet hours but are dispatched in them (a
    daemon that was down) wait too, without counting an attempt, and go out in
    one message after them."""
    settings = _settings(
        tmp_path,
        f"""\
  team:
    url: "{webhook.url("hook-team")}"
    quiet_hours: "22:00-07:00"
""",
    )
    clock = Clock(datetime(2026, 3, 2, 21, 0, tzinfo=UTC))
    store = new_store(tmp_path)
    monitor = _monitor(settings, store, clock)
    try:
        _poll(monitor, [_story(0), _story(1)], clock())
        clock.advance(3600)  # 22:00 UTC: quiet now
        summary = asyncio.run(monitor.dispatch())
        assert (summary.sent, summary.deferred) == (0, 2)
        assert webhook.posts == []
        rows = store.alerts()
        assert {(r["status"], r["attempts"], r["digest"]) for r in rows} == {
            ("pending", 0, "quiet")
        }
        assert all(r["next_attempt_at"].startswith("2026-03-03T07:00:00") for r in rows)
        clock.t = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
        assert asyncio.run(monitor.dispatch()).sent == 2
        (post,) = webhook.posts
        assert post["json"]["title"] == "[monitor] digest after quiet hours: 2 stories"
    finally:
        asyncio.run(monitor.aclose())


# -- rate limits ---------------------------------------------------------------------


class FakeSleep:
    """The dispatcher's sleep: records each wait and moves the test's clock by it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


def _sent_at(store: Store) -> list[datetime]:
    return [
        datetime.fromisoformat(r[0])
        for r in store.db.execute(
            "SELECT sent_at FROM alerts WHERE status = 'sent' ORDER BY sent_at"
        )
    ]


def test_rate_limit_spaces_deliveries_within_and_across_runs(
    tmp_path: Path, webhook: Webhook
) -> None:
    settings = _settings(
        tmp_path,
        f"""\
  team:
    url: "{webhook.url()}"
    rate_limit: 20/min
""",
    )
    clock = Clock()
    store = new_store(tmp_path)
    monitor = _monitor(settings, store, clock)
    policies = channel_policies(settings.channels, settings.channel_options)
    notifier = AppriseNotifier(settings.channels, timeout=5)
    sleep = FakeSleep(clock)

    def run() -> int:
        return asyncio.run(
            dispatch(store, notifier, CONFIG, clock, policies=policies, sleep=sleep)
        ).sent

    try:
        _poll(monitor, [_story(i) for i in range(3)], clock())
        assert run() == 3
        assert sleep.waits == [3.0, 3.0]
        times = _sent_at(store)
        assert [b - a for a, b in pairwise(times)] == [timedelta(seconds=3)] * 2
        # A new run one second later still keeps 3 s from the last delivery.
        clock.advance(1)
        _poll(monitor, [_story(3)], clock())
        assert run() == 1
        assert sleep.waits[-1] == 2.0
        assert len(webhook.posts) == 4
    finally:
        asyncio.run(monitor.aclose())


def test_a_slow_rate_limit_defers_instead_of_sleeping(tmp_path: Path, webhook: Webhook) -> None:
    """One message an hour: the run sends one and puts the others back, due when allowed."""
    settings = _settings(
        tmp_path,
        f"""\
  team:
    url: "{webhook.url()}"
    rate_limit: 1/h
""",
    )
    clock = Clock()
    store = new_store(tmp_path)
    monitor = _monitor(settings, store, clock)
    policies = channel_policies(settings.channels, settings.channel_options)
    notifier = AppriseNotifier(settings.channels, timeout=5)
    sleep = FakeSleep(clock)

    def run() -> tuple[int, int]:
        s = asyncio.run(dispatch(store, notifier, CONFIG, clock, policies=policies, sleep=sleep))
        return s.sent, s.deferred

    try:
        _poll(monitor, [_story(i) for i in range(3)], clock())
        assert run() == (1, 2)
        clock.advance(59 * 60)
        assert run() == (0, 0)  # nothing due yet: no claim, no attempt
        clock.advance(60)
        assert run() == (1, 1)
        clock.advance(3600)
        assert run() == (1, 0)
        assert sleep.waits == []
        assert len(webhook.posts) == 3
        assert all(r["attempts"] == 1 for r in store.alerts())
    finally:
        asyncio.run(monitor.aclose())


# -- templates ---------------------------------------------------------------------

EVIL_TITLE = "<script>alert(1)</script> & <!channel>\r\nBcc: victim@example.org"


def test_custom_templates_render_and_escape_over_real_smtp(tmp_path: Path, smtp: SMTP) -> None:
    """A channel's title, text and html templates are used, and every value in them
    is escaped for its sink: one clean subject line, escaped HTML, no unsafe link."""
    settings = _settings(
        tmp_path,
        f"""\
  inbox:
    url: "{smtp.url()}"
    template:
      title: "[$category] $title"
      text: |
        $title, told by $outlet
        $link
      html: "<h1>$title_link</h1><p>$sentence</p><p>$$5 &amp; $terms</p>"
""",
    )
    clock = Clock()
    store = new_store(tmp_path)
    monitor = _monitor(settings, store, clock)
    try:
        evil = entry(
            "t1",
            EVIL_TITLE,
            "Text.",
            [match(channels=["inbox"], sentence="Salesforce employees <b>signed</b> a letter.")],
            link="javascript:alert(document.cookie)",
        )
        good = entry("t2", "Salesforce & ICE", "Text.", [match(channels=["inbox"])])
        _poll(monitor, [evil], clock())
        _poll(monitor, [good], clock())
        assert asyncio.run(monitor.dispatch()).sent == 2
    finally:
        asyncio.run(monitor.aclose())
    first, second = (
        message_from_bytes(m.original_content, policy=policy.default) for m in smtp.messages
    )
    assert first["Bcc"] is None
    assert first["Subject"] == (
        "[government-contracts] <script>alert(1)</script> & <!channel> Bcc: victim@example.org"
    )
    text = first.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert text.startswith(
        "<script>alert(1)</script> & <!channel> Bcc: victim@example.org, told by Outlet\n"
    )
    assert "(no http(s) link)" in text and "javascript:" not in text
    page = first.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<a " not in page and "javascript:" not in page
    assert "<mark>Salesforce</mark> <mark>employees</mark> &lt;b&gt;signed&lt;/b&gt;" in page
    assert "<p>$5 &amp; Salesforce, employees, letter, ICE</p>" in page
    good_page = second.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert '<h1><a href="https://news.example.org/t2">Salesforce &amp; ICE</a></h1>' in good_page


def test_markdown_template_escapes_for_slack() -> None:
    """C13 and C22 with a template: values are Slack-escaped, the link withheld if unsafe,
    and a template cannot reach Python objects."""
    view = AlertView(
        hit_id=7,
        title="<!channel> <https://evil.example|bank.com>",
        outlet="A & B",
        published="2026-03-01",
        link="https://news.example.org/a?b=1&c=2",
        rule="activism",
        category=None,
        terms=("Salesforce",),
        sentence="Salesforce <!here> staff.",
    )
    m = render_alert(view, templates={"markdown": "*$title_link* ($outlet) $sentence ${token}"})
    assert m.markdown == (
        "*<https://news.example.org/a?b=1&amp;c=2|&lt;!channel&gt; &lt;https://evil.example|bank.com&gt;>* "
        "(A &amp; B) *Salesforce* &lt;!here&gt; staff. monitor hit #7"
    )
    plain = render_alert(view, templates={"title": "${title.__class__} $title"})
    assert "<class" not in plain.title and "${title.__class__}" in plain.title
