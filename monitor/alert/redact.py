"""Keeping channel URLs (which carry tokens) out of every log record.

:class:`RedactingFilter` scrubs the configured URLs, and the pieces of them
that may be tokens, from each record; apprise's own logger is kept at
WARNING (at DEBUG it prints whole webhook URLs, FAULTS C20).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

from monitor.config import Secret


class RedactingFilter(logging.Filter):
    """Replaces every configured channel URL (and its path and query) in log records."""

    def __init__(self, secrets: Iterable[tuple[str, Secret]]) -> None:
        super().__init__()
        self._needles: list[tuple[str, str]] = []
        for name, secret in secrets:
            url = secret.reveal()
            self._needles.append((url, f"<channel {name}>"))
            # Tokens also appear alone (e.g. in apprise's privacy URLs).
            for part in _secret_parts(url):
                self._needles.append((part, "***"))
        self._needles.sort(key=lambda n: -len(n[0]))

    def scrub(self, text: str) -> str:
        for needle, replacement in self._needles:
            if needle in text:
                text = text.replace(needle, replacement)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._needles:
            return True
        msg = record.getMessage()
        clean = self.scrub(msg)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        if clean != msg:
            record.msg = clean
            record.args = None
        return True


def _secret_parts(url: str) -> list[str]:
    """The pieces of a URL that may be tokens: user info, path segments, query values.

    The host is left out: masking "127.0.0.1" or "hooks.slack.com" in every
    log line hides nothing secret and makes the logs useless.
    """
    parts = urlsplit(url)
    pieces = [parts.username or "", parts.password or ""]
    pieces += parts.path.split("/")
    pieces += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    # Short pieces (ports, "hook", "to=me") are not worth masking and would mangle logs.
    return [p for p in pieces if len(p) >= 8]


_installed: RedactingFilter | None = None


def install_redaction(secrets: Mapping[str, Secret]) -> RedactingFilter:
    """Scrub channel URLs from every log record and quiet apprise's logger.

    The filter runs in the log record factory, so it applies to every
    logger and every handler, including ones added later.
    """
    global _installed
    logging.getLogger("apprise").setLevel(logging.WARNING)
    f = RedactingFilter(secrets.items())
    if _installed is None:
        base = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = base(*args, **kwargs)
            if _installed is not None:
                _installed.filter(record)
            return record

        logging.setLogRecordFactory(factory)
    _installed = f
    return f
