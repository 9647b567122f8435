"""The guarded fetcher against real loopback servers (FAULTS.md A1-A19, B9-B12, C4-C11, C21).

pytest-httpserver scripts ordinary responses; tests/servers.py provides raw
sockets for what a real HTTP server will not do (never answer, drip, reset, lie
about Content-Length) and canaries that only count connections. Only
127.0.0.1/32 is allow-listed, so a canary on 127.0.0.2 must never be reached.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
import zlib
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.exceptions import (
    BlockedAddressError,
    FetchError,
    FetchTimeoutError,
    HTTPStatusError,
    ResponseTooLargeError,
)
from monitor.fetch import (
    DEFAULT_USER_AGENT,
    Fetcher,
    GuardedFetcher,
    check_url,
    is_address_allowed,
    parse_networks,
    parse_retry_after,
    redact_url,
)
from monitor.types import FetchedResponse
from tests import servers

LOOPBACK = ["127.0.0.1/32"]
# Short timeouts keep the file fast; the total deadline is the one that matters.
FAST: dict[str, Any] = {"connect_timeout": 1.0, "read_timeout": 1.0, "total_timeout": 2.0}
RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def _server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def http_server(_server: HTTPServer) -> Iterator[HTTPServer]:
    """pytest-httpserver bound to 127.0.0.1 (not "localhost", which may be ::1)."""
    yield _server
    _server.clear()


@pytest.fixture
def canary(http_server: HTTPServer) -> Iterator[servers.RawServer]:
    """Counts connections on 127.0.0.2, on the same port as ``http_server``."""
    with servers.RawServer(host="127.0.0.2", port=http_server.port) as server:
        yield server


def fetcher(**kwargs: Any) -> GuardedFetcher:
    options: dict[str, Any] = {"allow_networks": LOOPBACK, **FAST}
    options.update(kwargs)
    return GuardedFetcher(**options)


def fetch(
    url: str, *, headers: dict[str, str] | None = None, max_bytes: int = 1 << 20, **kwargs: Any
) -> FetchedResponse:
    async def go() -> FetchedResponse:
        async with fetcher(**kwargs) as f:
            return await f.get(url, headers=headers, max_bytes=max_bytes)

    return asyncio.run(go())


def fetch_error(url: str, error: type[FetchError] = FetchError, **kwargs: Any) -> FetchError:
    with pytest.raises(error) as info:
        fetch(url, **kwargs)
    return info.value


class SpyLoop(asyncio.SelectorEventLoop):
    """An event loop that records every address a socket connects to (connect_spy)."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[Any] = []

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        self.peers.append(address)
        await super().sock_connect(sock, address)

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        if args[1:] or kwargs.get("host"):
            self.peers.append(args[1:3] or (kwargs.get("host"), kwargs.get("port")))
        return await super().create_connection(*args, **kwargs)


