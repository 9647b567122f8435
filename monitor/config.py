"""Settings: the YAML file, then the environment, then the command line.

One frozen :class:`Settings` object is built here and passed down. Every
problem in the file is collected and raised at once as a
:class:`~monitor.exceptions.ConfigError` whose lines read
``monitor.yaml:7: feeds[2].url: expected an http(s) URL``.

Channel URLs are secrets (apprise URLs carry tokens). They live in
:class:`Secret`, whose ``repr`` and ``str`` hide the value, and they are
never part of an error message: errors name the channel, not its URL. A
channel is an apprise URL, or a mapping with its ``url`` and delivery options
(:class:`ChannelConfig`: quiet hours in a time zone, a rate limit, message
templates).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from monitor.digest import QuietHours, zone
from monitor.exceptions import ConfigError

CONFIG_ENV = "MONITOR_CONFIG"
DEFAULT_CONFIG = "monitor.yaml"
DEFAULT_INTERVAL = 15 * 60
MAX_CONFIG_BYTES = 1024 * 1024

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*|credential:[A-Za-z0-9_.-]+)\}")
#: systemd sets this to the directory of the LoadCredential= files.
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class Secret:
    """A string that does not show itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that needs it (apprise)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class FeedConfig:
    """One feed as configured."""

    url: str
    #: Display name; when unset the feed's own title is shown.
    name: str | None
    #: Seconds between polls.
    interval: float = DEFAULT_INTERVAL
    #: Alert on the first poll too, instead of recording a silent baseline.
    alert_on_first_poll: bool = False


@dataclass(frozen=True)
class ChannelConfig:
    """How one channel is delivered to, beyond its URL (``channels.NAME`` as a mapping)."""

    #: Hits found in these hours wait for their end and go out together; None: never quiet.
    quiet_hours: QuietHours | None = None
    #: Least seconds between two messages (``rate_limit``); None: the default, which is
    #: one a second for Slack webhooks and no limit for the rest.
    min_interval: float | None = None
    #: Rendering (``title``, ``text``, ``markdown``, ``html``) -> a ``string.Template``
    #: replacing it in alerts about one hit (digests keep their own layout).
    templates: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchConfig:
    """How the guarded fetcher behaves."""

    #: CIDRs allowed although private or loopback.
    allow_networks: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    #: Wall-clock limit for one request, redirects and body included.
    total_timeout: float = 60.0
    #: Seconds allowed to extract one article.
    extract_timeout: float = 20.0
    #: Feeds polled at once.
    concurrency: int = 20


@dataclass(frozen=True)
class AlertConfig:
    """Outbox delivery settings."""

    #: After this many failed attempts a message is dead.
    max_attempts: int = 8
    #: First retry delay in seconds; doubles each attempt up to ``max_backoff``.
    base_backoff: float = 30.0
    max_backoff: float = 3600.0
    #: Seconds one send may take.
    send_timeout: float = 30.0
    #: Channel for operator notices (stale feeds, dead alerts, a broken rules edit);
    #: None logs them only. Notices about this channel itself are logged, never sent
    #: through it, so a failing channel cannot loop on itself.
    operator_channel: str | None = None


@dataclass(frozen=True)
class DaemonConfig:
    """How the daemon schedules feeds, watches their health and reports on itself."""

    #: Learn each feed's interval from how often it publishes (within the bounds below).
    adaptive: bool = True
    #: Bounds of a learnt interval; an explicitly shorter feed ``interval`` lowers the floor.
    min_interval: float = 300.0
    max_interval: float = 6 * 3600.0
    #: A feed failing this long, or silent far beyond its rhythm and this long, is stale.
    stale_after: float = 86400.0
    #: Seconds running polls get to finish on SIGTERM before they are cancelled.
    stop_grace: float = 20.0
    #: Port of the Prometheus endpoint on 127.0.0.1; None keeps it off.
    metrics_port: int | None = None
    #: When a stored entry is edited (same guid, new title or summary), fetch and
    #: match its article again; rules that already hit it never alert twice (B22).
    rematch_edits: bool = False
    #: Tell the operator when the write-ahead log grows past this many MB: a
    #: reader (a Datasette query, a backup) is holding it open (FAULTS D6).
    wal_warn_mb: float = 256.0


