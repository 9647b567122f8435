"""Raw-socket test servers for behaviour a real HTTP server will not produce.

Each server listens on a loopback address in a background thread, counts the
connections it accepts, and runs a *script* per connection. Use them as context
managers; leaving the block closes every socket and joins the threads.

Scripts (FAULTS.md ids):

- :func:`silent` accept, read the request, never answer (A2, D21)
- :func:`drip` headers, then one body byte every ``interval`` seconds (A3)
- :func:`reset_mid_body` half a body, then a TCP RST (A4)
- :func:`short_body` fewer bytes than Content-Length, then a clean close (A5)
- :func:`respond` one fixed raw response, then close (odd headers, B12)
- :func:`hang_up` close at once; the default for a :class:`RawServer` used as a canary

:class:`BlackholeServer` never completes a TCP handshake (A1).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

Script = Callable[[socket.socket, threading.Event], None]


def _read_request(conn: socket.socket, stop: threading.Event) -> bytes:
    """Read until the end of the request head (or give up when stopping)."""
    data = b""
    while b"\r\n\r\n" not in data and not stop.is_set():
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    return data


def hang_up(conn: socket.socket, stop: threading.Event) -> None:
    """Close as soon as the connection is accepted."""


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Read the request and never answer."""
    _read_request(conn, stop)
    stop.wait()


def drip(interval: float = 0.2, length: int = 1_000_000) -> Script:
    """Send headers promising ``length`` bytes, then one byte per ``interval``."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn, stop)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n")
        conn.sendall(b"Content-Length: %d\r\n\r\n" % length)
        for _ in range(length):
            if stop.wait(interval):
                return
            conn.sendall(b"x")

    return script


def reset_mid_body(declared: int = 100_000, sent: int = 1000) -> Script:
    """Send ``sent`` of ``declared`` bytes, then abort the connection with a RST."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn, stop)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % declared + b"x" * sent)
        # SO_LINGER on with a zero timeout turns close() into a RST.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return script


def short_body(declared: int = 1000, body: bytes = b"<rss>short</rss>") -> Script:
    """Declare ``declared`` bytes, send only ``body``, close cleanly."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn, stop)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % declared + body)

    return script


def respond(raw: bytes) -> Script:
    """Send ``raw`` (status line, headers and body) verbatim, then close."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn, stop)
        conn.sendall(raw)

    return script


class RawServer:
    """A TCP server on ``host`` that runs ``script`` for every connection.

    ``connections`` counts accepted connections (a canary asserts it stays 0).
    Pass ``port`` to
    listen on a given port (e.g. the same port as another server on 127.0.0.1),
    and ``tls`` to wrap accepted sockets in TLS.
    """

    def __init__(
        self,
        script: Script = hang_up,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.script = script
        self.tls = tls
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.host, self.port = self._listener.getsockname()[:2]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    def __enter__(self) -> Self:
        self._acceptor.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._acceptor.is_alive():
            self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        for thread in self._threads:
            thread.join(5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(0.05)
            if self.tls is not None:
                conn.settimeout(2)
                conn = self.tls.wrap_socket(conn, server_side=True)
                conn.settimeout(0.05)
            self.script(conn, self._stop)
        except (OSError, ssl.SSLError):
            pass  # the client went away; that is what many tests provoke
        finally:
            with contextlib.suppress(OSError):
                conn.close()


class BlackholeServer:
    """A port where TCP connects hang: the accept queue is full and never drained.

    Linux drops SYNs to a listener whose backlog is full, so a client's connect
    waits until its own timeout, like a firewalled host (A1).
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(0)
        self.host, self.port = self._listener.getsockname()[:2]
        self._fillers: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def __enter__(self) -> Self:
        for _ in range(4):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((self.host, self.port))
            self._fillers.append(filler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for filler in self._fillers:
            filler.close()
        self._listener.close()
