"""What one read of the socket brings is parsed a part at a time (server/transport.py).

The protocol is driven directly, with a fake transport: a 256 KiB read of 2-byte frames
(about 30 000 messages) must never be parsed at once, reading stays paused until the app
has taken everything, and a read with no message in it does not stall the connection.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import uvicorn
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.server import ServerState

from server.transport import DISCARD_BYTES, LAST_MESSAGES, PARSE_BYTES, WebSocketProtocol
from tests.rawws import frame

HANDSHAKE = (
    b"GET /v1/stream HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
TINY = frame(0x2, b"\0\0")  # 8 bytes on the wire


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.written = bytearray()
        self.closed = False
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True
        self.aborted = True


class App:
    """Accepts, then takes messages one at a time, noting how many were waiting each time."""

    def __init__(self, until: int) -> None:
        self.until = until
        self.received = 0
        self.waiting: list[int] = []
        self.paused: list[bool] = []  # whether reading was paused, after each message taken
        self.protocol: WebSocketProtocol | None = None
        self.accepted = asyncio.Event()
        self.done = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        self.accepted.set()
        while self.received < self.until:
            message = await receive()
            assert message["type"] == "websocket.receive"
            assert self.protocol is not None
            self.waiting.append(self.protocol.queue.qsize())
            self.paused.append(self.protocol.transport.paused)  # type: ignore[attr-defined]
            self.received += 1
            await asyncio.sleep(0)
        self.done.set()
        await receive()  # the disconnect


async def connected(app: App) -> tuple[WebSocketProtocol, FakeTransport]:
    config = uvicorn.Config(
        app, ws=WebSocketProtocol, ws_per_message_deflate=False, log_level="error"
    )
    config.load()
    protocol = WebSocketProtocol(config, ServerState(), {})
    app.protocol = protocol
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    await asyncio.wait_for(app.accepted.wait(), 5)
    assert b"101 Switching Protocols" in transport.written
    return protocol, transport


def test_a_large_read_of_tiny_frames_is_parsed_a_part_at_a_time() -> None:
    count = 256 * 1024 // len(TINY)
    per_part = PARSE_BYTES // len(TINY)

    async def main() -> App:
        app = App(until=count)
        protocol, _ = await connected(app)
        protocol.data_received(TINY * count)
        assert protocol.queue.qsize() <= per_part  # not the whole read
        await asyncio.wait_for(app.done.wait(), 30)
        protocol.connection_lost(None)
        return app

    app = asyncio.run(main())
    assert app.received == count
    assert max(app.waiting) <= per_part  # never more than one part's messages waiting
    assert all(app.paused[:-1])  # reading stayed paused while any of the read was left
    assert app.paused[-1] is False  # and resumed once everything was taken


def test_a_large_read_without_messages_does_not_stall_reading() -> None:
    pings = frame(0x9, b"p" * 125) * 300  # 39 KiB of pings, no message for the app
    parts = -(-len(pings) // PARSE_BYTES)

    async def main() -> FakeTransport:
        app = App(until=1)
        protocol, transport = await connected(app)
        protocol.data_received(pings)
        # one part per loop iteration, reading paused until the last one
        for _ in range(parts - 1):
            assert transport.paused
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not transport.paused
        protocol.data_received(TINY)
        await asyncio.wait_for(app.done.wait(), 5)
        protocol.connection_lost(None)
        return transport

    transport = asyncio.run(main())
    assert transport.written.count(b"\x8a\x7d") == 300  # every ping answered


def test_what_the_client_sent_before_it_went_reaches_the_app() -> None:
    count = 2000

    async def main() -> App:
        app = App(until=count)
        protocol, _ = await connected(app)
        protocol.data_received(TINY * count)
        protocol.connection_lost(None)  # everything left is parsed before the disconnect
        await asyncio.wait_for(app.done.wait(), 5)
        return app

    assert asyncio.run(main()).received == count


def test_a_flooder_that_goes_leaves_a_bounded_number_of_messages() -> None:
    count = 256 * 1024 // len(TINY)  # a full read of 2-byte frames, then a reset

    async def main() -> tuple[App, WebSocketProtocol]:
        app = App(until=count)
        protocol, _ = await connected(app)
        protocol.data_received(TINY * count)
        protocol.connection_lost(ConnectionResetError())
        await asyncio.sleep(0)
        return app, protocol

    app, protocol = asyncio.run(main())
    left = protocol.queue.qsize() + app.received  # the messages, and the disconnect
    assert LAST_MESSAGES < left <= LAST_MESSAGES + PARSE_BYTES // len(TINY) + 1
    assert not protocol._unparsed


class Closer:
    """Accepts and closes at once (as a session ending with ``limit`` does)."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1008})
        self.closed.set()