@dataclass(frozen=True)
class Settings:
    """Everything the program needs, read once from the configuration."""

    #: The configuration file, when there was one.
    path: Path | None
    database: Path
    #: Rule files or directories.
    rules: tuple[Path, ...]
    feeds: tuple[FeedConfig, ...] = ()
    #: Channel name -> apprise URL.
    channels: Mapping[str, Secret] = field(default_factory=dict)
    #: Channel name -> delivery options; every channel has an entry (defaults for a bare URL).
    channel_options: Mapping[str, ChannelConfig] = field(default_factory=dict)
    fetch: FetchConfig = FetchConfig()
    alerts: AlertConfig = AlertConfig()
    daemon: DaemonConfig = DaemonConfig()


def config_path(explicit: str | None = None) -> Path:
    """The configuration file to read: the ``--config`` value, ``$MONITOR_CONFIG`` or ./monitor.yaml."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def parse_duration(value: object) -> float:
    """``15m`` -> 900.0; plain numbers are seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 15m, 2h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"expected a duration like 30s, 15m, 2h or 1d, got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be more than zero")
    return seconds


def expand_env(value: str, environ: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` with the variable's value; KeyError names a missing one.

    ``${credential:NAME}`` is the file ``NAME`` in ``$CREDENTIALS_DIRECTORY``
    (systemd's ``LoadCredential=``), without its trailing newline; the secret
    then never passes through the environment or the command line.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("credential:"):
            directory = environ.get(CREDENTIALS_ENV)
            if not directory:
                raise KeyError(f"{CREDENTIALS_ENV} (for {name})")
            try:
                return (Path(directory) / name.split(":", 1)[1]).read_text("utf-8").strip()
            except OSError:
                raise KeyError(f"{name} in {CREDENTIALS_ENV}") from None
        return environ[name]

    return _VAR.sub(sub, value)


class _Errors:
    """Collects ``file:line: path: message`` lines."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: list[str] = []

    def add(self, line: int | None, path: str, message: str) -> None:
        where = f"{self.filename}:{line}" if line is not None else self.filename
        self.lines.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")


def _key_line(node: Any, key: object) -> int | None:
    if isinstance(node, CommentedMap):
        try:
            return int(node.lc.key(key)[0]) + 1
        except (KeyError, TypeError):
            return int(node.lc.line) + 1
    return None


def _item_line(node: Any, index: int) -> int | None:
    if isinstance(node, CommentedSeq):
        try:
            return int(node.lc.item(index)[0]) + 1
        except (KeyError, TypeError, IndexError):
            return int(node.lc.line) + 1
    return None


def _node_line(node: Any) -> int | None:
    if isinstance(node, CommentedMap | CommentedSeq):
        return int(node.lc.line) + 1
    return None


def _mapping_items(node: Any) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        yield str(key), value


_TOP_KEYS = {"database", "rules", "feeds", "channels", "fetch", "alerts", "daemon"}
_FEED_KEYS = {"url", "name", "interval", "alert_on_first_poll"}
_FETCH_KEYS = {
    "allow_networks",
    "connect_timeout",
    "read_timeout",
    "total_timeout",
    "extract_timeout",
    "concurrency",
}
_ALERT_KEYS = {"max_attempts", "base_backoff", "max_backoff", "send_timeout", "operator_channel"}
_DAEMON_KEYS = {
    "wal_warn_mb",
    "adaptive",
    "min_interval",
    "max_interval",
    "stale_after",
    "stop_grace",
    "metrics_port",
    "rematch_edits",
}


def load_settings(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    check_channels: bool = True,
) -> Settings:
    """Read and validate the configuration file; raise ConfigError listing every problem.

    Relative paths in the file (database, rules) are taken relative to the
    file's own directory, so the daemon finds them whatever its working
    directory is.
    """
    p = config_path(str(path) if path is not None else None)
    env = os.environ if environ is None else environ
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            str(p), [f"{p}: no such file; create one with `monitor init` or pass --config"]
        ) from None
    except OSError as e:
        raise ConfigError(str(p), [f"{p}: cannot read: {e.strerror}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(str(p), [f"{p}: larger than {MAX_CONFIG_BYTES} bytes"])
    yaml = YAML(typ="rt")
    try:
        doc = yaml.load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(p), [f"{p}: not UTF-8 text"]) from None
    except YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(str(p), [f"{p}{line}: invalid YAML: {problem}"]) from None
    return settings_from_document(doc, p, environ=env, check_channels=check_channels)


def settings_from_document(
    doc: Any,
    path: Path,
    *,
    environ: Mapping[str, str],
    check_channels: bool = True,
) -> Settings:
    """Validate a loaded YAML document (ruamel round-trip nodes keep line numbers)."""
    errors = _Errors(str(path))
    base = path.parent
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, Mapping):
        raise ConfigError(str(path), [f"{path}:1: expected a mapping of settings"])
    for key, _ in _mapping_items(doc):
        if key not in _TOP_KEYS:
            errors.add(
                _key_line(doc, key), key, f"unknown setting (known: {', '.join(sorted(_TOP_KEYS))})"
            )

    database = base / "state" / "monitor.db"
    if "database" in doc:
        value = doc["database"]
        if not isinstance(value, str) or not value.strip():
            errors.add(_key_line(doc, "database"), "database", "expected a file path")
        else:
            database = base / Path(value).expanduser()

    rules: tuple[Path, ...] = (base / "rules",)
    if "rules" in doc:
        value = doc["rules"]
        if isinstance(value, str) and value.strip():
            rules = (base / Path(value).expanduser(),)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            rules = tuple(base / Path(v).expanduser() for v in value)
        else:
            errors.add(
                _key_line(doc, "rules"), "rules", "expected a directory or a list of rule files"
            )

    feeds = _feeds(doc.get("feeds"), _key_line(doc, "feeds"), errors)
    channels, channel_options = _channels(doc, environ, errors, check=check_channels)
    fetch = _fetch(doc.get("fetch"), _key_line(doc, "fetch"), errors)
    alerts = _alerts(doc.get("alerts"), _key_line(doc, "alerts"), errors)
    daemon = _daemon(doc.get("daemon"), _key_line(doc, "daemon"), errors)
    if alerts.operator_channel is not None and alerts.operator_channel not in channels:
        errors.add(
            _key_line(doc.get("alerts"), "operator_channel"),
            "alerts.operator_channel",
            f"channel {alerts.operator_channel!r} is not configured "
            f"(configured: {', '.join(sorted(channels)) or 'none'})",
        )

    if errors.lines:
        raise ConfigError(str(path), errors.lines)
    return Settings(
        path=path,
        database=database,
        rules=rules,
        feeds=feeds,
        channels=channels,
        channel_options=channel_options,
        fetch=fetch,
        alerts=alerts,
        daemon=daemon,
    )


def _feeds(node: Any, line: int | None, errors: _Errors) -> tuple[FeedConfig, ...]:
    if node is None:
        return ()
    if not isinstance(node, list):
        errors.add(line, "feeds", "expected a list of feeds (each with a url)")
        return ()
    out: list[FeedConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(node):
        where = f"feeds[{i}]"
        item_line = _item_line(node, i)
        if isinstance(item, str):
            item = CommentedMap(url=item)
        if not isinstance(item, Mapping):
            errors.add(item_line, where, "expected a mapping with a url, or a URL string")
            continue
        for key, _ in _mapping_items(item):
            if key not in _FEED_KEYS:
                errors.add(
                    _key_line(item, key) or item_line,
                    f"{where}.{key}",
                    f"unknown key (known: {', '.join(sorted(_FEED_KEYS))})",
                )
        url = item.get("url")
        if not isinstance(url, str) or urlsplit(url.strip()).scheme not in ("http", "https"):
            errors.add(
                _key_line(item, "url") or item_line, f"{where}.url", "expected an http(s) URL"
            )
            continue
        url = url.strip()
        if not urlsplit(url).hostname:
            errors.add(_key_line(item, "url"), f"{where}.url", "the URL has no host")
            continue
        if url in seen:
            errors.add(_key_line(item, "url"), f"{where}.url", "this feed is listed twice")
            continue
        seen.add(url)
        name = item.get("name")
        if name is not None and not isinstance(name, str):
            errors.add(_key_line(item, "name"), f"{where}.name", "expected text")
            name = None
        interval = float(DEFAULT_INTERVAL)
        if "interval" in item:
            try:
                interval = parse_duration(item["interval"])
            except ValueError as e:
                errors.add(_key_line(item, "interval"), f"{where}.interval", str(e))
        first = item.get("alert_on_first_poll", False)
        if not isinstance(first, bool):
            errors.add(
                _key_line(item, "alert_on_first_poll"),
                f"{where}.alert_on_first_poll",
                "expected true or false",
            )
            first = False
        out.append(
            FeedConfig(
                url=url,
                name=name or None,
                interval=interval,
                alert_on_first_poll=first,
            )
        )
    return tuple(out)


_CHANNEL_KEYS = {"url", "quiet_hours", "timezone", "rate_limit", "template"}
_RATE = re.compile(
    r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$"
)
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_RATE_UNITS |= {"h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def parse_rate(value: object) -> float:
    """``"1/s"`` -> 1.0, ``"20/min"`` -> 3.0, ``"1/5m"`` -> 300.0: the least seconds between
    two messages; ``"none"`` -> 0.0 (no limit). Raises ValueError."""
    if isinstance(value, str) and value.strip().lower() in ("none", "off", "unlimited"):
        return 0.0
    m = _RATE.match(value) if isinstance(value, str) else None
    if m is None or int(m.group(1)) < 1 or float(m.group(2) or 1) <= 0:
        raise ValueError(
            "expected a rate like 1/s, 20/min, 1/5m or 100/h (messages per time), or none"
        )
    per = float(m.group(2) or 1) * _RATE_UNITS[m.group(3)]
    return per / int(m.group(1))


def _channels(
    doc: Any, environ: Mapping[str, str], errors: _Errors, *, check: bool
) -> tuple[dict[str, Secret], dict[str, ChannelConfig]]:
    node = doc.get("channels")
    line = _key_line(doc, "channels")
    if node is None:
        return {}, {}
    if not isinstance(node, Mapping):
        errors.add(line, "channels", "expected a mapping of channel name to apprise URL")
        return {}, {}
    out: dict[str, Secret] = {}
    options: dict[str, ChannelConfig] = {}
    for name, value in _mapping_items(node):
        where = f"channels.{name}"
        key_line = _key_line(node, name)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            errors.add(key_line, where, "a channel name may hold letters, digits, '_', '.', '-'")
            continue
        config = ChannelConfig()
        if isinstance(value, Mapping):
            _check_keys(value, _CHANNEL_KEYS, where, errors)
            config = _channel_options(value, where, errors)
            url_line = _key_line(value, "url") if "url" in value else key_line
            value, where = value.get("url"), f"{where}.url"
            if value is None:
                errors.add(url_line, where, "missing; a channel needs its apprise URL")
                continue
            key_line = url_line
        if not isinstance(value, str) or not value.strip():
            errors.add(key_line, where, "expected an apprise URL (or ${VARIABLE})")
            continue
        try:
            url = expand_env(value.strip(), environ)
        except KeyError as e:
            missing = str(e.args[0])
            errors.add(
                key_line,
                where,
                f"{missing} is not readable (is LoadCredential= set in the unit?)"
                if "credential:" in missing
                else f"environment variable {missing} is not set (set it, or put the URL in "
                "a credentials file loaded into the environment)",
            )
            continue
        # Never quote the URL in an error: it may carry a token.
        if check and not is_valid_channel_url(url):
            errors.add(
                key_line,
                where,
                "not a URL apprise can send to (see https://github.com/caronc/apprise/wiki)",
            )
            continue
        out[name] = Secret(url)
        options[name] = config
    return out, options


def _channel_options(node: Any, where: str, errors: _Errors) -> ChannelConfig:
    """quiet_hours, timezone, rate_limit and template of a channel written as a mapping."""
    tz = None
    if "timezone" in node:
        raw = node["timezone"]
        try:
            if not isinstance(raw, str):
                raise ValueError("expected a time zone name such as Europe/Berlin or UTC")
            tz = zone(raw)
        except ValueError as e:
            errors.add(_key_line(node, "timezone"), f"{where}.timezone", str(e))
    quiet: QuietHours | None = None
    if "quiet_hours" in node:
        raw = node["quiet_hours"]
        try:
            if not isinstance(raw, str):
                raise ValueError("expected quiet hours as HH:MM-HH:MM")
            quiet = QuietHours.parse(raw, tz)
        except ValueError as e:
            errors.add(_key_line(node, "quiet_hours"), f"{where}.quiet_hours", str(e))
    interval: float | None = None
    if "rate_limit" in node:
        try:
            interval = parse_rate(node["rate_limit"])
        except ValueError as e:
            errors.add(_key_line(node, "rate_limit"), f"{where}.rate_limit", str(e))
    templates: dict[str, str] = {}
    if "template" in node:
        templates = _templates(node["template"], _key_line(node, "template"), where, errors)
    return ChannelConfig(quiet_hours=quiet, min_interval=interval, templates=templates)


def _templates(node: Any, line: int | None, where: str, errors: _Errors) -> dict[str, str]:
    # Late: monitor.alert imports this module.
    from monitor.alert.render import TEMPLATE_KINDS, check_template

    where = f"{where}.template"
    if not isinstance(node, Mapping):
        errors.add(line, where, f"expected a mapping of {', '.join(TEMPLATE_KINDS)} to text")
        return {}
    out: dict[str, str] = {}
    for kind, text in _mapping_items(node):
        kind_line = _key_line(node, kind)
        if kind not in TEMPLATE_KINDS:
            errors.add(
                kind_line, f"{where}.{kind}", f"unknown key (known: {', '.join(TEMPLATE_KINDS)})"
            )
            continue
        if not isinstance(text, str) or not text.strip():
            errors.add(kind_line, f"{where}.{kind}", "expected the template text")
            continue
        problem = check_template(text)
        if problem is not None:
            errors.add(kind_line, f"{where}.{kind}", problem)
            continue
        out[kind] = str(text)
    return out


def is_valid_channel_url(url: str) -> bool:
    """True if apprise (or our built-in ``console://``) accepts the URL."""
    if url.startswith("console://"):
        return True
    import apprise

    return apprise.Apprise.instantiate(url) is not None


def _number(
    node: Any,
    key: str,
    where: str,
    errors: _Errors,
    default: float,
    *,
    duration: bool = True,
) -> float:
    if key not in node:
        return default
    try:
        if duration:
            return parse_duration(node[key])
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError("expected a whole number of at least 1")
        return float(value)
    except ValueError as e:
        errors.add(_key_line(node, key), f"{where}.{key}", str(e))
        return default


def _check_keys(node: Any, known: set[str], where: str, errors: _Errors) -> None:
    for key, _ in _mapping_items(node):
        if key not in known:
            errors.add(
                _key_line(node, key),
                f"{where}.{key}",
                f"unknown key (known: {', '.join(sorted(known))})",
            )


def _fetch(node: Any, line: int | None, errors: _Errors) -> FetchConfig:
    if node is None:
        return FetchConfig()
    if not isinstance(node, Mapping):
        errors.add(line, "fetch", "expected a mapping")
        return FetchConfig()
    _check_keys(node, _FETCH_KEYS, "fetch", errors)
    d = FetchConfig()
    nets: list[str] = []
    raw = node.get("allow_networks", [])
    if not isinstance(raw, list):
        errors.add(_key_line(node, "allow_networks"), "fetch.allow_networks", "expected a list")
        raw = []
    import ipaddress

    for i, value in enumerate(raw):
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            errors.add(
                _item_line(raw, i),
                f"fetch.allow_networks[{i}]",
                f"not a network in CIDR form (like 127.0.0.0/8): {value!r}",
            )
            continue
        nets.append(str(value))
    return FetchConfig(
        allow_networks=tuple(nets),
        connect_timeout=_number(node, "connect_timeout", "fetch", errors, d.connect_timeout),
        read_timeout=_number(node, "read_timeout", "fetch", errors, d.read_timeout),
        total_timeout=_number(node, "total_timeout", "fetch", errors, d.total_timeout),
        extract_timeout=_number(node, "extract_timeout", "fetch", errors, d.extract_timeout),
        concurrency=int(
            _number(node, "concurrency", "fetch", errors, d.concurrency, duration=False)
        ),
    )


def _alerts(node: Any, line: int | None, errors: _Errors) -> AlertConfig:
    if node is None:
        return AlertConfig()
    if not isinstance(node, Mapping):
        errors.add(line, "alerts", "expected a mapping")
        return AlertConfig()
    _check_keys(node, _ALERT_KEYS, "alerts", errors)
    d = AlertConfig()
    return AlertConfig(
        max_attempts=int(
            _number(node, "max_attempts", "alerts", errors, d.max_attempts, duration=False)
        ),
        base_backoff=_number(node, "base_backoff", "alerts", errors, d.base_backoff),
        max_backoff=_number(node, "max_backoff", "alerts", errors, d.max_backoff),
        send_timeout=_number(node, "send_timeout", "alerts", errors, d.send_timeout),
        operator_channel=_operator_channel(node, errors),
    )


def _operator_channel(node: Any, errors: _Errors) -> str | None:
    value = node.get("operator_channel")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        errors.add(
            _key_line(node, "operator_channel"),
            "alerts.operator_channel",
            "expected a channel name",
        )
        return None
    return value.strip()


def _flag(node: Any, key: str, section: str, errors: _Errors, default: bool) -> bool:
    value = node.get(key, default)
    if not isinstance(value, bool):
        errors.add(_key_line(node, key), f"{section}.{key}", "expected true or false")
        return default
    return value


def _daemon(node: Any, line: int | None, errors: _Errors) -> DaemonConfig:
    if node is None:
        return DaemonConfig()
    if not isinstance(node, Mapping):
        errors.add(line, "daemon", "expected a mapping")
        return DaemonConfig()
    _check_keys(node, _DAEMON_KEYS, "daemon", errors)
    d = DaemonConfig()
    port: int | None = None
    raw_port = node.get("metrics_port")
    if raw_port is not None:
        if isinstance(raw_port, bool) or not isinstance(raw_port, int) or not 0 < raw_port < 65536:
            errors.add(
                _key_line(node, "metrics_port"),
                "daemon.metrics_port",
                "expected a port number (1-65535)",
            )
        else:
            port = raw_port
    config = DaemonConfig(
        adaptive=_flag(node, "adaptive", "daemon", errors, d.adaptive),
        min_interval=_number(node, "min_interval", "daemon", errors, d.min_interval),
        max_interval=_number(node, "max_interval", "daemon", errors, d.max_interval),
        stale_after=_number(node, "stale_after", "daemon", errors, d.stale_after),
        stop_grace=_number(node, "stop_grace", "daemon", errors, d.stop_grace),
        metrics_port=port,
        wal_warn_mb=_number(node, "wal_warn_mb", "daemon", errors, d.wal_warn_mb, duration=False),
        rematch_edits=_flag(node, "rematch_edits", "daemon", errors, d.rematch_edits),
    )
    if config.min_interval > config.max_interval:
        errors.add(
            _key_line(node, "min_interval"),
            "daemon.min_interval",
            "must not be more than daemon.max_interval",
        )
    return config


def check_rule_channels(settings: Settings, rule_channels: Sequence[tuple[str, str]]) -> None:
    """Raise ConfigError if a rule names a channel the configuration lacks.

    ``rule_channels`` holds ``(where, channel)`` pairs, ``where`` being the
    rule's ``file:line``.
    """
    missing = [
        f"{where}: channel {name!r} is not configured (configured: "
        f"{', '.join(sorted(settings.channels)) or 'none'})"
        for where, name in rule_channels
        if name not in settings.channels
    ]
    if missing:
        raise ConfigError(str(settings.path), missing)
