"""Logging: one line per event in ``key=value`` form, journald-friendly.

Under systemd (``$JOURNAL_STREAM`` names our stderr) a line starts with the
sd-daemon priority prefix (``<4>``) and has no timestamp, since journald adds
both; elsewhere it starts with an ISO timestamp. Secrets are scrubbed by
:func:`monitor.alert.install_redaction`, which works for every logger and
handler, so it is not repeated here.

A line reads::

    <4>level=warning logger=monitor.pipeline msg="feed https://x/feed failed: HTTP 500"
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

#: syslog priorities for the ``<N>`` prefix journald reads (sd-daemon(3)).
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
#: Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def quote(value: object) -> str:
    """A value as ``key=value`` wants it: bare when simple, else double-quoted."""
    text = str(value)
    if text and all(c.isalnum() or c in "-_./:@#+" for c in text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class KeyValueFormatter(logging.Formatter):
    """``level=... logger=... msg=...`` plus any ``extra=`` fields, one line per record."""

    def __init__(self, *, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"level={record.levelname.lower()}", f"logger={record.name}"]
        parts.append(f"msg={quote(record.getMessage())}")
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                parts.append(f"{key}={quote(value)}")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(f"exc={quote(record.exc_text)}")
        line = " ".join(parts)
        if self.journald:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        return f"{ts} {line}"


def under_journald(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd connected (systemd.exec(5))."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    if ":" not in value:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return value == f"{st.st_dev}:{st.st_ino}"


def setup_logging(verbose: int, stream: TextIO | None = None) -> None:
    """Root logging at WARNING (``-v`` info, ``-vv`` debug) in key=value form.

    Third-party loggers stay quiet unless asked three times; apprise never goes
    below WARNING (at DEBUG it logs whole webhook URLs, FAULTS C20).
    """
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(KeyValueFormatter(journald=under_journald(out)))
    level = max(logging.DEBUG, logging.WARNING - 10 * verbose)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in ("trafilatura", "htmldate", "courlan", "apscheduler", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose < 3 else logging.DEBUG)
    logging.getLogger("apprise").setLevel(logging.WARNING)


__all__ = ["KeyValueFormatter", "quote", "setup_logging", "under_journald"]