def run_spied(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[Any, list[Any]]:
    """Run ``coro_fn()`` on a SpyLoop; return (result or exception, connected peers)."""
    loop = SpyLoop()
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        try:
            result: Any = runner.run(coro_fn())
        except Exception as e:
            result = e
    return result, loop.peers


class FakeResolver:
    """Answers from a script: one list of addresses per call, the last one repeated."""

    def __init__(self, *answers: Sequence[str] | BaseException) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def gzip_bomb(decoded_bytes: int) -> bytes:
    """A gzip body of ``decoded_bytes`` zeros, about 1 KB per MB (B11)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(decoded_bytes >> 20)]
    return b"".join(parts) + compressor.flush()


def gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


# --- pure functions --------------------------------------------------------------------------

C6_ADDRESSES = [
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT, GHSA-gwph-fp79-379w
    "0.0.0.0",
    "127.0.0.1",
    "169.254.169.254",  # cloud metadata (C5)
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "198.18.0.1",
    "192.0.2.1",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "fd00::1",
    "fc00::1",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "2002:7f00:1::1",  # 6to4
    "2001:0:4136:e378::1",  # Teredo
    "2001:db8::1",
    "not-an-ip",
    "",
]


@pytest.mark.parametrize("ip", C6_ADDRESSES)
def test_c6_non_global_addresses_refused(ip: str) -> None:
    assert not is_address_allowed(ip, [])


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ],
)
def test_global_addresses_allowed(ip: str) -> None:
    assert is_address_allowed(ip, [])


def test_c4_allow_networks_open_exactly_their_range() -> None:
    allow = parse_networks(["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"])
    assert is_address_allowed("127.0.0.1", allow)
    assert is_address_allowed("::ffff:127.0.0.1", allow)
    assert is_address_allowed("10.200.0.1", allow)
    assert is_address_allowed("fd00::5", allow)
    assert not is_address_allowed("127.0.0.2", allow)
    assert not is_address_allowed("192.168.0.1", allow)
    assert not is_address_allowed("::1", allow)


def test_parse_networks() -> None:
    assert parse_networks(["127.0.0.1", " 10.1.2.3/8 ", "::1/128"]) == (
        ip_network("127.0.0.1/32"),
        ip_network("10.0.0.0/8"),
        ip_network("::1/128"),
    )
    with pytest.raises(ValueError, match=r"10\.0\.0\.300/8"):
        parse_networks(["10.0.0.0/8", "10.0.0.300/8"])
    with pytest.raises(ValueError, match="localhost"):
        parse_networks(["localhost"])


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/feed.xml",
        "https://EXAMPLE.com:8443/a?b=c#d",
        "http://user:pass@example.com/",
        "http://127.0.0.1:8080/",
        "http://[2606:4700::1111]/",
        "https://xn--mnchen-3ya.de/",
        "http://example.com./",
    ],
)
def test_check_url_accepts(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",  # C11
        "gopher://127.0.0.1:70/_x",
        "ftp://example.com/feed",
        "javascript:alert(1)",
        "data:text/xml,<rss/>",
        "//example.com/feed",
        "example.com/feed",
        "http://",
        "http:///path",
        "http://127.0.0.2:80\\@example.com/",  # C10, GHSA-rph4-96w6-q594
        "http://example.com\\@127.0.0.1/",
        "http://a@b@example.com/",
        "http://exa mple.com/",
        "http://example.com/\nHost: x",
        "http://exam\x00ple.com/",
        "http://2130706433/",  # C6: legacy numeric forms of 127.0.0.1
        "http://0x7f000001/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://127.0.0.01/",
        "http://0x7f.0.0.1/",
        "http://example.com:0/",
        "http://example.com:99999/",
        "http://exa%6Dple.com/",
    ],
)
def test_c10_c11_check_url_refuses(url: str) -> None:
    with pytest.raises(BlockedAddressError):
        check_url(url)


def test_blocked_error_redacts_password() -> None:
    with pytest.raises(BlockedAddressError) as info:
        check_url("gopher://alice:s3cret@example.com/")
    assert "s3cret" not in str(info.value)
    assert "s3cret" not in redact_url("http://alice:s3cret@example.com/x")
    assert redact_url("http://example.com/x") == "http://example.com/x"


NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("99999999", 86400.0),
        (format_datetime(NOW + timedelta(seconds=300), usegmt=True), 300.0),
        ("Wed, 01 Jan 2025 12:10:00 GMT", 600.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        (format_datetime(NOW + timedelta(days=30), usegmt=True), 86400.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_a6_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


# --- ordinary fetches ------------------------------------------------------------------------


def test_fetch_ok_sends_user_agent_and_caller_headers(http_server: HTTPServer) -> None:
    http_server.expect_request("/feed").respond_with_data(
        RSS, headers={"Content-Type": "application/rss+xml; charset=utf-8", "ETag": '"v1"'}
    )
    url = http_server.url_for("/feed")
    got = fetch(url, headers={"Accept": "application/rss+xml", "If-None-Match": '"v0"'})
    assert (got.url, got.final_url, got.status, got.content) == (url, url, 200, RSS)
    assert got.headers["etag"] == '"v1"'
    assert got.content_type == "application/rss+xml"
    assert got.permanent_redirect is None
    assert all(key == key.lower() for key in got.headers)
    request, _ = http_server.log[-1]
    assert request.headers["User-Agent"] == DEFAULT_USER_AGENT
    assert request.headers["Accept"] == "application/rss+xml"
    assert request.headers["If-None-Match"] == '"v0"'


def test_a16_not_modified(http_server: HTTPServer) -> None:
    http_server.expect_request("/feed", headers={"If-None-Match": '"v1"'}).respond_with_data(
        b"", status=304, headers={"ETag": '"v1"'}
    )
    got = fetch(http_server.url_for("/feed"), headers={"If-None-Match": '"v1"'})
    assert got.status == 304
    assert got.not_modified
    assert got.content == b""


def test_gzip_body_is_decoded(http_server: HTTPServer) -> None:
    http_server.expect_request("/feed").respond_with_data(
        gzip(RSS * 50), headers={"Content-Encoding": "gzip"}
    )
    assert fetch(http_server.url_for("/feed")).content == RSS * 50


def test_many_concurrent_gets_share_one_fetcher(http_server: HTTPServer) -> None:
    for i in range(20):
        http_server.expect_request(f"/feed/{i}").respond_with_data(f"body {i}")

    async def go() -> list[bytes]:
        async with fetcher() as f:
            got = await asyncio.gather(
                *(f.get(http_server.url_for(f"/feed/{i}")) for i in range(20))
            )
            return [r.content for r in got]

    assert asyncio.run(go()) == [f"body {i}".encode() for i in range(20)]


def test_guarded_fetcher_is_a_fetcher() -> None:
    f: Fetcher = GuardedFetcher()
    asyncio.run(f.aclose())


def test_closed_fetcher_refuses_work(http_server: HTTPServer) -> None:
    async def go() -> None:
        f = fetcher()
        await f.aclose()
        await f.get(http_server.url_for("/"))

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(go())


# --- status codes ----------------------------------------------------------------------------


def test_a6_429_carries_retry_after(http_server: HTTPServer) -> None:
    http_server.expect_request("/feed").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "120"}
    )
    error = fetch_error(http_server.url_for("/feed"), HTTPStatusError)
    assert isinstance(error, HTTPStatusError)
    assert (error.status, error.retry_after) == (429, 120.0)


def test_a7_503_with_http_date_retry_after(http_server: HTTPServer) -> None:
    when = datetime.now(UTC) + timedelta(seconds=300)
    http_server.expect_request("/feed").respond_with_data(
        "", status=503, headers={"Retry-After": format_datetime(when, usegmt=True)}
    )
    error = fetch_error(http_server.url_for("/feed"), HTTPStatusError)
    assert isinstance(error, HTTPStatusError)
    assert error.status == 503
    assert error.retry_after is not None and 200 < error.retry_after <= 300


@pytest.mark.parametrize("status", [404, 410, 500, 502])
def test_a8_a14_error_statuses(http_server: HTTPServer, status: int) -> None:
    http_server.expect_request("/feed").respond_with_data("no", status=status)
    error = fetch_error(http_server.url_for("/feed"), HTTPStatusError)
    assert isinstance(error, HTTPStatusError)
    assert (error.status, error.retry_after, error.reason) == (status, None, f"HTTP {status}")


def test_redirect_without_location_is_a_status_error(http_server: HTTPServer) -> None:
    http_server.expect_request("/feed").respond_with_data("", status=302)
    error = fetch_error(http_server.url_for("/feed"), HTTPStatusError)
    assert isinstance(error, HTTPStatusError)
    assert error.status == 302


# --- redirects -------------------------------------------------------------------------------


def redirect(server: HTTPServer, path: str, location: str, status: int = 302) -> None:
    server.expect_request(path).respond_with_data("", status=status, headers={"Location": location})


def test_a11_all_permanent_hops_report_the_new_url(http_server: HTTPServer) -> None:
    redirect(http_server, "/old", "/middle", 301)
    redirect(http_server, "/middle", http_server.url_for("/new"), 308)
    http_server.expect_request("/new").respond_with_data(RSS)
    got = fetch(http_server.url_for("/old"))
    assert got.content == RSS
    assert got.url == http_server.url_for("/old")
    assert got.final_url == http_server.url_for("/new")
    assert got.permanent_redirect == http_server.url_for("/new")


def test_a12_one_temporary_hop_means_no_permanent_redirect(http_server: HTTPServer) -> None:
    redirect(http_server, "/old", "/middle", 301)
    redirect(http_server, "/middle", "/new", 307)
    http_server.expect_request("/new").respond_with_data(RSS)
    got = fetch(http_server.url_for("/old"))
    assert got.final_url == http_server.url_for("/new")
    assert got.permanent_redirect is None


def test_a9_redirect_loop_stops(http_server: HTTPServer) -> None:
    redirect(http_server, "/a", "/b")
    redirect(http_server, "/b", "/a")
    error = fetch_error(http_server.url_for("/a"), max_redirects=5)
    assert error.reason == "too many redirects"
    assert len(http_server.log) == 6  # the first request plus five followed hops


@pytest.mark.parametrize(("hops", "ok"), [(5, True), (6, False)])
def test_a10_long_redirect_chain(http_server: HTTPServer, hops: int, ok: bool) -> None:
    for i in range(hops):
        redirect(http_server, f"/{i}", f"/{i + 1}")
    http_server.expect_request(f"/{hops}").respond_with_data(RSS)
    if ok:
        assert fetch(http_server.url_for("/0")).content == RSS
    else:
        assert fetch_error(http_server.url_for("/0")).reason == "too many redirects"


def test_a13_permanent_redirect_to_forbidden_address_blocked(
    http_server: HTTPServer, canary: servers.RawServer
) -> None:
    redirect(http_server, "/feed", f"http://127.0.0.2:{canary.port}/", 301)
    error = fetch_error(http_server.url_for("/feed"), BlockedAddressError)
    assert "127.0.0.2" in error.reason
    assert canary.connections == 0


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.2:{port}/latest/meta-data/",
        "http://2130706433:{port}/",
        "http://[::1]:{port}/",
    ],
)
def test_c9_temporary_redirect_to_internal_blocked(
    http_server: HTTPServer, canary: servers.RawServer, location: str
) -> None:
    redirect(http_server, "/feed", location.format(port=canary.port))
    fetch_error(http_server.url_for("/feed"), BlockedAddressError)
    assert canary.connections == 0


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "javascript:alert(1)"]
)
def test_c11_redirect_to_other_scheme_blocked(http_server: HTTPServer, location: str) -> None:
    redirect(http_server, "/feed", location)
    fetch_error(http_server.url_for("/feed"), BlockedAddressError)
    assert len(http_server.log) == 1


def test_c10_redirect_with_backslash_blocked(canary: servers.RawServer) -> None:
    # Sent raw: werkzeug would percent-encode the backslash in a Location header.
    location = f"http://127.0.0.1:{canary.port}\\@127.0.0.2:{canary.port}/".encode()
    raw = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
    with servers.RawServer(servers.respond(raw)) as server:
        error = fetch_error(server.url, BlockedAddressError)
    assert "invalid Location" in error.reason
    assert canary.connections == 0


def test_c21_credentials_kept_same_origin_dropped_cross_host(http_server: HTTPServer) -> None:
    port = http_server.port
    resolver = FakeResolver(["127.0.0.1"])
    redirect(http_server, "/a", "/b")  # same origin: credentials still apply
    redirect(http_server, "/b", f"http://other.test:{port}/c")  # another host: they do not
    http_server.expect_request("/c").respond_with_data(RSS)
    got = fetch(
        f"http://alice:s3cret@feed.test:{port}/a",
        headers={"Cookie": "session=1"},
        resolver=resolver,
    )
    assert got.content == RSS
    sent = [
        (req.path, req.headers.get("Authorization"), req.headers.get("Cookie"))
        for req, _ in http_server.log
    ]
    assert sent[0][1] is not None and sent[0][1].startswith("Basic ")
    assert sent[1] == ("/b", sent[0][1], "session=1")
    assert sent[2] == ("/c", None, None)
    assert got.final_url == f"http://other.test:{port}/c"
    assert "s3cret" not in got.final_url


def test_c21_error_messages_hide_the_password(
    http_server: HTTPServer, canary: servers.RawServer
) -> None:
    port = http_server.port
    redirect(http_server, "/feed", f"http://127.0.0.2:{canary.port}/")
    http_server.expect_request("/gone").respond_with_data("", status=410)
    errors = [
        fetch_error(f"http://alice:s3cret@127.0.0.1:{port}/feed", BlockedAddressError),
        fetch_error(f"http://alice:s3cret@127.0.0.1:{port}/gone", HTTPStatusError),
        fetch_error(f"http://alice:s3cret@127.0.0.1:{port}/", allow_networks=[]),
    ]
    for error in errors:
        assert "s3cret" not in str(error)
        assert "s3cret" not in error.url
    assert canary.connections == 0


# --- address checks before connecting --------------------------------------------------------


def test_c4_loopback_refused_without_allow_list(canary: servers.RawServer) -> None:
    error = fetch_error(canary.url, BlockedAddressError, allow_networks=[])
    assert "loopback" in error.reason
    assert canary.connections == 0


@pytest.mark.parametrize("host", ["localhost", "[::1]", "127.0.0.2", "127.0.0.1"])
def test_c4_local_names_refused(canary: servers.RawServer, host: str) -> None:
    fetch_error(f"http://{host}:{canary.port}/admin", BlockedAddressError, allow_networks=[])
    assert canary.connections == 0


C6_URLS = [
    "http://10.0.0.1:{port}/",
    "http://192.168.1.1:{port}/",
    "http://172.16.0.1:{port}/",
    "http://100.64.0.1:{port}/",
    "http://0.0.0.0:{port}/",
    "http://169.254.169.254:{port}/latest/meta-data/",  # C5
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[fd00::1]:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f000001:{port}/",
    "http://127.1:{port}/",
]


@pytest.mark.parametrize("template", C6_URLS)
def test_c5_c6_internal_urls_never_connect(template: str) -> None:
    """Not even a resolver that calls everything public lets these through."""
    resolver = FakeResolver(["93.184.216.34"])

    async def go() -> FetchedResponse:
        async with GuardedFetcher(resolver=resolver, **FAST) as f:
            return await f.get(template.format(port=8080))

    result, peers = run_spied(go)
    assert isinstance(result, BlockedAddressError)
    assert peers == []
    assert resolver.calls == []


def test_c7_one_private_record_blocks_the_host() -> None:
    resolver = FakeResolver(["93.184.216.34", "10.0.0.1"])

    async def go() -> FetchedResponse:
        async with GuardedFetcher(resolver=resolver, **FAST) as f:
            return await f.get("http://mixed.test/feed")

    result, peers = run_spied(go)
    assert isinstance(result, BlockedAddressError)
    assert "10.0.0.1" in result.reason
    assert peers == []
    assert resolver.calls == [("mixed.test", 80)]


def test_c7_allowed_record_not_contacted_when_another_is_bad(http_server: HTTPServer) -> None:
    http_server.expect_request("/feed").respond_with_data(RSS)
    resolver = FakeResolver(["127.0.0.1", "127.0.0.2"])
    fetch_error(
        f"http://mixed.test:{http_server.port}/feed", BlockedAddressError, resolver=resolver
    )
    assert http_server.log == []


def test_c8_connects_to_the_vetted_address_without_a_second_lookup(
    http_server: HTTPServer, canary: servers.RawServer
) -> None:
    """DNS rebinding: the second answer would point at the canary; it is never asked."""
    http_server.expect_request("/feed").respond_with_data(RSS)
    resolver = FakeResolver(["127.0.0.1"], ["127.0.0.2"])
    got = fetch(f"http://rebind.test:{http_server.port}/feed", resolver=resolver)
    assert got.content == RSS
    assert resolver.calls == [("rebind.test", http_server.port)]
    assert canary.connections == 0
    request, _ = http_server.log[0]
    assert request.headers["Host"] == f"rebind.test:{http_server.port}"


def test_c8_each_hop_resolved_once_and_rechecked(
    http_server: HTTPServer, canary: servers.RawServer
) -> None:
    port = http_server.port
    redirect(http_server, "/a", "/b")
    redirect(http_server, "/b", "/c")
    resolver = FakeResolver(["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2"])
    error = fetch_error(f"http://rebind.test:{port}/a", BlockedAddressError, resolver=resolver)
    assert "127.0.0.2" in error.reason
    assert resolver.calls == [("rebind.test", port)] * 3
    assert [req.path for req, _ in http_server.log] == ["/a", "/b"]
    assert canary.connections == 0


def test_a19_dns_failure_fails_closed(canary: servers.RawServer) -> None:
    resolver = FakeResolver(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    error = fetch_error(f"http://nx.test:{canary.port}/", resolver=resolver)
    assert type(error) is FetchError
    assert "name resolution" in error.reason
    resolver_empty = FakeResolver([])
    assert "no address" in fetch_error("http://empty.test/", resolver=resolver_empty).reason
    assert canary.connections == 0


def test_a19_system_resolver_failure(canary: servers.RawServer) -> None:
    # .invalid never resolves (RFC 6761), with or without a network.
    error = fetch_error(f"http://nothing.invalid:{canary.port}/")
    assert type(error) is FetchError
    assert canary.connections == 0


# --- timeouts and broken connections --------------------------------------------------------


def test_a1_connect_timeout() -> None:
    with servers.BlackholeServer() as blackhole:
        start = time.monotonic()
        error = fetch_error(blackhole.url, FetchTimeoutError, connect_timeout=0.5)
        assert time.monotonic() - start < 0.5 + 2
    assert error.reason == "connect timeout"


def test_a2_server_never_answers() -> None:
    with servers.RawServer(servers.silent) as server:
        start = time.monotonic()
        error = fetch_error(server.url, FetchTimeoutError, read_timeout=0.5)
        assert time.monotonic() - start < 0.5 + 2
    assert error.reason == "read timeout"


def test_a3_slowloris_stopped_by_total_deadline() -> None:
    with servers.RawServer(servers.drip(interval=0.1)) as server:
        start = time.monotonic()
        error = fetch_error(server.url, FetchTimeoutError, read_timeout=1.0, total_timeout=1.5)
        assert time.monotonic() - start < 1.5 + 2
    assert error.reason == "total deadline exceeded"


def test_a4_reset_mid_body() -> None:
    with servers.RawServer(servers.reset_mid_body()) as server:
        error = fetch_error(server.url)
    assert type(error) is FetchError
    assert error.reason == "connection reset"


def test_a5_content_length_lies() -> None:
    with servers.RawServer(servers.short_body(declared=1000)) as server:
        error = fetch_error(server.url)
    assert type(error) is FetchError
    assert error.reason == "incomplete body"


def test_connection_refused() -> None:
    with servers.RawServer() as server:
        port = server.port
    error = fetch_error(f"http://127.0.0.1:{port}/")
    assert type(error) is FetchError
    assert error.reason == "connection refused"


def test_garbage_response_is_a_fetch_error() -> None:
    with servers.RawServer(servers.respond(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) as server:
        error = fetch_error(server.url)
    assert type(error) is FetchError
    assert error.reason == "invalid HTTP response"


def test_corrupt_gzip_body() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!"
    with servers.RawServer(servers.respond(raw)) as server:
        error = fetch_error(server.url)
    assert type(error) is FetchError
    assert error.reason == "could not decode body"


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    folder: Path = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def test_a18_self_signed_certificate_fails_closed(self_signed: ssl.SSLContext) -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with servers.RawServer(servers.respond(ok), tls=self_signed) as server:
        error = fetch_error(server.url)
        assert server.connections == 1
    assert type(error) is FetchError
    assert error.reason.startswith("TLS error")


# --- body limits -----------------------------------------------------------------------------


def test_b9_content_length_over_cap_refused_early(http_server: HTTPServer) -> None:
    http_server.expect_request("/big").respond_with_data(b"x" * 200_000)
    error = fetch_error(http_server.url_for("/big"), ResponseTooLargeError, max_bytes=100_000)
    assert "Content-Length 200000" in error.reason


def test_b9_streamed_body_over_cap_refused(http_server: HTTPServer) -> None:
    def stream(request: Request) -> Response:
        # No Content-Length: only counting the bytes can stop this one.
        return Response((b"x" * 10_000 for _ in range(100)), mimetype="application/rss+xml")

    http_server.expect_request("/big").respond_with_handler(stream)
    error = fetch_error(http_server.url_for("/big"), ResponseTooLargeError, max_bytes=100_000)
    assert "100000" in error.reason
    assert fetch(http_server.url_for("/big"), max_bytes=1_000_000).content == b"x" * 1_000_000


def test_b11_gzip_bomb_counted_after_decoding(http_server: HTTPServer) -> None:
    bomb = gzip_bomb(64 << 20)
    assert len(bomb) < 100_000  # tiny on the wire, 64 MiB decoded
    http_server.expect_request("/bomb").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"}
    )
    error = fetch_error(http_server.url_for("/bomb"), ResponseTooLargeError, max_bytes=1 << 20)
    assert str(1 << 20) in error.reason


@pytest.mark.parametrize("header", ["gzip, gzip", ", ".join(["gzip"] * 10)])
def test_b12_stacked_content_encoding_refused(http_server: HTTPServer, header: str) -> None:
    http_server.expect_request("/feed").respond_with_data(
        gzip(gzip(RSS)), headers={"Content-Encoding": header}
    )
    error = fetch_error(http_server.url_for("/feed"))
    assert "stacked Content-Encoding" in error.reason


def test_b12_repeated_content_encoding_headers_refused() -> None:
    body = gzip(gzip(RSS))
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    ) + body
    with servers.RawServer(servers.respond(raw)) as server:
        error = fetch_error(server.url)
    assert "stacked Content-Encoding" in error.reason


def test_unknown_content_encoding_refused(http_server: HTTPServer) -> None:
    http_server.expect_request("/feed").respond_with_data(
        RSS, headers={"Content-Encoding": "compress"}
    )
    assert "unsupported Content-Encoding" in fetch_error(http_server.url_for("/feed")).reason
