"""Running the app under uvicorn with the settings' limits and a draining shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

import uvicorn
from starlette.applications import Starlette

from server.service import Service
from server.settings import Settings

log = logging.getLogger(__name__)


def uvicorn_config(app: Starlette, settings: Settings, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        # Frames up to max_frame_bytes reach the session, which answers bad_frame and 1009 itself.
        ws_max_size=settings.max_frame_bytes + 4096,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        proxy_headers=False,  # the app reads X-Forwarded-For itself, from trusted proxies only
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s) + 1,
        log_level=settings.log_level,
        access_log=False,
    )


class DrainingServer(uvicorn.Server):
    """Stops accepting, lets sessions finish their utterance and close 1013, then shuts down.

    SIGHUP re-reads the configured model directory (see docs/model-format.md).
    """

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._reload)
        except (RuntimeError, ValueError):  # not the main thread (tests run servers in threads)
            log.debug("SIGHUP reload not installed outside the main thread")

    def _reload(self) -> None:
        task = asyncio.ensure_future(self.service.switch_model())
        task.add_done_callback(_log_reload)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await self.service.drain()
        await super().shutdown(sockets)


def _log_reload(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("model reload refused: %s", task.exception())
