"""The one guarded HTTP client: every URL `monitor` touches goes through here.

Feeds, article pages and every redirect hop are fetched by :class:`GuardedFetcher`,
which enforces, per hop::

    check_url(url)                  http/https only, a sane host, no parser tricks
    addresses = resolve(host) once  IP literals are not resolved at all
    every address allowed?          non-global addresses refused unless allow-listed
    connect to a vetted address     aiohttp asks our resolver, which only answers
                                    with the addresses vetted for this hop
    3xx -> Location, repeat         at most ``max_redirects`` hops
    read the body in chunks         decoded bytes counted against ``max_bytes``

and one wall-clock deadline over the whole call, so a server that drips a byte
at a time cannot hold a poll forever (per-read timeouts never fire on a drip).
Every aiohttp error is turned into a :class:`~monitor.exceptions.FetchError`
subclass; no URL password ever reaches a message.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from types import TracebackType
from typing import Protocol, Self

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

from monitor.exceptions import (
    BlockedAddressError,
    FetchError,
    FetchTimeoutError,
    HTTPStatusError,
    ResponseTooLargeError,
)
from monitor.types import FetchedResponse

__all__ = [
    "DEFAULT_USER_AGENT",
    "FEED_MAX_BYTES",
    "PAGE_MAX_BYTES",
    "Fetcher",
    "GuardedFetcher",
    "check_url",
    "is_address_allowed",
    "parse_networks",
    "parse_retry_after",
    "redact_url",
]

DEFAULT_USER_AGENT = (
    "monitor/0.1 (self-hosted news monitor; polls RSS/Atom feeds and reads linked articles)"
)
FEED_MAX_BYTES = 10 * 1024 * 1024
PAGE_MAX_BYTES = 5 * 1024 * 1024

#: Longest wait a server can ask for with Retry-After (one day).
RETRY_AFTER_MAX = 86400.0

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PERMANENT_STATUSES = frozenset({301, 308})
# The codings aiohttp can decode here; brotli/zstd only if their modules are installed,
# otherwise aiohttp does not offer them in Accept-Encoding.
_KNOWN_CODINGS = frozenset({"gzip", "deflate", "br", "zstd"})
# Headers that carry credentials for one origin: never sent to another (C21).
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")
_CHUNK = 64 * 1024

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class Fetcher(Protocol):
    """What the pipeline needs from an HTTP client; tests pass their own."""

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = FEED_MAX_BYTES,
    ) -> FetchedResponse:
        """Fetch ``url`` (following redirects) or raise a ``FetchError``."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


# --- pure decisions --------------------------------------------------------------------------

# Ranges Python 3.11's ``is_global`` gets wrong or that we refuse on purpose.
_DENIED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        ("0.0.0.0/8", "unspecified"),
        ("100.64.0.0/10", "shared address space (CGNAT)"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/96", "IPv4-compatible IPv6"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001:db8::/32", "documentation"),
        ("2002::/16", "6to4"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing"),
        ("fc00::/7", "unique local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")


def _refusal(addr: Address) -> str | None:
    """Why ``addr`` is not a public unicast address, or None when it is."""
    for net, why in _DENIED:
        if addr.version == net.version and addr in net:
            return why
    if addr.is_unspecified:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if addr.is_private:
        return "private"
    if addr.is_reserved:
        return "reserved"
    if not addr.is_global:
        return "not global"
    return None


def _embedded_ipv4(addr: Address) -> IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address stands for."""
    if isinstance(addr, IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def _address_refusal(ip: str, allow_networks: Sequence[Network]) -> str | None:
    """None if ``ip`` may be contacted, else a short reason naming the address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip!r} is not an IP address"
    if isinstance(addr, IPv6Address) and addr.scope_id is not None:
        addr = IPv6Address(str(addr).split("%", 1)[0])
    if any(addr.version == net.version and addr in net for net in allow_networks):
        return None
    inner = _embedded_ipv4(addr)
    if inner is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1: judge the address it stands for.
        why = _address_refusal(str(inner), allow_networks)
        return None if why is None else f"{addr} maps to {why}"
    why = _refusal(addr)
    return None if why is None else f"{addr} is {why}"


