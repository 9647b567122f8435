"""Commands for writing and checking rules: ``rules check``, ``rules test``, ``match``, ``backtest``.

Thin click commands over :mod:`monitor.rules` and :mod:`monitor.match`;
registered on the main group in :mod:`monitor.cli`. None of them sends an
alert or writes to the database.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click

from monitor.exceptions import ConfigError, FetchError, MonitorError, RuleError
from monitor.match import Explanation, explain_article, match_article
from monitor.rules import RuleSet, load_rules
from monitor.types import Article, Match

__all__ = ["backtest", "match_command", "rules_group"]


def _settings_or_none(ctx: click.Context) -> Any:
    """The configuration if one is given or found; None when there is none to find."""
    from monitor.cli import _settings

    try:
        return _settings(ctx)
    except ConfigError:
        if ctx.obj and ctx.obj.get("config"):
            raise
        return None


def _rules_for(ctx: click.Context, paths: tuple[str, ...] | str | None) -> RuleSet:
    """Rules from ``paths``, else the configuration's, else ./rules."""
    if paths:
        return load_rules(list(paths) if isinstance(paths, tuple) else paths)
    settings = _settings_or_none(ctx)
    return load_rules(settings.rules if settings else Path("rules"))


def _fail(lines: list[str] | tuple[str, ...]) -> None:
    for line in lines:
        click.echo(line, err=True)
    sys.exit(1)


def hit_json(m: Match) -> dict[str, Any]:
    """One hit as ``monitor match`` writes it."""
    return {
        "rule": m.rule,
        "category": m.category,
        "score": m.score,
        "terms": list(m.terms),
        "sentence": m.sentence,
        "tags": list(m.tags),
        "alert": m.alert,
    }


@click.group("rules")
def rules_group() -> None:
    """Check and try rules."""


@rules_group.command("check")
@click.argument("paths", nargs=-1)
@click.pass_context
def rules_check(ctx: click.Context, paths: tuple[str, ...]) -> None:
    """Validate rule files; report every error as file:line: path: message.

    PATHS are rule files or directories (default: the configuration's rules,
    else ./rules). A rule naming a channel the configuration does not define
    is an error too. Exit 1 on any error; nothing is loaded.

    Example: monitor rules check rules/
    """
    errors: list[str] = []
    rules: RuleSet | None = None
    try:
        rules = _rules_for(ctx, paths)
    except RuleError as e:
        errors.extend(e.errors)
    except MonitorError as e:
        errors.extend(str(e).splitlines())
    settings = None
    try:
        settings = _settings_or_none(ctx)
    except MonitorError as e:
        errors.extend(str(e).splitlines())
    if rules is not None and settings is not None:
        for rule in rules.rules:
            for c in rule.channels:
                if c not in settings.channels:
                    known = ", ".join(sorted(settings.channels)) or "none"
                    errors.append(
                        f"{rule.source}: rules[{rule.name}].channels: channel {c!r} is not "
                        f"configured in {settings.path} (configured: {known})"
                    )
    if errors:
        _fail(errors)
    assert rules is not None
    click.echo(
        f"ok: {len(rules.rules)} rules, {len(rules.entities)} entities, "
        f"{len(rules.term_index.terms)} terms in {len(rules.files)} files"
    )


