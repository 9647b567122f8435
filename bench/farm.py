"""A feed farm on loopback for the benchmarks, run in its own process.

``/feed/{i}.xml``  RSS feed i: a window of 30 entries that slides by 3 each
                   time ``/advance`` is called; ETag per generation, 304 on match
``/static/{i}.xml`` a feed that never changes (ETag "static"), for 304 sweeps
``/page/{n}.html`` real pages from ../shared/corpus/pages (n modulo their count)
``/hook``          POST receiver (apprise json://); ``/hooks`` returns the count
``/advance``       moves every feed one generation on (3 new entries each)

Its CPU is not the monitor's: the benchmark measures its own process only.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from pathlib import Path

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
        ]
    )
    return app


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
