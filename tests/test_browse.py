"""``monitor browse``: Datasette's own test client on a database filled by a
real pipeline run (loopback feeds and pages, real extraction and matching, a
real SQLite file), issue #5's "Done when"."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import feedparser
import pytest
from datasette.app import Datasette
from lxml import etree
from pytest_httpserver import HTTPServer

from monitor.browse import (
    HIT_FACETS,
    database_name,
    make_datasette,
    metadata,
    refresh_term_roles,
    term_roles_from_rules,
)
from monitor.cli import HIT_COLUMNS
from monitor.config import load_settings
from monitor.pipeline import make_monitor
from monitor.store import open_store
from tests.conftest import ROOT, Site, needs_shared, write_config

pytestmark = needs_shared

DB = "monitor"
XSS_TITLE = "<script>alert('xss')</script> Salesforce staff sign letter against CBP"
XSS_FEED_TITLE = "<img src=x onerror=alert(1)> Evil Gazette"
SECRET = "s3cr3t-T0KEN-4b1d"


def _xss_feed(base: str) -> str:
    # Atom text constructs of type="text" are literal text, so the markup is
    # stored as the title's wording (FAULTS C12); RSS titles are read as HTML
    # and their tags stripped by the parser, which would hide the case.
    return f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="text">&lt;img src=x onerror=alert(1)&gt; Evil Gazette</title>
  <id>urn:uuid:8c1f0e52-3f0b-4c55-9d7e-5a9a0c1e2b3d</id>
  <updated>2025-06-03T08:30:00Z</updated>
  <entry>
    <title type="text">&lt;script&gt;alert('xss')&lt;/script&gt; Salesforce staff sign letter against CBP</title>
    <link href="{base}/seed-en.html"/>
    <id>urn:uuid:8c1f0e52-3f0b-4c55-9d7e-5a9a0c1e2b01</id>
    <updated>2025-06-03T08:30:00Z</updated>
  </entry>
  <entry>
    <title type="text">A javascript: link</title>
    <link href="javascript:alert(document.cookie)"/>
    <id>urn:uuid:8c1f0e52-3f0b-4c55-9d7e-5a9a0c1e2b02</id>
    <updated>2025-06-03T09:30:00Z</updated>
    <summary>Salesforce employees signed an open letter against the CBP contract.</summary>
  </entry>
</feed>"""


async def _run(settings: Any) -> Any:
    monitor = make_monitor(settings)
    try:
        monitor.sync_feeds()
        return await monitor.run_once()
    finally:
        await monitor.aclose()


def fill_database(tmp: Path) -> Path:
    """One real pipeline run into ``tmp/monitor.db`` (config in ``tmp/monitor.yaml``):
    the fixture site, an XSS feed, a broken feed, and a channel whose URL
    holds a secret and whose receiver is down."""
    tmp.mkdir(parents=True, exist_ok=True)
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        site = Site(server)
        site.serve_fixture_site()
        site.serve("evil.atom", _xss_feed(site.base), "application/atom+xml; charset=utf-8")
        site.serve("broken.rss", "<html><body>not a feed</body></html>", "text/html")
        closed = HTTPServer(host="127.0.0.1", port=0)  # bound, then stopped: refuses
        closed.start()
        dead_port = closed.port
        closed.stop()
        config = write_config(
            tmp / "monitor.yaml",
            database=tmp / f"{DB}.db",
            feeds=[
                {"url": site.url("feed.rss"), "name": "Test Tribune", "alert_on_first_poll": True},
                {"url": site.url("feed.atom"), "name": "Test Wire", "alert_on_first_poll": True},
                {"url": site.url("evil.atom"), "alert_on_first_poll": True},
                {"url": site.url("broken.rss")},
            ],
            channels={"hook": f"json://127.0.0.1:{dead_port}/hook/{SECRET}"},
        )
        settings = load_settings(config)
        summary = asyncio.run(_run(settings))
        assert len(summary.failed) == 1, summary
        store = open_store(settings.database)
        refresh_term_roles(store, settings.rules)
        store.close()
    finally:
        server.clear()
        if server.is_running():
            server.stop()
    return tmp / f"{DB}.db"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill_database(tmp_path_factory.mktemp("browse"))


