"""The pipeline measured against its own floor (issue #8).

Run from the project root after the README's install step::

    .venv/bin/python -m bench.run            # all measurements
    .venv/bin/python -m bench.run --quick    # fewer rounds, for a smoke check

Prints a markdown table: median, min and max of each measurement over its
rounds, and the ratio to its reference or target. Inputs come from a feed
farm on loopback (bench/farm.py) built from ../shared/corpus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.farm import CORPUS, STEP, WINDOW, Farm
from monitor.config import AlertConfig, FeedConfig, FetchConfig, Secret, Settings
from monitor.exceptions import ExtractError
from monitor.extract import extract_page
from monitor.pipeline import Monitor, make_monitor
from monitor.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    name: str
    unit: str
    values: tuple[float, ...]
    reference: str = ""

    def cells(self) -> list[str]:
        v = self.values
        return [
            self.name,
            f"{statistics.median(v):.4g} {self.unit}",
            f"{min(v):.4g}",
            f"{max(v):.4g}",
            self.reference,
        ]


def _monitor(
    tmp: Path, feeds: list[str], *, concurrency: int = 20, hook: str | None = None
) -> Monitor:
    settings = Settings(
        path=None,
        database=tmp / "bench.db",
        rules=(ROOT / "rules",),
        feeds=tuple(FeedConfig(url=u, name=None) for u in feeds),
        channels={"hook": Secret(hook or "console://")},
        fetch=FetchConfig(allow_networks=("127.0.0.0/8",), concurrency=concurrency),
        alerts=AlertConfig(),
    )
    m = make_monitor(settings)
    m.sync_feeds()
    return m


_EXCLUDE: set[int] = set()


def _cpu() -> float:
    """CPU seconds of this process and its live descendants (extraction workers), not the farm.

    ``time.process_time`` misses work done in worker processes (forkserver
    workers are grandchildren), and ``RUSAGE_CHILDREN`` only counts children
    that have exited.
    """
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    def descends(pid: int) -> bool:
        while pid in parent and pid not in _EXCLUDE:
            pid = parent[pid]
            if pid == os.getpid():
                return True
        return False

    return time.process_time() + sum(c for pid, c in cpu.items() if descends(pid))


def per_article(rounds: int, feeds: int) -> tuple[Row, Row, Row]:
    """CPU per new article: the whole pipeline vs trafilatura alone on the same pages."""
    pages = sorted((CORPUS / "pages").glob("*.html"))
    rules = load_rules(ROOT / "rules")
    del rules  # loaded once here so its compile cost is not in a round
    pipeline_ms: list[float] = []
    counts: dict[str, int] = {}
    extract_ms: list[float] = []
    with Farm() as farm, tempfile.TemporaryDirectory() as tmp:
        _EXCLUDE.add(farm.pid or -1)
        m = _monitor(
            Path(tmp),
            [f"{farm.base}/feed/{i}.xml" for i in range(feeds)],
            hook=f"json://127.0.0.1:{farm.port}/hook",
        )

        async def run() -> None:
            await m.poll_all()  # the baseline poll: 30 entries per feed, not measured
            for r in range(rounds):
                farm.get("/advance")
                start = _cpu()
                await m.poll_all()
                await m.dispatch()
                pipeline_ms.append((_cpu() - start) * 1000 / (feeds * STEP))
                # The same new pages, extracted alone.
                generation = r + 1
                newest = range(generation * STEP + WINDOW - STEP, generation * STEP + WINDOW)
                bodies = [
                    pages[(f * 1000 + n) % len(pages)].read_bytes()
                    for f in range(feeds)
                    for n in newest
                ]
                start = _cpu()
                for b in bodies:
                    # A page trafilatura finds no text in still costs its time.
                    with contextlib.suppress(ExtractError):
                        extract_page(b, "http://127.0.0.1/page.html", "text/html")
                extract_ms.append((_cpu() - start) * 1000 / len(bodies))
            counts.update(
                m.store.db.execute(
                    "SELECT text_source, count(*) FROM entries GROUP BY text_source"
                ).fetchall()
            )
            await m.aclose()

        asyncio.run(run())
    ratio = [p / e for p, e in zip(pipeline_ms, extract_ms, strict=True)]
    return (
        Row(
            "pipeline CPU per new article",
            "ms",
            tuple(pipeline_ms),
            f"{feeds} feeds x 30 entries, 3 new per poll; text from the page for "
            f"{counts.get('article', 0)} of {sum(counts.values())} entries",
        ),
        Row(
            "trafilatura alone per article",
            "ms",
            tuple(extract_ms),
            "extract_page on the same pages",
        ),
        Row("ratio pipeline / trafilatura", "x", tuple(ratio), "target <= 1.15"),
    )


def sweep_304(rounds: int, feeds: int) -> tuple[Row, Row]:
    """Wall time of one poll over N feeds that all answer 304."""
    walls: list[float] = []
    with Farm() as farm, tempfile.TemporaryDirectory() as tmp:
        m = _monitor(
            Path(tmp), [f"{farm.base}/static/{i}.xml" for i in range(feeds)], concurrency=100
        )
        now = datetime.now(UTC).isoformat(timespec="seconds")
        m.store.db.execute("UPDATE feeds SET etag = '\"static\"', last_success_at = ?", [now])

        async def run() -> None:
            for _ in range(rounds):
                start = time.perf_counter()
                results = await m.poll_all()
                walls.append(time.perf_counter() - start)
                assert all(r.ok and r.value.not_modified for r in results), results[:3]  # type: ignore[union-attr]
            await m.aclose()

        asyncio.run(run())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        Row(f"sweep of {feeds} feeds answering 304", "s", tuple(walls), "target <= 1 s wall"),
        Row("peak resident memory after the sweeps", "MB", (rss,), "target <= 200 MB"),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and feeds")
    args = parser.parse_args(argv)
    if not (CORPUS / "pages").is_dir():
        print(f"error: {CORPUS} is missing; the benchmarks read ../shared/corpus", file=sys.stderr)
        return 1
    rounds = 3 if args.quick else 7
    steps: list[Callable[[], tuple[Row, ...]]] = [
        lambda: per_article(rounds, 4 if args.quick else 10),
        lambda: sweep_304(rounds, 1000),
    ]
    rows: list[Row] = []
    for step in steps:
        rows.extend(step())
    print("| measurement | median | min | max | reference |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
