"""parse.py: golden feeds in tests/data/feeds/ beside their expected values, the
hostile-XML cases (C1-C3) against a real loopback canary, and the shared corpus."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer

from monitor.exceptions import ParseError
from monitor.parse import (
    MAX_DECOMPRESSED_BYTES,
    MAX_ENTRIES,
    html_to_text,
    parse_feed,
    strip_controls,
)
from monitor.types import EntryData, FeedData

FEEDS = Path(__file__).parent / "data" / "feeds"
CORPUS_FEEDS = Path(__file__).parent.parent.parent / "shared" / "corpus" / "feeds"
RSS = {"content-type": "application/rss+xml; charset=utf-8"}


def parse_fixture(name: str, headers: dict[str, str] | None = None) -> FeedData:
    return parse_feed(f"https://feeds.example.org/{name}", (FEEDS / name).read_bytes(), headers)


def rss(items: str, *, head: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{head}<rss version="2.0"><channel>'
        f"<title>T</title>{items}</channel></rss>"
    ).encode()


# --- golden files ------------------------------------------------------------------------------


def test_rss20_golden() -> None:
    """RSS 2.0: content beats a shorter description, HTML titles become text (C12),
    a non-URL permalink guid is no link (B15), 2999 is kept (B17), a garbage date
    is dropped (B18), a relative link resolves against the feed URL, no date is None
    (B16), and a javascript: link is refused (C11)."""
    feed = parse_fixture("rss20.xml", RSS)
    assert (feed.version, feed.title, feed.link) == (
        "rss20",
        "Example Newsroom & Friends",
        "https://news.example.org/",
    )
    assert feed.warnings == ()
    assert feed.entries == (
        EntryData(
            guid="tag:news.example.org,2024:letter",
            link="https://news.example.org/2024/05/letter",
            title="Workers at Example Corp sign letter against ICE contract",
            summary="More than 300 employees signed an open letter.\n"
            "They ask the company to drop the contract & publish its terms.",
            published=datetime(2024, 5, 14, 13, 30, tzinfo=UTC),
            author="Jane Doe",
        ),
        EntryData(
            guid="not-a-url-permalink",
            link="https://news.example.org/2024/05/walkout",
            title="Breaking: walkout at Example&Co",
            summary="Staff walked out.",
            published=datetime(2999, 1, 1, tzinfo=UTC),
        ),
        EntryData(
            guid="same",
            link=None,
            title="Garbage date",
            summary="The date above is not RFC 822.",
            published=None,
        ),
        EntryData(
            guid=None,
            link="https://feeds.example.org/2024/05/relative",
            title="Relative link, no date",
            summary="Plain < text with an ampersand & a comparison.",
        ),
        EntryData(guid="js-link", link=None, title="Bad scheme", summary=""),
    )


def test_atom10_golden() -> None:
    """Atom 1.0: a type="text" title keeps "<script>" as literal text (C12), a
    type="html" title loses its tags, xml:base resolves links, offsets become UTC
    (B19), and published wins over updated."""
    feed = parse_fixture("atom10.xml", {"content-type": "application/atom+xml"})
    assert (feed.version, feed.title, feed.link, feed.warnings) == (
        "atom10",
        "Example Blog",
        "https://blog.example.com/",
        (),
    )
    assert feed.entries == (
        EntryData(
            guid="urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a",
            link="https://blog.example.com/posts/script-titles",
            title="Why <script> tags in titles stay text",
            summary="A much longer body that should win over the summary.",
            published=datetime(2024, 3, 2, 4, 30, tzinfo=UTC),
            author="Erika Mustermann",
        ),
        EntryData(
            guid="tag:blog.example.com,2024:second",
            link="https://blog.example.com/posts/second",
            title="Emphasis & entities",
            summary="XHTML summary",
            published=datetime(2024, 2, 29, 11, 0, tzinfo=UTC),
        ),
    )


def test_rdf10_golden() -> None:
    """RSS 1.0 (RDF) with dc:date and dc:creator; the rdf:about is the guid."""
    feed = parse_fixture("rdf10.xml")
    assert (feed.version, feed.title, feed.link, feed.warnings) == (
        "rss10",
        "Beispiel Nachrichten",
        "https://heise.example.de/",
        (),
    )
    assert feed.entries == (
        EntryData(
            guid="https://heise.example.de/meldung/1",
            link="https://heise.example.de/meldung/1",
            title="Beschäftigte protestieren gegen Militärauftrag",
            summary="Mitarbeiter unterzeichnen einen offenen Brief.",
            published=datetime(2024, 6, 3, 6, 15, tzinfo=UTC),
            author="Max Muster",
        ),
        EntryData(
            guid="https://heise.example.de/meldung/2",
            link="https://heise.example.de/meldung/2",
            title="Zweite Meldung",
            summary="Ohne Datum.",
        ),
    )


def test_entries_without_ids_and_duplicate_guids_b14_b20() -> None:
    """B14: no guid and no link gives None for both (identity is store's job);
    B20: duplicate guids are both returned, in feed order; a blank guid is None."""
    feed = parse_fixture("no_ids_dup_guids.xml", RSS)
    assert [(e.guid, e.link, e.title) for e in feed.entries] == [
        (None, None, "No guid, no link"),
        ("dup-1", "https://ids.example.net/a", "First with the duplicate guid"),
        ("dup-1", "https://ids.example.net/b", "Second with the duplicate guid"),
        (None, None, "Empty guid"),
    ]
    assert feed.entries[0].summary == "Only a title and a summary."


def test_control_characters_stripped_b8() -> None:
    """B8: NUL, VT, ESC, BEL, NEL and bidi overrides never reach EntryData."""
    feed = parse_fixture("controls.xml", RSS)
    (entry,) = feed.entries
    # feedparser falls back to its loose parser on the NUL and maps the C1 NEL
    # to cp1252's ellipsis; either way no control character survives.
    assert entry.title == "Nulhere vt gnp.exe [31mred…end"
    assert entry.summary == "line one\nline two tabbell"
    for field in (entry.title, entry.summary, entry.guid or ""):
        assert not [c for c in field if ord(c) < 0x20 and c not in "\n\t"]
        assert not set(field) & {"\x7f", "\x85", "\u202e", "\u202c"}
    assert any(w.startswith("bozo: ") for w in feed.warnings)


def test_latin1_declared_utf8_b3() -> None:
    """B3: bytes in latin-1 under a utf-8 declaration decode as cp1252, with a warning."""
    feed = parse_fixture("latin1_declared_utf8.xml", {"content-type": "application/xml"})
    assert feed.entries[0].title == "café naïve"
    assert feed.entries[0].summary == "Größe über alles"
    assert any("CharacterEncodingOverride" in w for w in feed.warnings)


@pytest.mark.parametrize(
    ("name", "title"),
    [("bom_utf8.xml", "Grüße mit BOM"), ("bom_utf16.xml", "Grüße in UTF-16")],
)
def test_byte_order_marks_b5(name: str, title: str) -> None:
    feed = parse_fixture(name, {"content-type": "application/xml"})
    assert [e.title for e in feed.entries] == [title]
    assert feed.warnings == ()


def test_malformed_xml_is_parsed_leniently_b1() -> None:
    """B1: an unclosed tag and a missing </rss>: entries come through, bozo is a warning."""
    feed = parse_fixture("malformed.xml", RSS)
    assert feed.version == "rss20"
    assert [e.link for e in feed.entries] == [
        "https://broken.example.org/1",
        "https://broken.example.org/2",
    ]
    assert feed.entries[0].title == "Unclosed bold title"
    assert [w for w in feed.warnings if w.startswith("bozo: ")]


def test_html_page_is_not_a_feed_b2() -> None:
    with pytest.raises(ParseError) as info:
        parse_fixture("not_a_feed.html", {"content-type": "text/html; charset=utf-8"})
    assert info.value.reason == "not a feed: an HTML page"
    assert info.value.url == "https://feeds.example.org/not_a_feed.html"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a feed: empty body"),
        (b"  \n ", "not a feed: empty body"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', "not a feed: JSON"),
        (b"just some text", "not a feed: no RSS, Atom or RDF document found"),
        # Given these bytes, feedparser.parse() would open() them as a file name.
        (b"/etc/hostname", "not a feed: no RSS, Atom or RDF document found"),
    ],
)
def test_other_non_feeds_raise(content: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed("https://x.example/f", content)
    assert info.value.reason.startswith(reason)


# --- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tue, 14 May 2024 09:30:00 GMT", datetime(2024, 5, 14, 9, 30, tzinfo=UTC)),
        ("Tue, 14 May 2024 23:30:00 -0500", datetime(2024, 5, 15, 4, 30, tzinfo=UTC)),
        ("Wed, 01 Jan 2025 00:30:00 +0200", datetime(2024, 12, 31, 22, 30, tzinfo=UTC)),
        ("Tue, 14 May 2024 09:30:00 EST", datetime(2024, 5, 14, 14, 30, tzinfo=UTC)),
        ("Tue, 14 May 24 09:30:00 GMT", datetime(2024, 5, 14, 9, 30, tzinfo=UTC)),
        ("2024-05-14T09:30:00+02:00", datetime(2024, 5, 14, 7, 30, tzinfo=UTC)),
        ("Mon, 01 Jan 2999 00:00:00 GMT", datetime(2999, 1, 1, tzinfo=UTC)),  # B17 kept
        ("2016/6/29 15:07:41", None),  # B18: feedparser says 2016-11-01
        ("yesterday-ish", None),
        ("", None),
    ],
)
def test_dates_b16_b17_b18_b19(raw: str, expected: datetime | None) -> None:
    item = f"<item><title>x</title><pubDate>{raw}</pubDate></item>" if raw else "<item/>"
    (entry,) = parse_feed("https://x.example/f", rss(item), RSS).entries
    assert entry.published == expected
    if entry.published is not None:
        assert entry.published.tzinfo is UTC


# --- size and compression ----------------------------------------------------------------------


def test_gzip_without_content_encoding_is_sniffed_b13() -> None:
    body = gzip.compress((FEEDS / "rss20.xml").read_bytes())
    feed = parse_feed("https://feeds.example.org/rss20.xml", body, RSS)
    assert len(feed.entries) == 5
    assert "body was gzip-compressed without Content-Encoding" in feed.warnings


def test_gzip_bomb_is_refused_b11_b13() -> None:
    # ~100 KB of gzip that would inflate past the cap; only the cap is decompressed.
    body = gzip.compress(b"<" + b" " * (MAX_DECOMPRESSED_BYTES + 1000), compresslevel=9)
    assert len(body) < 200_000
    with pytest.raises(ParseError, match="when decompressed"):
        parse_feed("https://x.example/f", body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\x1f\x8b\x08\x00garbage-not-deflate", "corrupt gzip body"),
        (gzip.compress(gzip.compress(b"<rss/>")), "gzip body inside a gzip body"),
    ],
)
def test_bad_gzip_is_a_parse_error_b12(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_feed("https://x.example/f", body)
    assert info.value.reason.startswith(reason)


def test_only_the_first_max_entries_are_kept_b10() -> None:
    items = "".join(f"<item><title>n{i}</title><guid>g{i}</guid></item>" for i in range(12))
    feed = parse_feed("https://x.example/f", rss(items), RSS, max_entries=5)
    assert [e.guid for e in feed.entries] == ["g0", "g1", "g2", "g3", "g4"]
    assert feed.warnings == ("kept the first 5 entries; the feed has more",)


def test_surplus_entries_are_never_parsed_b10() -> None:
    """B10: 20k entries cost feedparser seconds of CPU; the surplus is cut from the
    bytes first. An undefined entity in every surplus entry would make the parse
    bozo, so a clean result shows feedparser never saw them."""
    good = "".join(f"<item><title>n{i}</title><guid>g{i}</guid></item>" for i in range(MAX_ENTRIES))
    bad = "<item><title>&undefined;</title></item>" * 20_000
    started = time.monotonic()
    feed = parse_feed("https://x.example/f", rss(good + bad), RSS)
    assert len(feed.entries) == MAX_ENTRIES
    assert feed.entries[-1].guid == f"g{MAX_ENTRIES - 1}"
    assert feed.warnings == (f"kept the first {MAX_ENTRIES} entries; the feed has more",)
    assert time.monotonic() - started < 10  # generous: the uncut parse takes ~8 s here


# --- hostile XML (C1-C3) -----------------------------------------------------------------------


def test_xxe_file_entity_is_not_expanded_c1(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("CANARY-SECRET-4711", encoding="utf-8")
    head = f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>'
    body = rss("<item><title>a &xxe; b</title><description>&xxe;</description></item>", head=head)
    feed = parse_feed("https://x.example/f", body, RSS)
    (entry,) = feed.entries
    assert "CANARY" not in repr(feed)
    assert entry.title in ("a &xxe; b", "a b")


def test_billion_laughs_is_not_expanded_c2() -> None:
    started = time.monotonic()
    feed = parse_fixture("billion_laughs.xml", RSS)
    assert time.monotonic() - started < 5  # generous; it takes milliseconds
    (entry,) = feed.entries
    assert "lollol" not in entry.title
    assert entry.link == "https://laughs.example.org/1"


def test_external_dtd_and_entities_are_never_fetched_c3(httpserver: HTTPServer) -> None:
    """C3: a loopback canary serves a DTD and entities; it must get no request,
    and neither may the feed URL itself (parse never fetches)."""
    canary = httpserver.url_for("")
    httpserver.expect_request("/x.dtd").respond_with_data('<!ENTITY ext "FETCHED">')
    httpserver.expect_request("/e.txt").respond_with_data("FETCHED")
    head = (
        f'<!DOCTYPE rss SYSTEM "{canary}x.dtd" ['
        f'<!ENTITY % pe SYSTEM "{canary}x.dtd"> %pe;'
        f'<!ENTITY ge SYSTEM "{canary}e.txt">]>'
    )
    body = rss("<item><title>t &ge; &ext;</title><guid>g</guid></item>", head=head)
    feed = parse_feed(f"{canary}feed.xml", body, RSS)
    assert [e.guid for e in feed.entries] == ["g"]
    assert "FETCHED" not in repr(feed)
    assert httpserver.log == []


# --- cleaners ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One\nTwo"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<script>alert(1)</script>Hi <style>p{}</style>there", "Hi there"),
        ("Caf&eacute; &amp; &#8220;bar&#8221;", "Café & “bar”"),
        ("AT&T <3 a < b", "AT&T <3 a < b"),
        ("  lots \t of\n\n\n  space  ", "lots of\nspace"),
        ("<img src=x onerror=alert(1)>text", "text"),
        ("unclosed <b>bold", "unclosed bold"),
        ("", ""),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_strip_controls_keeps_newline_tab_and_rtl_marks() -> None:
    assert strip_controls("a\tb\nc\r\nd\re") == "a\tb\nc\nd\ne"
    assert (
        strip_controls("\u200f\u05e9\u05dc\u05d5\u05dd\u200e")
        == "\u200f\u05e9\u05dc\u05d5\u05dd\u200e"
    )
    assert strip_controls("x\u2066y\u2069z\u202ae\x9b") == "xyze"


@given(st.text())
def test_strip_controls_leaves_no_control_characters_b8(text: str) -> None:
    cleaned = strip_controls(text)
    bad = {chr(c) for c in range(0x20)} - {"\n", "\t"}
    bad |= {chr(c) for c in range(0x7F, 0xA0)} | set("\u202a\u202b\u202c\u202d\u202e")
    bad |= set("\u2066\u2067\u2068\u2069")
    assert not set(cleaned) & bad
    assert strip_controls(cleaned) == cleaned


@given(st.text(max_size=300))
def test_html_to_text_never_raises_and_is_clean(html: str) -> None:
    text = html_to_text(html)
    assert text == text.strip()
    assert "\r" not in text and "\x00" not in text


@given(st.binary(max_size=400))
def test_parse_feed_returns_feed_data_or_parse_error(content: bytes) -> None:
    try:
        feed = parse_feed("https://x.example/f", b"<rss version='2.0'><channel>" + content)
    except ParseError:
        return
    assert isinstance(feed, FeedData)


# --- the shared corpus -------------------------------------------------------------------------


@pytest.mark.skipif(not CORPUS_FEEDS.is_dir(), reason="../shared/corpus is not beside the project")
def test_corpus_feeds_parse_or_raise_parse_error() -> None:
    """Every real feed gives a FeedData with entries or a ParseError, nothing else.

    feedparser 6.0 does not read JSON Feed, so the corpus's one .json is a ParseError.
    """
    parsed = failed = entries = 0
    for path in sorted(CORPUS_FEEDS.iterdir()):
        try:
            feed = parse_feed(f"https://corpus.example/{path.name}", path.read_bytes())
        except ParseError as e:
            failed += 1
            assert path.suffix == ".json", (path.name, e.reason)
            continue
        parsed += 1
        entries += len(feed.entries)
        assert feed.entries, path.name
        assert len(feed.entries) <= MAX_ENTRIES
        assert feed.version, path.name
    assert parsed >= 80
    assert entries > 1000


def test_known_guids_are_left_out_before_parsing() -> None:
    """Only new entries are parsed; a block whose guid is stored is dropped (issue #8)."""
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        b"<item><title>new</title><guid>n1</guid></item>"
        b"<item><title>old</title><guid isPermaLink='false'> o1 </guid></item>"
        b"<item><title>entity</title><guid>o&amp;2</guid></item>"
        b"<item><title>no guid</title><link>https://x.org/3</link></item>"
        b"</channel></rss>"
    )
    data = parse_feed("https://x.org/f", body, known_guids={"o1", "o&2", "https://x.org/3"})
    # o1 dropped; the entity guid and the guid-less item are kept (conservative).
    assert [e.title for e in data.entries] == ["new", "entity", "no guid"]
    assert data.known_skipped == 1
    full = parse_feed("https://x.org/f", body)
    assert [e.title for e in full.entries] == ["new", "old", "entity", "no guid"]
    assert full.known_skipped == 0


def test_all_entries_known_is_still_a_feed() -> None:
    body = (
        b'<rss version="2.0"><channel><title>T</title><item><guid>a</guid></item></channel></rss>'
    )
    data = parse_feed("https://x.org/f", body, known_guids={"a"})
    assert data.entries == () and data.known_skipped == 1 and data.title == "T"


@pytest.mark.parametrize(
    "body",
    [
        # Unbalanced tags: nothing is dropped.
        b'<rss version="2.0"><channel><item><guid>a</guid><item><guid>b</guid></item></channel></rss>',
        b'<rss version="2.0"><channel><item><guid>a</guid></channel></rss>',
    ],
)
def test_drop_known_leaves_odd_documents_alone(body: bytes) -> None:
    from monitor.parse import _drop_known

    assert _drop_known(body, {"a", "b"})[:2] == (body, 0)


@pytest.mark.skipif(not CORPUS_FEEDS.is_dir(), reason="../shared/corpus is not beside the project")
def test_dropping_known_guids_never_changes_the_new_entries() -> None:
    """On the real feeds: the entries left after dropping known guids equal the full parse's."""
    checked = 0
    for path in sorted(CORPUS_FEEDS.iterdir()):
        body = path.read_bytes()
        try:
            full = parse_feed("https://example.org/f", body, {"content-type": "application/xml"})
        except ParseError:
            continue
        known = {e.guid for e in full.entries[3:] if e.guid}
        part = parse_feed(
            "https://example.org/f", body, {"content-type": "application/xml"}, known_guids=known
        )
        assert [e for e in part.entries if e.guid not in known] == [
            e for e in full.entries if e.guid not in known
        ], path.name
        checked += 1
    assert checked >= 80


def test_drop_known_keeps_a_changed_block_and_hashes_every_block() -> None:
    """B22: a stored guid whose block changed is kept for parsing; unchanged or
    capped (None) ones are dropped; every block with one plain guid is hashed."""
    from monitor.parse import _drop_known, block_sha

    a = b"<item><guid>a</guid><title>A</title></item>"
    b = b"<item><guid>b</guid><title>B, corrected</title></item>"
    c = b"<item><guid>c</guid><title>C</title></item>"
    body = b'<rss version="2.0"><channel>' + a + b + c + b"</channel></rss>"
    known: dict[str, str | None] = {"a": block_sha(a), "b": "an older hash", "c": None}
    kept, dropped, hashes = _drop_known(body, known)
    assert dropped == 2
    assert kept == b'<rss version="2.0"><channel>' + b + b"</channel></rss>"
    assert hashes == {"a": block_sha(a), "b": block_sha(b), "c": block_sha(c)}
    feed = parse_feed("https://example.org/f", body, known_guids=known)
    assert [(e.guid, e.title, e.block_sha) for e in feed.entries] == [
        ("b", "B, corrected", block_sha(b))
    ]
