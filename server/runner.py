"""Running the app under uvicorn with the settings' limits and a draining shutdown."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import sys
from typing import Any
from urllib.parse import unquote_plus

import uvicorn
from starlette.applications import Starlette

from server import heap
from server.app import create_app
from server.service import Service
from server.settings import Settings
from server.transport import WebSocketProtocol, http_protocol

log = logging.getLogger(__name__)

# After the drain (shutdown_timeout_s), what uvicorn gives requests still running before it
# cancels them: the whole stop takes at most shutdown_timeout_s + FINAL_GRACE_S (and the
# model's release), which compose's stop_grace_period and Kubernetes' grace period cover.
FINAL_GRACE_S = 2


class RedactSecrets(logging.Filter):
    """Hides the values of secret query parameters in uvicorn's request lines.

    A parameter is secret by its decoded name, as the app reads it: ``?%74oken=`` is a token.
    """

    _parameter = re.compile(r"([?&])([^=&\s\"?#]+)=([^&\s\"#]*)")
    _secret_names = frozenset({"token", "access_token"})

    def _redact(self, text: str) -> str:
        def hide(match: re.Match[str]) -> str:
            if unquote_plus(match.group(2)).lower() not in self._secret_names:
                return match.group(0)
            return f"{match.group(1)}{match.group(2)}=[redacted]"

        return self._parameter.sub(hide, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = self._redact(str(record.msg))
        return True


def _redact_uvicorn_logs() -> None:
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


def uvicorn_config(app: Starlette, settings: Settings, host: str, port: int) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http_protocol(settings.header_timeout_s),
        ws=WebSocketProtocol,
        # Compression would let a tiny wire frame become a full-size frame of PCM.
        ws_per_message_deflate=False,
        # Frames up to max_frame_bytes reach the session, which answers bad_frame and 1009 itself.
        ws_max_size=settings.max_frame_bytes + 4096,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        # Beyond the sessions' own caps, at most this many HTTP requests at once (then 503).
        limit_concurrency=settings.max_connections + settings.max_http_requests,
        proxy_headers=False,  # the app reads X-Forwarded-For itself, from trusted proxies only
        server_header=False,
        timeout_graceful_shutdown=FINAL_GRACE_S,
        log_level=settings.log_level,
        access_log=False,
    )
    _redact_uvicorn_logs()  # after uvicorn.Config, which (re)configures its loggers
    return config


class DrainingServer(uvicorn.Server):
    """Stops accepting, lets sessions finish their utterance and close 1013, then shuts down.

    SIGHUP re-reads the configured model directory (see docs/model-format.md).
    """

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Process-wide: this server is the process (docs/deployment.md, event loop).
        sys.setswitchinterval(self.service.settings.gil_switch_interval_ms / 1000)
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


def build(settings: Settings, host: str, port: int) -> DrainingServer:
    """What ``emostream serve`` runs: the heap tuned, then the app under a draining server."""
    # Before the model sessions start their threads (and with them glibc's arenas).
    tuned = heap.tune(settings.malloc_arena_max, settings.malloc_mmap_threshold_kb)
    app = create_app(settings)
    config = uvicorn_config(app, settings, host, port)  # configures the logs
    logging.getLogger("emostream").info("glibc heap: %s", heap.describe(tuned))
    return DrainingServer(config, app.state.service)
