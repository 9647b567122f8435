"""Resident memory of the real daemon: 1,000 feeds, a 10,000-term pack, an hour of polling.

Target (issue #8): the daemon's resident size at most 200 MB with 1,000 feeds
and a 10,000-term pack, steady over an hour of simulated polling (no growth).

How it is measured:

- ``monitor run`` (the real daemon, a subprocess) polls 1,000 growing feeds
  of the feed farm (bench/farm.py, its own process) with the generated
  10,000-term pack of bench/bench_match.py, alerting a webhook on the farm;
- **time is compressed by work, not by clock**: an hour of polling 1,000
  feeds every ``--simulated-interval`` seconds (60) is 60 cycles of 1,000
  polls: 60,000 polls and 3,600 new entries. The feeds' configured interval
  is short (``--interval``, 2 s), so the daemon polls as fast as it can; a
  cycle ends when the farm has answered as many polls as there are feeds
  (whatever the clock says), and ``--cycles`` 60 cycles are one simulated
  hour. A fixed real interval instead (say 5 s for 60 s) would ask the
  daemon for 200 polls a second, more than it does on a busy 2-core machine
  (each poll commits up to three SQLite transactions): it would fall
  behind and simulate less than the hour claimed. The report gives the
  real seconds and the polls per second reached;
- every cycle the farm gives ``--changed`` of the feeds (20, a different
  20 each cycle, round robin) 3 new entries linking to real pages of
  ``../shared/corpus/pages``, which the daemon fetches, extracts, matches,
  stores and alerts on; the other feeds answer 304;
- after each cycle the resident size (VmRSS) of the daemon and of its whole
  process tree (the daemon, the extraction fork server and its workers) is
  sampled (the tree as the sum of PSS, so pages the workers share with
  the fork server count once); the report gives start, max and end, and the slope of a
  least-squares line over the second half of the samples, in MB per
  simulated hour (growth; about 0 when steady);
- at the end every generated entry must be stored (the count is checked).

Run::

    .venv/bin/python -m bench.memory                  # one simulated hour, 5-10 minutes
    .venv/bin/python -m bench.memory --minutes 60     # as many cycles as a real hour holds
    .venv/bin/python -m bench.memory --feeds 6 --changed 2 --cycles 3 --terms 300 --json
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_match import articles, generated_pack_text
from bench.farm import Farm
from bench.latency import check_alive, daemon, write_config

#: The target: MB resident.
TARGET_MB = 200.0


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(stat.parent.name))
    return out


def _role(pid: int, root: int, parents: dict[int, int]) -> str:
    """What a process of the daemon's tree is: daemon, fork server, worker, ..."""
    if pid == root:
        return "daemon"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "other"
    if b"resource_tracker" in cmdline:
        return "resource tracker"
    if b"forkserver" in cmdline:
        return "fork server" if parents.get(pid) == root else "extraction workers"
    return "other"


def _field_mb(path: str, name: str) -> float:
    """A ``Name:   123 kB`` field of a /proc file, in MB (0 if the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def tree_rss(pid: int) -> tuple[float, float, int, dict[str, float]]:
    """(MB resident of ``pid``, MB proportional set size of it and its descendants,
    processes, MB PSS by role).

    The tree's figure is the sum of PSS (each shared page split between the
    processes sharing it): the fork server and its workers share most of
    their pages, so a sum of their RSS would count those pages again per worker.
    """
    children = _children()
    parents = {c: p for p, cs in children.items() for c in cs}
    tree = [pid]
    for p in tree:
        tree.extend(children.get(p, []))
    own = _field_mb(f"/proc/{pid}/status", "VmRSS:")
    roles: dict[str, float] = {}
    for p in tree:
        role = _role(p, pid, parents)
        roles[role] = roles.get(role, 0.0) + _field_mb(f"/proc/{p}/smaps_rollup", "Pss:")
    return own, sum(roles.values()), len(tree), roles


def slope(ys: list[float]) -> float:
    """Least-squares slope of ``ys`` against 0, 1, 2, ... (0 for fewer than two points)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx = (n - 1) / 2
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in range(n))
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / sxx