@rules_group.command("test")
@click.option("--text", "text", default=None, help="The text to match.")
@click.option("--file", "file", type=click.File("r", encoding="utf-8"), help="A text file.")
@click.option("--url", "url", default=None, help="An article page to fetch and extract.")
@click.option("--title", default="", help="A title to match with --text or --file.")
@click.option("--rules", "rules_path", default=None, help="Rules file or directory.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def rules_test(
    ctx: click.Context,
    text: str | None,
    file: IO[str] | None,
    url: str | None,
    title: str,
    rules_path: str | None,
    as_json: bool,
) -> None:
    """Which rules match a text, with terms, sentence and score; and which came close.

    Example: monitor rules test --text "Google employees sign a letter against Project Maven"
    """
    given = [x for x in (text, file, url) if x is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --text, --file or --url")
    try:
        rules = _rules_for(ctx, rules_path)
        if url is not None:
            article = _fetch(ctx, url)
        else:
            body = text if text is not None else file.read()  # type: ignore[union-attr]
            article = Article(url=None, title=title, text=body)
    except MonitorError as e:
        _fail(e.errors if isinstance(e, RuleError | ConfigError) else [f"error: {e}"])
        return
    results = explain_article(article, rules)
    if as_json:
        click.echo(json.dumps(_explain_json(results), ensure_ascii=False, indent=2))
        return
    matched = [r for r in results if r.match is not None]
    close = [r for r in results if r.close]
    if not matched:
        click.echo("no rule matched")
    for r in matched:
        m = r.match
        assert m is not None
        extra = "" if m.alert else " (tag only, no alert)"
        click.echo(f"MATCH {m.rule}{extra}: category {m.category}, score {m.score:g}")
        click.echo(f"  terms: {', '.join(m.terms)}")
        click.echo(f"  sentence: {m.sentence}")
    for r in close:
        click.echo(f"CLOSE {r.rule}: found {', '.join(r.found[:8])}")
        for line in r.missing:
            click.echo(f"  missing {line}")


def _explain_json(results: list[Explanation]) -> dict[str, Any]:
    return {
        "matched": [hit_json(r.match) for r in results if r.match is not None],
        "close": [
            {"rule": r.rule, "found": list(r.found), "missing": list(r.missing)}
            for r in results
            if r.close
        ],
    }


def _fetch(ctx: click.Context, url: str) -> Article:
    import asyncio

    from monitor.config import FetchConfig
    from monitor.extract import ThreadExtractor
    from monitor.pipeline import fetch_article, make_fetcher
    from monitor.types import EntryData

    settings = _settings_or_none(ctx)
    fetch = settings.fetch if settings else FetchConfig()

    async def run() -> Article:
        fetcher = make_fetcher(fetch)
        extractor = ThreadExtractor(timeout=fetch.extract_timeout)
        try:
            entry = EntryData(guid=None, link=url, title="", summary="")
            article = await fetch_article(fetcher, extractor, entry)
        finally:
            await fetcher.aclose()
            extractor.close()
        if article.source != "article":
            raise FetchError(url, article.extract_error or "no article text")
        return article

    return asyncio.run(run())


def _records(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            yield n, None
            continue
        yield n, d if isinstance(d, dict) else None


@click.command("match")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--rules", "rules_path", default=None, help="Rules file or directory.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (the default; kept for scripts).")
@click.pass_context
def match_command(ctx: click.Context, file: IO[str], rules_path: str | None, as_json: bool) -> None:
    """Classify a JSON-lines file of records (id, title, text, language); `-` is stdin.

    Writes one JSON line per record: {"id", "matched", "hits": [{"rule",
    "category", "score", "terms", "sentence"}]}. `matched` is true when a rule
    that alerts by default matched. A line that is not a JSON object is
    reported on stderr and skipped; the exit code is then 1.

    Example: monitor match archive.jsonl --rules rules/ > classified.jsonl
    """
    try:
        rules = _rules_for(ctx, rules_path)
    except MonitorError as e:
        _fail(e.errors if isinstance(e, RuleError | ConfigError) else [f"error: {e}"])
        return
    bad = 0
    for n, d in _records(file):
        if d is None:
            click.echo(f"{file.name}:{n}: not a JSON object; skipped", err=True)
            bad += 1
            continue
        article = Article(
            url=None,
            title=str(d.get("title") or ""),
            text=str(d.get("text") or d.get("description") or ""),
            language=d.get("language") if isinstance(d.get("language"), str) else None,
        )
        hits = match_article(article, rules)
        out = {
            "id": d.get("id"),
            "matched": any(m.alert for m in hits),
            "hits": [hit_json(m) for m in hits],
        }
        click.echo(json.dumps(out, ensure_ascii=False))
    if bad:
        sys.exit(1)


@click.command("backtest")
@click.option("--since", default=None, help="Only articles first seen on or after this date.")
@click.option("--rules", "rules_path", default=None, help="Rules file or directory.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change.")
@click.pass_context
def backtest(ctx: click.Context, since: str | None, rules_path: str | None, as_json: bool) -> None:
    """Re-run the current rules over stored articles; list new and lost matches.

    Compares with the stored hits; stores and sends nothing.

    Example: monitor backtest --since 2026-01-01
    """
    from monitor.cli import _settings
    from monitor.store import open_store

    if since:
        try:
            datetime.fromisoformat(since)
        except ValueError:
            raise click.BadParameter(
                "expected a date like 2026-01-31", param_hint="--since"
            ) from None
    try:
        settings = _settings(ctx)
        rules = load_rules(rules_path) if rules_path else load_rules(settings.rules)
        store = open_store(settings.database)
    except MonitorError as e:
        _fail(e.errors if isinstance(e, RuleError | ConfigError) else [f"error: {e}"])
        return
    try:
        where, params = ("WHERE first_seen_at >= ?", [since]) if since else ("", [])
        entries = list(
            store.db.query(
                f"SELECT id, title, text, language, link FROM entries {where} ORDER BY id",
                params,
            )
        )
        stored: dict[int, set[str]] = {}
        for row in store.db.query("SELECT entry_id, rule FROM hits"):
            stored.setdefault(row["entry_id"], set()).add(row["rule"])
    finally:
        store.close()
    new = lost = 0
    for row in entries:
        article = Article(
            url=row["link"],
            title=row["title"] or "",
            text=row["text"] or "",
            language=row["language"],
        )
        now = {m.rule: m for m in match_article(article, rules)}
        before = stored.get(row["id"], set())
        for rule in sorted(now.keys() - before):
            new += 1
            _change("new", row, rule, now[rule], as_json)
        for rule in sorted(before - now.keys()):
            lost += 1
            _change("gone", row, rule, None, as_json)
    if not as_json:
        click.echo(
            f"{len(entries)} articles: {new} would newly match, {lost} would no longer match"
        )


def _change(kind: str, e: dict[str, Any], rule: str, m: Match | None, as_json: bool) -> None:
    if as_json:
        out: dict[str, Any] = {"change": kind, "entry": e["id"], "title": e["title"], "rule": rule}
        if m is not None:
            out["hit"] = hit_json(m)
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    sign = "+" if kind == "new" else "-"
    click.echo(f"{sign} [{rule}] #{e['id']} {e['title']}")
    if m is not None:
        click.echo(f"    {', '.join(m.terms)}: {m.sentence[:160]}")
