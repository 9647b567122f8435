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
import math
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

from bench.farm import BIG_ENTRIES, CORPUS, STEP, WINDOW, Farm, _big_rss
from monitor.config import AlertConfig, FeedConfig, FetchConfig, Secret, Settings
from monitor.exceptions import ExtractError
from monitor.extract import ProcessExtractor, extract_page
from monitor.parse import ParsePool
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
    # Workers are not replaced during a measurement: a replaced worker (a
    # grandchild) takes its CPU time with it, and the sum in _cpu would go
    # backwards. In the daemon a replacement costs one fork per 100 pages.
    extractor = ProcessExtractor(timeout=settings.fetch.extract_timeout, max_jobs=sys.maxsize)
    m = make_monitor(settings, _extractor=extractor)
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


class LoopLag:
    """A ticker coroutine: how late the event loop wakes it (how long something blocked it)."""

    def __init__(self, every: float = 0.005) -> None:
        self.every = every
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.every)
            self.lags.append(loop.time() - start - self.every)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    @property
    def worst(self) -> float:
        return max(self.lags, default=0.0)


def changed_feeds(rounds: int, feeds: int, *, workers: int | None = None) -> tuple[Row, ...]:
    """N changed feeds of 50 new entries each: parsing uses both cores and never stalls the loop;
    then the same bodies again (the server ignores ETag): nothing is parsed twice."""
    walls: list[float] = []
    cores: list[float] = []
    lags: list[float] = []
    same_walls: list[float] = []
    reparsed: list[float] = []
    in_workers = 0
    with Farm() as farm, tempfile.TemporaryDirectory() as tmp:
        _EXCLUDE.add(farm.pid or -1)
        m = _monitor(Path(tmp), [f"{farm.base}/big/{i}.xml" for i in range(feeds)], concurrency=100)
        if workers is not None:
            m.parser.close()
            m.parser = ParsePool(workers=workers)

        async def run() -> None:
            nonlocal in_workers
            for _ in range(rounds):
                farm.get("/big/advance")
                with LoopLag() as lag:
                    cpu, start = _cpu(), time.perf_counter()
                    results = await m.poll_all()
                    wall = time.perf_counter() - start
                    cores.append((_cpu() - cpu) / wall)
                walls.append(wall)
                lags.append(lag.worst * 1000)
                assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
                parsed = m.parser.parsed
                start = time.perf_counter()
                results = await m.poll_all()
                same_walls.append(time.perf_counter() - start)
                assert all(r.ok and r.value.not_modified for r in results), results[:3]  # type: ignore[union-attr]
                reparsed.append(m.parser.parsed - parsed)
            in_workers = m.parser.in_workers
            await m.aclose()

        asyncio.run(run())
    how = "in threads only" if workers == 0 else f"{in_workers} of {rounds * feeds} in workers"
    label = f"{feeds} changed feeds x {BIG_ENTRIES} new entries"
    return (
        Row(f"{label}: sweep wall", "s", tuple(walls), f"parsed {how}"),
        Row(f"{label}: CPU / wall", "x", tuple(cores), "target > 1.3 on 2 cores"),
        Row(f"{label}: worst event-loop lag", "ms", tuple(lags), "5 ms ticker during the sweep"),
        Row(
            f"{label}: same bodies again (200, ETag ignored)",
            "s",
            tuple(same_walls),
            f"bodies parsed again: {max(reparsed):g} (target 0)",
        ),
    )


