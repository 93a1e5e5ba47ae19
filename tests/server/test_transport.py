"""Clients that do not read, over a real uvicorn socket: the session's delivery deadline and the
transport abort (server/session.py, server/transport.py), pongs under back-pressure."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import websockets

from server.settings import Settings
from tests.live import LiveServer, live_server
from tests.rawws import flood, frame, open_raw

IDLE_MS = 1000


@pytest.fixture
def server(tiny_model_dir: Path) -> Any:
    settings = Settings(
        model_dir=tiny_model_dir,
        idle_timeout_ms=IDLE_MS,
        max_connections=1,
        # the flood of partial samples below tests the delivery deadline, not this limit
        max_bad_messages=100_000,
    )
    with live_server(settings) as live:
        yield live


async def ready_type(url: str) -> str:
    async with websockets.connect(url) as ws:
        return str(json.loads(await ws.recv())["type"])


def test_a_client_that_stops_reading_is_dropped_and_its_slot_reused(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    sock = open_raw(server.http_url)
    try:
        # Every 1-byte frame is a partial sample, answered with a ~130-byte bad_frame error:
        # the replies pile up in the server's send buffer, then its outbox, then block it.
        one_byte = frame(0x2, b"\x01")
        with caplog.at_level(logging.INFO, logger="server.session"):
            started = time.monotonic()
            _, reset_at = flood(sock, one_byte * 512, seconds=20.0)
        assert reset_at is not None, "the server never dropped the client that does not read"
        # Filling the buffers takes the server a moment; then one idle timeout passes.
        assert reset_at - started < IDLE_MS / 1000 + 6
        assert server.service.limiter.total == 0
        assert any("dropped: the client took no message" in r.message for r in caplog.records)
    finally:
        sock.close()
    # The only connection slot (max_connections=1) is free again.
    assert asyncio.run(ready_type(server.ws_url)) == "ready"


def test_pongs_are_not_queued_for_a_client_that_does_not_read(tiny_model_dir: Path) -> None:
    # Pings are no messages: this client is idle, so give it longer than the flood takes.
    settings = Settings(model_dir=tiny_model_dir, idle_timeout_ms=30_000)
    with live_server(settings) as server, open_raw(server.http_url) as sock:
        # Pings with the largest control payload, never reading a pong: the server's send
        # buffer fills, and from then on pongs are dropped instead of queued without bound.
        sent, reset_at = flood(sock, frame(0x9, b"p" * 125) * 256, seconds=3.0)
        assert reset_at is None
        assert sent > 8 * 1024 * 1024, f"only {sent} bytes of pings went out"
        time.sleep(0.3)  # the server reads what is still in its receive buffer
        (protocol,) = server.server.server_state.connections
        buffered = protocol.transport.get_write_buffer_size()  # type: ignore[attr-defined]
        assert buffered < 256 * 1024, f"{buffered} bytes of pongs queued in the server"


def test_permessage_deflate_is_not_negotiated(server: LiveServer) -> None:
    sock = open_raw(server.http_url, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    sock.close()

    async def extensions() -> list[Any]:
        async with websockets.connect(server.ws_url, compression="deflate") as ws:
            return list(ws.protocol.extensions)

    assert asyncio.run(extensions()) == []