@pytest.fixture(scope="module")
def ds(filled: Path) -> Datasette:
    return make_datasette(filled)


def get(ds: Datasette, path: str) -> Any:
    return asyncio.run(ds.client.get(path))


def rows(ds: Datasette, path: str) -> list[dict[str, Any]]:
    sep = "&" if "?" in path else "?"
    r = get(ds, f"{path}{sep}_shape=array&_size=max")
    assert r.status_code == 200, r.text
    return list(r.json())


def db_count(db: Path, sql: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(sql).fetchone()[0])


def test_database_name_is_the_file_stem(filled: Path) -> None:
    assert database_name(filled) == DB
    assert database_name("/var/lib/monitor/state/demo.db") == "demo"


def test_hits_view_lists_every_hit_newest_first_with_company_and_counterpart(
    ds: Datasette, filled: Path
) -> None:
    hits = rows(ds, f"/{DB}/hit_list.json")
    assert len(hits) == db_count(filled, "SELECT count(*) FROM hits") >= 3
    assert [h["id"] for h in hits] == sorted((h["id"] for h in hits), reverse=True)
    seed = next(h for h in hits if h["title"].startswith("Salesforce employees ask Benioff"))
    assert seed["outlet"] == "Test Tribune"
    assert seed["company"] == "Salesforce"
    assert seed["counterpart"] in {"CBP", "Customs and Border Protection"}
    assert seed["day"] == "2025-06-02"
    assert seed["link"].startswith("http://127.0.0.1:") and seed["sentence"]
    assert "Salesforce" in json.loads(seed["terms"])
    german = next(h for h in hits if h["title"].startswith("Salesforce-Beschäftigte"))
    assert (german["language"], german["outlet"]) == ("de", "Test Wire")
    # Negatives never become hits.
    assert not any("forecast" in h["title"] or "shootout" in h["title"] for h in hits)


def test_every_facet_is_offered_with_its_values(ds: Datasette) -> None:
    r = get(ds, f"/{DB}/hit_list.json")
    facets = r.json()["facet_results"]
    assert set(facets) == set(HIT_FACETS)
    values = {name: {v["value"] for v in f["results"]} for name, f in facets.items()}
    assert values["rule"] == {"tech-worker-activism"}
    assert "Salesforce" in values["company"]
    assert {"Test Tribune", "Test Wire"} <= values["outlet"]
    assert {"en", "de"} <= values["language"]
    assert "2025-06-02" in values["day"]
    assert values["counterpart"] - {None}
    # A facet value narrows the list.
    narrowed = rows(ds, f"/{DB}/hit_list.json?outlet=Test+Wire")
    assert narrowed and all(h["outlet"] == "Test Wire" for h in narrowed)


def test_search_finds_hits_and_any_stored_article(ds: Datasette) -> None:
    found = rows(ds, f"/{DB}/hit_list.json?_search=Benioff")
    titles = {h["title"].split()[0] for h in found}
    assert titles >= {"Salesforce", "Salesforce-Beschäftigte"}
    # A German word with an umlaut, found in the article's text (not its title).
    german = rows(ds, f"/{DB}/hit_list.json?_search=Zollbeh%C3%B6rde")
    assert [h["language"] for h in german] == ["de"]
    # Every stored article is searchable, matched or not.
    assert not rows(ds, f"/{DB}/hit_list.json?_search=shootout")
    articles = rows(ds, f"/{DB}/entries.json?_search=shootout")
    assert [a["title"][:5] for a in articles] == ["Storm"]
    html = get(ds, f"/{DB}/hit_list?_search=Salesforce").text
    assert 'name="_search"' in html and "Benioff" in html


