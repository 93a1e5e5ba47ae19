"""What the deployment tests ask of Caddy in front of the server, as a plain HTTPS client."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any

# The Caddyfile's request_body max_size (26 MiB), just above the server's 25 MiB uploads.
CADDY_MAX_BODY_BYTES = 26 * 1024 * 1024


def declared_oversized_upload(port: int, tls: ssl.SSLContext) -> tuple[int, dict[str, Any]]:
    """POST /v1/classify declaring one byte over Caddy's limit and sending none of the body:
    the status and JSON body of the answer."""
    connection = http.client.HTTPSConnection("localhost", port, context=tls)
    try:
        connection.putrequest("POST", "/v1/classify")
        connection.putheader("Content-Type", "audio/wav")
        connection.putheader("Content-Length", str(CADDY_MAX_BODY_BYTES + 1))
        connection.endheaders()  # not one byte of the body follows
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()
