"""Every case id of ../shared/FAULTS.md is cited by a test or a bench script.

An id counts as cited when it appears as a token (``B24``, ``test_b24_...``,
``(D1, D3)``) in a ``.py`` file under ``tests/`` or ``bench/`` other than this
one and the raw test servers. Ranges (``A1-A19``) do not count: each case needs
its own mention next to the code that tests it.

The alert-delivery cases (C13, C14, C22, D12-D17) belong to issue #4's work; a
missing one of those is reported as a skip, not a failure.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT, SHARED

FAULTS = SHARED / "FAULTS.md"
ISSUE_4 = frozenset({"C13", "C14", "C22", "D12", "D13", "D14", "D15", "D16", "D17"})
_ROW = re.compile(r"^\|\s*([A-D]\d{1,2})\s*\|", re.MULTILINE)
# Files that mention ids without testing them.
_NOT_TESTS = {"test_fault_catalog.py", "servers.py"}

pytestmark = pytest.mark.skipif(not FAULTS.is_file(), reason="../shared is not beside the project")


def catalog_ids() -> list[str]:
    return _ROW.findall(FAULTS.read_text(encoding="utf-8"))


def cited_ids() -> set[str]:
    text = "\n".join(
        p.read_text(encoding="utf-8")
        for folder in ("tests", "bench")
        for p in sorted((ROOT / folder).rglob("*.py"))
        if p.name not in _NOT_TESTS
    )
    return {
        m.group(1).upper() for m in re.finditer(r"(?<![A-Za-z0-9])([A-Da-d]\d{1,2})(?![0-9])", text)
    }


def test_the_catalog_has_its_92_cases() -> None:
    ids = catalog_ids()
    assert len(ids) == len(set(ids)) == 92
    for letter, count in (("A", 19), ("B", 27), ("C", 23), ("D", 23)):
        assert [i for i in ids if i[0] == letter] == [f"{letter}{n}" for n in range(1, count + 1)]


def test_every_case_has_a_test() -> None:
    missing = [i for i in catalog_ids() if i not in cited_ids() and i not in ISSUE_4]
    assert missing == []


def test_alert_cases_from_issue_4() -> None:
    missing = sorted(ISSUE_4 - cited_ids())
    if missing:
        pytest.skip(f"expected from issue #4, not cited yet: {', '.join(missing)}")
