"""FAULTS D1 in CI: the kill -9 soak, 10 iterations (``bench/soak_kill9.py`` runs 50).

Real daemon processes, real SIGKILLs at random moments, a loopback feed and
webhook; afterwards integrity_check is ok, no hit is lost, every hit was
delivered, and duplicates stay within the crash-after-send window (D3, D11).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak_kill9 import soak

pytestmark = pytest.mark.slow


def test_d1_kill_9_soak_ten_iterations(tmp_path: Path) -> None:
    report = soak(10, tmp_path, seed=7, max_life=1.5)
    assert report.problems() == [], (tmp_path / "daemon.log").read_text()[-3000:]
    assert report.served >= 1 and report.hits == report.served
    assert report.integrity == ("ok",) * 11