def is_address_allowed(ip: str, allow_networks: Sequence[Network]) -> bool:
    """True if ``ip`` is a public unicast address or lies in ``allow_networks``.

    Refused unless allow-listed: private, loopback, link-local, CGNAT, unspecified,
    multicast, reserved, documentation, ULA/site-local, 6to4 and Teredo addresses.
    IPv4-mapped and NAT64 IPv6 addresses are judged by the IPv4 address inside.
    Anything that does not parse as an address is refused.

    >>> is_address_allowed("127.0.0.1", [])
    False
    >>> is_address_allowed("127.0.0.1", parse_networks(["127.0.0.0/8"]))
    True
    """
    return _address_refusal(ip, allow_networks) is None


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """Parse allow-list entries such as ``"10.0.0.0/8"`` or ``"::1"``.

    Host bits are tolerated (``10.1.2.3/8`` means ``10.0.0.0/8``); a bare address
    means just that address. Raises ``ValueError`` naming the first bad entry.
    """
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as e:
            raise ValueError(f"invalid network {value!r}: {e}") from None
    return tuple(networks)


def redact_url(url: str) -> str:
    """``url`` with any password in it replaced by ``***``, safe for logs and errors."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        # Unparseable: cut everything between the scheme and the last '@' of the authority.
        return re.sub(r"(?<=://)[^/?#]*@", "***@", url)
    if parsed.password is None:
        return url
    return str(parsed.with_password("***"))


_HOST_RE = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_NUMERIC_LABEL_RE = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_BAD_CHARS_RE = re.compile(r"[\x00-\x20\x7f\\]")


def _block(url: str, reason: str) -> BlockedAddressError:
    return BlockedAddressError(redact_url(url), reason)


def check_url(url: str) -> str:
    """Return ``url`` if it is a fetchable http(s) URL, else raise ``BlockedAddressError``.

    Pure: looks only at the text. Refuses other schemes (``file:``, ``gopher:``,
    ``javascript:``, ...), missing or malformed hosts, whitespace, control
    characters and backslashes anywhere (parsers disagree on ``\\``, C10), more
    than one ``@`` in the authority, and IPv4 hosts in any but the dotted-quad
    form (``2130706433``, ``0x7f000001``, ``127.1`` reach 127.0.0.1, C6). Address
    checks need DNS and happen in :meth:`GuardedFetcher.get`.
    """
    if not isinstance(url, str) or not url:
        raise _block(str(url), "empty URL")
    if _BAD_CHARS_RE.search(url):
        raise _block(url, "URL contains whitespace, control characters or a backslash")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise _block(url, "only http and https URLs are fetched")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if authority.count("@") > 1:
        raise _block(url, "ambiguous userinfo in URL")
    try:
        parsed = URL(url)
        port = parsed.port
    except (ValueError, TypeError) as e:
        raise _block(url, f"invalid URL: {e}") from None
    host = parsed.raw_host
    if not host:
        raise _block(url, "URL has no host")
    if port is None or not 0 < port < 65536:
        raise _block(url, "invalid port")
    if ":" in host:  # an IPv6 literal; yarl has already validated it
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _block(url, "invalid IPv6 host") from None
        return url
    host = host.lower()
    if not _HOST_RE.fullmatch(host) or len(host) > 254:
        raise _block(url, "invalid host name")
    labels = host.rstrip(".").split(".")
    # WHATWG: a host whose last label is numeric is an IPv4 address; only the
    # canonical dotted quad is accepted so no legacy form slips past the checks.
    if _NUMERIC_LABEL_RE.fullmatch(labels[-1]) and not _is_dotted_quad(host):
        raise _block(url, "IPv4 host not in dotted-quad form")
    return url


def _is_dotted_quad(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(
        p.isascii() and p.isdigit() and len(p) <= 3 and (p == "0" or p[0] != "0") and int(p) < 256
        for p in parts
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header, clamped to ``[0, 86400]``.

    Accepts delta-seconds (``"120"``) or an HTTP-date, measured from ``now``
    (a naive ``now`` is taken as UTC). Returns None when absent or unparseable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


# --- the fetcher -----------------------------------------------------------------------------

#: The host and addresses vetted for the request running in this context. aiohttp
#: resolves inside the task that sends the request, so it sees this hop's value.
_VETTED: contextvars.ContextVar[tuple[str, tuple[str, ...]] | None] = contextvars.ContextVar(
    "monitor_fetch_vetted", default=None
)


class _VettedResolver(AbstractResolver):
    """aiohttp resolver that answers only with the addresses vetted for this hop.

    It never does a lookup itself, so a DNS answer that changes between our check
    and aiohttp's connect (rebinding, C8) cannot redirect the connection.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        vetted = _VETTED.get()
        if vetted is None or _norm_host(vetted[0]) != _norm_host(host):
            # Fail closed: nothing was vetted for this host (aiohttp wraps OSError).
            raise OSError(f"no vetted address for {host}")
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=flags,
            )
            for ip in vetted[1]
        ]

    async def close(self) -> None:
        return None


