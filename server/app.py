"""The Starlette application: routes, access checks and the lifespan that owns the model."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

import vad
from server.access import (
    ConnectionLimit,
    bearer_token,
    client_address,
    origin_allowed,
    token_matches,
)
from server.model import ModelError
from server.outcome import SEGMENT_RATE_HZ, classify_segment, summarize
from server.protocol import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    Error,
    ErrorCode,
    ProtocolError,
    SegmentOutcome,
    StreamParams,
    outcome_body,
    parse_stream_params,
    to_json,
)
from server.service import ClassifierLoader, Service
from server.session import Session
from server.settings import Settings
from server.upload import UploadError, decode_audio, read_limited, upload_bytes

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
ADMIN_BODY_BYTES = 64 * 1024


def _service(conn: HTTPConnection) -> Service:
    service: Service = conn.app.state.service
    return service


def _client(conn: HTTPConnection, service: Service) -> str:
    peer = conn.client.host if conn.client else None
    return client_address(
        peer, conn.headers.get("x-forwarded-for"), service.settings.trusted_proxies
    )


def _authorized(conn: HTTPConnection, service: Service) -> bool:
    expected = service.settings.token
    if expected is None:
        return True
    presented = bearer_token(conn.headers) or conn.query_params.get("token")
    return token_matches(expected, presented)


def _http_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


# WebSocket /v1/stream


async def _refuse(ws: WebSocket, code: ErrorCode, message: str, close_code: int) -> None:
    await ws.accept()
    await ws.send_text(to_json(Error(code, message)))
    await ws.close(close_code)


async def stream(ws: WebSocket) -> None:
    service = _service(ws)
    settings = service.settings
    secure = ws.url.scheme == "wss" or ws.headers.get("x-forwarded-proto") == "https"
    if not origin_allowed(
        ws.headers.get("origin"), ws.headers.get("host"), settings.allowed_origins, secure
    ):
        service.metrics.connections_total.labels(outcome="unauthorized").inc()
        origin = ws.headers.get("origin", "")[:100]
        await _refuse(ws, "unauthorized", f"origin {origin!r} is not allowed", CLOSE_POLICY)
        return
    if not _authorized(ws, service):
        service.metrics.connections_total.labels(outcome="unauthorized").inc()
        await _refuse(ws, "unauthorized", "a valid access token is required", CLOSE_POLICY)
        return
    try:
        params = parse_stream_params(ws.query_params)
    except ProtocolError as exc:
        service.metrics.connections_total.labels(outcome="bad_request").inc()
        await _refuse(ws, exc.code, str(exc), CLOSE_POLICY)
        return
    if service.draining:
        service.metrics.connections_total.labels(outcome="busy").inc()
        await _refuse(ws, "busy", "server is shutting down; reconnect", CLOSE_TRY_AGAIN)
        return
    try:
        with service.limiter.hold(_client(ws, service)):
            await _run_session(ws, service, params)
    except ConnectionLimit as exc:
        service.metrics.connections_total.labels(outcome="busy").inc()
        await _refuse(ws, "busy", str(exc), CLOSE_TRY_AGAIN)


async def _run_session(ws: WebSocket, service: Service, params: StreamParams) -> None:
    await ws.accept()
    session = Session(ws, service, params)
    service.metrics.connections_total.labels(outcome="accepted").inc()
    service.sessions.add(session)
    try:
        with service.metrics.connections.track_inprogress():
            await session.run()
    except Exception:  # the session boundary: log with traceback, tell the client, close
        log.exception("session %s failed", session.id)
        try:
            await ws.send_text(to_json(Error("internal", "internal server error; session ended")))
            await ws.close(CLOSE_INTERNAL)
        except (RuntimeError, OSError):
            log.debug("session %s: could not report the failure", session.id)
    finally:
        service.sessions.discard(session)


# HTTP


async def classify(request: Request) -> Response:
    service = _service(request)
    started = time.monotonic()
    try:
        reply = await _classify_upload(request, service)
    except UploadError as exc:
        service.metrics.uploads.labels(status=str(exc.status)).inc()
        return _http_error(exc.status, exc.code, str(exc))
    service.metrics.uploads.labels(status="200").inc()
    log.info(
        "classified upload of %d ms in %.3f s", reply["duration_ms"], time.monotonic() - started
    )
    return JSONResponse(reply)


async def _classify_upload(request: Request, service: Service) -> dict[str, Any]:
    settings = service.settings
    if not _authorized(request, service):
        raise UploadError(401, "unauthorized", "a valid access token is required")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise UploadError(
            413,
            "too_large",
            f"request body of {declared} bytes exceeds {settings.max_upload_bytes}",
        )
    content_type = request.headers.get("content-type", "")
    if not content_type:
        raise UploadError(415, "unsupported_media_type", "request has no content type")
    body = await read_limited(request.stream(), settings.max_upload_bytes)
    data = upload_bytes(body, content_type)
    decoded = await asyncio.to_thread(decode_audio, data, SEGMENT_RATE_HZ, settings.max_upload_ms)
    outcomes = await classify_audio(service, decoded.audio)
    return {
        "duration_ms": decoded.duration_ms,
        "model": service.manifest.summary(),
        "segments": [outcome_body(o) for o in outcomes],
        "summary": summarize(outcomes),
    }


async def classify_audio(service: Service, audio: npt.NDArray[np.float32]) -> list[SegmentOutcome]:
    """Segment a whole recording at 16 kHz like a stream and classify every segment in order."""
    segmenter = vad.StreamSegmenter(
        service.segmenter_config, SEGMENT_RATE_HZ, "pcm_f32le", detector=service.new_detector()
    )

    def segment() -> list[vad.Event]:
        events: list[vad.Event] = []
        for last in (False, True):
            try:
                events += segmenter.finish() if last else segmenter.feed_audio(audio)
            except vad.DetectorError as exc:
                # As in a stream, the failed frames counted as unvoiced and the rest goes
                # on; the reply has no error channel for this, so it is logged.
                log.error("upload: %s", exc, exc_info=exc.cause)
                events += exc.events
        return events

    events = await asyncio.to_thread(segment)
    segments = [e for e in events if isinstance(e, vad.Segment)]
    service.metrics.segments.labels(source="upload").inc(len(segments))
    # At most one segment per worker in flight, so one upload cannot crowd out live streams.
    gate = asyncio.Semaphore(service.settings.workers)

    async def one(index: int, segment: vad.Segment) -> SegmentOutcome:
        async with gate:
            outcome, _ = await classify_segment(service.pool, index, segment, time.monotonic())
        return outcome

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(segments))))


async def model_info(request: Request) -> Response:
    service = _service(request)
    if not _authorized(request, service):
        return _http_error(401, "unauthorized", "a valid access token is required")
    return JSONResponse(service.manifest.public())


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    service = _service(request)
    if service.ready:
        return PlainTextResponse("ready\n")
    return PlainTextResponse("not ready\n", status_code=503)


async def metrics(request: Request) -> Response:
    body = _service(request).metrics.exposition()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def switch_model(request: Request) -> Response:
    """POST /admin/model {"model_dir": "..."}: serve another model directory without a restart."""
    service = _service(request)
    admin = service.settings.admin_token
    if admin is None:
        return _http_error(
            403, "forbidden", "admin endpoints are disabled: set EMOSTREAM_ADMIN_TOKEN"
        )
    if not token_matches(admin, bearer_token(request.headers)):
        return _http_error(401, "unauthorized", "a valid admin token is required (Bearer)")
    try:
        body = await read_limited(request.stream(), ADMIN_BODY_BYTES)
    except UploadError as exc:
        return _http_error(exc.status, exc.code, str(exc))
    target: Path | None = None
    if body.strip():
        try:
            target = _model_dir_from(body)
        except ValueError as exc:
            return _http_error(400, "bad_request", str(exc))
    try:
        manifest = await service.switch_model(target)
    except ModelError as exc:
        return _http_error(422, "bad_model", f"{exc}; still serving the previous model")
    return JSONResponse({"model": manifest.public()})


def _model_dir_from(body: bytes) -> Path:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model_dir"), str):
        raise ValueError('body must be {"model_dir": "<path>"}')
    return Path(data["model_dir"])


class WebFiles:
    """The browser app's files at ``/``; an API path asked with the wrong method gets 405."""

    def __init__(self, files: StaticFiles, api: list[BaseRoute]) -> None:
        self._files = files
        self._allowed = {r.path: sorted(r.methods or ()) for r in api if isinstance(r, Route)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = self._allowed.get(scope["path"])
        if allowed is not None and scope["type"] == "http":
            headers = {"Allow": ", ".join(allowed)}
            await PlainTextResponse("Method Not Allowed", 405, headers=headers)(
                scope, receive, send
            )
            return
        await self._files(scope, receive, send)


def create_app(settings: Settings, loader: ClassifierLoader | None = None) -> Starlette:
    service = Service(settings, loader)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(service.start)
        try:
            yield
        finally:
            await service.drain()
            service.stop()

    routes = [
        WebSocketRoute("/v1/stream", stream),
        Route("/v1/classify", classify, methods=["POST"]),
        Route("/v1/model", model_info),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/admin/model", switch_model, methods=["POST"]),
    ]
    if WEB_DIR.is_dir():
        web = WebFiles(StaticFiles(directory=WEB_DIR, html=True), routes)
        routes.append(Mount("/", web, name="web"))
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.service = service
    return app
