"""A feed farm on loopback for the benchmarks, run in its own process.

``/feed/{i}.xml``  RSS feed i: a window of 30 entries that slides by 3 each
                   time ``/advance`` is called; ETag per generation, 304 on match
``/static/{i}.xml`` a feed that never changes (ETag "static"), for 304 sweeps
``/page/{n}.html`` real pages from ../shared/corpus/pages (n modulo their count)
``/hook``          POST receiver (apprise json://); ``/hooks`` returns the count
``/advance``       moves every feed one generation on (3 new entries each)
``/big/{i}.xml``   feed i of 50 entries, all new in each generation of
                   ``/big/advance``; ignores If-None-Match (always 200, same bytes
                   within a generation), for the parse benchmark
``/live/...``, ``/grow/...`` the latency and memory benchmarks' feeds (add_live_routes)

Its CPU is not the monitor's: the benchmark measures its own process only.
"""

from __future__ import annotations

import asyncio
import email
import multiprocessing
import random
import re
import socket
import time
from pathlib import Path
from typing import Any

from aiohttp import web

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
WINDOW = 30
STEP = 3


def _pages() -> list[bytes]:
    return [p.read_bytes() for p in sorted((CORPUS / "pages").glob("*.html"))]


def _rss(base: str, feed: int, generation: int) -> bytes:
    items = []
    first = generation * STEP
    for n in range(first + WINDOW - 1, first - 1, -1):
        items.append(
            f"<item><title>Entry {feed}-{n}</title><link>{base}/page/{feed * 1000 + n}.html</link>"
            f"<guid>{feed}-{n}</guid><description>Summary of entry {n} of feed {feed}.</description>"
            f"<pubDate>Mon, 02 Jun 2025 08:30:00 +0000</pubDate></item>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Farm feed {feed}</title><link>{base}/</link>{''.join(items)}</channel></rss>"
    ).encode()


BIG_ENTRIES = 50


def _big_rss(base: str, feed: int, generation: int) -> bytes:
    """50 entries, none shared with another generation; no links (no article fetches),
    and text that matches no rule, so the sweep measures parsing and storing, not alerts."""
    items = "".join(
        f"<item><title>Entry {feed}-{generation}-{n}: the weekly report on local weather</title>"
        f'<guid isPermaLink="false">big-{feed}-{generation}-{n}</guid>'
        f"<description>&lt;p&gt;Summary {n} of feed {feed}. "
        f"{'The trains ran on time and the market opened early on a mild morning. ' * 5}&lt;/p&gt;"
        f"</description><pubDate>Mon, 02 Jun 2025 08:30:00 +0000</pubDate></item>"
        for n in range(BIG_ENTRIES)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Big feed {feed}</title><link>{base}/</link>{items}</channel></rss>"
    ).encode()


