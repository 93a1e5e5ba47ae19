"""The HTTP API: ``POST /v1/classify``, ``GET /v1/model``, health, readiness and metrics."""

from __future__ import annotations

import logging
import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from server.access import ConnectionLimit, address_in
from server.connection import authorized, client_of, http_error, service_of
from server.multipart import upload_bytes
from server.protocol import ProtocolError, parse_quality
from server.recording import channel_mode, classify_recording
from server.service import Service
from server.upload import Data, UploadError, read_limited

log = logging.getLogger(__name__)


# Seconds a client told ``busy`` waits before it tries an upload again.
UPLOAD_RETRY_AFTER_S = 5


async def classify(request: Request) -> Response:
    service = service_of(request)
    started = time.monotonic()
    try:
        if not authorized(request, service):
            raise UploadError(401, "unauthorized", "a valid access token is required")
        try:
            quality = parse_quality(request.query_params) == 1
        except ProtocolError as exc:
            raise UploadError(400, exc.code, str(exc)) from exc
        try:
            channels = channel_mode(request.query_params.get("channels", "mix"))
        except ValueError as exc:
            raise UploadError(400, "bad_request", str(exc)) from None
        client = client_of(request, service)
        with service.uploads.client(client):
            with service.uploads.receive():
                received = [await _upload(request, service)]
            with service.uploads.classify():
                recording = await classify_recording(
                    service, _taken(received), client, channels, quality=quality
                )
    except ConnectionLimit as exc:
        service.metrics.uploads.labels(status="503").inc()
        retry = {"Retry-After": str(UPLOAD_RETRY_AFTER_S)}
        return http_error(503, "busy", f"{exc}; try again later", retry)
    except UploadError as exc:
        service.metrics.uploads.labels(status=str(exc.status)).inc()
        return http_error(exc.status, exc.code, str(exc))
    except ClientDisconnect:  # nobody is left to answer: not a fault of the server
        log.info("the client went away during its upload")
        service.metrics.uploads.labels(status="disconnected").inc()
        return Response(status_code=400)
    service.metrics.uploads.labels(status="200").inc()
    log.info(
        "classified upload of %d ms in %.3f s", recording.duration_ms, time.monotonic() - started
    )
    body = recording.body()
    model = service.manifest.summary()
    return JSONResponse({"duration_ms": body.pop("duration_ms"), "model": model, **body})


async def _taken(received: list[Data]) -> Data:
    """The file, taken out of ``received`` so that only the pipeline holds it (and frees it
    once decoded)."""
    return received.pop()


async def _upload(request: Request, service: Service) -> Data:
    """The uploaded file: the body, or the view of its ``file`` part."""
    settings = service.settings
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
    body = await read_limited(
        request.stream(),
        settings.max_upload_bytes,
        settings.body_timeout_s,
        settings.min_body_rate_bytes_s,
        settings.body_rate_grace_s,
    )
    return upload_bytes(body, content_type)


async def model_info(request: Request) -> Response:
    service = service_of(request)
    if not authorized(request, service):
        return http_error(401, "unauthorized", "a valid access token is required")
    return JSONResponse(service.model_public())


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    if service_of(request).ready:
        return PlainTextResponse("ready\n")
    return PlainTextResponse("not ready\n", status_code=503)


# Headers a proxy adds: a request carrying one came through the edge, never from a scraper.
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


async def metrics(request: Request) -> Response:
    """Only for scrapers on ``EMOSTREAM_METRICS_NETWORKS``, asking directly (not proxied)."""
    service = service_of(request)
    peer = request.client.host if request.client else None
    proxied = any(name in request.headers for name in FORWARDING_HEADERS)
    if proxied or not address_in(peer, service.settings.metrics_networks):
        return http_error(404, "not_found", "no such endpoint")
    body = service.metrics.exposition()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
