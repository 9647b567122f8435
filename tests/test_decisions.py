"""Pure decisions: identity, scheduling, backoff, rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alert import backoff, render
from monitor.config import AlertConfig
from monitor.pipeline import entry_key, new_entries, normalize_link
from monitor.scheduler import MAX_BACKOFF_S, MAX_RETRY_AFTER_S, next_poll_after
from monitor.store import DueAlert
from monitor.types import EntryData

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def entry(
    guid: str | None = None, link: str | None = None, title: str = "t", summary: str = "s"
) -> EntryData:
    return EntryData(guid=guid, link=link, title=title, summary=summary)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.org/a/", "https://www.example.org/a"),
        ("https://example.org/a?utm_source=x&id=3", "https://example.org/a?id=3"),
        ("https://Example.org/a#comments", "https://example.org/a"),
        ("https://example.org/a?b=2&a=1", "https://example.org/a?a=1&b=2"),
    ],
)
def test_normalize_link_equates_variants(a: str, b: str) -> None:
    assert normalize_link(a) == normalize_link(b)


def test_normalize_link_keeps_distinct_pages_apart() -> None:
    assert normalize_link("https://example.org/a?id=3") != normalize_link(
        "https://example.org/a?id=4"
    )
    assert normalize_link("https://example.org:8080/a") != normalize_link("https://example.org/a")


def test_entry_key_prefers_guid_then_link_then_hash() -> None:
    """FAULTS B14: no guid and no link still gives a stable identity."""
    assert entry_key(entry(guid="g1", link="https://x.org/1")) == "guid:g1"
    assert entry_key(entry(link="https://x.org/1")) == "link:x.org/1"
    h1 = entry_key(entry(title="A", summary="B"))
    assert h1.startswith("hash:") and h1 == entry_key(entry(title="A", summary="B"))
    assert h1 != entry_key(entry(title="A", summary="C"))


def test_new_entries_skips_known_keys_links_and_duplicates() -> None:
    """FAULTS B20 (duplicate guids) and B21 (guid changed, same link)."""
    entries = [
        entry(guid="1", link="https://x.org/1"),
        entry(guid="1", link="https://x.org/1-dup"),
        entry(guid="2-new-guid", link="http://x.org/2"),
        entry(guid="3", link="https://x.org/3"),
    ]
    fresh = new_entries(entries, known_keys={"guid:3"}, known_links={"x.org/2"})
    assert [key for key, _ in fresh] == ["guid:1"]


def test_next_poll_after_success_is_one_interval() -> None:
    assert next_poll_after(NOW, 900) == NOW + timedelta(seconds=900)


def test_next_poll_after_failures_backs_off_with_a_cap() -> None:
    """FAULTS A8: doubling backoff, capped, never disabled."""
    delays = [(next_poll_after(NOW, 900, failures=n) - NOW).total_seconds() for n in range(1, 12)]
    assert delays[:3] == [1800, 3600, 7200]
    assert max(delays) == MAX_BACKOFF_S
    assert delays == sorted(delays)


def test_next_poll_after_honours_retry_after() -> None:
    """FAULTS A6/A7."""
    assert next_poll_after(NOW, 60, failures=1, retry_after=7200) == NOW + timedelta(seconds=7200)
    far = next_poll_after(NOW, 60, failures=1, retry_after=10**9)
    assert far == NOW + timedelta(seconds=MAX_RETRY_AFTER_S)


def test_backoff_doubles_with_jitter_and_cap() -> None:
    c = AlertConfig(base_backoff=10, max_backoff=100)
    assert backoff(1, c, rand=lambda: 0.5) == pytest.approx(10)
    assert backoff(3, c, rand=lambda: 0.5) == pytest.approx(40)
    assert backoff(30, c, rand=lambda: 0.5) == pytest.approx(100)
    assert backoff(1, c, rand=lambda: 0.0) == pytest.approx(8)
    assert backoff(1, c, rand=lambda: 1.0) == pytest.approx(12)


def test_render_has_everything_and_no_header_injection() -> None:
    """FAULTS C14: CR/LF in a title never reaches the subject."""
    alert = DueAlert(
        id=7,
        hit_id=42,
        channel="inbox",
        attempts=0,
        rule="tech-worker-activism",
        terms=("Salesforce", "employees", "letter", "CBP"),
        sentence="More than 650 Salesforce employees signed a letter.",
        entry_title="Staff protest\r\nBcc: victim@example.org",
        link="https://news.example.org/story",
        published="2018-06-25T10:00:00+00:00",
        feed_name="Example News",
    )
    m = render(alert)
    assert "\r" not in m.title and "\n" not in m.title
    for part in (
        "Example News",
        "2018-06-25",
        "https://news.example.org/story",
        "tech-worker-activism",
        "Salesforce, employees, letter, CBP",
        "650 Salesforce employees",
        "hit #42",
    ):
        assert part in m.body


def test_redaction_masks_tokens_but_not_hosts() -> None:
    """FAULTS C20: the token goes, the host stays readable."""
    from monitor.alert import RedactingFilter
    from monitor.config import Secret

    url = "json://user:p4ssw0rd-long@127.0.0.1:8080/hooks/T0KEN1234567?key=abcdef123456"
    f = RedactingFilter([("team", Secret(url))])
    assert f.scrub(f"sending to {url}") == "sending to <channel team>"
    scrubbed = f.scrub(
        "GET http://127.0.0.1:8080/hooks/T0KEN1234567 key=abcdef123456 p4ssw0rd-long"
    )
    assert scrubbed == "GET http://127.0.0.1:8080/hooks/*** key=*** ***"
