"""What every endpoint asks of a request: the service, the client's address, the token."""

from __future__ import annotations

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from server.access import bearer_token, client_address, token_matches
from server.service import Service


def service_of(conn: HTTPConnection) -> Service:
    service: Service = conn.app.state.service
    return service


def client_of(conn: HTTPConnection, service: Service) -> str:
    peer = conn.client.host if conn.client else None
    return client_address(
        peer, conn.headers.get("x-forwarded-for"), service.settings.trusted_proxies
    )


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
