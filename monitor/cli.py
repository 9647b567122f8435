"""The ``monitor`` command: thin click commands over the library.

Every :class:`~monitor.exceptions.MonitorError` becomes a message on stderr
and exit code 1; a configuration or rules error stops the program before it
fetches, stores or sends anything.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree

import click

from monitor.config import Settings, load_settings, parse_duration
from monitor.exceptions import MonitorError
from monitor.store import open_store

log = logging.getLogger("monitor")
F = TypeVar("F", bound=Callable[..., Any])


def setup_logging(verbose: int) -> None:
    """key=value lines on stderr, journald-friendly (see monitor/logs.py)."""
    from monitor.logs import setup_logging as setup

    setup(verbose)


@contextmanager
def errors_exit() -> Iterator[None]:
    """Turn a MonitorError into its message on stderr and exit 1."""
    try:
        yield
    except MonitorError as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            click.echo(f"error: {line}", err=True)
        sys.exit(1)


def _settings(ctx: click.Context) -> Settings:
    from monitor.alert import install_redaction

    settings = load_settings(ctx.obj["config"])
    install_redaction(settings.channels)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Configuration file [default: $MONITOR_CONFIG or ./monitor.yaml].",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(package_name="monitor")
@click.pass_context
def cli(ctx: click.Context, config: str | None, verbose: int) -> None:
    """Watch news feeds for tech-worker activism and alert once per story.

    Start with `monitor demo` (no network needed), then `monitor init`.
    """
    setup_logging(verbose)
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@cli.command()
@click.option(
    "--once", is_flag=True, help="Poll every feed once, deliver alerts, print a summary and exit."
)
@click.pass_context
def run(ctx: click.Context, once: bool) -> None:
    """Run the daemon (or one cycle with --once).

    Example: monitor --config /etc/monitor/monitor.yaml run
    """
    from monitor.pipeline import make_monitor

    with errors_exit():
        settings = _settings(ctx)
        monitor = make_monitor(settings)
        if once:
            summary = asyncio.run(_run_once(monitor, progress=sys.stdout.isatty()))
            _print_cycle(summary)
            return
        from monitor.daemon import Daemon

        # A service's start, reloads and stop belong in its journal without -v.
        logging.getLogger("monitor").setLevel(min(logging.INFO, logging.getLogger().level))
        code = asyncio.run(Daemon(monitor).run())
    sys.exit(code)


async def _run_once(monitor: Any, *, progress: bool = False) -> Any:
    try:
        monitor.sync_feeds()
        if not progress:
            return await monitor.run_once()
        from monitor.pipeline import CycleSummary

        # The same cycle as Monitor.run_once, with a bar that moves per finished feed.
        feeds = monitor.store.active_feeds()
        results = []
        with click.progressbar(length=len(feeds), label="polling", file=sys.stderr) as bar:
            for done in asyncio.as_completed([monitor.poll_feed(f) for f in feeds]):
                results.append(await done)
                bar.update(1)
        alerts = await monitor.dispatch()
        return CycleSummary(results=tuple(results), alerts=alerts)
    finally:
        await monitor.aclose()


def _print_cycle(summary: Any) -> None:
    for r in summary.results:
        if r.ok:
            v = r.value
            if v.not_modified:
                click.echo(f"ok    {r.url}: not modified")
            else:
                note = " (first poll: baseline, no alerts)" if v.baseline else ""
                click.echo(
                    f"ok    {r.url}: {v.entries_new} new of {v.entries_seen}, "
                    f"{v.hits_new} hits, {v.alerts_queued} alerts queued{note}"
                )
        else:
            from monitor.pipeline import describe_error

            click.echo(f"ERROR {r.url}: {describe_error(r.value)}")
    a = summary.alerts
    click.echo(
        f"{len(summary.results)} feeds, {len(summary.failed)} failed; "
        f"alerts: {a.sent} sent, {a.failed} to retry, {a.dead} dead"
    )


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False), default="monitor.yaml")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str, force: bool) -> None:
    """Write a commented starter configuration.

    Example: monitor init monitor.yaml
    """
    target = Path(path)
    if target.exists() and not force:
        click.echo(f"error: {target} exists; pass --force to overwrite it", err=True)
        sys.exit(1)
    text = resources.files("monitor").joinpath("starter.yaml").read_text(encoding="utf-8")
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}; edit its feeds and channels, then run: monitor run --once")


@cli.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the database schema.

    Example: monitor migrate
    """
    with errors_exit():
        settings = _settings(ctx)
        store = open_store(settings.database)
        store.close()
    click.echo(f"database {settings.database} is up to date")


@cli.group()
def feeds() -> None:
    """Add, list and import feeds."""


