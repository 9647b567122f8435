"""Storage on real SQLite files: atomic polls, the single writer, the outbox."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.exceptions import StoreError
from monitor.store import NewEntry, Store, open_store
from monitor.types import Match

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def new_entry(key: str, hits: int = 1) -> NewEntry:
    return NewEntry(
        key=key,
        guid=key,
        link=f"https://x.org/{key}",
        link_norm=f"x.org/{key}",
        title=f"title {key}",
        summary="summary",
        author=None,
        published=None,
        text="Salesforce employees signed a letter",
        text_source="article",
        extract_error=None,
        language="en",
        hits=tuple(
            Match(f"rule{i}", ("Salesforce",), "Salesforce employees signed a letter")
            for i in range(hits)
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(tmp_path / "m.db")
    s.sync_config_feeds(
        [{"url": "https://x.org/feed", "name": "X", "interval": 900, "alert_on_first_poll": False}],
        NOW,
    )
    return s


def poll(
    store: Store, entries: list[NewEntry], *, baseline: bool = False, etag: str | None = '"v1"'
) -> tuple[int, int]:
    feed = store.active_feeds()[0]
    return store.record_poll(
        feed,
        now=NOW,
        next_poll=NOW + timedelta(minutes=15),
        title="X",
        etag=etag,
        last_modified=None,
        entries=entries,
        channels=("inbox", "team"),
        baseline=baseline,
    )


def count(store: Store, table: str) -> int:
    return int(store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_schema_is_wal_with_fts(store: Store) -> None:
    """FAULTS D9: the database runs in WAL mode."""
    assert store.db.journal_mode == "wal"
    assert {"feeds", "entries", "hits", "alerts", "entries_fts"} <= set(store.db.table_names())
    # NORMAL: commits are not fsynced one by one; WAL keeps them safe from a kill.
    assert store.db.execute("PRAGMA synchronous").fetchone() == (1,)


def test_poll_writes_entries_hits_and_one_alert_per_channel(store: Store) -> None:
    assert poll(store, [new_entry("a", hits=2), new_entry("b", hits=0)]) == (2, 4)
    assert (count(store, "entries"), count(store, "hits"), count(store, "alerts")) == (2, 2, 4)
    # Idempotent: the same poll again adds nothing.
    assert poll(store, [new_entry("a", hits=2)]) == (0, 0)
    assert count(store, "alerts") == 4
    feed = store.active_feeds()[0]
    assert (
        feed.etag == '"v1"' and feed.last_success_at is not None and feed.consecutive_failures == 0
    )


def test_baseline_poll_records_alerts_as_skipped(store: Store) -> None:
    hits, queued = poll(store, [new_entry("a")], baseline=True)
    assert (hits, queued) == (1, 0)
    assert {r[0] for r in store.db.execute("SELECT status FROM alerts")} == {"skipped"}


def test_full_text_search_finds_entries(store: Store) -> None:
    poll(store, [new_entry("a")])
    rows = store.db["entries"].search("salesforce")
    assert [r["key"] for r in rows] == ["a"]


def test_crash_between_hit_and_outbox_leaves_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAULTS D2: a hit without its outbox rows can never be observed."""
    conn = store.db.conn

    def failing_trace(statement: str) -> None:
        if statement.lstrip().startswith("INSERT INTO alerts"):
            raise RuntimeError("crash injected before the outbox row")

    # Raise from inside the transaction, right before the outbox insert.
    original_execute = store.db.execute

    def execute(sql: str, params: object = None) -> sqlite3.Cursor:
        failing_trace(sql)
        return original_execute(sql, params)  # type: ignore[arg-type]

    monkeypatch.setattr(store.db, "execute", execute)
    with pytest.raises(RuntimeError):
        poll(store, [new_entry("a")], etag='"new"')
    monkeypatch.undo()
    assert not conn.in_transaction
    assert (count(store, "entries"), count(store, "hits"), count(store, "alerts")) == (0, 0, 0)
    # The validators were not stored either (A17): the next poll refetches in full.
    assert store.active_feeds()[0].etag is None


