"""``monitor browse``: the hits in Datasette, set up for people.

The Datasette metadata (titles, descriptions of every table and column,
facets, full-text search on the hits view, canned queries and the Atom feed)
is generated here rather than kept in a file, because Datasette keys it by the
database's name, which is the stem of the configured database path
(``state/monitor.db`` -> ``monitor``). :func:`metadata` returns it;
``monitor browse --metadata`` prints it as YAML for anyone who runs
``datasette`` themselves.

Safe by default: bound to 127.0.0.1, arbitrary SQL off unless asked for, and
the database opened read-only (Datasette's ``mode=ro`` connections, which see
the daemon's new rows; ``immutable`` would not). The only write is done
before Datasette starts, through the store: migrations and the
``term_roles`` table that names which matched terms are companies and which
are counterparts.

Used by ``monitor browse`` (:func:`serve`) and by the tests
(:func:`make_datasette` and its ``client``).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from datasette.app import Datasette
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from monitor.store import Store

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "database_name",
    "make_datasette",
    "metadata",
    "refresh_term_roles",
    "rule_files",
    "serve",
    "settings",
    "term_roles_from_rules",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001

#: The named term lists in rule files whose terms name a company or a counterpart.
ROLE_LISTS = {"companies": "company", "counterparts": "counterpart"}
#: The entity kinds (rules/entities/*.yaml) that name a company or a counterpart.
ENTITY_ROLES = {
    "company": "company",
    "companies": "company",
    "product": "company",
    "agency": "counterpart",
    "government": "counterpart",
}

#: Facets on the hits view, in the order they are shown. ``story_id`` gathers a
#: story's reports ("also reported by"): its values are the stories told most often.
HIT_FACETS = [
    "rule",
    "category",
    "company",
    "counterpart",
    "outlet",
    "language",
    "day",
    "story_id",
]

_HIT_COLUMNS = {
    "id": "The hit's number (`monitor hit #42` in alerts).",
    "matched_at": "When monitor found the match (UTC).",
    "rule": "The rule that matched.",
    "terms": "The rule's terms found in the article, in the order they appear (JSON list).",
    "sentence": "The sentence holding the most matched terms.",
    "title": "The article's title, as the feed or page gave it (shown as text).",
    "link": "The article's address (http and https links only).",
    "published": "When the article says it was published (UTC), if it says.",
    "language": "The article's language as detected (en, de, ...).",
    "outlet": "The feed the article came from (its configured name, else its title).",
    "day": "The day of publication, else the day it was found (YYYY-MM-DD).",
    "category": "The rule's category, if it has one.",
    "company": (
        "The company: a rule's `company:` tag, else the company named by the first "
        "matched term that names one (see term_roles)."
    ),
    "counterpart": (
        "Whom the action is against (ICE, the Pentagon, ...): a rule's `counterpart:` "
        "tag, else the first matched term that names one (see term_roles)."
    ),
    "score": "The rule's score for this article (1.0 for rules without weights).",
    "entry_id": "The article's row in entries.",
    "feed_id": "The feed's row in feeds.",
    "story_id": (
        "The story the article tells (stories): reports of one event by several outlets, "
        "in any language, share it; only its first report alerts (unless the rule asks "
        "for updates). Its facet, or the `story` query, lists a story's reports together."
    ),
    "story_outlets": "How many outlets reported this story so far (also reported by ...).",
}

_TABLES: dict[str, dict[str, Any]] = {
    "hit_list": {
        "title": "Hits",
        "description": (
            "Every article a rule matched, newest first, with its outlet, the matched "
            "terms and the sentence. Search searches the articles' titles and texts; "
            "each column's menu says what it holds."
        ),
        "sort_desc": "id",
        "facets": HIT_FACETS,
        "fts_table": "entries_fts",
        "fts_pk": "entry_id",
        "size": 50,
        "columns": _HIT_COLUMNS,
    },
    "hits": {
        "title": "Hits (raw)",
        "description": "One row per article x rule that matched; see Hits for the readable view.",
        "sort_desc": "id",
        "facets": ["rule", "category"],
        "columns": {
            "id": "The hit's number.",
            "entry_id": "The article (entries).",
            "rule": "The rule that matched.",
            "terms": "The matched terms (JSON list).",
            "sentence": "The sentence holding the most matched terms.",
            "matched_at": "When monitor found the match (UTC).",
            "category": "The rule's category, if it has one.",
            "score": "The rule's score for this article.",
            "tags": "The rule's tags (JSON list).",
            "story_id": "The story the article tells (stories).",
        },
    },
    "stories": {
        "title": "Stories",
        "description": (
            "One event told by one or more outlets: near-duplicate titles or texts, or the "
            "same company and counterpart, within 72 hours. Its first hit alerts. The "
            "`stories_reported_by` query lists each story with its outlets; `story` lists "
            "one story's reports."
        ),
        "sort_desc": "id",
        "label_column": "title",
        "facets": ["company", "counterpart"],
        "columns": {
            "id": "The story's number.",
            "title": "The first report's title.",
            "company": "The company involved, if known.",
            "counterpart": "Whom the action is against, if known.",
            "event_at": "When it happened: the first report's date, else when it was found (UTC).",
            "created_at": "When monitor first saw it (UTC).",
            "title_words": "The first report's title words, for comparing (JSON list).",
            "sketch": "A fingerprint of the first report's text, for comparing (JSON list).",
        },
    },
    "entries": {
        "title": "Articles",
        "description": (
            "Every feed entry monitor has seen, matched or not, with the article's text. "
            "Titles and texts are full-text indexed."
        ),
        "sort_desc": "id",
        "facets": ["language", "text_source"],
        "columns": {
            "id": "The article's row.",
            "feed_id": "The feed it came from (feeds).",
            "key": "Its identity within the feed: guid:..., link:... or hash:...",
            "guid": "The feed's id for the entry, if it gave one.",
            "link": "The article's address.",
            "link_norm": "The address without scheme, fragment and tracking parameters.",
            "title": "The title.",
            "summary": "The feed's summary of the entry.",
            "author": "The author, if known.",
            "published": "When it was published (UTC), if known.",
            "first_seen_at": "When monitor first saw it (UTC).",
            "text": "The article's text (extracted from the page, else the feed's summary).",
            "text_source": "'article' when extracted from the page, 'summary' when not.",
            "extract_error": "Why extraction failed, if it did.",
            "language": "The detected language.",
            "parse_block_sha": (
                "A hash of the entry's raw block in the feed, to notice a later edit."
            ),
            "parse_checked_at": "When a changed block was last taken in (UTC).",
            "updated_at": "When the title or summary last changed after it was stored (UTC).",
        },
    },
    "feeds": {
        "title": "Feeds",
        "description": "The polled feeds and their health.",
        "facets": ["active", "source"],
        "columns": {
            "id": "The feed's row.",
            "url": "The feed's address.",
            "name": "The name given in the configuration.",
            "source": "Where it was added: 'config' (monitor.yaml) or 'cli'.",
            "active": "1 while polled; 0 once removed from the configuration.",
            "interval_s": "Seconds between polls.",
            "alert_on_first_poll": "1 if the first poll alerts too (else it is a baseline).",
            "title": "The title the feed gives itself.",
            "etag": "The last ETag, for conditional requests.",
            "last_modified": "The last Last-Modified, for conditional requests.",
            "created_at": "When the feed was added (UTC).",
            "last_polled_at": "The last poll (UTC).",
            "last_success_at": "The last successful poll (UTC).",
            "last_new_entry_at": "The last poll that brought a new entry (UTC).",
            "last_error": "The last error, cleared by a success.",
            "last_error_at": "When the last error happened (UTC).",
            "consecutive_failures": "Failed polls in a row.",
            "next_poll_at": "When it is next due (UTC).",
            "state": "'ok' while polled; 'gone' after HTTP 410.",
            "last_error_type": "The last error's kind (timeout, HTTP status, ...).",
            "redirect_to": "A permanent redirect seen on recent polls.",
            "redirect_seen": "On how many polls in a row that redirect was seen.",
            "previous_url": "The address before a permanent redirect was adopted.",
            "learnt_interval_s": "The learnt seconds between polls.",
            "rhythm_s": "The median seconds between new entries.",
            "notified_health": "The health the operator was last told about.",
            "parse_body_sha": "A hash of the last feed body parsed, so an unchanged one is not.",
        },
    },
    "alerts": {
        "title": "Alerts",
        "description": "The outbox: one row per hit x channel, with its delivery state.",
        "sort_desc": "id",
        "facets": ["status", "channel"],
        "columns": {
            "id": "The alert's row.",
            "hit_id": "The hit it tells about (hits).",
            "channel": "The channel's name (never its URL).",
            "status": "pending, sending, sent, skipped (first poll) or dead (gave up).",
            "attempts": "Delivery attempts so far.",
            "last_error": "The last delivery error (names the channel, never its URL).",
            "created_at": "When it was queued (UTC).",
            "next_attempt_at": "When it is next tried (UTC).",
            "lease_until": "While 'sending': when another process may take it over.",
            "sent_at": "When it was sent (UTC).",
            "digest": (
                "Empty for a message of its own; else the digest schedule (or 'quiet', "
                "after quiet hours) whose one message carries it."
            ),
            "is_update": (
                "1 for a later report of a story that already alerted the channel, sent "
                "because the rule asks for updates; 0 otherwise."
            ),
        },
    },
    "term_roles": {
        "title": "Term roles",
        "description": (
            "Which matched terms name a company and which a counterpart, from the rules' "
            "entities and their `companies` and `counterparts` lists; refreshed by "
            "`monitor browse`."
        ),
        "facets": ["role", "name"],
        "columns": {
            "term": "A term as stored in hits.terms.",
            "role": "'company' or 'counterpart'.",
            "name": "The company or counterpart it names, as the hits show it.",
        },
    },
    "operator_notices": {
        "title": "Operator notices",
        "description": "What monitor told its operator (stale feeds, dead alerts, broken rules).",
        "sort_desc": "id",
        "facets": ["kind", "status"],
        "columns": {
            "id": "The notice's row.",
            "kind": "What kind of notice.",
            "subject": "What it is about, e.g. 'feed:3' or 'rules'.",
            "title": "Its title.",
            "body": "Its text.",
            "channel": "The channel's name it went to, if any.",
            "status": "sent, failed, logged or suppressed.",
            "error": "The sending error, if any.",
            "created_at": "When it was made (UTC).",
        },
    },
    "daemon_status": {
        "title": "Daemon status",
        "description": "What the running (or last) daemon did.",
        "columns": {
            "id": "Always 1.",
            "pid": "The daemon's process id.",
            "started_at": "When it started (UTC).",
            "heartbeat_at": "Its last sign of life (UTC).",
            "last_cycle_at": "Its last poll cycle (UTC).",
            "last_reload_at": "Its last rules reload (UTC).",
            "reload_error": "The last reload's errors, if it failed.",
            "stopped_at": "When it stopped (UTC).",
        },
    },
    "_sqlite_migrations": {"hidden": True},
}

# The Atom feed's columns (datasette-atom). Titles and texts go out as text
# (atom_content, not atom_content_html), so a title holding HTML stays text in
# the feed reader too; a hit without an http(s) link links to its feed.
_ATOM_SQL = """
SELECT
  'tag:monitor,2026:hit/' || h.id AS atom_id,
  h.matched_at AS atom_updated,
  h.title AS atom_title,
  coalesce(h.link, feeds.url) AS atom_link,
  h.outlet AS atom_author_name,
  h.sentence || char(10) || char(10) ||
    'Rule: ' || h.rule || char(10) ||
    'Matched: ' || (SELECT group_concat(value, ', ') FROM json_each(h.terms)) || char(10) ||
    'Outlet: ' || h.outlet ||
    coalesce(char(10) || 'Published: ' || h.published, '') AS atom_content
