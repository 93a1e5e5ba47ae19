"""The Starlette application: its routes and the lifespan that owns the model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from server import api, loop_lag
from server.admin import switch_model
from server.connection import HostCheck
from server.headers import SecurityHeaders
from server.paths import PathCheck
from server.service import ClassifierLoader, Service
from server.settings import Settings
from server.stream import stream
from server.weblib import library_file, missing_libraries, page_paths

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


class WebFiles:
    """The browser app's files at ``/``; an API path asked with the wrong method gets 405."""

    def __init__(self, files: StaticFiles, api: list[BaseRoute]) -> None:
        self._files = files
        self._page = page_paths(WEB_DIR)
        self._allowed = {r.path: sorted(r.methods or ()) for r in api if isinstance(r, Route)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] != "http":
            await self._files(scope, receive, send)  # StaticFiles refuses it
            return
        if path in self._page:
            await self._files(scope, receive, send)
            return
        library = library_file(WEB_DIR, path)
        allowed = self._allowed.get(path)
        if library is not None and library.is_file():
            response: Response = FileResponse(library)
        elif allowed is not None:
            headers = {"Allow": ", ".join(allowed)}
            response = PlainTextResponse("Method Not Allowed", 405, headers=headers)
        else:
            response = PlainTextResponse("Not Found", 404)
        await response(scope, receive, send)


def create_app(settings: Settings, loader: ClassifierLoader | None = None) -> Starlette:
    service = Service(settings, loader)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(service.start)
        probe = asyncio.create_task(loop_lag.watch(service.metrics.loop_lag_seconds))
        if settings.token is None:
            log.warning(
                "EMOSTREAM_TOKEN is not set: anyone who can reach this server may use /v1/*"
            )
        try:
            yield
        finally:
            probe.cancel()
            await service.drain()
            service.stop()

    routes: list[BaseRoute] = [
        WebSocketRoute("/v1/stream", stream),
        Route("/v1/classify", api.classify, methods=["POST"]),
        Route("/v1/model", api.model_info),
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route("/metrics", api.metrics),
        Route("/admin/model", switch_model, methods=["POST"]),
    ]
    if WEB_DIR.is_dir():
        for missing in missing_libraries(WEB_DIR):
            log.warning("web/node_modules/%s is missing: run scripts/setup.sh", missing)
        web = WebFiles(StaticFiles(directory=WEB_DIR, html=True), routes)
        routes.append(Mount("/", web, name="web"))
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(PathCheck),
        Middleware(HostCheck, hosts=settings.allowed_hosts),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.service = service
    return app
