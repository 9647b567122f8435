"""Sample feeds and article pages that ``monitor demo`` serves on loopback.

All of it was written for the demo (see ``README.md`` beside this file).
The feeds hold the literal placeholder ``{base}`` where the server's origin
goes, because the port is only known once the server is listening.

    >>> body = read("feeds/newsroom.rss", base="http://127.0.0.1:8080")
    >>> b"{base}" in body
    False
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

__all__ = ["BASE_PLACEHOLDER", "FEEDS", "paths", "read"]

#: Text in the files that :func:`read` replaces with the server's origin.
BASE_PLACEHOLDER = "{base}"

#: Feed files, relative to this package, as served under ``/feeds/``.
FEEDS = ("feeds/newsroom.rss", "feeds/wire.atom")


def _root() -> Traversable:
    # files("monitor") / "demo_data" works whether or not setuptools installed
    # this folder as a package or only as package data.
    return files("monitor") / "demo_data"


def paths() -> list[str]:
    """Every servable file (feeds and articles), relative to this package.

    The server maps URL path ``/X`` to the file ``X``.
    """
    root = _root()
    return sorted(
        f"{folder}/{item.name}"
        for folder in ("feeds", "articles")
        for item in (root / folder).iterdir()
        if item.is_file()
    )


def read(path: str, *, base: str) -> bytes:
    """Return the file at ``path`` with ``{base}`` replaced by ``base``.

    ``base`` is an origin without a trailing slash, e.g.
    ``"http://127.0.0.1:8080"``. Raises ``FileNotFoundError`` for an
    unknown path.
    """
    if path not in paths():
        # Refuse anything not listed, so a request path like "../x" cannot
        # reach other files.
        raise FileNotFoundError(path)
    text = (_root() / path).read_text(encoding="utf-8")
    # str.replace, not str.format: feeds and pages may contain other braces.
    return text.replace(BASE_PLACEHOLDER, base.rstrip("/")).encode("utf-8")
