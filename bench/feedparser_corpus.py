"""feedparser's own test-suite feeds through our parse and store stages (issue #7).

Downloads feedparser's source distribution (``pip download --no-binary :all:
--no-deps feedparser``) into a temporary folder, or reads an unpacked one
given with ``--dir``, and pushes every file under its ``tests/`` through
:func:`monitor.parse.parse_feed` and :meth:`monitor.store.Store.record_poll`.
Counts: parsed, refused with a clear per-feed ParseError, crashed (any other
exception), slow (over 2 s). For the ``sanitize`` and ``xss`` cases it checks
that no stored title or summary still holds markup that a browser would run
(``<script``, ``javascript:``, ``onerror=``...): stored text is plain text,
escaped by every sink.

Run on demand: ``.venv/bin/python -m bench.feedparser_corpus``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from monitor.exceptions import MonitorError
from monitor.parse import parse_feed
from monitor.pipeline import _fallback, _new_entry, entry_key
from monitor.store import open_store

_ACTIVE = re.compile(r"<\s*script|javascript:|\bon\w+\s*=|<\s*iframe|<\s*object|<\s*embed", re.I)


def _download(into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            "--quiet",
            "-d",
            str(into),
            "feedparser",
        ],
        check=True,
    )
    (sdist,) = into.glob("feedparser-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(into, filter="data")
    (root,) = [p for p in into.iterdir() if p.is_dir()]
    return root


def run(root: Path, workdir: Path) -> dict[str, object]:
    files = sorted(
        p
        for p in (root / "tests").rglob("*")
        if p.is_file() and p.suffix in (".xml", ".rss", ".atom", ".rdf", ".gz", "")
    )
    store = open_store(workdir / "corpus.db")
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    crashes: list[str] = []
    slow: list[str] = []
    unsafe: list[str] = []
    now = datetime.now(UTC)
    for i, path in enumerate(files):
        hostile = any(part in ("sanitize", "xss") for part in path.parts) or "xss" in path.name
        url = f"https://corpus.example/{i}"
        store.add_feed(url, path.name, 900, now)
        feed = store.active_feeds()[-1]
        started = time.monotonic()
        try:
            data = parse_feed(url, path.read_bytes(), {"content-type": "application/xml"})
            rows = [_new_entry(entry_key(e), e, _fallback(e, "corpus"), []) for e in data.entries]
            store.record_poll(
                feed,
                now=now,
                next_poll=now,
                title=data.title,
                etag=None,
                last_modified=None,
                entries=rows,
                channels=(),
                baseline=True,
            )
            counts["parsed"] += 1
        except MonitorError as e:
            counts["refused"] += 1
            reasons[getattr(e, "reason", type(e).__name__).split(":")[0]] += 1
        except Exception as e:  # what the script exists to find
            counts["crashed"] += 1
            crashes.append(f"{path.relative_to(root)}: {type(e).__name__}: {e}"[:200])
        if time.monotonic() - started > 2:
            slow.append(str(path.relative_to(root)))
        if hostile:
            counts["hostile"] += 1
            for title, summary in store.db.execute(
                "SELECT entries.title, entries.summary FROM entries WHERE feed_id = ?", [feed.id]
            ):
                if _ACTIVE.search(title) or _ACTIVE.search(summary):
                    unsafe.append(f"{path.relative_to(root)}: {title[:60]!r} {summary[:60]!r}")
            feed_title = store.db.execute(
                "SELECT title FROM feeds WHERE id = ?", [feed.id]
            ).fetchone()[0]
            if feed_title and _ACTIVE.search(feed_title):
                unsafe.append(f"{path.relative_to(root)}: feed title {feed_title[:60]!r}")
    store.close()
    return {
        "files": len(files),
        **counts,
        "refusal_reasons": dict(reasons.most_common()),
        "crashes": crashes,
        "slow": slow,
        "unsafe_text": unsafe,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, help="an unpacked feedparser sdist (default: download)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fpcorpus-") as d:
        root = args.dir or _download(Path(d))
        started = time.monotonic()
        report = run(root, Path(d))
        report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))
    return 1 if report["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