def make_app(base: str) -> web.Application:
    pages = _pages()
    state = {"generation": 0, "hooks": 0}

    async def feed(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        etag = f'"g{state["generation"]}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        body = _rss(base, i, state["generation"])
        return web.Response(body=body, content_type="application/rss+xml", headers={"ETag": etag})

    async def static(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"static"':
            return web.Response(status=304, headers={"ETag": '"static"'})
        return web.Response(
            body=_rss(base, 0, 0), content_type="application/rss+xml", headers={"ETag": '"static"'}
        )

    async def page(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        return web.Response(body=pages[n % len(pages)], content_type="text/html")

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        state["hooks"] += 1
        return web.Response(text="ok")

    async def hooks(request: web.Request) -> web.Response:
        return web.json_response({"hooks": state["hooks"]})

    big = {"generation": 0}

    async def big_feed(request: web.Request) -> web.Response:
        i, g = int(request.match_info["i"]), big["generation"]
        return web.Response(
            body=_big_rss(base, i, g),
            content_type="application/rss+xml",
            headers={"ETag": f'"b{g}"'},
        )

    async def big_advance(request: web.Request) -> web.Response:
        big["generation"] += 1
        return web.json_response({"generation": big["generation"]})

    async def advance(request: web.Request) -> web.Response:
        state["generation"] += 1
        return web.json_response({"generation": state["generation"]})

    app = web.Application()
    app.add_routes(
        [
            web.get("/feed/{i}.xml", feed),
            web.get("/static/{i}.xml", static),
            web.get("/page/{n}.html", page),
            web.post("/hook", hook),
            web.get("/hooks", hooks),
            web.get("/advance", advance),
            web.get("/big/advance", big_advance),
            web.get("/big/{i}.xml", big_feed),
        ]
    )
    add_live_routes(app, base)
    return app


# -- live feeds (bench/latency.py) and growing feeds (bench/memory.py) -------

_LIVE_KEY = re.compile(rb"LIVE-(\d+)-(\d+)")


def _words(seed: str, n: int) -> str:
    """``n`` invented words, the same for the same seed: text no other entry shares."""
    rng = random.Random(seed)
    return " ".join(
        "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3))
        for _ in range(n)
    )


def _live_title(feed: int, n: int) -> str:
    # Invented words first, so no two titles (nor texts) look like one story.
    return f"{_words(f't{feed}-{n}', 6).capitalize()} employees walkout LIVE-{feed}-{n}"


def add_live_routes(app: web.Application, base: str) -> None:
    """Routes for the latency and memory benchmarks; all times are this process's monotonic clock.

    ``/live/start?feeds=N&every=S&count=M`` one new entry every S seconds, round
                            robin over live feeds 0..N-1, M in all (a steady load)
    ``/live/{i}.xml``       live feed i: its newest 20 entries, ETag per entry count;
                            stamps the first request whose answer showed each entry
    ``/live/page/{k}.html`` the article page of entry k (unique generated text)
    ``/live/hook``          POST receiver: stamps when the alert naming entry k arrived
    ``/live/smtp``          starts an SMTP receiver (once) that stamps the same; answers its port
    ``/live/report``        JSON: per entry ``visible``, ``polled``, ``accepted``
    ``/grow/{i}.xml``       growing feed i: starts empty, 3 entries more per
                            generation (a window of 30), real pages, 304 on its ETag
    ``/grow/advance?feeds=N&mod=M&rest=R``  next generation for feeds i < N, i % M == R
    ``/grow/report``        JSON: entries generated, requests answered 200 and 304
    """
    pages = _pages()
    live: dict[int, list[int]] = {}
    visible: dict[str, float] = {}
    polled: dict[str, float] = {}
    accepted: dict[str, float] = {}
    mailed: dict[str, float] = {}
    counts = {"posts": 0, "mails": 0, "grow_200": 0, "grow_304": 0, "generated": 0}
    smtp: dict[str, Any] = {}
    requests: dict[int, int] = {}
    grow: dict[int, int] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def generate(feeds: int, every: float, count: int) -> None:
        start = time.monotonic()
        for k in range(count):
            # Scheduled from the start, so a slow step does not stretch the load.
            await asyncio.sleep(max(0.0, start + k * every - time.monotonic()))
            feed = k % feeds
            n = len(live.setdefault(feed, []))
            live[feed].append(n)
            visible[f"{feed}-{n}"] = time.monotonic()

    async def live_start(request: web.Request) -> web.Response:
        q = request.query
        task = asyncio.create_task(generate(int(q["feeds"]), float(q["every"]), int(q["count"])))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.json_response({"started": True})

    async def live_feed(request: web.Request) -> web.Response:
        at = time.monotonic()
        i = int(request.match_info["i"])
        requests[i] = requests.get(i, 0) + 1
        shown = live.get(i, [])[-20:]
        etag = f'"l{len(live.get(i, []))}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        items = []
        for n in reversed(shown):
            polled.setdefault(f"{i}-{n}", at)
            items.append(
                f"<item><title>{_live_title(i, n)}</title>"
                f"<link>{base}/live/page/{i}-{n}.html</link><guid>live-{i}-{n}</guid>"
                f"<description>{_words(f's{i}-{n}', 12)}.</description></item>"
            )
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Live feed {i}</title><link>{base}/</link>{''.join(items)}</channel></rss>"
        )
        return web.Response(text=body, content_type="application/rss+xml", headers={"ETag": etag})

    async def live_page(request: web.Request) -> web.Response:
        key = request.match_info["k"]
        feed, n = (int(x) for x in key.split("-"))
        title = _live_title(feed, n)
        paragraphs = "".join(
            f"<p>{_words(f'p{key}-{j}', 40).capitalize()}, said employees planning the walkout.</p>"
            for j in range(5)
        )
        html = (
            f"<html><head><title>{title}</title></head><body><nav>Home News</nav>"
            f"<article><h1>{title}</h1>{paragraphs}</article></body></html>"
        )
        return web.Response(text=html, content_type="text/html")

    async def live_hook(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.monotonic()
        counts["posts"] += 1
        for m in _LIVE_KEY.finditer(body):
            accepted.setdefault(f"{int(m.group(1))}-{int(m.group(2))}", at)
        return web.Response(text="ok")

    async def live_smtp(request: web.Request) -> web.Response:
        """Start the SMTP receiver (aiosmtpd, in its own thread) once; answer its port."""
        if "port" not in smtp:
            from aiosmtpd.controller import Controller

            class Handler:
                async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                    at = time.monotonic()
                    counts["mails"] += 1
                    message = email.message_from_bytes(envelope.content)
                    text = str(message["Subject"] or "").encode()
                    for part in message.walk():
                        payload = part.get_payload(decode=True)
                        if isinstance(payload, bytes):
                            text += payload
                    for m in _LIVE_KEY.finditer(text):
                        mailed.setdefault(f"{int(m.group(1))}-{int(m.group(2))}", at)
                    return "250 OK"

            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                smtp["port"] = int(sock.getsockname()[1])
            smtp["controller"] = Controller(Handler(), hostname="127.0.0.1", port=smtp["port"])
            smtp["controller"].start()
        return web.json_response({"port": smtp["port"]})

    async def live_report(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "posts": counts["posts"],
                "mails": counts["mails"],
                "requests": requests,
                "entries": {
                    k: {
                        "visible": v,
                        "polled": polled.get(k),
                        "accepted": accepted.get(k),
                        "mailed": mailed.get(k),
                    }
                    for k, v in visible.items()
                },
            }
        )

    async def grow_feed(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        g = grow.get(i, 0)
        etag = f'"grow{g}"'
        if request.headers.get("If-None-Match") == etag:
            counts["grow_304"] += 1
            return web.Response(status=304, headers={"ETag": etag})
        counts["grow_200"] += 1
        items = "".join(
            f"<item><title>Entry {i}-{n} {_words(f'g{i}-{n}', 4)}</title>"
            f"<link>{base}/page/{i * 1000 + n}.html</link><guid>grow-{i}-{n}</guid>"
            f"<description>Summary of entry {n} of feed {i}.</description>"
            f"<pubDate>Mon, 02 Jun 2025 08:30:00 +0000</pubDate></item>"
            for n in range(g * STEP - 1, max(0, g * STEP - WINDOW) - 1, -1)
        )
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>Growing feed {i}</title><link>{base}/</link>{items}</channel></rss>"
        )
        return web.Response(text=body, content_type="application/rss+xml", headers={"ETag": etag})

    async def grow_advance(request: web.Request) -> web.Response:
        q = request.query
        feeds, mod, rest = int(q["feeds"]), int(q.get("mod", 1)), int(q.get("rest", 0))
        moved = [i for i in range(feeds) if i % mod == rest]
        for i in moved:
            grow[i] = grow.get(i, 0) + 1
        counts["generated"] += len(moved) * STEP
        return web.json_response({"advanced": len(moved)})

    async def grow_report(request: web.Request) -> web.Response:
        return web.json_response(
            {k: counts[k] for k in ("generated", "grow_200", "grow_304", "posts")}
            | {"pages": len(pages)}
        )

    app.add_routes(
        [
            web.get("/live/start", live_start),
            web.get("/live/smtp", live_smtp),
            web.get("/live/report", live_report),
            web.get("/live/page/{k}.html", live_page),
            web.get("/live/{i}.xml", live_feed),
            web.post("/live/hook", live_hook),
            web.get("/grow/advance", grow_advance),
            web.get("/grow/report", grow_report),
            web.get("/grow/{i}.xml", grow_feed),
        ]
    )


def _serve(port: int) -> None:
    web.run_app(
        make_app(f"http://127.0.0.1:{port}"),
        host="127.0.0.1",
        port=port,
        print=None,
        access_log=None,
    )


class Farm:
    """Starts the farm in a child process; use as a context manager."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self._proc = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(self.port,), daemon=True
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def __enter__(self) -> Farm:
        self._proc.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the feed farm did not start")

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.join(5)

    def get(self, path: str) -> bytes:
        import urllib.request

        with urllib.request.urlopen(f"{self.base}{path}", timeout=10) as r:
            return bytes(r.read())
