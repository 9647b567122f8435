"""The command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Site, Webhook, free_port, needs_shared, write_config


def test_demo_finds_hits_offline(run_cli: Any) -> None:
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Alerts are printed to the console channel, then the hits are listed.
    assert "=== console: [monitor]" in out
    hits = out.split("hits:")[-1]
    assert "Maven" in hits and "GitHub" in hits
    # The negatives that share the vocabulary stay out.
    for negative in ("hockey", "Bahn", "earnings", "Skyline"):
        assert negative.lower() not in hits.lower(), negative


def test_init_writes_a_config_that_loads(tmp_path: Path, run_cli: Any) -> None:
    result = run_cli("init")
    assert result.returncode == 0, result.stderr
    config = tmp_path / "monitor.yaml"
    assert "feeds:" in config.read_text()
    from monitor.config import load_settings

    assert load_settings(config, environ={}).feeds[0].url == "https://example.org/feed.xml"
    again = run_cli("init")
    assert again.returncode == 1 and "--force" in again.stderr


def test_config_error_exits_1_before_doing_anything(tmp_path: Path, run_cli: Any) -> None:
    (tmp_path / "monitor.yaml").write_text("database: x.db\nfeeds:\n  - url: gopher://x\n")
    result = run_cli("run", "--once")
    assert result.returncode == 1
    assert "monitor.yaml:3: feeds[0].url: expected an http(s) URL" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_unknown_rule_channel_is_a_config_error(tmp_path: Path, run_cli: Any) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        "rules:\n  - name: r\n    channels: [nowhere]\n    all:\n      - any: [letter]\n"
    )
    (tmp_path / "monitor.yaml").write_text(
        "database: x.db\nrules: rules\nchannels:\n  c: console://\n"
    )
    result = run_cli("run", "--once")
    assert result.returncode == 1
    assert "nowhere" in result.stderr and "not configured" in result.stderr
    assert not (tmp_path / "x.db").exists()


@needs_shared
def test_check_feed_dry_run_reports_matches_and_stores_nothing(
    tmp_path: Path, site: Site, run_cli: Any
) -> None:
    site.serve_fixture_site()
    site.server.expect_request("/missing.xml").respond_with_data("gone", status=404)
    config = write_config(
        tmp_path / "monitor.yaml",
        database=tmp_path / "m.db",
        feeds=[],
        channels={"c": "console://"},
    )
    local = tmp_path / "local.rss"
    local.write_text((ROOT / "tests/data/site/feed.rss").read_text().format(base=site.base))
    result = run_cli(
        "--config",
        str(config),
        "check-feed",
        site.url("feed.atom"),
        str(local),
        site.url("missing.xml"),
        "--json",
    )
    assert result.returncode == 1  # one source failed
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["source"] for r in reports] == [
        site.url("feed.atom"),
        str(local),
        site.url("missing.xml"),
    ]
    atom, rss, missing = reports
    matched = {e["title"]: bool(e["matches"]) for r in (atom, rss) for e in r["entries"]}
    assert sum(matched.values()) == 2, matched
    assert all(e["text_source"] == "article" for e in atom["entries"])
    assert "HTTP 404" in missing["error"]
    assert not (tmp_path / "m.db").exists()


def test_feeds_add_import_and_list(tmp_path: Path, run_cli: Any) -> None:
    config = write_config(
        tmp_path / "monitor.yaml", database=tmp_path / "m.db", feeds=[], channels={}
    )
    added = run_cli(
        "--config", str(config), "feeds", "add", "https://example.org/feed.xml", "--name", "Ex"
    )
    assert added.returncode == 0, added.stderr
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><body>'
        '<outline text="A" xmlUrl="https://a.example/rss"/>'
        '<outline text="Folder"><outline text="B" xmlUrl="https://b.example/atom"/></outline>'
        '<outline text="Bad" xmlUrl="file:///etc/passwd"/>'
        '<outline text="Again" xmlUrl="https://example.org/feed.xml"/>'
        "</body></opml>"
    )
    imported = run_cli("--config", str(config), "feeds", "import", str(opml))
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 feeds (1 skipped)" in imported.stdout
    assert "file:///etc/passwd" in imported.stderr
    rows = json.loads(run_cli("--config", str(config), "feeds", "list", "--json").stdout)
    assert [r["url"] for r in rows] == [
        "https://example.org/feed.xml",
        "https://a.example/rss",
        "https://b.example/atom",
    ]
    assert all(r["last_success_at"] is None and r["consecutive_failures"] == 0 for r in rows)


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@needs_shared
@pytest.mark.slow
def test_daemon_polls_alerts_and_stops_cleanly_on_sigterm(
    tmp_path: Path, site: Site, webhook: Webhook
) -> None:
    site.serve_fixture_site()
    config = write_config(
        tmp_path / "monitor.yaml",
        database=tmp_path / "m.db",
        feeds=[{"url": site.url("feed.rss"), "alert_on_first_poll": True, "interval": "1h"}],
        channels={"hook": webhook.url()},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "-v", "--config", str(config), "run"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"},
    )
    try:
        assert _wait_for(lambda: len(webhook.posts) >= 1, 60), "the daemon never alerted"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err
    assert len(webhook.posts) == 1


@pytest.mark.slow
def test_browse_serves_datasette_read_only(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "monitor.yaml", database=tmp_path / "m.db", feeds=[], channels={}
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "browse", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/m.json", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        assert _wait_for(up, 30), "datasette did not start"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/m.json", timeout=5) as r:
            tables = {t["name"] for t in json.load(r)["tables"]}
        assert {"feeds", "entries", "hits", "alerts"} <= tables
        # Arbitrary SQL is off by default.
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/m.json?sql=select+1", timeout=5)
            raise AssertionError("arbitrary SQL was allowed")
        except urllib.error.HTTPError as e:
            assert e.code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=10)