def parse_only(rounds: int, feeds: int) -> tuple[Row, ...]:
    """The parse stage alone on N bodies of 50 new entries, 100 at once, while a ticker
    watches the event loop: in worker processes (the default) and in threads only."""
    bodies = [_big_rss("http://127.0.0.1/", i, 0) for i in range(feeds)]
    rows: list[Row] = []
    for workers, how in ((None, "worker processes"), (0, "threads only")):
        cores: list[float] = []
        lags: list[float] = []
        walls: list[float] = []

        async def run(
            pool: ParsePool, cores: list[float], lags: list[float], walls: list[float]
        ) -> None:
            gate = asyncio.Semaphore(100)

            async def one(i: int, body: bytes) -> None:
                async with gate:
                    await pool.parse(f"http://127.0.0.1/big/{i}.xml", body, {})

            await pool.parse("http://127.0.0.1/big/0.xml", bodies[0], {})  # start the workers
            for _ in range(rounds):
                with LoopLag() as lag:
                    cpu, start = _cpu(), time.perf_counter()
                    await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
                    wall = time.perf_counter() - start
                    cores.append((_cpu() - cpu) / wall)
                walls.append(wall)
                lags.append(lag.worst * 1000)

        pool = ParsePool(workers=workers)
        try:
            asyncio.run(run(pool, cores, lags, walls))
        finally:
            pool.close(wait=True)  # gone before the next measurement: its CPU stays counted
        label = f"parse only, {feeds} bodies x {BIG_ENTRIES} entries, {how}"
        rows += [
            Row(f"{label}: wall", "s", tuple(walls), f"{len(bodies[0]) // 1024} KB each"),
            Row(f"{label}: CPU / wall", "x", tuple(cores), "target > 1.3 on 2 cores"),
            Row(f"{label}: worst event-loop lag", "ms", tuple(lags), "5 ms ticker"),
        ]
    return tuple(rows)


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


def alert_latency(quick: bool) -> tuple[Row, ...]:
    """Alert latency beyond the poll, of the real daemon under a steady load (bench/latency.py)."""
    from bench import latency

    results = latency.measure(feeds=10, every=0.5, count=40 if quick else 120, interval=2.0)
    return tuple(
        Row(
            f"alert latency beyond the poll, daemon to {channel}",
            "s",
            r.latencies or (math.nan,),
            f"p95 {r.p95:.3g} s, {r.delivered} of {r.expected} alerts, 2 new entries/s over "
            f"10 feeds; target p95 <= {latency.TARGET_P95_S:g} s",
        )
        for channel, r in results.items()
    )


def daemon_memory(quick: bool) -> tuple[Row, ...]:
    """Resident size of the real daemon: 1,000 feeds, 10,000 terms, an hour (bench/memory.py)."""
    from bench import memory

    r = memory.measure(feeds=1000, changed=20, cycles=12 if quick else 60)
    d = r.as_dict()
    hours = f"{d['simulated_hours']:.2g} simulated h ({r.stored} of {r.generated} entries stored)"
    return (
        Row(
            "daemon RSS, 1000 feeds, 10,000-term pack",
            "MB",
            r.daemon_mb,
            f"growth {d['daemon_growth_mb_per_hour']:+.1f} MB/h over {hours}; target <= 200 MB",
        ),
        Row(
            "daemon + extraction workers, PSS",
            "MB",
            r.tree_mb,
            f"{r.processes} processes, growth {d['tree_growth_mb_per_hour']:+.1f} MB/h; "
            "target <= 200 MB, no growth",
        ),
    )


#: The measurements, in the order they run; ``--only`` picks some.
STEPS = ("article", "sweep", "parse", "changed", "latency", "memory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and feeds")
    parser.add_argument(
        "--only",
        choices=list(STEPS),
        action="append",
        help="run only these measurements (repeatable)",
    )
    args = parser.parse_args(argv)
    if not (CORPUS / "pages").is_dir():
        print(f"error: {CORPUS} is missing; the benchmarks read ../shared/corpus", file=sys.stderr)
        return 1
    rounds = 3 if args.quick else 7
    steps: dict[str, Callable[[], tuple[Row, ...]]] = {
        "article": lambda: per_article(rounds, 4 if args.quick else 10),
        "sweep": lambda: sweep_304(rounds, 1000),
        "parse": lambda: parse_only(rounds, 200 if args.quick else 1000),
        "changed": lambda: changed_feeds(2 if args.quick else 3, 200 if args.quick else 1000),
        "latency": lambda: alert_latency(args.quick),
        "memory": lambda: daemon_memory(args.quick),
    }
    assert list(steps) == list(STEPS)
    rows: list[Row] = []
    for name, step in steps.items():
        if not args.only or name in args.only:
            rows.extend(step())
    print("| measurement | median | min | max | reference |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