@pytest.mark.parametrize(
    ("query", "args", "expect_rows"),
    [
        ("latest_hits", "", True),
        ("hits_feed", "", True),
        ("hits_per_company_per_week", "", True),
        ("hits_for_rule", "rule=tech-worker-activism", True),
        ("hits_for_rule", "rule=no-such-rule", False),
        ("failing_feeds", "", True),
        ("alerts_by_status", "", True),
        ("alerts_pending_or_dead", "", True),
        ("story", "story_id=1", True),
        ("story", "story_id=999", False),
        ("stories_reported_by", "", True),
    ],
)
def test_every_canned_query_answers(
    ds: Datasette, query: str, args: str, expect_rows: bool
) -> None:
    assert query in metadata(DB)["databases"][DB]["queries"]
    found = rows(ds, f"/{DB}/{query}.json?{args}")
    assert bool(found) == expect_rows
    page = get(ds, f"/{DB}/{query}?{args}")
    assert page.status_code == 200


def test_canned_queries_say_what_happened(ds: Datasette) -> None:
    failing = rows(ds, f"/{DB}/failing_feeds.json")
    assert [(f["url"].rsplit("/", 1)[-1], f["problem"]) for f in failing] == [
        ("broken.rss", "failing")
    ]
    weeks = rows(ds, f"/{DB}/hits_per_company_per_week.json")
    salesforce = [w for w in weeks if w["company"] == "Salesforce"]
    assert {w["week_of"] for w in salesforce} >= {"2025-06-02"}  # a Monday
    statuses = rows(ds, f"/{DB}/alerts_by_status.json")
    # The receiver is down: pending. The XSS feed retells the Tribune's CBP
    # story, so its report attaches to that story and is skipped (issue #4).
    assert {s["status"] for s in statuses} == {"pending", "skipped"}
    pending = rows(ds, f"/{DB}/alerts_pending_or_dead.json")
    assert pending and all(p["channel"] == "hook" and p["last_error"] for p in pending)
    for q in metadata(DB)["databases"][DB]["queries"]:
        assert q in get(ds, f"/{DB}").text


def test_a_storys_reports_are_seen_together(ds: Datasette, filled: Path) -> None:
    """Also reported by: the Tribune's CBP story is retold by the XSS feed; the
    `story` query, the story_id facet and the stories query show them together."""
    seed = next(
        h
        for h in rows(ds, f"/{DB}/hit_list.json")
        if h["title"].startswith("Salesforce employees ask Benioff")
    )
    story_id = seed["story_id"]
    assert story_id is not None and seed["story_outlets"] == 2
    reports = rows(ds, f"/{DB}/story.json?story_id={story_id}")
    # First report first (the feeds are polled at once, so either may be first).
    assert [r["id"] for r in reports] == sorted(r["id"] for r in reports)
    assert {r["outlet"] for r in reports} == {"Test Tribune", XSS_FEED_TITLE}
    # The evil feed tells it twice (its second entry has a javascript: link).
    assert {r["title"] for r in reports} == {seed["title"], XSS_TITLE, "A javascript: link"}
    # The facet narrows the hits to the same reports.
    faceted = rows(ds, f"/{DB}/hit_list.json?story_id={story_id}")
    assert sorted(h["id"] for h in faceted) == sorted(r["id"] for r in reports)
    values = get(ds, f"/{DB}/hit_list.json").json()["facet_results"]["story_id"]["results"]
    assert {"value": story_id, "count": 3} in [
        {"value": v["value"], "count": v["count"]} for v in values
    ]
    stories = {s["story_id"]: s for s in rows(ds, f"/{DB}/stories_reported_by.json")}
    assert len(stories) == db_count(filled, "SELECT count(*) FROM stories")
    told = stories[story_id]
    assert (told["outlets"], told["reports"]) == (2, 3)
    assert told["reported_by"] == ", ".join(dict.fromkeys(r["outlet"] for r in reports))
    # The HTML pages escape the retelling's title, and the raw hits link their story.
    page = get(ds, f"/{DB}/story?story_id={story_id}").text
    assert "<script>alert(" not in page and "&lt;script&gt;" in page
    raw = get(ds, f"/{DB}/hits?id={seed['id']}").text
    assert f'<a href="/{DB}/stories/{story_id}">' in raw  # labelled with the story's title
    assert f'href="/{DB}/hits?story_id={story_id}"' in get(ds, f"/{DB}/stories/{story_id}").text


