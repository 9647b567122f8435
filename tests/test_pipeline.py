"""One poll at a time through the real Monitor, against a loopback server:
conditional GET, validators, fallbacks and identity across polls."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.alert import Message
from monitor.config import FeedConfig, FetchConfig, Secret, Settings
from monitor.pipeline import Monitor, make_monitor
from monitor.rules import rules_from_text
from monitor.types import PollSummary

RULES = rules_from_text(
    """
rules:
  - name: walkout
    all:
      - [employees, workers]
      - [walkout, walked out, open letter]
"""
)

ITEM = """<item><title>{title}</title><link>{link}</link><guid>{guid}</guid>
<description>{summary}</description></item>"""


def rss(base: str, items: list[dict[str, str]]) -> str:
    body = "".join(
        ITEM.format(
            title=i["title"],
            link=i.get("link", f"{base}/a/{i['guid']}"),
            guid=i["guid"],
            summary=i.get("summary", "A summary."),
        )
        for i in items
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{body}</channel></rss>'
    )


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []

    async def send(self, channel: str, message: Message) -> None:
        self.sent.append((channel, message))


def serve_in_turn(server: HTTPServer, path: str, bodies: list[str]) -> None:
    """Answer each request to path with the next body; the last one repeats."""
    queue = list(bodies)

    def handler(_request: Request) -> Response:
        body = queue.pop(0) if len(queue) > 1 else queue[0]
        return Response(body, content_type="application/rss+xml")

    server.expect_request(path).respond_with_handler(handler)


def make(tmp_path: Path, server: HTTPServer, notifier: Recorder, *, first: bool = True) -> Monitor:
    settings = Settings(
        path=None,
        database=tmp_path / "m.db",
        rules=(),
        feeds=(FeedConfig(url=server.url_for("/feed"), name="T", alert_on_first_poll=first),),
        channels={"c": Secret("console://")},
        fetch=FetchConfig(allow_networks=("127.0.0.1/32",), total_timeout=5, read_timeout=3),
    )
    m = make_monitor(settings, _rules=RULES, _notifier=notifier)
    m.sync_feeds()
    return m


def cycles(m: Monitor, n: int) -> list[PollSummary]:
    """Run n poll-and-deliver cycles in one event loop, then close the monitor."""

    async def go() -> list[PollSummary]:
        out = []
        try:
            for _ in range(n):
                (result,) = await m.poll_all()
                await m.dispatch()
                assert isinstance(result.value, PollSummary), result.value
                out.append(result.value)
        finally:
            await m.fetcher.aclose()
        return out

    return asyncio.run(go())


def failed_poll(m: Monitor) -> bool:
    async def go() -> bool:
        try:
            (result,) = await m.poll_all()
        finally:
            await m.fetcher.aclose()
        return result.ok

    return asyncio.run(go())


PAGE = (
    "<html><head><title>{t}</title></head><body><nav><a href='/'>Home</a></nav><article>"
    "<h1>{t}</h1><p>{p}</p>"
    "<p>The letter was circulated internally for two weeks before it was sent to management.</p>"
    "<p>A company spokesperson said the firm values the views of its staff and would respond.</p>"
    "<p>Organizers said they would continue to press for a public answer in the coming weeks.</p>"
    "</article></body></html>"
)


def test_conditional_get_uses_stored_validators(tmp_path: Path, server: HTTPServer) -> None:
    """FAULTS A16: the stored ETag goes back verbatim; 304 counts as success."""
    base = server.url_for("").rstrip("/")
    seen: list[str | None] = []

    def feed(request: Request) -> Response:
        seen.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"v1"':
            return Response(status=304)
        return Response(rss(base, [{"guid": "1", "title": "Hello"}]), headers={"ETag": '"v1"'})

    server.expect_request("/feed").respond_with_handler(feed)
    server.expect_request("/a/1").respond_with_data("nope", status=404)
    m = make(tmp_path, server, Recorder())
    first, second = cycles(m, 2)
    assert first.entries_new == 1
    assert second.not_modified
    assert seen == [None, '"v1"']
    assert m.store.active_feeds()[0].consecutive_failures == 0


def test_validators_not_stored_when_the_body_does_not_parse(
    tmp_path: Path, server: HTTPServer
) -> None:
    """FAULTS A17: a new ETag with an unparseable body is not kept."""
    server.expect_request("/feed").respond_with_data(
        "<html><body>maintenance</body></html>",
        headers={"ETag": '"broken"'},
        content_type="text/html",
    )
    m = make(tmp_path, server, Recorder())
    assert not failed_poll(m)
    feed = m.store.active_feeds()[0]
    assert feed.etag is None and feed.consecutive_failures == 1


def test_article_text_is_extracted_or_the_summary_stands_in(
    tmp_path: Path, server: HTTPServer
) -> None:
    base = server.url_for("").rstrip("/")
    server.expect_request("/feed").respond_with_data(
        rss(
            base,
            [
                {"guid": "1", "title": "Staff protest", "summary": "Short."},
                {
                    "guid": "2",
                    "title": "Staff protest again",
                    "summary": "Employees staged a walkout.",
                },
            ],
        ),
        content_type="application/rss+xml",
    )
    para = "Hundreds of employees signed an open letter asking the company to end the contract."
    server.expect_request("/a/1").respond_with_data(
        PAGE.format(t="Staff protest", p=para), content_type="text/html"
    )
    server.expect_request("/a/2").respond_with_data(
        "%PDF-1.4 binary", content_type="application/pdf"
    )
    notifier = Recorder()
    m = make(tmp_path, server, notifier)
    (summary,) = cycles(m, 1)
    rows = {r["key"]: r for r in m.store.db.query("SELECT * FROM entries")}
    assert (summary.entries_new, summary.hits_new) == (2, 2)
    assert rows["guid:1"]["text_source"] == "article" and "open letter" in rows["guid:1"]["text"]
    assert rows["guid:2"]["text_source"] == "summary"
    assert "ExtractError" in rows["guid:2"]["extract_error"]
    assert len(notifier.sent) == 2
    assert {msg.title for _, msg in notifier.sent} == {
        "[monitor] walkout: Staff protest",
        "[monitor] walkout: Staff protest again",
    }


def test_changed_guid_with_same_link_does_not_alert_again(
    tmp_path: Path, server: HTTPServer
) -> None:
    """FAULTS B21."""
    base = server.url_for("").rstrip("/")
    items = [{"guid": "old-1", "title": "Employees walked out", "link": f"{base}/a/x"}]
    items2 = [
        {"guid": "new-1", "title": "Employees walked out", "link": f"{base}/a/x?utm_source=rss"}
    ]
    serve_in_turn(server, "/feed", [rss(base, items), rss(base, items2)])
    server.expect_request("/a/x").respond_with_data("x", status=404)
    notifier = Recorder()
    m = make(tmp_path, server, notifier)
    first, second = cycles(m, 2)
    assert first.hits_new == 1
    assert second.entries_new == 0
    assert len(notifier.sent) == 1


def test_baseline_then_only_new_entries_alert(tmp_path: Path, server: HTTPServer) -> None:
    """FAULTS B25."""
    base = server.url_for("").rstrip("/")
    one = [{"guid": "1", "title": "Employees walked out at A"}]
    two = [{"guid": "2", "title": "Workers walked out at B"}, *one]
    serve_in_turn(server, "/feed", [rss(base, one), rss(base, two)])
    server.expect_request("/a/1").respond_with_data("x", status=404)
    server.expect_request("/a/2").respond_with_data("x", status=404)
    notifier = Recorder()
    m = make(tmp_path, server, notifier, first=False)
    first, second = cycles(m, 2)
    assert first.baseline and first.hits_new == 1 and first.alerts_queued == 0
    assert not second.baseline and second.alerts_queued == 1
    assert [msg.title for _, msg in notifier.sent] == ["[monitor] walkout: Workers walked out at B"]


def test_retry_after_pushes_the_next_poll(tmp_path: Path, server: HTTPServer) -> None:
    """FAULTS A6."""
    server.expect_request("/feed").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7200"}
    )
    m = make(tmp_path, server, Recorder())
    assert not failed_poll(m)
    feed = m.store.active_feeds()[0]
    from monitor.store import from_iso

    due = from_iso(feed.next_poll_at)
    assert due is not None
    assert (due - m.now()).total_seconds() > 7000
