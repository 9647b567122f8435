"""Every error `monitor` raises on purpose descends from :class:`MonitorError`.

::

    MonitorError
    ├── ConfigError(path, errors)      the configuration file is unusable
    ├── RuleError(path, errors)        a rules file is unusable
    ├── FetchError(url, reason)        one URL could not be fetched
    │   ├── BlockedAddressError        the URL's scheme or address is not allowed
    │   ├── HTTPStatusError(status)    the server answered with an error status
    │   ├── ResponseTooLargeError      the decoded body passed the byte cap
    │   └── FetchTimeoutError          a connect/read timeout or the total deadline
    ├── ParseError(url, reason)        the bytes are not a usable feed
    ├── ExtractError(url, reason)      no article text could be extracted
    ├── StoreError                     the database refused a read or write
    └── AlertError(channel, reason)    a channel could not deliver a message
        └── DeliveryError              one send failed; says whether to retry
            (retry_after, permanent)   and when (monitor.alert.channels)

Third-party exceptions (aiohttp, feedparser, sqlite3, apprise) are wrapped
where they enter, so callers only ever catch these. Messages never contain an
apprise URL: channels are named, not shown.
"""

from __future__ import annotations

from collections.abc import Sequence


class MonitorError(Exception):
    """Root of every error `monitor` raises on purpose."""


class _FileErrors(MonitorError):
    """An input file with one or more ``file:line: path: message`` errors."""

    def __init__(self, path: str, errors: Sequence[str]) -> None:
        self.path = path
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors) if self.errors else path)


class ConfigError(_FileErrors):
    """The configuration is unusable; every problem is listed in ``errors``."""


class RuleError(_FileErrors):
    """A rules file is unusable; every problem is listed in ``errors``."""


class FetchError(MonitorError):
    """Fetching ``url`` failed; ``reason`` is short and safe to store."""

    #: Seconds the server asked us to wait (Retry-After), if it said.
    retry_after: float | None = None

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class BlockedAddressError(FetchError):
    """The URL's scheme, host or resolved address is not allowed."""


class HTTPStatusError(FetchError):
    """The server answered ``status``."""

    def __init__(self, url: str, status: int, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(url, f"HTTP {status}")


class ResponseTooLargeError(FetchError):
    """The decoded body passed the byte cap."""


class FetchTimeoutError(FetchError):
    """A connect or read timeout, or the total deadline, passed."""


class ParseError(MonitorError):
    """The bytes fetched from ``url`` are not a usable feed."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class ExtractError(MonitorError):
    """No article text could be extracted from ``url``."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class StoreError(MonitorError):
    """The database refused a read or a write."""


class AlertError(MonitorError):
    """``channel`` could not deliver a message; ``reason`` never holds its URL."""

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"channel {channel!r}: {reason}")
