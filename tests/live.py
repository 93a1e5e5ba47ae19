"""A real uvicorn server on a free loopback port, in a thread, for socket-level tests.

Import it as ``from tests.live import live_server``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from server.app import create_app
from server.runner import DrainingServer, uvicorn_config
from server.service import ClassifierLoader, Service
from server.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LiveServer:
    http_url: str
    ws_url: str
    service: Service
    server: DrainingServer


@contextmanager
def live_server(settings: Settings, loader: ClassifierLoader | None = None) -> Iterator[LiveServer]:
    app = create_app(settings, loader)
    port = free_port()
    server = DrainingServer(uvicorn_config(app, settings, "127.0.0.1", port), app.state.service)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(600):  # up to 30 s for the model to load
        if server.started:
            started.set()
            break
        thread.join(0.05)
        if not thread.is_alive():
            break
    if not started.is_set():
        server.should_exit = True
        thread.join(10)
        raise RuntimeError(f"server on port {port} did not start")
    try:
        yield LiveServer(
            f"http://127.0.0.1:{port}",
            f"ws://127.0.0.1:{port}/v1/stream",
            app.state.service,
            server,
        )
    finally:
        server.should_exit = True
        thread.join(30)
