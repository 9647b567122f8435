"""The daemon benchmarks (bench/latency.py, bench/memory.py) run and report sanely.

Tiny modes only, and no timing assertions: the numbers belong to the
benchmark run (``python -m bench.run``), not to CI. What is checked is that
each script drives the real daemon to the end: every published entry's alert
arrived, by webhook and by SMTP (latency), every generated entry was stored (memory), and the
reported figures are positive numbers.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT, needs_shared

pytestmark = [needs_shared, pytest.mark.slow]

LATENCY = ["--feeds", "3", "--count", "6", "--every", "0.3", "--interval", "1", "--json"]
MEMORY = ["--feeds", "6", "--changed", "2", "--cycles", "3", "--interval", "1", "--terms", "300"]


def _start(module: str, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _reports(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """The JSON lines a benchmark printed (one per channel for latency)."""
    out, err = proc.communicate(timeout=180)
    # Exit status 1 means a target was missed: not a CI failure (no timing assertions).
    assert proc.returncode in (0, 1), err
    lines = out.strip().splitlines()
    assert lines, err
    return [json.loads(line) for line in lines]


def test_latency_and_memory_benchmarks_drive_the_real_daemon_to_the_end() -> None:
    # Both at once: each spends most of its time waiting for its daemon.
    latency = _start("bench.latency", LATENCY)
    memory = _start("bench.memory", [*MEMORY, "--json"])
    lat = _reports(latency)
    [mem] = _reports(memory)

    assert [r["channel"] for r in lat] == ["webhook", "smtp"]
    for r in lat:
        assert r["expected"] == 6
        assert r["delivered"] == r["expected"], r
        # Warm-up alerts (one per feed) included; a repeat would show as one more message.
        assert r["posts"] == r["expected"] + 3, r
        for key in ("p50_s", "p95_s", "max_s"):
            assert 0 < r[key] < math.inf

    assert mem["generated"] == 3 * 2 * 3  # 3 entries x 2 changed feeds x 3 cycles
    assert mem["stored"] == mem["generated"]
    assert mem["polls_200"] >= 6 + 6  # each feed's first poll, and each change
    assert mem["polls_304"] >= 6
    for key in ("daemon_start_mb", "daemon_max_mb", "tree_end_mb"):
        assert 0 < mem[key] < math.inf
    assert mem["processes"] >= 2  # the daemon and its extraction fork server