FROM hit_list AS h JOIN feeds ON feeds.id = h.feed_id
ORDER BY h.id DESC
LIMIT 100
"""
# datasette-atom 0.9 answers 500 for a query with no rows (it takes max() of
# atom_updated), so an empty database gets one entry that says so instead.
_ATOM_SQL = f"""
SELECT * FROM ({_ATOM_SQL.strip()})
UNION ALL
SELECT 'tag:monitor,2026:no-hits-yet', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),
  'No hits yet', '/', 'monitor',
  'monitor has not found any hits yet. New hits appear here as they are found.'
WHERE NOT EXISTS (SELECT 1 FROM hits)
"""

_QUERIES: dict[str, dict[str, Any]] = {
    "latest_hits": {
        "title": "Latest hits",
        "description": "The 100 newest hits.",
        "sql": (
            "SELECT id, matched_at, day, title, link, outlet, company, counterpart, rule, "
            "terms, sentence FROM hit_list ORDER BY id DESC LIMIT 100"
        ),
    },
    "hits_feed": {
        "title": "monitor: latest hits",
        "description": (
            "The 100 newest hits as a feed: subscribe to this page's .atom link in a feed reader."
        ),
        "sql": _ATOM_SQL.strip(),
    },
    "hits_per_company_per_week": {
        "title": "Hits per company per week",
        "description": (
            "How many hits named each company, per week of publication (weeks start on Monday)."
        ),
        "sql": (
            "SELECT date(day, '-6 days', 'weekday 1') AS week_of, "
            "coalesce(company, '(none)') AS company, count(*) AS hits, "
            "count(DISTINCT outlet) AS outlets FROM hit_list "
            "GROUP BY week_of, company ORDER BY week_of DESC, hits DESC, company"
        ),
    },
    "hits_for_rule": {
        "title": "Hits for one rule",
        "description": "The hits of the rule you name, newest first.",
        "sql": (
            "SELECT id, matched_at, day, title, link, outlet, company, counterpart, terms, "
            "sentence FROM hit_list WHERE rule = :rule ORDER BY id DESC"
        ),
    },
    "story": {
        "title": "One story's reports",
        "description": (
            "Every report of the story you name (its number is the hits' story_id), first "
            "report first: which outlets told it, when, in which language, with which rule."
        ),
        "sql": (
            "SELECT id, matched_at, published, outlet, language, title, link, rule, company, "
            "counterpart, sentence FROM hit_list WHERE story_id = :story_id ORDER BY id"
        ),
    },
    "stories_reported_by": {
        "title": "Stories and who reported them",
        "description": (
            "Each story, newest first, with how many outlets told it and which (first "
            "reporter first). Open one with the `story` query and its story_id."
        ),
        "sql": (
            "SELECT s.id AS story_id, s.title, s.company, s.counterpart, s.event_at, "
            "(SELECT count(DISTINCT h.outlet) FROM hit_list AS h WHERE h.story_id = s.id) "
            "AS outlets, "
            "(SELECT group_concat(outlet, ', ') FROM (SELECT h.outlet, min(h.id) AS first "
            "FROM hit_list AS h WHERE h.story_id = s.id GROUP BY h.outlet ORDER BY first)) "
            "AS reported_by, "
            "(SELECT count(*) FROM hits WHERE hits.story_id = s.id) AS reports "
            "FROM stories AS s ORDER BY s.id DESC LIMIT 500"
        ),
    },
    "failing_feeds": {
        "title": "Failing or stale feeds",
        "description": (
            "Active feeds whose last poll failed, that never succeeded, or whose last "
            "success is older than three intervals (and at least a day)."
        ),
        "sql": (
            "SELECT id, coalesce(name, title) AS feed, url, "
            "CASE WHEN consecutive_failures > 0 THEN 'failing' "
            "WHEN last_success_at IS NULL THEN 'never polled successfully' "
            "ELSE 'stale' END AS problem, consecutive_failures, last_error, last_error_at, "
            "last_success_at, last_new_entry_at, next_poll_at FROM feeds "
            "WHERE active = 1 AND (consecutive_failures > 0 OR last_success_at IS NULL "
            "OR julianday('now') - julianday(last_success_at) "
            "> max(3 * interval_s, 86400) / 86400.0) "
            "ORDER BY consecutive_failures DESC, last_success_at"
        ),
    },
    "alerts_by_status": {
        "title": "Alerts by status",
        "description": "How many alerts are in each state, per channel.",
        "sql": (
            "SELECT status, channel, count(*) AS alerts, max(attempts) AS most_attempts "
            "FROM alerts GROUP BY status, channel ORDER BY status, channel"
        ),
    },
    "alerts_pending_or_dead": {
        "title": "Alerts pending or dead",
        "description": (
            "Alerts not delivered yet (pending, sending) or given up (dead), with the hit "
            "and the last error."
        ),
        "sql": (
            "SELECT a.id, a.status, a.channel, a.attempts, a.last_error, a.next_attempt_at, "
            "h.id AS hit, h.title, h.link, h.outlet FROM alerts AS a "
            "JOIN hit_list AS h ON h.id = a.hit_id "
            "WHERE a.status IN ('pending', 'sending', 'dead') ORDER BY a.status, a.id DESC"
        ),
    },
}


# A little CSS, inline so it ships without package data: column descriptions
# as a compact two-column list, and none on the hits page, where they would
# push the hits below the fold (each column's menu still shows its description).
_CSS = """
dl.column-descriptions { display: grid; grid-template-columns: max-content 1fr;
  gap: 0 1em; font-size: 0.85em; }
