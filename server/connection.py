"""What every endpoint asks of a request: the service, the client's address, the token."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server.access import (
    bearer_token,
    client_address,
    client_key,
    host_allowed,
    token_matches,
)
from server.service import Service


def service_of(conn: HTTPConnection) -> Service:
    service: Service = conn.app.state.service
    return service


def client_of(conn: HTTPConnection, service: Service) -> str:
    """The client's key for every per-client limit and for the pool's fairness."""
    settings = service.settings
    peer = conn.client.host if conn.client else None
    address = client_address(peer, conn.headers.get("x-forwarded-for"), settings.trusted_proxies)
    return client_key(address, settings.ipv6_client_prefix)


def authorized(conn: HTTPConnection, service: Service) -> bool:
    expected = service.settings.token
    if expected is None:
        return True
    presented = bearer_token(conn.headers) or conn.query_params.get("token")
    return token_matches(expected, presented)


def http_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


class HostCheck:
    """Refuses HTTP requests for a ``Host`` that is not one of the configured host names.

    Health, readiness and metrics are asked for by address (orchestrators, Caddy's health
    check, Prometheus) and admin only from internal peers: those paths are not checked.
    The WebSocket endpoint checks the host itself, to answer with a protocol error.
    """

    # Exact paths (server/paths.py has refused any path not in normal form before this).
    UNCHECKED = frozenset({"/healthz", "/readyz", "/metrics", "/admin/model"})

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self._app = app
        self._hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._hosts and scope["path"] not in self.UNCHECKED:
            host = Headers(scope=scope).get("host")
            if not host_allowed(host, self._hosts):
                message = f"host {(host or '')[:100]!r} is not served here"
                await http_error(400, "bad_request", message)(scope, receive, send)
                return
        await self._app(scope, receive, send)
