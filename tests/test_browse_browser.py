"""A real headless browser on ``monitor browse``: Debian's chromium driven by
playwright (which cannot download its own browser here), against the real
command serving a database filled by a real pipeline run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, needs_shared
from tests.test_browse import DB, fill_database

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    needs_shared,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
    ),
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`monitor browse` as a user starts it on a database filled by a real run."""
    filled = fill_database(tmp_path / "state")
    port = free_port()
    log = (tmp_path / "browse.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "--config",
            str(filled.parent / "monitor.yaml"),
            "browse",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"},
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{origin}/-/versions.json", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise AssertionError(
                        "monitor browse did not start:\n" + (tmp_path / "browse.log").read_text()
                    ) from None
                time.sleep(0.2)
        yield origin
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_search_the_hits_page_in_chromium(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            dialogs: list[str] = []  # an alert() from an unescaped title would land here
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{server}/{DB}/hit_list", wait_until="load")
            assert page.locator("h1").first.inner_text().startswith("Hits")
            # The facets people narrow by are on the page.
            for facet in ("rule", "company", "outlet", "day"):
                assert page.locator(f'.facet-info[data-column="{facet}"]').count() == 1, facet
            # The search box searches the articles' titles and texts.
            page.fill('input[name="_search"]', "Salesforce")
            page.locator('input[name="_search"]').press("Enter")
            page.wait_for_url("**_search=Salesforce**")
            table = page.locator("table.rows-and-columns")
            assert "Salesforce employees ask Benioff" in table.inner_text()
            # The XSS title is text on the page, and no script of it ran.
            assert "<script>alert('xss')</script>" in table.inner_text()
            assert dialogs == []
            link = table.locator('a[href*="seed-en.html"]').first
            assert link.get_attribute("href", timeout=5000).startswith("http://127.0.0.1:")
            shot = tmp_path / "hits.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