@dataclass(frozen=True)
class MemoryResult:
    """What one run of :func:`measure` saw."""

    #: MB after each cycle: the daemon's RSS, and its whole process tree's PSS.
    daemon_mb: tuple[float, ...]
    tree_mb: tuple[float, ...]
    #: Processes in the tree at the end (daemon, fork server, workers).
    processes: int
    feeds: int
    cycles: int
    #: Simulated seconds per cycle (the real interval a cycle stands for).
    simulated_interval: float
    #: Entries the farm generated, entries the daemon stored.
    generated: int
    stored: int
    #: Feed requests answered 200 and 304, alerts posted to the webhook.
    polls_200: int
    polls_304: int
    posts: int
    #: Real seconds the cycles took (polls per second = the daemon's throughput here).
    seconds: float = math.nan
    #: MB PSS by role (daemon, fork server, extraction workers, ...) at the first and last cycle.
    roles_start: Mapping[str, float] = field(default_factory=dict)
    roles_end: Mapping[str, float] = field(default_factory=dict)

    @property
    def cycles_per_hour(self) -> float:
        return 3600 / self.simulated_interval

    def growth(self, samples: tuple[float, ...]) -> float:
        """MB per simulated hour: the slope over the second half of ``samples``."""
        return slope(list(samples[len(samples) // 2 :])) * self.cycles_per_hour

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "feeds": self.feeds,
            "cycles": self.cycles,
            "simulated_hours": self.cycles / self.cycles_per_hour,
            "generated": self.generated,
            "stored": self.stored,
            "polls_200": self.polls_200,
            "polls_304": self.polls_304,
            "posts": self.posts,
            "seconds": self.seconds,
            "polls_per_second": self.cycles * self.feeds / self.seconds,
            "processes": self.processes,
            "target_mb": TARGET_MB,
            "pss_by_role_start_mb": dict(self.roles_start),
            "pss_by_role_end_mb": dict(self.roles_end),
        }
        for label, s in (("daemon", self.daemon_mb), ("tree", self.tree_mb)):
            out |= {
                f"{label}_start_mb": s[0] if s else math.nan,
                f"{label}_max_mb": max(s, default=math.nan),
                f"{label}_end_mb": s[-1] if s else math.nan,
                f"{label}_growth_mb_per_hour": self.growth(s),
            }
        return out

    def summary(self) -> str:
        d = self.as_dict()
        return (
            f"{self.feeds} feeds, {self.cycles} cycles = {d['simulated_hours']:.2f} simulated "
            f"hours in {self.seconds:.0f} s ({self.polls_200 + self.polls_304} polls, "
            f"{self.polls_200} changed, {d['polls_per_second']:.0f} polls/s), "
            f"{self.stored} of {self.generated} new entries stored, {self.posts} alerts; "
            f"MB start/max/end: daemon RSS {d['daemon_start_mb']:.1f}/"
            f"{d['daemon_max_mb']:.1f}/{d['daemon_end_mb']:.1f} "
            f"(growth {d['daemon_growth_mb_per_hour']:+.1f} MB/h), process tree of "
            f"{self.processes} {d['tree_start_mb']:.1f}/{d['tree_max_mb']:.1f}/"
            f"{d['tree_end_mb']:.1f} (growth {d['tree_growth_mb_per_hour']:+.1f} MB/h); "
            f"target <= {TARGET_MB:g} MB, no growth; PSS by role first/last cycle: "
            + ", ".join(
                f"{role} {self.roles_start.get(role, 0):.1f}/{mb:.1f}"
                for role, mb in self.roles_end.items()
            )
        )


def _stored(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])
    except sqlite3.Error:
        return -1


def measure(
    *,
    feeds: int = 1000,
    changed: int = 20,
    cycles: int = 60,
    interval: float = 2.0,
    simulated_interval: float = 60.0,
    terms: int = 10_000,
    minutes: float | None = None,
) -> MemoryResult:
    """Run the daemon against ``feeds`` growing feeds for ``cycles`` cycles (one poll per feed each).

    With ``minutes``, cycles go on until that many real minutes have passed instead.
    """
    if not 0 < changed <= feeds:
        raise ValueError("--changed must be between 1 and --feeds")
    mod = max(1, feeds // changed)
    with Farm() as farm, tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "rules").mkdir()
        pack = generated_pack_text(articles(), terms)
        (base / "rules" / "pack.yaml").write_text(pack, encoding="utf-8")
        database = base / "bench.db"
        config = write_config(
            base / "monitor.yaml",
            database=database,
            rules=base / "rules",
            feeds=[f"{farm.base}/grow/{i}.xml" for i in range(feeds)],
            interval=interval,
            channels={"hook": f"json://127.0.0.1:{farm.port}/live/hook"},
            concurrency=50,
        )
        log = base / "daemon.log"
        daemon_mb: list[float] = []
        tree_mb: list[float] = []
        processes = 0
        roles: list[dict[str, float]] = []

        def polls() -> int:
            r = json.loads(farm.get("/grow/report"))
            return int(r["grow_200"]) + int(r["grow_304"])

        with daemon(config, log) as proc:
            # Every feed polled twice (an empty first poll, then 304): the daemon is up.
            deadline = time.monotonic() + 120 + 2 * interval
            while json.loads(farm.get("/grow/report"))["grow_304"] < feeds:
                check_alive(proc, log)
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not poll every feed twice in time")
                time.sleep(0.2)
            start, first = time.monotonic(), polls()
            # A daemon slower than 10 polls a second is broken, not slow.
            limit = start + (60 * minutes if minutes is not None else cycles * feeds / 10 + 60)
            c = 0
            farm.get(f"/grow/advance?feeds={feeds}&mod={mod}&rest=0")
            while time.monotonic() < limit:
                time.sleep(0.1)
                check_alive(proc, log)
                if polls() - first < (c + 1) * feeds:
                    continue
                # A cycle is over: as many polls as there are feeds.
                own, tree, processes, by_role = tree_rss(proc.pid)
                daemon_mb.append(own)
                tree_mb.append(tree)
                roles.append(by_role)
                c += 1
                if minutes is None and c >= cycles:
                    break
                farm.get(f"/grow/advance?feeds={feeds}&mod={mod}&rest={c % mod}")
            elapsed = time.monotonic() - start
            generated = int(json.loads(farm.get("/grow/report"))["generated"])
            deadline = time.monotonic() + 60 + 2 * interval
            while (stored := _stored(database)) < generated and time.monotonic() < deadline:
                check_alive(proc, log)
                time.sleep(0.5)
            report = json.loads(farm.get("/grow/report"))
    return MemoryResult(
        daemon_mb=tuple(daemon_mb),
        tree_mb=tuple(tree_mb),
        processes=processes,
        feeds=feeds,
        cycles=len(daemon_mb),
        simulated_interval=simulated_interval,
        generated=generated,
        stored=stored,
        polls_200=int(report["grow_200"]),
        polls_304=int(report["grow_304"]),
        posts=int(report["posts"]),
        seconds=elapsed,
        roles_start=roles[0] if roles else {},
        roles_end=roles[-1] if roles else {},
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--changed", type=int, default=20, help="feeds with 3 new entries per cycle")
    ap.add_argument(
        "--cycles", type=int, default=60, help="cycles of one poll per feed (60: a simulated hour)"
    )
    ap.add_argument(
        "--interval", type=float, default=2.0, help="configured feed interval, seconds (short)"
    )
    ap.add_argument(
        "--simulated-interval",
        type=float,
        default=60.0,
        help="the real poll interval one cycle stands for (default 60 s)",
    )
    ap.add_argument("--terms", type=int, default=10_000, help="terms in the generated pack")
    ap.add_argument(
        "--minutes", type=float, default=None, help="run this many real minutes instead of --cycles"
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    result = measure(
        feeds=args.feeds,
        changed=args.changed,
        cycles=args.cycles,
        interval=args.interval,
        simulated_interval=args.simulated_interval,
        terms=args.terms,
        minutes=args.minutes,
    )
    print(json.dumps(result.as_dict()) if args.json else result.summary())
    ok = result.stored == result.generated and max(result.tree_mb, default=math.inf) <= TARGET_MB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
