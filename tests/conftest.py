"""Shared fixtures: real servers on loopback and the project's paths.

``site``     serves the end-to-end feeds and article pages (both seeds from
             ../shared/seeds wrapped in HTML, an earnings report, a hockey report)
``smtp``     a real SMTP server (aiosmtpd) that records each message; stop()/start()
``webhook``  a real HTTP server that records every POST (apprise ``json://``)
``run_cli``  runs ``python -m monitor`` as a subprocess, as a user would
"""

from __future__ import annotations

import html
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
SEEDS = SHARED / "seeds"
DATA = Path(__file__).parent / "data"
SEED_EN = SEEDS / "000_3591a6dfb74e208e.txt"
SEED_DE = SEEDS / "004_65beac61d898011c.txt"

needs_shared = pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared is not beside the project")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_page(path: Path, title: str, lang: str) -> str:
    """Wrap a seed article's text in the fixture page template."""
    paragraphs = "\n".join(
        f"<p>{html.escape(line)}</p>"
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    )
    template = (DATA / "site" / "page_template.html").read_text(encoding="utf-8")
    return template.format(title=html.escape(title), lang=lang, paragraphs=paragraphs)


@dataclass
class Site:
    server: HTTPServer

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def serve(self, path: str, body: str | bytes, content_type: str) -> None:
        self.server.expect_request(f"/{path.lstrip('/')}").respond_with_data(
            body, content_type=content_type
        )

    def serve_fixture_site(self) -> None:
        """The two feeds and four pages of the pipeline test."""
        site = DATA / "site"
        for name, ctype in (
            ("feed.rss", "application/rss+xml"),
            ("feed.atom", "application/atom+xml"),
        ):
            text = (site / name).read_text(encoding="utf-8").format(base=self.base)
            self.serve(name, text, f"{ctype}; charset=utf-8")
        self.serve(
            "seed-en.html",
            seed_page(
                SEED_EN, "Salesforce employees ask Benioff to rethink the CBP contract", "en"
            ),
            "text/html; charset=utf-8",
        )
        self.serve(
            "seed-de.html",
            seed_page(SEED_DE, "Salesforce-Beschäftigte verlangen Haltung gegen ICE", "de"),
            "text/html; charset=utf-8",
        )
        for name in ("earnings.html", "hockey.html"):
            self.serve(name, (site / name).read_bytes(), "text/html; charset=utf-8")


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    """A threaded HTTP server on 127.0.0.1 for scripted responses."""
    s = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    s.start()
    yield s
    s.clear()
    s.stop()


@pytest.fixture
def site() -> Iterator[Site]:
    # Threaded, so one slow response does not hold up the other feeds.
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield Site(server)
    server.clear()
    if server.is_running():
        server.stop()


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(envelope)
        return "250 OK"


@dataclass
class SMTP:
    port: int
    recorder: _Recorder = field(default_factory=_Recorder)
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[Any]:
        return list(self.recorder.messages)

    def url(self, to: str = "me@example.org") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=monitor@example.org&to={to}&mode=insecure"


@pytest.fixture
def smtp() -> Iterator[SMTP]:
    server = SMTP(port=free_port())
    server.start()
    yield server
    server.stop()


@dataclass
class Webhook:
    server: HTTPServer
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.server.port}/{path}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = HTTPServer(host="127.0.0.1", port=0)
    hook = Webhook(server)

    def handler(request: Request) -> Response:
        hook.posts.append({"path": request.path, "json": request.get_json(silent=True)})
        return Response("ok", status=hook.status)

    server.expect_request(re.compile(r"^/hook"), method="POST").respond_with_handler(handler)
    server.start()
    yield hook
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def run_cli(tmp_path: Path) -> Any:
    """Run the real ``monitor`` entry point in a subprocess."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        full_env.pop("MONITOR_CONFIG", None)
        return subprocess.run(
            [sys.executable, "-m", "monitor", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=tmp_path,
        )

    return run


def write_config(
    path: Path,
    *,
    database: Path,
    feeds: list[dict[str, Any]],
    channels: dict[str, str],
    extra: str = "",
) -> Path:
    """A monitor.yaml for tests: loopback allowed, project rules, short timeouts."""
    lines = [f"database: {database}", f"rules: {ROOT / 'rules'}", "feeds:"]
    for f in feeds:
        lines.append(f"  - url: {f['url']}")
        for k, v in f.items():
            if k != "url":
                lines.append(f"    {k}: {str(v).lower() if isinstance(v, bool) else v}")
    lines.append("channels:")
    for name, url in channels.items():
        lines.append(f'  {name}: "{url}"')
    lines += [
        "fetch:",
        "  allow_networks: [127.0.0.0/8]",
        "  connect_timeout: 2s",
        "  read_timeout: 3s",
        "  total_timeout: 4s",
        "  extract_timeout: 20s",
        "alerts:",
        "  base_backoff: 1s",
        "  send_timeout: 10s",
    ]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path
