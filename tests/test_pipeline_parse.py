"""Issue #8's parse stage through the real Monitor and a loopback server: an
unchanged body is never parsed twice, and big bodies are parsed in worker
processes with the same result as in a thread."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import feedparser
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.config import FeedConfig, FetchConfig, Secret, Settings, load_settings
from monitor.exceptions import ConfigError, ParseError
from monitor.parse import ParsePool, parse_feed
from monitor.pipeline import Monitor, make_monitor
from monitor.rules import rules_from_text
from monitor.types import FeedResult, PollSummary

RULES = rules_from_text(
    """
rules:
  - name: walkout
    all:
      - [employees, workers]
      - [walkout, walked out]
"""
)


def feed(*guids: str, note: str = "") -> bytes:
    items = "".join(
        f"<item><guid>{g}</guid><title>Employees stage walkout {g}</title>"
        f"<description>Staff left{note}.</description></item>"
        for g in guids
    )
    return f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()


class NoNotifier:
    async def send(self, channel: str, message: Any) -> None:  # pragma: no cover - unused
        raise AssertionError("these tests never deliver")


def make(tmp_path: Path, url: str, **kw: Any) -> Monitor:
    settings = Settings(
        path=None,
        database=tmp_path / "m.db",
        rules=(),
        feeds=(FeedConfig(url=url, name="T"),),
        channels={"c": Secret("console://")},
        fetch=FetchConfig(allow_networks=("127.0.0.1/32",), total_timeout=5, read_timeout=3),
    )
    m = make_monitor(settings, _rules=RULES, _notifier=NoNotifier(), **kw)
    m.sync_feeds()
    return m


def poll_each(m: Monitor, before: list[Callable[[], None]]) -> list[FeedResult]:
    """One poll after each callable in ``before`` ran."""

    async def go() -> list[FeedResult]:
        out = []
        try:
            for step in before:
                step()
                (result,) = await m.poll_all()
                out.append(result)
        finally:
            await m.aclose()
        return out

    return asyncio.run(go())


def serve_bodies(server: HTTPServer, path: str, bodies: list[bytes]) -> list[int]:
    """A server that ignores If-None-Match: always 200, a fresh ETag, the next body."""
    count = [0]

    def handler(request: Request) -> Response:
        count[0] += 1
        body = bodies[min(count[0], len(bodies)) - 1]
        return Response(body, content_type="application/rss+xml", headers={"ETag": f'"{count[0]}"'})

    server.expect_request(path).respond_with_handler(handler)
    return count


def test_unchanged_body_is_never_parsed_twice(
    tmp_path: Path, server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #8: a 200 with the bytes parsed last time (the server ignores ETag) is
    recorded as not modified with no parse and no new rows; a changed body is parsed."""
    same = feed("1", "2")
    changed = feed("3", "1", "2")
    serve_bodies(server, "/feed", [same, same, same, changed])
    calls: list[int] = []
    real = feedparser.parse

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(feedparser, "parse", spy)
    m = make(tmp_path, server.url_for("/feed"))
    db = tmp_path / "m.db"
    parses: list[int] = []
    results = poll_each(m, [lambda: parses.append(len(calls)) for _ in range(4)])
    parses.append(len(calls))
    summaries = [r.value for r in results]
    assert all(isinstance(s, PollSummary) for s in summaries), summaries
    assert [s.not_modified for s in summaries] == [False, True, True, False]  # type: ignore[union-attr]
    assert [b - a for a, b in itertools.pairwise(parses)] == [1, 0, 0, 1]
    assert m.parser.parsed == 2
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT guid FROM entries ORDER BY guid").fetchall() == [
            ("1",),
            ("2",),
            ("3",),
        ]
        sha, etag, polled, success = conn.execute(
            "SELECT parse_body_sha, etag, last_polled_at, last_success_at FROM feeds"
        ).fetchone()
    assert sha and etag == '"4"' and polled == success


def test_body_hash_is_kept_only_after_a_stored_parse(tmp_path: Path, server: HTTPServer) -> None:
    """A body that does not parse leaves no hash: the same body is tried again (A17)."""
    bad = b"<html><body>not a feed</body></html>"
    serve_bodies(server, "/feed", [bad, bad, feed("1")])
    m = make(tmp_path, server.url_for("/feed"))
    results = poll_each(m, [lambda: None] * 3)
    assert [r.ok for r in results] == [False, False, True]
    assert isinstance(results[1].value, ParseError)
    assert m.parser.parsed == 3


def big_feed(n: int, known: int = 0) -> tuple[bytes, dict[str, str | None]]:
    items = "".join(
        f"<item><guid>g{i}</guid><title>Title {i} &amp; more</title>"
        f"<link>https://example.org/a/{i}</link><description>&lt;p&gt;Paragraph {i} "
        f"{'text ' * 40}&lt;/p&gt;</description><pubDate>Mon, 02 Jun 2025 08:30:00 +0000"
        f"</pubDate></item>"
        for i in range(n)
    )
    body = f'<rss version="2.0"><channel><title>Big</title>{items}</channel></rss>'.encode()
    return body, {f"g{i}": None for i in range(known)}


def test_big_bodies_are_parsed_in_a_worker_with_the_same_result() -> None:
    """Issue #8: what is left after known entries are cut decides: a few new entries
    are parsed in a thread, many in a worker process, with equal results."""
    pool = ParsePool(workers=2, min_bytes=8 * 1024)
    big, _ = big_feed(60)
    few, known = big_feed(60, known=57)

    async def go() -> tuple[Any, Any]:
        try:
            return await asyncio.gather(
                pool.parse("https://example.org/f", big, {}),
                pool.parse("https://example.org/f", few, {}, known_guids=known),
            )
        finally:
            pool.close()

    in_worker, in_thread = asyncio.run(go())
    assert (pool.parsed, pool.in_workers) == (2, 1)
    assert in_worker == parse_feed("https://example.org/f", big, {})
    assert [e.block_sha for e in in_worker.entries] == [
        e.block_sha for e in parse_feed("https://example.org/f", big, {}).entries
    ]
    assert [e.guid for e in in_thread.entries] == ["g57", "g58", "g59"]
    assert in_thread.known_skipped == 57


def test_parse_errors_come_back_from_the_worker() -> None:
    pool = ParsePool(workers=1, min_bytes=10)
    html = b"<html><body>" + b"<p>not a feed</p>" * 100 + b"</body></html>"

    async def go() -> None:
        try:
            await pool.parse("https://example.org/f", html, {})
        finally:
            pool.close()

    with pytest.raises(ParseError, match="an HTML page"):
        asyncio.run(go())
    assert pool.in_workers == 1


def test_rematch_edits_is_a_daemon_option_off_by_default(tmp_path: Path) -> None:
    """B22: re-matching edited entries is ``daemon.rematch_edits`` (default false)."""
    base = "database: m.db\nrules: rules/\n"
    (tmp_path / "a.yaml").write_text(base)
    (tmp_path / "b.yaml").write_text(base + "daemon:\n  rematch_edits: true\n")
    (tmp_path / "c.yaml").write_text(base + "daemon:\n  rematch_edits: sometimes\n")
    assert load_settings(tmp_path / "a.yaml", environ={}).daemon.rematch_edits is False
    assert load_settings(tmp_path / "b.yaml", environ={}).daemon.rematch_edits is True
    with pytest.raises(ConfigError, match=r"daemon\.rematch_edits: expected true or false"):
        load_settings(tmp_path / "c.yaml", environ={})