@feeds.command("add")
@click.argument("url")
@click.option("--name", default=None, help="Display name.")
@click.option("--interval", default="15m", help="Poll interval, e.g. 15m or 1h.")
@click.pass_context
def feeds_add(ctx: click.Context, url: str, name: str | None, interval: str) -> None:
    """Add a feed to the database (feeds in monitor.yaml are added on start).

    Example: monitor feeds add https://example.org/feed.xml --name Example
    """
    from monitor.fetch import check_url

    with errors_exit():
        settings = _settings(ctx)
        check_url(url)
        try:
            seconds = parse_duration(interval)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--interval") from None
        store = open_store(settings.database)
        added = store.add_feed(url, name, seconds, datetime.now(UTC))
        store.close()
    click.echo(f"added {url}" if added else f"{url} is already there")


@feeds.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of feeds.")
@click.pass_context
def feeds_list(ctx: click.Context, as_json: bool) -> None:
    """List feeds with their health.

    Example: monitor feeds list --json
    """
    with errors_exit():
        settings = _settings(ctx)
        store = open_store(settings.database)
        if settings.feeds:
            from monitor.pipeline import make_monitor

            # Show config feeds even before the first run.
            make_monitor(settings, _store=store).sync_feeds()
        rows = store.feed_health()
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "active" if r["active"] else "inactive"
        health = "ok" if not r["consecutive_failures"] else f"{r['consecutive_failures']} failures"
        click.echo(f"{r['id']:>3} {r['name'] or r['title'] or ''} <{r['url']}> [{state}, {health}]")
        click.echo(
            f"    last success: {r['last_success_at'] or 'never'}; entries: {r['entries']}; "
            f"next poll: {r['next_poll_at'] or 'at start'}"
        )
        if r["last_error"]:
            click.echo(f"    last error ({r['last_error_at']}): {r['last_error']}")


