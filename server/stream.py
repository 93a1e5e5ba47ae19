"""``WebSocket /v1/stream``: who may open a session, then the session itself."""

from __future__ import annotations

import asyncio
import logging

from starlette.websockets import WebSocket

from server.access import ConnectionLimit, host_allowed, origin_allowed
from server.connection import authorized, client_of, service_of
from server.protocol import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    Error,
    ErrorCode,
    ProtocolError,
    StreamParams,
    parse_stream_params,
    to_json,
)
from server.service import Service
from server.session import CLIENT_GONE, Session

log = logging.getLogger(__name__)


async def stream(ws: WebSocket) -> None:
    service = service_of(ws)
    settings = service.settings
    secure = ws.url.scheme == "wss" or ws.headers.get("x-forwarded-proto") == "https"
    host = ws.headers.get("host")
    if not host_allowed(host, settings.allowed_hosts):
        service.metrics.connections_total.labels(outcome="unauthorized").inc()
        message = f"host {(host or '')[:100]!r} is not served here"
        await _refuse(ws, service, "unauthorized", message, CLOSE_POLICY)
        return
    if not origin_allowed(
        ws.headers.get("origin"), host, settings.allowed_origins, secure, settings.allowed_hosts
    ):
        service.metrics.connections_total.labels(outcome="unauthorized").inc()
        origin = ws.headers.get("origin", "")[:100]
        await _refuse(
            ws, service, "unauthorized", f"origin {origin!r} is not allowed", CLOSE_POLICY
        )
        return
    if not authorized(ws, service):
        service.metrics.connections_total.labels(outcome="unauthorized").inc()
        await _refuse(ws, service, "unauthorized", "a valid access token is required", CLOSE_POLICY)
        return
    try:
        params = parse_stream_params(ws.query_params)
    except ProtocolError as exc:
        service.metrics.connections_total.labels(outcome="bad_request").inc()
        await _refuse(ws, service, exc.code, str(exc), CLOSE_POLICY)
        return
    if service.draining:
        service.metrics.connections_total.labels(outcome="busy").inc()
        await _refuse(ws, service, "busy", "server is shutting down; reconnect", CLOSE_TRY_AGAIN)
        return
    try:
        with service.limiter.hold(client_of(ws, service)):
            await _run_session(ws, service, params)
    except ConnectionLimit as exc:
        service.metrics.connections_total.labels(outcome="busy").inc()
        await _refuse(ws, service, "busy", str(exc), CLOSE_TRY_AGAIN)


async def _refuse(
    ws: WebSocket, service: Service, code: ErrorCode, message: str, close_code: int
) -> None:
    """Accept, send one error and close, within one idle timeout of a client that does not read."""
    try:
        async with asyncio.timeout(service.settings.idle_timeout_ms / 1000):
            await ws.accept()
            await ws.send_text(to_json(Error(code, message)))
            await ws.close(close_code)
    except CLIENT_GONE:
        log.debug("could not deliver a refusal (%s) to the client", code)


async def _run_session(ws: WebSocket, service: Service, params: StreamParams) -> None:
    try:
        async with asyncio.timeout(service.settings.idle_timeout_ms / 1000):
            await ws.accept()
    except CLIENT_GONE:
        log.debug("the client went away before its session began")
        return
    session = Session(ws, service, params)
    service.metrics.connections_total.labels(outcome="accepted").inc()
    service.sessions.add(session)
    try:
        with service.metrics.connections.track_inprogress():
            await session.run()
    except Exception:  # the session boundary: log with traceback, tell the client, close
        log.exception("session %s failed", session.id)
        try:
            async with asyncio.timeout(service.settings.idle_timeout_ms / 1000):
                await ws.send_text(
                    to_json(Error("internal", "internal server error; session ended"))
                )
                await ws.close(CLOSE_INTERNAL)
        except CLIENT_GONE:
            log.debug("session %s: could not report the failure", session.id)
    finally:
        service.sessions.discard(session)