dl.column-descriptions dt, dl.column-descriptions dd { margin: 0; }
body.table-hit_list dl.column-descriptions { display: none; }
td.col-terms { font-size: 0.8em; }
td.col-sentence { min-width: 22em; }
"""


def _css_url() -> str:
    return "data:text/css;base64," + base64.b64encode(_CSS.encode()).decode("ascii")


def database_name(path: str | Path) -> str:
    """The name Datasette gives the database at ``path`` (its file stem)."""
    return Path(path).stem


def metadata(db_name: str) -> dict[str, Any]:
    """The Datasette metadata for a monitor database named ``db_name``."""
    return {
        "title": "monitor: tech-worker activism in the news",
        "description": (
            "Articles where employees or shareholders of a tech company sign letters, "
            "petition, walk out or organize against the company's work, found in your "
            "feeds by monitor. Start with Hits; search finds a name in every stored article."
        ),
        "extra_css_urls": [_css_url()],
        "databases": {
            db_name: {
                "description": "Feeds, articles, hits and alerts stored by monitor.",
                "tables": {name: dict(table) for name, table in _TABLES.items()},
                "queries": {name: dict(q) for name, q in _QUERIES.items()},
            }
        },
    }


def settings(*, allow_sql: bool = False) -> dict[str, Any]:
    """Datasette settings: no arbitrary SQL unless asked for, long texts cut."""
    return {
        "default_allow_sql": allow_sql,
        "allow_download": False,
        "truncate_cells_html": 400,
        "sql_time_limit_ms": 2000,
        "facet_time_limit_ms": 500,
    }


def make_datasette(db_path: str | Path, *, allow_sql: bool = False) -> Datasette:
    """A configured Datasette on the database (read-only connections)."""
    path = Path(db_path)
    return Datasette(
        [str(path)],
        metadata=metadata(database_name(path)),
        settings=settings(allow_sql=allow_sql),
    )


def rule_files(sources: Sequence[str | Path]) -> list[Path]:
    """The rule files of a file, directory or list of both (as the rules loader finds them)."""
    files: list[Path] = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            )
        elif path.is_file():
            files.append(path)
    return files


def term_roles_from_rules(files: Iterable[str | Path]) -> set[tuple[str, str, str]]:
    """(term, role, name) triples from rule and entity files.

    Two sources: the ``companies`` and ``counterparts`` term lists of a rule
    file (the name is the term), and the ``entities`` of an entity file,
    whose ``kind`` says the role (company, companies, product: company;
    agency, government: counterpart). A company's name is its entity's first
    alias, so "HoloLens" counts for Microsoft; a counterpart's name is the
    term itself ("ICE", "army"), and so is each member's of a ``companies``
    group ("Uber").

    Terms are written as hits store them: without a leading ``=``, with a
    trailing ``*`` for prefix terms. Anything else in the files is ignored:
    browsing does not validate rules (the daemon does), so a broken rules
    edit never stops it. Raises :class:`OSError` or :class:`ValueError` for
    a file it cannot read.
    """
    yaml = YAML(typ="safe", pure=True)
    triples: set[tuple[str, str, str]] = set()
    for f in files:
        try:
            doc = yaml.load(Path(f).read_text(encoding="utf-8"))
        except YAMLError as e:
            raise ValueError(f"{f}: not YAML: {e}") from e
        if not isinstance(doc, dict):
            continue
        lists = doc.get("terms")
        for list_name, role in ROLE_LISTS.items():
            items = lists.get(list_name) if isinstance(lists, dict) else None
            for item in items if isinstance(items, list) else ():
                term = _stored_term(item)
                if term:
                    triples.add((term, role, term.removesuffix("*")))
        entities = doc.get("entities")
        for entity in entities.values() if isinstance(entities, dict) else ():
            if not isinstance(entity, dict) or not isinstance(entity.get("aliases"), list):
                continue
            kind = entity.get("kind")
            entity_role = ENTITY_ROLES.get(kind) if isinstance(kind, str) else None
            terms = [t for a in entity["aliases"] if (t := _stored_term(a))]
            if entity_role is None or not terms:
                continue
            canonical = entity_role == "company" and kind != "companies"
            for term in terms:
                name = terms[0] if canonical else term
                triples.add((term, entity_role, name.removesuffix("*")))
    return triples


def _stored_term(item: object) -> str | None:
    if isinstance(item, dict):
        text, prefix = item.get("term"), bool(item.get("prefix"))
        if not isinstance(text, str):
            return None
    elif isinstance(item, str):
        text = item.removeprefix("=")
        prefix = text.endswith("*")
        text = text.removesuffix("*")
    else:
        return None
    text = text.strip()
    return (text + "*" if prefix else text) or None


def refresh_term_roles(store: Store, rules: Sequence[str | Path]) -> int:
    """Replace ``term_roles`` with the roles named in the rules; returns their number.

    If a rule file cannot be read, the table is left as it was (and -1 returned).
    """
    try:
        triples = term_roles_from_rules(rule_files(rules))
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        log.warning("term roles not refreshed, the last ones stay: %s", e)
        return -1
    with store.write() as db:
        db.execute("DELETE FROM term_roles")
        db.conn.executemany(
            "INSERT OR IGNORE INTO term_roles (term, role, name) VALUES (?, ?, ?)",
            sorted(triples),
        )
    return int(db.execute("SELECT count(*) FROM term_roles").fetchone()[0])


def serve(
    db_path: str | Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_sql: bool = False,
) -> None:
    """Run Datasette on the database until interrupted (uvicorn, as ``datasette serve``)."""
    import uvicorn

    ds = make_datasette(db_path, allow_sql=allow_sql)
    log.info("serving %s on http://%s:%d/", db_path, host, port)
    uvicorn.run(ds.app(), host=host, port=port, log_level="warning", lifespan="on")
