"""Who may connect (server/access.py): tokens, origins, client addresses, connection limits."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import SecretStr

from server.access import (
    ConnectionLimit,
    ConnectionLimiter,
    bearer_token,
    client_address,
    host_allowed,
    origin_allowed,
    token_matches,
)
from server.settings import IpNetwork

# Tokens


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc123", "abc123"),
        ("bearer abc123", "abc123"),
        ("BEARER   spaced  ", "spaced"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Token abc", None),
        ("abc123", None),
        ("", None),
    ],
)
def test_bearer_token(header: str, expected: str | None) -> None:
    assert bearer_token({"authorization": header}) == expected


def test_bearer_token_absent() -> None:
    assert bearer_token({}) is None


SECRET = SecretStr("s3cret-token")


@pytest.mark.parametrize(
    ("presented", "matches"),
    [
        ("s3cret-token", True),
        ("s3cret-tokeN", False),
        ("s3cret-token ", False),
        ("s3cret", False),
        ("", False),
        (None, False),
        ("s3cret-tökén", False),
        ("\udcff", False),  # a lone surrogate cannot be encoded strictly
    ],
)
def test_token_matches(presented: str | None, matches: bool) -> None:
    assert token_matches(SECRET, presented) is matches


def test_empty_configured_token_matches_nothing() -> None:
    # EMOSTREAM_TOKEN="" must not turn "?token=" into a pass.
    assert not token_matches(SecretStr(""), "")
    assert not token_matches(SecretStr(""), "anything")


def test_non_ascii_token_can_match() -> None:
    assert token_matches(SecretStr("clé-été"), "clé-été")
    assert not token_matches(SecretStr("clé-été"), "cle-ete")


# Origins


@pytest.mark.parametrize(
    ("origin", "host", "secure"),
    [
        ("http://localhost:8000", "localhost:8000", False),
        ("http://LOCALHOST:8000", "localhost:8000", False),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", False),
        ("http://[::1]:8000", "[::1]:8000", False),
        ("https://example.com", "example.com", True),
        ("https://example.com:443", "example.com", True),
        ("https://example.com", "example.com:443", True),
        ("http://example.com", "example.com:80", False),
        ("http://example.com:80", "example.com", False),
        # Behind a TLS proxy: the browser's origin is https, the upstream request plain http.
        ("https://example.com", "example.com", False),
    ],
)
def test_same_origin_is_allowed(origin: str, host: str, secure: bool) -> None:
    assert origin_allowed(origin, host, [], secure)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://localhost:8001", "localhost:8000"),
        ("http://localhost", "localhost:8000"),
        ("https://example.com", "example.com:8443"),
        ("http://evil.example", "example.com"),
        ("http://example.com.evil.example", "example.com"),
        ("http://user@example.com", "example.com"),
        ("http://example.com/", "example.com"),
        ("http://example.com/path", "example.com"),
        ("http://example.com?x=1", "example.com"),
        ("ftp://example.com", "example.com"),
        ("file://", "example.com"),
        ("example.com", "example.com"),
        ("null", "example.com"),
        ("", "example.com"),
        ("http://", "example.com"),
        ("http://example.com:abc", "example.com:abc"),
        ("http://example.com:99999", "example.com:99999"),
        ("http://exa mple.com", "exa mple.com"),
        ("\x00\xff", "example.com"),
        ("http://[::1", "[::1"),
    ],
)
def test_other_or_garbage_origins_are_refused(origin: str, host: str) -> None:
    assert not origin_allowed(origin, host, [], secure=False)


def test_origin_without_host_header_is_refused() -> None:
    assert not origin_allowed("http://localhost:8000", None, [], secure=False)


@pytest.mark.parametrize("host", ["", "a/b", "user@host", "host:port", "[::1"])
def test_garbage_host_header_matches_nothing(host: str) -> None:
    assert not origin_allowed("http://host", host, [], secure=False)


def test_missing_origin_is_not_refused() -> None:
    assert origin_allowed(None, "example.com", [], secure=False)
    assert origin_allowed(None, None, [], secure=True)


ALLOWED = ["https://app.example.org", "http://localhost:3000"]


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.org",
        "HTTPS://APP.EXAMPLE.ORG",
        "https://app.example.org:443",
        "http://localhost:3000",
    ],
)
def test_allow_listed_origins(origin: str) -> None:
    assert origin_allowed(origin, "api.example.org", ALLOWED, secure=True)


@pytest.mark.parametrize(
    "origin",
    ["http://app.example.org", "https://app.example.org:8443", "http://localhost:3001", "null"],
)
def test_near_misses_of_the_allow_list(origin: str) -> None:
    assert not origin_allowed(origin, "api.example.org", ALLOWED, secure=True)


# Client addresses

PROXIES: list[IpNetwork] = [
    ipaddress.ip_network("127.0.0.1/32"),
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
]


def test_untrusted_peer_ignores_forwarded_for() -> None:
    assert client_address("203.0.113.9", "198.51.100.1", PROXIES) == "203.0.113.9"
    assert client_address("203.0.113.9", "198.51.100.1", []) == "203.0.113.9"


def test_trusted_proxy_gives_the_last_untrusted_hop() -> None:
    # The client may prepend anything; only hops added by trusted proxies are believed.
    header = "1.2.3.4, 198.51.100.7, 10.1.2.3"
    assert client_address("127.0.0.1", header, PROXIES) == "198.51.100.7"
    assert client_address("::1", "2001:db8::5", PROXIES) == "2001:db8::5"


def test_trusted_proxy_without_header_is_the_client() -> None:
    assert client_address("127.0.0.1", None, PROXIES) == "127.0.0.1"
    assert client_address("127.0.0.1", "", PROXIES) == "127.0.0.1"


def test_only_trusted_hops_gives_the_peer() -> None:
    assert client_address("127.0.0.1", "10.0.0.1, 10.0.0.2", PROXIES) == "127.0.0.1"


@pytest.mark.parametrize(
    "header",
    ["garbage", "1.2.3.4:5678", "[2001:db8::1]", "<script>", "999.1.1.1", "unknown"],
)
def test_garbage_hop_falls_back_to_the_peer(header: str) -> None:
    assert client_address("127.0.0.1", header, PROXIES) == "127.0.0.1"


def test_empty_hops_are_skipped() -> None:
    assert client_address("127.0.0.1", "198.51.100.7, , ", PROXIES) == "198.51.100.7"
    assert client_address("127.0.0.1", ",,,", PROXIES) == "127.0.0.1"


def test_unknown_peer() -> None:
    assert client_address(None, "198.51.100.7", PROXIES) == "unknown"
    assert client_address("testclient", "198.51.100.7", PROXIES) == "testclient"


# Connection limits


def test_limiter_counts_and_releases() -> None:
    limiter = ConnectionLimiter(max_total=3, max_per_client=2)
    with limiter.hold("a"), limiter.hold("a"):
        assert limiter.total == 2
        with pytest.raises(ConnectionLimit, match="client a is at its limit of 2"):
            limiter.hold("a").__enter__()
        with limiter.hold("b"):
            assert limiter.total == 3
            with pytest.raises(ConnectionLimit, match="limit of 3 connections"):
                limiter.hold("c").__enter__()
        assert limiter.total == 2
    assert limiter.total == 0
    with limiter.hold("a"), limiter.hold("a"):
        assert limiter.total == 2


def test_refused_hold_changes_no_count() -> None:
    limiter = ConnectionLimiter(max_total=1, max_per_client=1)
    with limiter.hold("a"):
        for client in ("a", "b"):
            with pytest.raises(ConnectionLimit):
                limiter.hold(client).__enter__()
        assert limiter.total == 1
    assert limiter.total == 0
    with limiter.hold("b"):
        assert limiter.total == 1


def test_limiter_releases_on_exceptions() -> None:
    limiter = ConnectionLimiter(max_total=5, max_per_client=1)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="session failed"), limiter.hold("a"):
            raise RuntimeError("session failed")
    assert limiter.total == 0
    with limiter.hold("a"):
        assert limiter.total == 1


def test_per_client_counts_are_independent() -> None:
    limiter = ConnectionLimiter(max_total=100, max_per_client=2)
    with limiter.hold("10.0.0.1"), limiter.hold("10.0.0.1"), limiter.hold("10.0.0.2"):
        with pytest.raises(ConnectionLimit, match=r"10\.0\.0\.1"):
            limiter.hold("10.0.0.1").__enter__()
        with limiter.hold("10.0.0.2"):
            assert limiter.total == 4
    assert limiter.total == 0


# Configured host names (DNS rebinding) and TLS sites

HOSTS = ["emo.example.com", "10.0.0.5"]


@pytest.mark.parametrize(
    ("origin", "host", "secure"),
    [
        ("https://emo.example.com", "emo.example.com", True),
        ("https://emo.example.com", "emo.example.com:443", True),
        ("https://EMO.example.com:8443", "emo.example.com:8443", True),
        ("http://10.0.0.5:8000", "10.0.0.5:8000", False),
        ("https://emo.example.com", "emo.example.com", False),  # behind a TLS proxy
    ],
)
def test_configured_hosts_make_the_own_origin(origin: str, host: str, secure: bool) -> None:
    assert origin_allowed(origin, host, [], secure, HOSTS)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://evil.example", "evil.example"),  # a rebinding page: Host and Origin agree
        ("https://evil.example", "evil.example"),
        ("https://evil.example", "emo.example.com"),
        ("https://emo.example.com", "evil.example"),
        ("https://emo.example.com.evil.example", "emo.example.com.evil.example"),
        ("https://emo.example.com", None),
    ],
)
def test_other_hosts_are_not_the_own_origin(origin: str, host: str | None) -> None:
    assert not origin_allowed(origin, host, [], True, HOSTS)
    assert not origin_allowed(origin, host, [], False, HOSTS)


@pytest.mark.parametrize(
    ("origin", "host", "secure"),
    [
        ("http://emo.example.com:9999", "emo.example.com:8000", False),  # another app
        ("https://emo.example.com:8443", "emo.example.com:8000", False),
        ("https://emo.example.com:8443", "emo.example.com", True),
        ("https://emo.example.com", "emo.example.com:8443", True),
        ("http://10.0.0.5:8001", "10.0.0.5:8000", False),
        ("http://10.0.0.5", "10.0.0.5:8000", False),
    ],
)
def test_configured_hosts_compare_the_port_too(origin: str, host: str, secure: bool) -> None:
    assert not origin_allowed(origin, host, [], secure, HOSTS)


@pytest.mark.parametrize("hosts", [[], HOSTS])
def test_a_plain_http_origin_is_refused_on_a_tls_site(hosts: list[str]) -> None:
    assert not origin_allowed("http://emo.example.com", "emo.example.com", [], True, hosts)
    assert not origin_allowed("http://emo.example.com:443", "emo.example.com", [], True, hosts)
    assert origin_allowed("https://emo.example.com", "emo.example.com", [], True, hosts)


def test_an_allow_listed_origin_passes_whatever_the_host() -> None:
    allowed = ["https://app.example.org"]
    assert origin_allowed("https://app.example.org", "evil.example", allowed, True, HOSTS)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("emo.example.com", True),
        ("EMO.example.com:8443", True),
        ("10.0.0.5:8000", True),
        ("evil.example", False),
        ("emo.example.com.evil.example", False),
        ("", False),
        (None, False),
        ("emo.example.com@evil.example", False),
    ],
)
def test_host_allowed(host: str | None, expected: bool) -> None:
    assert host_allowed(host, HOSTS) is expected


def test_no_configured_hosts_allows_any_host() -> None:
    assert host_allowed("anything.example", [])
    assert host_allowed(None, [])