def test_disk_full_rolls_back_and_recovers(store: Store) -> None:
    """FAULTS D5: SQLITE_FULL rolls the poll back; once space returns it is stored once."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")
    big = [new_entry(f"e{i}") for i in range(200)]
    with pytest.raises(StoreError, match="rolled back"):
        poll(store, big)
    assert count(store, "entries") == 0
    store.db.execute("PRAGMA max_page_count = 1073741823")
    assert poll(store, big) == (200, 400)


def test_writer_waits_for_a_held_lock_then_gives_up_cleanly(tmp_path: Path) -> None:
    """FAULTS D7/D8: another writer holds the lock; we fail the cycle, lose nothing."""
    s = open_store(tmp_path / "m.db")
    s.sync_config_feeds(
        [{"url": "https://x.org/feed", "name": "X", "interval": 900, "alert_on_first_poll": False}],
        NOW,
    )
    other = sqlite3.connect(tmp_path / "m.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release_later() -> None:
        released.wait(0.5)
        other.execute("COMMIT")

    t = threading.Thread(target=release_later)
    t.start()
    # busy_timeout lets us wait for the short-lived lock instead of failing at once.
    assert poll(s, [new_entry("a")]) == (1, 2)
    t.join()
    other.execute("BEGIN IMMEDIATE")
    import monitor.store as store_mod

    s2 = Store(s.db, s.path)
    s.db.conn.execute(f"PRAGMA busy_timeout = {int(0.2 * 1000)}")
    with pytest.raises(StoreError, match="cannot start a write"):
        poll(s2, [new_entry("b")])
    other.execute("ROLLBACK")
    assert poll(s2, [new_entry("b")]) == (1, 2)
    assert store_mod.BUSY_TIMEOUT_S > 0


def test_corrupt_database_is_refused_untouched(tmp_path: Path) -> None:
    """FAULTS D10."""
    p = tmp_path / "m.db"
    p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    before = p.read_bytes()
    with pytest.raises(StoreError, match="restore a backup"):
        open_store(p)
    assert p.read_bytes() == before


def test_outbox_claim_lease_and_release(store: Store) -> None:
    """FAULTS D3: a row left 'sending' by a dead process goes back to pending."""
    poll(store, [new_entry("a")])
    claimed = store.claim_due_alerts(NOW, timedelta(seconds=60))
    assert len(claimed) == 2 and claimed[0].terms == ("Salesforce",)
    assert store.claim_due_alerts(NOW, timedelta(seconds=60)) == []
    assert store.release_expired_leases(NOW + timedelta(seconds=30)) == 0
    assert store.release_expired_leases(NOW + timedelta(seconds=61)) == 2
    again = store.claim_due_alerts(NOW + timedelta(seconds=61), timedelta(seconds=60))
    assert [a.id for a in again] == [a.id for a in claimed]
    store.mark_sent(again[0].id, NOW)
    store.mark_failed(again[1].id, "boom", None)
    assert store.alert_counts() == {"sent": 1, "dead": 1}


def test_config_feeds_removed_from_the_file_stop_being_polled(store: Store) -> None:
    store.add_feed("https://y.org/cli-feed", None, 600, NOW)
    store.sync_config_feeds([], NOW)
    assert [f.url for f in store.active_feeds()] == ["https://y.org/cli-feed"]


def test_hit_metadata_is_stored(store: Store) -> None:
    e = new_entry("a", hits=0)
    m = Match(
        "r", ("ICE",), "s", category="government-contracts", score=2.5, tags=("ice", "letter")
    )
    poll(store, [NewEntry(**{**e.__dict__, "hits": (m,)})])
    row = next(store.db.query("SELECT category, score, tags FROM hits"))
    assert row == {"category": "government-contracts", "score": 2.5, "tags": '["ice", "letter"]'}


def test_tag_only_hits_queue_no_alerts(store: Store) -> None:
    e = new_entry("a", hits=0)
    tag_only = Match("tags", ("ICE",), "s", alert=False)
    alerting = Match("alerts", ("ICE",), "s")
    assert poll(store, [NewEntry(**{**e.__dict__, "hits": (tag_only, alerting)})]) == (2, 2)
    rules = {
        r[0] for r in store.db.execute("SELECT rule FROM hits JOIN alerts ON hits.id = hit_id")
    }
    assert rules == {"alerts"}
