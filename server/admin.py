"""``POST /admin/model``: serve another model directory without a restart."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from classifier.model import ModelError
from server.access import address_in, bearer_token, token_matches
from server.connection import http_error, service_of
from server.upload import UploadError, read_limited

log = logging.getLogger(__name__)

ADMIN_BODY_BYTES = 64 * 1024


async def switch_model(request: Request) -> Response:
    """Body ``{"model_dir": "..."}``, or empty for the configured directory."""
    service = service_of(request)
    peer = request.client.host if request.client else None
    if not address_in(peer, service.settings.admin_networks):
        # As if there were no such route: the public side learns nothing of it.
        return http_error(404, "not_found", "no such endpoint")
    admin = service.settings.admin_token
    if admin is None:
        return http_error(
            403, "forbidden", "admin endpoints are disabled: set EMOSTREAM_ADMIN_TOKEN"
        )
    if not token_matches(admin, bearer_token(request.headers)):
        return http_error(401, "unauthorized", "a valid admin token is required (Bearer)")
    try:
        body = await read_limited(
            request.stream(), ADMIN_BODY_BYTES, service.settings.body_timeout_s
        )
    except UploadError as exc:
        return http_error(exc.status, exc.code, str(exc))
    except ClientDisconnect:
        return Response(status_code=400)
    target: Path | None = None
    if body.strip():
        try:
            target = _model_dir_from(body)
        except ValueError as exc:
            return http_error(400, "bad_request", str(exc))
    try:
        await service.switch_model(target)
    except ModelError as exc:
        log.warning("model switch refused: %s", exc)
        return http_error(422, "bad_model", f"{exc.public}; still serving the previous model")
    return JSONResponse({"model": service.model_public()})


def _model_dir_from(body: bytearray) -> Path:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model_dir"), str):
        raise ValueError('body must be {"model_dir": "<path>"}')
    return Path(data["model_dir"])
