"""The kill -9 soak (FAULTS D1, D3, D11): SIGKILL the daemon at random points, restart.

A loopback feed gains one matching item per request; a loopback webhook
records every alert. The daemon (``python -m monitor run``, a real process)
is killed with SIGKILL at a random moment 0-2 s after it is up, again and
again. After every kill the database must pass ``PRAGMA integrity_check`` and
be all-or-nothing (every stored entry has its hit, every hit its outbox row).
At the end one clean run drains the outbox, and:

- no hit is lost: every item the feed ever served is stored with its hit;
- every hit was delivered at least once; a second delivery happens only in
  the documented crash-after-send window, so duplicates never exceed the
  number of kills.

Run: ``.venv/bin/python -m bench.soak_kill9 --iterations 50`` (CI runs 10
through ``tests/test_faults_soak.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RULE = """\
rules:
  - name: walkout
    all:
      - [employees, workers]
      - [walkout]
"""
_NUMBER = re.compile(r"walkout number (\d+)")


def _words(i: int) -> str:
    rng = random.Random(i)
    return " ".join(
        "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(4))
        for _ in range(6)
    ).capitalize()


@dataclass
class Loopback:
    """The feed and the webhook, one threaded HTTP server."""

    served: int = 0
    frozen: bool = False
    posts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self) -> bytes:
        with self.lock:
            if not self.frozen:
                self.served += 1
            n = self.served
        # Each item its own story: alert grouping must not fold them together.
        items = "".join(
            f"<item><guid>item-{i}</guid><title>{_words(i)} employees walkout number {i}</title>"
            f"<description>{_words(i + 10_000)} walkout number {i}.</description></item>"
            for i in range(n)
        )
        return (
            f'<?xml version="1.0"?><rss version="2.0"><channel><title>Soak</title>{items}'
            "</channel></rss>"
        ).encode()


def _serve(state: Loopback) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state.feed()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.posts.append(data.decode("utf-8", "replace"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass(frozen=True)
class SoakReport:
    """What the soak saw; :meth:`problems` lists every broken invariant."""

    kills: int
    served: int
    entries: int
    hits: int
    delivered: int
    duplicates: int
    lost: tuple[int, ...]
    undelivered: tuple[int, ...]
    integrity: tuple[str, ...]
    atomicity: tuple[str, ...]
    final_exit: int | None

    def problems(self) -> list[str]:
        out = [f"integrity_check: {r}" for r in self.integrity if r != "ok"]
        out += list(self.atomicity)
        if self.lost:
            out.append(f"hits lost for items {list(self.lost)}")
        if self.undelivered:
            out.append(f"never delivered: items {list(self.undelivered)}")
        if self.duplicates > self.kills:
            out.append(f"{self.duplicates} duplicate deliveries for {self.kills} kills")
        if self.final_exit != 0:
            out.append(f"the final clean run exited {self.final_exit}")
        return out


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run"],
            stdout=err,
            stderr=err,
            env=env,
            cwd=config.parent,
        )


def _wait_up(db: Path, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if _query(db, "SELECT pid FROM daemon_status") == [(proc.pid,)]:
                return
        except sqlite3.Error:
            pass  # not created or not migrated yet
        time.sleep(0.05)


def _check_after_kill(db: Path) -> tuple[str, list[str]]:
    if not db.exists():
        return "ok", []
    integrity = str(_query(db, "PRAGMA integrity_check")[0][0])
    problems = []
    (no_hit,) = _query(
        db, "SELECT count(*) FROM entries WHERE id NOT IN (SELECT entry_id FROM hits)"
    )[0]
    (no_alert,) = _query(
        db, "SELECT count(*) FROM hits WHERE id NOT IN (SELECT hit_id FROM alerts)"
    )[0]
    if no_hit:
        problems.append(f"{no_hit} entries stored without their hit")
    if no_alert:
        problems.append(f"{no_alert} hits stored without an outbox row")
    return integrity, problems


def soak(iterations: int, workdir: Path, *, seed: int = 0, max_life: float = 2.0) -> SoakReport:
    """Run the soak in ``workdir``; SIGKILL ``iterations`` times, then drain."""
    rng = random.Random(seed)
    state = Loopback()
    server = _serve(state)
    port = server.server_address[1]
    (workdir / "rules").mkdir(parents=True, exist_ok=True)
    (workdir / "rules" / "soak.yaml").write_text(RULE)
    db = workdir / "soak.db"
    config = workdir / "monitor.yaml"
    config.write_text(
        f"database: {db}\nrules: {workdir / 'rules'}\n"
        f"feeds:\n  - url: http://127.0.0.1:{port}/feed\n    interval: 1s\n"
        "    alert_on_first_poll: true\n"
        f'channels:\n  hook: "json://127.0.0.1:{port}/hook"\n'
        "fetch:\n  allow_networks: [127.0.0.0/8]\n  total_timeout: 3s\n"
        "alerts:\n  base_backoff: 1s\n  max_backoff: 2s\n  send_timeout: 2s\n"
        "daemon:\n  adaptive: false\n  stop_grace: 5s\n"
    )
    log = workdir / "daemon.log"
    integrity: list[str] = []
    atomicity: list[str] = []
    try:
        for i in range(iterations):
            proc = _start(config, log)
            # Up = it wrote its pid (after migrations, before READY); then a random moment.
            _wait_up(db, proc)
            time.sleep(rng.uniform(0, max_life))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            result, problems = _check_after_kill(db)
            integrity.append(result)
            atomicity += [f"after kill {i + 1}: {p}" for p in problems]

        # The clean run: serve no new items, let the daemon store and send everything.
        with state.lock:
            state.frozen = True
            served = state.served
        proc = _start(config, log)
        _wait_up(db, proc)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if not db.exists():
                continue
            (stored,) = _query(db, "SELECT count(*) FROM entries")[0]
            (unsent,) = _query(
                db,
                "SELECT count(*) FROM hits WHERE id NOT IN "
                "(SELECT hit_id FROM alerts WHERE status = 'sent')",
            )[0]
            if stored >= served and unsent == 0:
                break
        proc.send_signal(signal.SIGTERM)
        final_exit: int | None = proc.wait(30)
    finally:
        server.shutdown()
        server.server_close()

    integrity.append(str(_query(db, "PRAGMA integrity_check")[0][0]))
    stored_items = {
        int(m.group(1))
        for (title,) in _query(
            db, "SELECT entries.title FROM entries JOIN hits ON hits.entry_id = entries.id"
        )
        if (m := _NUMBER.search(title))
    }
    # A digest may carry several hits in one post: count every item it names once.
    counts = Counter(int(n) for post in state.posts for n in set(_NUMBER.findall(post)))
    return SoakReport(
        kills=iterations,
        served=served,
        entries=int(_query(db, "SELECT count(*) FROM entries")[0][0]),
        hits=int(_query(db, "SELECT count(*) FROM hits")[0][0]),
        delivered=len(state.posts),
        duplicates=sum(n - 1 for n in counts.values()),
        lost=tuple(sorted(set(range(served)) - stored_items)),
        undelivered=tuple(sorted(set(range(served)) - set(counts))),
        integrity=tuple(integrity),
        atomicity=tuple(atomicity),
        final_exit=final_exit,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as d:
        started = time.monotonic()
        report = soak(args.iterations, Path(d), seed=args.seed)
        took = time.monotonic() - started
    summary = {k: v for k, v in report.__dict__.items() if k != "integrity"}
    summary["integrity_ok"] = all(r == "ok" for r in report.integrity)
    summary["seconds"] = round(took, 1)
    summary["problems"] = report.problems()
    print(json.dumps(summary, indent=2))
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