async def closed_by_server() -> tuple[WebSocketProtocol, FakeTransport]:
    app = Closer()
    config = uvicorn.Config(
        app, ws=WebSocketProtocol, ws_per_message_deflate=False, log_level="error"
    )
    config.load()
    protocol = WebSocketProtocol(config, ServerState(), {})
    transport = FakeTransport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    await asyncio.wait_for(app.closed.wait(), 5)
    assert protocol.close_sent
    return protocol, transport


def test_what_comes_after_the_close_is_discarded_a_part_per_loop_iteration() -> None:
    # A flooder that has not seen the close yet: a full read of 2-byte frames, then its reply.
    flood = TINY * (128 * 1024 // len(TINY))
    parts = len(flood) // PARSE_BYTES
    reply = frame(0x8, (1008).to_bytes(2, "big"))

    async def main() -> tuple[list[int], FakeTransport, WebSocketProtocol]:
        protocol, transport = await closed_by_server()
        protocol.data_received(flood + reply)
        left = []
        for _ in range(parts + 2):
            left.append(len(protocol._unparsed or b""))
            await asyncio.sleep(0)
        return left, transport, protocol

    left, transport, protocol = asyncio.run(main())
    # each iteration of the loop parsed at most one part: never the whole read at once
    assert all(a - b <= PARSE_BYTES for a, b in itertools.pairwise(left))
    assert left[0] > len(flood) - PARSE_BYTES
    assert left[-1] == 0
    assert protocol.queue.qsize() <= 1  # discarded (at most the disconnect is queued)
    assert not transport.aborted  # its reply came within the allowance: a clean close
    assert protocol.conn.close_rcvd is not None and protocol.conn.close_rcvd.code == 1008


def test_a_client_flooding_past_the_close_is_dropped() -> None:
    async def main() -> FakeTransport:
        protocol, transport = await closed_by_server()
        read = TINY * (64 * 1024 // len(TINY))
        for _ in range(DISCARD_BYTES // len(read)):
            protocol.data_received(read)
            for _ in range(len(read) // PARSE_BYTES):
                await asyncio.sleep(0)
            assert not protocol._unparsed
        assert not transport.aborted  # up to the allowance, it is read
        protocol.data_received(read)
        return transport

    assert asyncio.run(main()).aborted


class Talker:
    """Accepts, then sends a message each time the test asks, noting what sending raised."""

    def __init__(self) -> None:
        self.accepted = asyncio.Event()
        self.go = asyncio.Event()
        self.raised: BaseException | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        self.accepted.set()
        await self.go.wait()
        try:
            await send({"type": "websocket.send", "text": "{}"})
        except Exception as exc:  # which one it was is the test's question
            self.raised = exc


def test_a_send_after_the_protocol_closed_on_its_own_is_a_client_gone() -> None:
    # A frame past ws_max_size: the parser fails and uvicorn closes (1009) by itself. The
    # frame is parsed a part per loop iteration, so the app may send before connection_lost.
    async def main() -> Talker:
        app = Talker()
        config = uvicorn.Config(
            app, ws=WebSocketProtocol, ws_per_message_deflate=False, ws_max_size=8192,
            log_level="error",
        )  # fmt: skip
        config.load()
        protocol = WebSocketProtocol(config, ServerState(), {})
        transport = FakeTransport()
        protocol.connection_made(transport)
        protocol.data_received(HANDSHAKE)
        await asyncio.wait_for(app.accepted.wait(), 5)
        protocol.data_received(frame(0x2, b"\0" * 16384))
        for _ in range(16384 // PARSE_BYTES + 1):
            await asyncio.sleep(0)
        assert protocol.close_sent and transport.closed  # the protocol closed it
        app.go.set()
        for _ in range(3):
            await asyncio.sleep(0)
        return app

    app = asyncio.run(main())
    assert isinstance(app.raised, ClientDisconnected)
