"""``monitor demo``: the whole pipeline on bundled sample content, offline.

Serves :mod:`monitor.demo_data` on a loopback HTTP server, writes a
configuration into a temporary directory (two feeds, alerts on the first
poll, one ``console://`` channel), runs one cycle and lists the hits.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click

from monitor import demo_data
from monitor.config import load_settings
from monitor.pipeline import make_monitor


class _Handler(BaseHTTPRequestHandler):
    base = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].lstrip("/")
        try:
            body = demo_data.read(path, base=self.base)
        except FileNotFoundError:
            self.send_error(404)
            return
        ctype = {
            ".rss": "application/rss+xml",
            ".atom": "application/atom+xml",
            ".html": "text/html",
        }.get(Path(path).suffix, "application/octet-stream")
        self.send_response(200)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_demo() -> Iterator[str]:
    """Serve the demo content on 127.0.0.1 at a free port; yields the origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    handler = type("Handler", (_Handler,), {"base": origin})
    server.RequestHandlerClass = handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield origin
    finally:
        server.shutdown()
        server.server_close()


def find_rules() -> Path:
    """The rules directory of a source checkout, else ./rules."""
    here = Path(__file__).resolve().parent.parent / "rules"
    return here if here.is_dir() else Path("rules").resolve()


def run_demo(keep: Path | None = None) -> int:
    """Run the demo; returns the exit code (0 when it found hits)."""
    with tempfile.TemporaryDirectory(prefix="monitor-demo-") as tmp:
        home = keep or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        with serve_demo() as origin:
            config = home / "monitor.yaml"
            feeds = "\n".join(
                f"  - url: {origin}/{f}\n    alert_on_first_poll: true" for f in demo_data.FEEDS
            )
            config.write_text(
                f"database: {home / 'demo.db'}\n"
                f"rules: {find_rules()}\n"
                f"feeds:\n{feeds}\n"
                "channels:\n  console: console://\n"
                "fetch:\n  allow_networks: [127.0.0.0/8]\n",
                encoding="utf-8",
            )
            click.echo(f"Serving sample feeds at {origin}; database in {home / 'demo.db'}")
            monitor = make_monitor(load_settings(config))
            from monitor.cli import _print_cycle, _run_once

            summary = asyncio.run(_run_once(monitor))
        click.echo("")
        _print_cycle(summary)
        from monitor.store import open_store

        store = open_store(home / "demo.db")
        hits = store.hits()
        store.close()
        click.echo(f"\n{len(hits)} hits:")
        for h in hits:
            click.echo(f"  [{h['rule']}] {h['title']}  ({', '.join(h['terms'])})")
        if keep:
            click.echo(f"\nBrowse them: monitor --config {config} browse")
        return 0 if hits else 1
