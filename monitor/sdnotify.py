"""systemd's notification protocol in a few lines, with no dependency.

:func:`notify` sends one datagram to ``$NOTIFY_SOCKET`` (a path, or an
abstract socket written ``@name``) and is a no-op outside systemd. See
sd_notify(3). The daemon sends ``READY=1`` once migrations, rules and the
scheduler are up, ``WATCHDOG=1`` only from real progress, ``STATUS=...``,
``RELOADING=1`` with ``MONOTONIC_USEC`` on SIGHUP, and ``STOPPING=1``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` to systemd; False (and nothing sent) outside systemd or on error."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        # An abstract socket: a leading NUL instead of the '@'.
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as e:
        # Never fatal: a missed notification at worst makes systemd restart us.
        log.warning("event=sd_notify_failed error=%r", str(e))
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds within which systemd expects ``WATCHDOG=1``, or None when it expects none.

    ``WATCHDOG_PID``, when set, must be this process (sd_watchdog_enabled(3)).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        seconds = int(usec) / 1_000_000
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def reloading_message() -> str:
    """``RELOADING=1`` with the monotonic timestamp systemd 253+ wants beside it."""
    return f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


__all__ = ["notify", "reloading_message", "watchdog_interval"]