def _basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _norm_host(host: str) -> str:
    return host.lower().rstrip(".")


async def _system_resolve(host: str, port: int) -> list[str]:
    """Default resolver: the system's getaddrinfo, every address it returns."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, _norm_host(url.raw_host or ""), url.port)


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in headers.items():
        k = key.lower()
        out[k] = f"{out[k]}, {value}" if k in out else value
    return out


def _content_codings(response: aiohttp.ClientResponse) -> list[str]:
    joined = ",".join(response.headers.getall("Content-Encoding", ()))
    return [
        c.strip().lower() for c in joined.split(",") if c.strip().lower() not in ("", "identity")
    ]


def _connection_reason(e: BaseException) -> str:
    """A short, URL-free reason for a connection-level failure."""
    if isinstance(e, aiohttp.ClientSSLError):
        inner = getattr(e, "os_error", None) or e
        detail = getattr(inner, "verify_message", None) or getattr(inner, "reason", None)
        return f"TLS error: {detail}" if detail else "TLS error"
    if isinstance(e, aiohttp.ClientConnectorDNSError):
        return "name resolution failed"
    if isinstance(e, aiohttp.ClientConnectorError):
        err = e.os_error
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        return f"connection failed: {err.strerror or type(err).__name__}".lower()
    text = str(e).lower()
    if "content-encoding" in text:
        return "could not decode body"
    # aiohttp folds a reset into a payload error's message rather than its cause.
    if isinstance(e, ConnectionResetError) or "connectionreseterror" in text:
        return "connection reset"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(e, aiohttp.ClientPayloadError):
        return "incomplete body"
    if isinstance(e, aiohttp.ClientResponseError):
        return "invalid HTTP response"
    if isinstance(e, aiohttp.InvalidURL):
        return "invalid URL"
    return f"connection error ({type(e).__name__})"


class GuardedFetcher:
    """The one HTTP client; see the module docstring for what it guards.

    One instance serves many concurrent :meth:`get` calls within one event loop;
    its aiohttp session is created on first use inside that loop. Use it as an
    async context manager or call :meth:`aclose`.

    ``resolver(host, port)`` returns the addresses of ``host`` as strings; it is
    called once per redirect hop (never for IP-literal hosts) and defaults to the
    system's getaddrinfo.
    """

    def __init__(
        self,
        *,
        allow_networks: Sequence[str] = (),
        user_agent: str = DEFAULT_USER_AGENT,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        total_timeout: float = 60.0,
        max_redirects: int = 5,
        resolver: Resolver | None = None,
    ) -> None:
        self._allow = parse_networks(allow_networks)
        self._user_agent = user_agent
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._total_timeout = total_timeout
        self._max_redirects = max_redirects
        self._resolver: Resolver = resolver or _system_resolve
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the fetcher cannot be used afterwards."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("GuardedFetcher is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=100,
                limit_per_host=4,
                resolver=_VettedResolver(),
                # Each hop is vetted by us; aiohttp must not cache or share lookups.
                use_dns_cache=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # No pool-wait timeout (``connect``): many gets to one host may queue.
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self._connect_timeout,
                    sock_read=self._read_timeout,
                ),
                # Cookies would leak between feeds; proxies from the environment
                # would connect somewhere we did not vet.
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_bytes: int = FEED_MAX_BYTES,
    ) -> FetchedResponse:
        """Fetch ``url``, following up to ``max_redirects`` redirects, each re-checked.

        Returns a 2xx or 304 response (304 with empty ``content``). Raises
        ``BlockedAddressError`` (scheme or address refused), ``HTTPStatusError``
        (any other status, with ``retry_after``), ``ResponseTooLargeError``
        (decoded body over ``max_bytes``), ``FetchTimeoutError`` (connect, read or
        the total deadline) or ``FetchError`` (everything else).
        """
        safe_url = redact_url(url)
        deadline = asyncio.timeout(self._total_timeout)
        try:
            async with deadline:
                return await self._get(url, safe_url, headers or {}, max_bytes)
        except TimeoutError as e:
            if deadline.expired():
                raise FetchTimeoutError(safe_url, "total deadline exceeded") from e
            raise FetchTimeoutError(safe_url, "timeout") from e

    async def _get(
        self, url: str, safe_url: str, headers: Mapping[str, str], max_bytes: int
    ) -> FetchedResponse:
        check_url(url)
        current = URL(url)
        send_headers = CIMultiDict({"User-Agent": self._user_agent})
        if current.user is not None:
            # Sent as a header we control, so it can be dropped cross-origin below.
            send_headers["Authorization"] = _basic_auth(current.user, current.password or "")
        send_headers.update(headers)
        credentials = current.user is not None
        current = current.with_user(None)
        origin = _origin(current)
        permanent = True
        hops = 0
        while True:
            addresses = await self._vet(current, safe_url)
            response = await self._send(current, send_headers, addresses, safe_url)
            try:
                status = response.status
                if status in _REDIRECT_STATUSES and "Location" in response.headers:
                    location = response.headers.getone("Location")
                    response.close()
                    if hops >= self._max_redirects:
                        raise FetchError(safe_url, "too many redirects")
                    hops += 1
                    permanent = permanent and status in _PERMANENT_STATUSES
                    current = self._next_hop(current, location, safe_url)
                    if _origin(current) != origin:
                        # Credentials belong to the origin they were given for (C21).
                        origin = ("", "", None)
                        credentials = False
                        for name in _CREDENTIAL_HEADERS:
                            send_headers.popall(name, None)
                    continue
                final_url = url if hops == 0 else self._final_url(url, current, credentials)
                if status == 304:
                    response.release()
                    body = b""
                elif 200 <= status < 300:
                    body = await self._read_body(response, safe_url, max_bytes)
                else:
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), datetime.now(UTC)
                    )
                    response.close()
                    raise HTTPStatusError(safe_url, status, retry_after=retry_after)
                return FetchedResponse(
                    url=url,
                    final_url=final_url,
                    status=status,
                    headers=_lower_headers(response.headers),
                    content=body,
                    permanent_redirect=final_url if hops and permanent else None,
                )
            except BaseException:
                response.close()
                raise

    @staticmethod
    def _final_url(url: str, current: URL, credentials: bool) -> str:
        if not credentials:
            return str(current)
        # Same origin all the way: the caller's credentials still apply there.
        original = URL(url)
        return str(current.with_user(original.user).with_password(original.password))

    def _next_hop(self, current: URL, location: str, safe_url: str) -> URL:
        if _BAD_CHARS_RE.search(location.strip()):
            raise BlockedAddressError(safe_url, "redirect: invalid Location")
        try:
            target = current.join(URL(location.strip()))
        except (ValueError, TypeError):
            raise BlockedAddressError(safe_url, "redirect: invalid Location") from None
        try:
            check_url(str(target))
        except BlockedAddressError as e:
            raise BlockedAddressError(safe_url, f"redirect to {e.url}: {e.reason}") from None
        # A Location's own userinfo is not ours to send; drop it.
        return target.with_user(None)

    async def _vet(self, url: URL, safe_url: str) -> tuple[str, ...]:
        """Resolve ``url``'s host once and check every address (C4-C8)."""
        host = url.raw_host or ""
        try:
            addresses: tuple[str, ...] = (str(ipaddress.ip_address(host)),)
        except ValueError:
            addresses = await self._resolve(host, url.port or 0, safe_url)
        for ip in addresses:
            why = _address_refusal(ip, self._allow)
            if why is not None:
                # One bad record blocks the host: we cannot choose which one we reach (C7).
                raise BlockedAddressError(safe_url, f"blocked address: {host} -> {why}")
        return addresses

    async def _resolve(self, host: str, port: int, safe_url: str) -> tuple[str, ...]:
        try:
            async with asyncio.timeout(self._connect_timeout):
                found = await self._resolver(host, port)
        except TimeoutError as e:
            raise FetchTimeoutError(safe_url, f"name resolution of {host} timed out") from e
        except (OSError, ValueError, UnicodeError) as e:
            raise FetchError(safe_url, f"name resolution of {host} failed") from e
        addresses = tuple(dict.fromkeys(str(a) for a in found))
        if not addresses:
            raise FetchError(safe_url, f"name resolution of {host} returned no address")
        return addresses

    async def _send(
        self,
        url: URL,
        headers: CIMultiDict[str],
        addresses: tuple[str, ...],
        safe_url: str,
    ) -> aiohttp.ClientResponse:
        session = self._get_session()
        token = _VETTED.set((url.raw_host or "", addresses))
        try:
            return await session.get(
                url,
                headers=headers,
                allow_redirects=False,
                # Never sent: a proxy would connect to an address we did not vet.
                proxy=None,
            )
        except aiohttp.ConnectionTimeoutError as e:
            raise FetchTimeoutError(safe_url, "connect timeout") from e
        except (aiohttp.ServerTimeoutError, TimeoutError) as e:
            raise FetchTimeoutError(safe_url, "read timeout") from e
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise FetchError(safe_url, _connection_reason(e)) from e
        finally:
            _VETTED.reset(token)

    async def _read_body(
        self, response: aiohttp.ClientResponse, safe_url: str, max_bytes: int
    ) -> bytes:
        codings = _content_codings(response)
        if len(codings) > 1:
            # Stacked codings multiply decompression work and aiohttp would undo
            # only one layer (CVE-2025-66418 class, B12).
            raise FetchError(safe_url, f"refused stacked Content-Encoding ({len(codings)} codings)")
        if codings and codings[0] not in _KNOWN_CODINGS:
            raise FetchError(safe_url, f"unsupported Content-Encoding {codings[0]!r}"[:120])
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLargeError(
                safe_url, f"Content-Length {declared} exceeds {max_bytes} bytes"
            )
        body = bytearray()
        try:
            # aiohttp hands over decoded data; counting it is what stops a gzip bomb (B11).
            async for chunk in response.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise ResponseTooLargeError(safe_url, f"body exceeds {max_bytes} bytes")
        except (aiohttp.ServerTimeoutError, TimeoutError) as e:
            raise FetchTimeoutError(safe_url, "read timeout") from e
        except (aiohttp.ClientError, OSError, ValueError) as e:
            raise FetchError(safe_url, _connection_reason(e)) from e
        response.release()
        return bytes(body)
