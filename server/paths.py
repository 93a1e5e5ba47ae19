"""Refuses request paths that are not in normal form, before any other check reads them.

Every check on a path (which files are the page's, which paths skip the host check, which
are the admin's) compares the path as sent. A path that a file server or a proxy would
normalise into another one (``//package.json``, ``/x/../package.json``,
``/%2Fpackage-lock.json``, ``/healthz/../index.html``) could pass a check as one path and
be served as the other, so such paths are refused outright: no client of this service
sends them.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from server.connection import http_error
from server.protocol import CLOSE_POLICY

# Percent-encoded slash or backslash: one path segment that a later decoding splits in two.
_ENCODED_SEPARATOR = re.compile(rb"%(2f|5c)", re.IGNORECASE)


def path_problem(path: str, raw_path: bytes | None = None) -> str | None:
    """Why ``path`` (decoded; ``raw_path`` as sent) is not in normal form, else None."""
    if not path.startswith("/"):
        return "does not start with '/'"
    if "\\" in path or "\x00" in path:
        return "holds a backslash or NUL"
    if raw_path is not None and _ENCODED_SEPARATOR.search(raw_path):
        return "holds an encoded '/' or '\\'"
    if path == "/":
        return None
    for segment in path[1:].split("/"):
        if segment in ("", ".", ".."):
            return "holds an empty, '.' or '..' segment"
    return None


class PathCheck:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            problem = path_problem(scope["path"], scope.get("raw_path"))
            if problem is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": CLOSE_POLICY})
                    return
                shown = scope["path"][:100]
                message = f"request path {shown!r} {problem}; send it in normal form"
                await http_error(400, "bad_request", message)(scope, receive, send)
                return
        await self._app(scope, receive, send)
