"""Who may connect: token, Origin allow-list, client address and connection limits."""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

from pydantic import SecretStr

from server.settings import IpNetwork

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def bearer_token(headers: Mapping[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    token = value.strip()
    return token if scheme.lower() == "bearer" and token else None


def token_matches(expected: SecretStr, presented: str | None) -> bool:
    """Constant-time comparison; an empty expected token matches nothing (fail closed)."""
    if presented is None or not expected.get_secret_value():
        return False
    return hmac.compare_digest(
        expected.get_secret_value().encode("utf-8"), presented.encode("utf-8", "replace")
    )


def _host_port(scheme: str, netloc: str) -> tuple[str, int] | None:
    """Host and port of ``netloc`` (default port by scheme), or None when it is malformed."""
    if not netloc or any(c in netloc for c in "/?#@\\ "):
        return None
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:  # unbalanced IPv6 brackets, a port that is no number or out of range
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _origin(text: str) -> tuple[str, tuple[str, int]] | None:
    """Scheme and (host, port) of a serialised origin, ``scheme://host[:port]``, else None."""
    scheme, sep, netloc = text.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https"):
        return None
    host_port = _host_port(scheme, netloc)
    return None if host_port is None else (scheme, host_port)


def origin_allowed(
    origin: str | None,
    host: str | None,
    allowed: list[str],
    secure: bool,
    hosts: Sequence[str] = (),
) -> bool:
    """No Origin (a non-browser client) passes; otherwise same origin or an allow-listed one.

    The server's own origin is the host and port the ``Host`` header names, and when
    ``hosts`` is set that host must be one of them (else a DNS-rebinding page, which
    controls ``Host``, would pass). On a TLS site
    (``secure``) its own pages are https: a plain-http Origin is not one of them.
    """
    if origin is None:
        return True
    parsed = _origin(origin)
    if parsed is None:
        return False
    if any(parsed == _origin(entry) for entry in allowed):
        return True
    scheme, host_port = parsed
    if secure and scheme != "https":
        return False
    if hosts and not (host_port[0] in hosts and host_allowed(host, hosts)):
        return False
    if host is None:
        return False
    # The port counts too (another app on the same host name is another origin): the one
    # the Host header names, or the scheme's default.
    own_scheme = "https" if secure else "http"
    # Behind a TLS proxy the upstream request is plain, so accept either scheme for the own host.
    return host_port in {_host_port(own_scheme, host), _host_port(scheme, host)}


def host_allowed(host: str | None, hosts: Sequence[str]) -> bool:
    """Whether a ``Host`` header names one of ``hosts`` (any port); True when none is set."""
    if not hosts:
        return True
    host_port = None if host is None else _host_port("http", host)
    return host_port is not None and host_port[0] in hosts


def client_address(peer: str | None, forwarded_for: str | None, trusted: list[IpNetwork]) -> str:
    """The peer address, or behind trusted proxies the last untrusted X-Forwarded-For hop."""
    address = peer or "unknown"
    if not forwarded_for or not _is_trusted(address, trusted):
        return address
    hops = [h.strip() for h in forwarded_for.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _is_trusted(hop, trusted):
            return hop if _is_ip(hop) else address
    return address


def client_key(address: str, ipv6_prefix: int) -> str:
    """What a client is counted by: its IPv4 address, or the ``ipv6_prefix`` network of its
    IPv6 address (one host is given a whole /64, so its addresses are one client)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def address_in(address: str | None, networks: list[IpNetwork]) -> bool:
    """Whether ``address`` is an IP address within one of ``networks``."""
    return address is not None and _is_trusted(address, networks)


def _is_trusted(address: str, trusted: list[IpNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class ConnectionLimit(Exception):
    pass


class ConnectionLimiter:
    """Counts what is open (sessions, uploads) in total and per client address."""

    def __init__(self, max_total: int, max_per_client: int, noun: str = "connections") -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.noun = noun
        self._per_client: Counter[str] = Counter()
        self._total = 0

    @property
    def total(self) -> int:
        return self._total

    @contextmanager
    def hold(self, client: str) -> Iterator[None]:
        if self._total >= self.max_total:
            raise ConnectionLimit(f"server is at its limit of {self.max_total} {self.noun}")
        if self._per_client[client] >= self.max_per_client:
            raise ConnectionLimit(
                f"client {client} is at its limit of {self.max_per_client} {self.noun}"
            )
        self._total += 1
        self._per_client[client] += 1
        try:
            yield
        finally:
            self._total -= 1
            self._per_client[client] -= 1
            if not self._per_client[client]:
                del self._per_client[client]