@feeds.command("import")
@click.argument("opml", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def feeds_import(ctx: click.Context, opml: str) -> None:
    """Add every feed of an OPML file.

    Example: monitor feeds import subscriptions.opml
    """
    from monitor.exceptions import BlockedAddressError
    from monitor.fetch import check_url

    with errors_exit():
        settings = _settings(ctx)
        try:
            tree = ElementTree.parse(opml)
        except ElementTree.ParseError as e:
            click.echo(f"error: {opml}: not valid OPML: {e}", err=True)
            sys.exit(1)
        store = open_store(settings.database)
        added = skipped = 0
        for outline in tree.iter("outline"):
            url = outline.get("xmlUrl")
            if not url:
                continue
            try:
                check_url(url)
            except BlockedAddressError as e:
                click.echo(f"skipped {url}: {e.reason}", err=True)
                skipped += 1
                continue
            name = outline.get("title") or outline.get("text")
            added += store.add_feed(url, name, 900.0, datetime.now(UTC))
        store.close()
    click.echo(f"imported {added} feeds ({skipped} skipped)")


@cli.command("check-feed")
@click.argument("sources", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feed, one per line.")
@click.option("--no-articles", is_flag=True, help="Match the feed's summaries; fetch no pages.")
@click.pass_context
def check_feed(
    ctx: click.Context, sources: tuple[str, ...], as_json: bool, no_articles: bool
) -> None:
    """Dry run of fetch, parse, extract and match; stores and sends nothing.

    SOURCES are feed URLs or local files. Uses the configuration's rules and
    fetch settings when there is a configuration, else ./rules.

    Example: monitor check-feed https://example.org/feed.xml --json
    """
    from monitor.config import FetchConfig
    from monitor.rules import load_rules

    with errors_exit():
        try:
            settings: Settings | None = _settings(ctx)
        except MonitorError:
            if ctx.obj["config"]:
                raise
            settings = None
        rules = load_rules(settings.rules if settings else Path("rules"))
        fetch = settings.fetch if settings else FetchConfig()
        reports = asyncio.run(_check(sources, fetch, rules, articles=not no_articles))
    failed = 0
    for report in reports:
        failed += "error" in report
        if as_json:
            click.echo(json.dumps(report, ensure_ascii=False))
            continue
        if "error" in report:
            click.echo(f"ERROR {report['source']}: {report['error']}")
            continue
        click.echo(
            f"{report['source']}: {report['title'] or ''} ({len(report['entries'])} entries)"
        )
        for e in report["entries"]:
            mark = "HIT " if e["matches"] else "    "
            click.echo(f"  {mark}{e['title']}")
            for m in e["matches"]:
                click.echo(f"        {m['rule']}: {', '.join(m['terms'])}")
                click.echo(f"        > {m['sentence'][:200]}")
    sys.exit(1 if failed else 0)


async def _check(
    sources: tuple[str, ...], fetch: Any, rules: Any, *, articles: bool
) -> list[dict[str, Any]]:
    from monitor.extract import ThreadExtractor
    from monitor.pipeline import check_feed_source, make_fetcher

    fetcher = make_fetcher(fetch)
    extractor = ThreadExtractor(timeout=fetch.extract_timeout)
    try:
        return [
            await check_feed_source(s, fetcher, extractor, rules, articles=articles)
            for s in sources
        ]
    finally:
        await fetcher.aclose()
        extractor.close()


# The columns of `monitor hits --json/--csv`: those of the hit_list view that
# Datasette shows and exports, in the same order.
HIT_COLUMNS = [
    "id",
    "matched_at",
    "rule",
    "terms",
    "sentence",
    "title",
    "link",
    "published",
    "language",
    "outlet",
    "day",
    "category",
    "company",
    "counterpart",
    "score",
    "entry_id",
    "feed_id",
    "story_id",
    "story_outlets",
]


@cli.command()
@click.option("--since", default=None, help="Only hits matched on or after this date (YYYY-MM-DD).")
@click.option("--rule", default=None, help="Only hits of this rule.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@click.pass_context
def hits(
    ctx: click.Context, since: str | None, rule: str | None, as_json: bool, as_csv: bool
) -> None:
    """List stored hits, newest first.

    Example: monitor hits --since 2026-01-01 --rule tech-worker-activism --csv
    """
    if since:
        try:
            datetime.fromisoformat(since)
        except ValueError:
            raise click.BadParameter(
                "expected a date like 2026-01-31", param_hint="--since"
            ) from None
    with errors_exit():
        settings = _settings(ctx)
        store = open_store(settings.database)
        rows = store.hits(since=since, rule=rule)
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif as_csv:
        w = csv.DictWriter(sys.stdout, fieldnames=HIT_COLUMNS)
        w.writeheader()
        for r in rows:
            # terms as JSON text, as in Datasette's CSV of the same view
            w.writerow({**r, "terms": json.dumps(r["terms"], ensure_ascii=False)})
    else:
        if not rows:
            click.echo("no hits")
        for r in rows:
            click.echo(f"{r['matched_at']}  [{r['rule']}]  {r['title']}")
            click.echo(f"    {r['outlet']}  {r['link'] or ''}")
            click.echo(f"    matched: {', '.join(r['terms'])}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8001, show_default=True, type=int)
@click.option("--sql", "allow_sql", is_flag=True, help="Allow arbitrary SQL queries.")
@click.option(
    "--metadata", "print_metadata", is_flag=True, help="Print the Datasette metadata and exit."
)
@click.pass_context
def browse(ctx: click.Context, host: str, port: int, allow_sql: bool, print_metadata: bool) -> None:
    """Browse, search and subscribe to the hits in Datasette.

    Opens the hits page on http://127.0.0.1:8001/ with facets, full-text
    search, canned queries, CSV/JSON exports and an Atom feed.

    Example: monitor browse --port 8001
    """
    from monitor import browse as browsing

    with errors_exit():
        settings = _settings(ctx)
        name = browsing.database_name(settings.database)
        if print_metadata:
            from ruamel.yaml import YAML

            YAML(typ="safe", pure=True).dump(browsing.metadata(name), sys.stdout)
            return
        store = open_store(settings.database)
        try:
            browsing.refresh_term_roles(store, settings.rules)
        finally:
            store.close()
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"warning: listening on {host}: anyone who reaches it can read the hits", err=True
        )
    click.echo(f"Hits: http://{host}:{port}/{name}/hit_list  (Ctrl-C stops)", err=True)
    browsing.serve(settings.database, host=host, port=port, allow_sql=allow_sql)


@cli.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the demo database in this directory.",
)
def demo(keep: str | None) -> None:
    """Serve sample feeds on loopback, run one cycle, print alerts and hits.

    Needs no network. Example: monitor demo
    """
    from monitor.demo import run_demo

    with errors_exit():
        code = run_demo(Path(keep) if keep else None)
    sys.exit(code)


# Commands that live in their own modules are registered here, one line each.
from monitor.status import status  # noqa: E402

cli.add_command(status)
from monitor.cli_rules import backtest, match_command, rules_group  # noqa: E402

cli.add_command(rules_group)
cli.add_command(match_command)
cli.add_command(backtest)
from monitor.cli_alerts import alerts_group, test_alert  # noqa: E402

cli.add_command(alerts_group)
cli.add_command(test_alert)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    try:
        cli.main(args=argv, prog_name="monitor", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
