"""The rule commands, run as a user runs them: rules check, rules test, match, backtest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.store import open_store

ROOT = Path(__file__).resolve().parent.parent
RULES = str(ROOT / "rules")


def test_rules_check_reports_every_error_with_file_and_line(tmp_path: Path, run_cli: Any) -> None:
    """Bad YAML, unknown key, unknown entity, invalid regex, a python tag: all at once, exit 1."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "a.yaml").write_text(
        "rules:\n  - name: a\n    any: ['@nobody', {regex: 'a(?=b)'}]\n    colour: red\n",
        encoding="utf-8",
    )
    (tmp_path / "r" / "b.yaml").write_text("rules: [\n", encoding="utf-8")
    (tmp_path / "r" / "c.yaml").write_text(
        "rules: [{name: c, any: [!!python/object/apply:os.system [touch pwned]]}]\n",
        encoding="utf-8",
    )
    result = run_cli("rules", "check", "r")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    a, b, c = (str(Path("r") / n) for n in ("a.yaml", "b.yaml", "c.yaml"))
    assert f"{a}:3: rules[0].any[0]: unknown entity @nobody (known: none defined)" in lines
    assert any(x.startswith(f"{a}:3: rules[0].any[1].regex: invalid or non-RE2") for x in lines)
    assert any(x.startswith(f"{a}:4: rules[0].colour: unknown key") for x in lines)
    assert any(x.startswith(f"{b}:2: : invalid YAML") for x in lines)
    assert any(x.startswith(f"{c}:1: rules[0].any[0]: tag ") for x in lines)
    assert not (tmp_path / "pwned").exists()


def test_rules_check_needs_configured_channels(tmp_path: Path, run_cli: Any) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules: [{name: r, channels: [inbox, pager], any: [x]}]\n", encoding="utf-8"
    )
    (tmp_path / "monitor.yaml").write_text(
        "database: m.db\nrules: rules/\nfeeds: []\nchannels: {inbox: 'console://'}\n",
        encoding="utf-8",
    )
    bad = run_cli("--config", "monitor.yaml", "rules", "check")
    assert bad.returncode == 1, bad.stderr
    assert "channel 'pager' is not configured" in bad.stderr
    assert "r.yaml:1" in bad.stderr
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules: [{name: r, channels: [inbox], any: [x]}]\n", encoding="utf-8"
    )
    good = run_cli("--config", "monitor.yaml", "rules", "check")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("ok: 1 rules")


def test_shipped_rules_check_clean(run_cli: Any) -> None:
    result = run_cli("rules", "check", RULES)
    assert result.returncode == 0, result.stderr


def test_rules_test_shows_match_and_near_miss(tmp_path: Path, run_cli: Any) -> None:
    text = "Hunderte Google-Beschäftigte protestieren mit einem offenen Brief gegen Project Nimbus."
    hit = run_cli("rules", "test", "--rules", RULES, "--text", text, "--json")
    assert hit.returncode == 0, hit.stderr
    out = json.loads(hit.stdout)
    (m,) = out["matched"]
    assert m["rule"] == "tech-worker-activism"
    assert m["category"] == "government-contracts"
    assert {"Google", "Beschäftigte*", "Project Nimbus"} <= set(m["terms"])
    near = run_cli("rules", "test", "--rules", RULES, "--text", "Google protestiert gegen Nimbus.")
    assert near.returncode == 0
    assert "no rule matched" in near.stdout
    assert "CLOSE tech-worker-activism" in near.stdout and "missing" in near.stdout
    usage = run_cli("rules", "test", "--rules", RULES)
    assert usage.returncode == 2


def test_match_classifies_json_lines_from_stdin(tmp_path: Path, run_cli: Any) -> None:
    records = [
        {
            "id": "a",
            "title": "",
            "text": "Salesforce employees sign a letter against the CBP deal.",
        },
        {"id": "b", "title": "Ice storm", "text": "Ice and snow; workers restore power."},
    ]
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + "not json\n", encoding="utf-8"
    )
    result = run_cli("match", "in.jsonl", "--rules", RULES, "--json")
    assert result.returncode == 1  # the bad line
    assert "in.jsonl:3: not a JSON object" in result.stderr
    a, b = (json.loads(line) for line in result.stdout.splitlines())
    assert a["id"] == "a" and a["matched"] is True
    assert a["hits"][0]["category"] == "government-contracts"
    assert set(a["hits"][0]) >= {"rule", "category", "score", "terms", "sentence"}
    assert b == {"id": "b", "matched": False, "hits": []}


def test_backtest_lists_new_and_lost_matches(tmp_path: Path, run_cli: Any) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules: [{name: strikes, any: [strike*]}]\n", encoding="utf-8"
    )
    (tmp_path / "monitor.yaml").write_text(
        "database: m.db\nrules: rules/\nfeeds: []\nchannels: {}\n", encoding="utf-8"
    )
    store = open_store(tmp_path / "m.db")
    now = datetime(2026, 1, 2, tzinfo=UTC)
    store.add_feed("https://example.org/feed", "Example", 900, now)
    feed_id = store.active_feeds()[0].id
    with store.write() as db:
        for i, (title, text) in enumerate([("Strike!", "Workers strike."), ("Old", "quiet")], 1):
            db["entries"].insert(
                {
                    "id": i,
                    "feed_id": feed_id,
                    "key": f"k{i}",
                    "title": title,
                    "summary": "",
                    "first_seen_at": now.isoformat(),
                    "text": text,
                    "text_source": "article",
                }
            )
        db["hits"].insert(
            {
                "entry_id": 2,
                "rule": "old-rule",
                "terms": "[]",
                "sentence": "",
                "matched_at": now.isoformat(),
            }
        )
    store.close()
    result = run_cli("--config", "monitor.yaml", "backtest", "--since", "2026-01-01")
    assert result.returncode == 0, result.stderr
    assert "+ [strikes] #1 Strike!" in result.stdout
    assert "- [old-rule] #2 Old" in result.stdout
    assert "2 articles: 1 would newly match, 1 would no longer match" in result.stdout
    later = run_cli("--config", "monitor.yaml", "backtest", "--since", "2026-02-01")
    assert "0 articles" in later.stdout
