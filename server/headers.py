"""Security headers on every HTTP response, for deployments without Caddy in front.

Caddy sets the same headers (caddy/Caddyfile) and its values replace these; on Kubernetes
the Ingress passes these through, so the page gets the same policy there. HSTS is left to
the TLS-terminating edge: over plain HTTP a browser ignores it.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# As in the Caddyfile; connect-src names the page's own ws:/wss: origin as well as 'self',
# for browsers that do not yet count WebSockets to the own host as 'self'.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'{sockets}; worker-src 'self'; manifest-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "permissions-policy": "microphone=(self), camera=(), geolocation=(), payment=(), usb=()",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
# A Host header that may be quoted into the policy: a name or address and a port.
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def content_security_policy(host: str | None) -> str:
    sockets = f" ws://{host} wss://{host}" if host and _PLAIN_HOST.fullmatch(host) else ""
    return CONTENT_SECURITY_POLICY.format(sockets=sockets)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        policy = content_security_policy(Headers(scope=scope).get("host"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers["content-security-policy"] = policy
            await send(message)

        await self._app(scope, receive, send_with_headers)