def test_every_query_all_query_pages_and_exports_are_listed(ds: Datasette) -> None:
    assert len(metadata(DB)["databases"][DB]["queries"]) == 9
    for fmt in ("json", "csv"):
        assert get(ds, f"/{DB}/hit_list.{fmt}").status_code == 200
    assert ".atom" in get(ds, f"/{DB}/hits_feed").text


def test_atom_feed_is_valid_atom_with_one_entry_per_hit(ds: Datasette, filled: Path) -> None:
    r = get(ds, f"/{DB}/hits_feed.atom")
    assert r.status_code == 200
    root = etree.fromstring(r.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    assert root.findtext("a:title", namespaces=ns) == "monitor: latest hits"
    entries = root.findall("a:entry", ns)
    assert len(entries) == db_count(filled, "SELECT count(*) FROM hits")
    for e in entries:
        # RFC 4287 4.1.2: every entry has exactly one id, title and updated.
        for child in ("id", "title", "updated"):
            assert len(e.findall(f"a:{child}", ns)) == 1, child
        href = e.find("a:link", ns).get("href")
        assert href.startswith("http://127.0.0.1:")
    parsed = feedparser.parse(r.content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert len({e.id for e in parsed.entries}) == len(entries)
    seed = next(e for e in parsed.entries if e.title.startswith("Salesforce employees ask"))
    assert "Rule: tech-worker-activism" in seed.content[0].value
    assert seed.author == "Test Tribune"


def test_xss_titles_show_as_text(ds: Datasette) -> None:
    """FAULTS C12: an entry title with <script> and a feed title with
    <img onerror> are stored as text and escaped on every page and feed."""
    hits = rows(ds, f"/{DB}/hit_list.json")
    evil = next(h for h in hits if h["title"] == XSS_TITLE)
    assert evil["outlet"] == XSS_FEED_TITLE
    for path in (
        f"/{DB}/hit_list",
        f"/{DB}/hit_list?_search=Salesforce",
        f"/{DB}/latest_hits",
        f"/{DB}/hits",
        f"/{DB}/entries",
        f"/{DB}/feeds",
        f"/{DB}/hit_list/-/..",  # not a page; must not echo markup either
    ):
        html = get(ds, path).text
        assert "<script>alert(" not in html, path
        assert "<img src=x" not in html, path
    page = get(ds, f"/{DB}/hit_list").text
    assert "&lt;script&gt;alert(" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    atom = get(ds, f"/{DB}/hits_feed.atom").text
    assert "<script>" not in atom and "&lt;script&gt;" in atom
    parsed = feedparser.parse(atom.encode())
    assert any(e.title == XSS_TITLE for e in parsed.entries)


def test_javascript_links_are_never_links(ds: Datasette, filled: Path) -> None:
    """FAULTS C11: the parser drops a javascript: link; the view drops any
    non-http(s) link that reaches the database anyway."""
    with sqlite3.connect(filled) as conn:
        stored = conn.execute(
            "SELECT link FROM entries WHERE title = 'A javascript: link'"
        ).fetchone()
    assert stored == (None,)
    for path in (f"/{DB}/hit_list", f"/{DB}/entries", f"/{DB}/hits_feed.atom"):
        assert "javascript:alert" not in get(ds, path).text.replace("A javascript: link", "")


def test_view_drops_non_http_links(tmp_path: Path) -> None:
    store = open_store(tmp_path / "m.db")
    with store.write() as db:
        db.execute(
            "INSERT INTO feeds (id, url, created_at) VALUES (1, 'https://x.org/f', '2026-01-01')"
        )
        for i, link in enumerate(["javascript:alert(1)", "HTTPS://ok.org/a", "data:text/html,x"]):
            db.execute(
                "INSERT INTO entries (id, feed_id, key, link, title, summary, first_seen_at, "
                "text, text_source) VALUES (?, 1, ?, ?, 't', '', '2026-01-01', '', 'summary')",
                [i + 1, f"k{i}", link],
            )
            db.execute(
                "INSERT INTO hits (entry_id, rule, terms, sentence, matched_at) "
                "VALUES (?, 'r', '[]', 's', '2026-01-01T00:00:00+00:00')",
                [i + 1],
            )
    links = [h["link"] for h in reversed(store.hits())]
    store.close()
    assert links == [None, "HTTPS://ok.org/a", None]
    html = get(make_datasette(tmp_path / "m.db"), "/m/hit_list").text
    assert 'href="javascript:' not in html and 'href="data:text/html' not in html


def test_every_table_and_column_is_described(ds: Datasette, filled: Path) -> None:
    tables = metadata(DB)["databases"][DB]["tables"]
    with sqlite3.connect(filled) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'entries_fts%' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for name in names:
            meta = tables.get(name)
            assert meta is not None, f"table {name} has no metadata in monitor/browse.py"
            if meta.get("hidden"):
                continue
            assert meta["title"] and meta["description"], name
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]
            missing = set(columns) - set(meta["columns"])
            assert not missing, f"{name}: describe {sorted(missing)} in monitor/browse.py"
    # The instance's own page shows the title, and the hidden table is hidden.
    home = get(ds, "/").text
    assert "tech-worker activism" in home
    assert "_sqlite_migrations" not in get(ds, f"/{DB}").text


def test_cli_exports_have_the_hits_view_columns(filled: Path, run_cli: Any) -> None:
    config = filled.parent / "monitor.yaml"
    view = list(metadata(DB)["databases"][DB]["tables"]["hit_list"]["columns"])
    with sqlite3.connect(filled) as conn:
        assert [r[1] for r in conn.execute("PRAGMA table_info(hit_list)")] == view == HIT_COLUMNS
    out = run_cli("--config", str(config), "hits", "--csv")
    assert out.returncode == 0, out.stderr
    ours = list(csv.reader(io.StringIO(out.stdout)))
    theirs = list(csv.reader(io.StringIO(get(make_datasette(filled), f"/{DB}/hit_list.csv").text)))
    assert ours == theirs  # same header, same rows, same order, same values
    as_json = json.loads(run_cli("--config", str(config), "hits", "--json").stdout)
    assert [list(h) for h in as_json] == [view] * len(as_json)


def test_arbitrary_sql_is_off_unless_asked_for(filled: Path) -> None:
    closed = make_datasette(filled)
    assert get(closed, f"/{DB}.json?sql=select+1").status_code == 403
    # Canned queries still answer with SQL off.
    assert get(closed, f"/{DB}/latest_hits.json").status_code == 200
    opened = make_datasette(filled, allow_sql=True)
    r = get(opened, f"/{DB}.json?sql=select+count(*)+as+n+from+hits&_shape=array")
    assert r.status_code == 200 and r.json()[0]["n"] > 0


def test_datasette_reads_the_database_read_only_but_sees_new_rows(tmp_path: Path) -> None:
    store = open_store(tmp_path / "m.db")
    ds = make_datasette(tmp_path / "m.db", allow_sql=True)
    # Not immutable: a row the daemon writes later shows without a restart.
    assert rows(ds, "/m/term_roles.json") == []
    with store.write() as w:
        w.execute("INSERT INTO term_roles VALUES ('HoloLens', 'company', 'Microsoft')")
    assert rows(ds, "/m/term_roles.json") == [
        {"term": "HoloLens", "role": "company", "name": "Microsoft"}
    ]
    store.close()
    # Writes are refused over HTTP (Datasette only runs SELECTs) ...
    assert get(ds, "/m.json?sql=delete+from+term_roles").status_code == 400
    # ... and by SQLite itself: Datasette's connections are opened mode=ro.
    db = ds.get_database("m")

    async def write_through_datasette() -> None:
        await db.execute("DELETE FROM term_roles")

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        asyncio.run(write_through_datasette())


def test_no_secret_in_the_database_or_any_page(ds: Datasette, filled: Path) -> None:
    """FAULTS C20: the channel URL's token is in the config only."""
    for f in filled.parent.glob(f"{DB}.db*"):
        assert SECRET.encode() not in f.read_bytes(), f
    for path in ("/", f"/{DB}", f"/{DB}/alerts", f"/{DB}/alerts.json", f"/{DB}/feeds.json"):
        assert SECRET not in get(ds, path).text, path
    for q in metadata(DB)["databases"][DB]["queries"]:
        assert SECRET not in get(ds, f"/{DB}/{q}.json?rule=x").text, q


def test_term_roles_come_from_rule_lists_and_entities(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "terms:\n"
        "  companies: [Salesforce, =Meta, 'Googler*', {term: Palantir, prefix: true}]\n"
        "  counterparts: [=ICE, border patrol]\n"
        "  workers: [employee*]\n"
        "rules:\n"
        "  - name: r\n"
        "    all: [$companies, $workers, $counterparts]\n",
        encoding="utf-8",
    )
    (tmp_path / "entities").mkdir()
    entities = tmp_path / "entities" / "e.yaml"
    entities.write_text(
        "entities:\n"
        "  microsoft: {kind: company, aliases: [Microsoft, HoloLens, =Azure]}\n"
        "  gig: {kind: companies, aliases: [Uber, Lyft]}\n"
        "  military: {kind: agency, aliases: [Pentagon, army]}\n"
        "  immigration: {kind: topic, aliases: [deportation*]}\n",
        encoding="utf-8",
    )
    assert term_roles_from_rules([rules, entities]) == {
        ("Salesforce", "company", "Salesforce"),
        ("Meta", "company", "Meta"),
        ("Googler*", "company", "Googler"),
        ("Palantir*", "company", "Palantir"),
        ("ICE", "counterpart", "ICE"),
        ("border patrol", "counterpart", "border patrol"),
        # An entity's aliases name the company; a group's members name themselves.
        ("Microsoft", "company", "Microsoft"),
        ("HoloLens", "company", "Microsoft"),
        ("Azure", "company", "Microsoft"),
        ("Uber", "company", "Uber"),
        ("Lyft", "company", "Lyft"),
        ("Pentagon", "counterpart", "Pentagon"),
        ("army", "counterpart", "army"),
    }
    store = open_store(tmp_path / "m.db")
    assert refresh_term_roles(store, [tmp_path]) == 13
    assert refresh_term_roles(store, [tmp_path]) == 13  # replaced, not added to
    # A broken edit leaves the last roles in place: browsing never fails on rules.
    rules.write_text("terms: [unclosed\n", encoding="utf-8")
    assert refresh_term_roles(store, [tmp_path]) == -1
    assert store.db.execute("SELECT count(*) FROM term_roles").fetchone()[0] == 13
    store.close()


def test_shipped_rules_name_companies_and_counterparts() -> None:
    from monitor.browse import rule_files

    roles = {(t, r) for t, r, _ in term_roles_from_rules(rule_files([ROOT / "rules"]))}
    assert ("Microsoft", "company") in roles
    assert ("Salesforce", "company") in roles
    assert ("ICE", "counterpart") in roles  # written =ICE, stored without the =
    assert ("CBP", "counterpart") in roles


def test_browse_metadata_option_prints_yaml(filled: Path, run_cli: Any) -> None:
    out = run_cli("--config", str(filled.parent / "monitor.yaml"), "browse", "--metadata")
    assert out.returncode == 0, out.stderr
    assert f"  {DB}:" in out.stdout and "hits_feed:" in out.stdout


def test_atom_feed_of_an_empty_database_answers(tmp_path: Path) -> None:
    """datasette-atom 0.9 fails on zero rows; an empty database gets one 'no hits yet' entry."""
    open_store(tmp_path / "m.db").close()
    response = get(make_datasette(tmp_path / "m.db"), "/m/hits_feed.atom")
    assert response.status_code == 200
    feed = feedparser.parse(response.text)
    assert [e.title for e in feed.entries] == ["No hits yet"]
