"""uvicorn's protocols with what facing slow or hostile clients needs.

HTTP: a request's headers must arrive within a deadline (uvicorn has none; a connection
that sends nothing, or headers byte by byte, would be held forever).

WebSocket: the app may abort a connection, pongs are not queued for a client that does
not read, and what one read of the socket brings is parsed a part at a time.

ASGI has no way to drop a connection without a close handshake, and a close handshake
cannot finish with a client that does not read (uvicorn would hold its socket until the
send buffer drained, which it never does). The protocol puts an abort callable in the
connection scope's extensions; ``abort_transport`` calls it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

log = logging.getLogger(__name__)

ABORT_EXTENSION = "emostream.transport.abort"
# One read of the socket brings up to 256 KiB, which as 2-byte frames is some 30 000
# messages: parsed at once, they would hold up every other connection for a few hundred
# ms. The protocol parses this much at a time, the next part once the app has taken every
# message parsed before, or on the loop's next iteration when the part held no message
# (reading stays paused meanwhile).
PARSE_BYTES = 4096
# After the server's close frame, what the client still sends is parsed only to find its
# close reply, and discarded. A well-behaved client sends little before it sees the close;
# a flooder past this much is dropped without waiting for its reply (a 256 KiB read of
# 2-byte frames is some 30 000 frames to parse for nothing).
DISCARD_BYTES = 256 * 1024
# A client that goes leaves what it sent before to the app, parsed at once when the
# connection is lost: up to this many messages (a part's worth more at most). A flooder
# that resets its connection would leave some 30 000 tiny frames, the rest is dropped.
LAST_MESSAGES = 2048


def abort_transport(scope: MutableMapping[str, Any]) -> bool:
    """Drop the connection at once (the peer sees a reset); False when the server cannot."""
    abort: Callable[[], None] | None = scope.get("extensions", {}).get(ABORT_EXTENSION)
    if abort is None:
        return False
    abort()
    return True


class WebSocketProtocol(WebSocketsSansIOProtocol):
    _unparsed: bytearray | None = None
    _next_part: asyncio.Handle | None = None
    _discarded = 0  # bytes received after the server's close frame
    _app_closed = False  # the app asked for the close (not the protocol on its own)

    def data_received(self, data: bytes) -> None:
        if self.close_sent:
            self._discarded += len(data)
            if self._discarded > DISCARD_BYTES:
                log.debug(
                    "dropped a connection that sent %d bytes after the close", self._discarded
                )
                self._abort()
                return
        if not self._unparsed and len(data) <= PARSE_BYTES:
            super().data_received(data)
            return
        if self._unparsed is None:
            self._unparsed = bytearray()
        self._unparsed += data
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        self._parse_some()
        self._resume_when_done()

    def _parse_some(self, everything: bool = False) -> None:
        """Parse one part of what was read (``everything``: all of it). The next part is
        parsed once the app has taken the messages of this one or, when it held none (a
        part of a large frame, pings, anything sent after the close, which is discarded),
        on the loop's next iteration: one connection's bytes never hold the loop for more
        than a part."""
        unparsed = self._unparsed
        while unparsed and (everything or not self._app_has_messages()):
            if self.conn.parser_exc is not None or self.transport.is_closing():
                unparsed.clear()  # uvicorn has answered the fault and is closing
                return
            if everything and self.queue.qsize() >= LAST_MESSAGES:
                unparsed.clear()
                return
            part = bytes(unparsed[:PARSE_BYTES])
            del unparsed[:PARSE_BYTES]  # from the front of a bytearray: no copy of the rest
            super().data_received(part)
            if not everything:
                break
        waiting = unparsed and not everything and self._next_part is None
        if waiting and not self._app_has_messages():
            self._next_part = self.loop.call_soon(self._parse_next)

    def _app_has_messages(self) -> bool:
        """Whether parsed messages wait for the app. After the close nothing does: what the
        client sends is discarded (only the disconnect is queued, which the app may never
        take), and reading goes on until its close reply."""
        return not self.close_sent and not self.queue.empty()

    def _parse_next(self) -> None:
        self._next_part = None
        self._parse_some()
        self._resume_when_done()

    def _resume_when_done(self) -> None:
        """Read on once everything read is parsed and every message taken (uvicorn's rule,
        with the unparsed bytes counted as waiting)."""
        if self.read_paused and not self._app_has_messages() and not self._unparsed:
            self.read_paused = False
            self.transport.resume_reading()

    async def receive(self) -> ASGIReceiveEvent:
        message = await self.queue.get()
        if self.queue.empty():
            self._parse_some()
        self._resume_when_done()
        return message

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close":
            self._app_closed = True
        elif self.close_sent and not self._app_closed:
            # The protocol closed the connection itself (a frame past ws_max_size, a ping
            # timeout, an abort) and connection_lost has not run yet: to the app, the
            # client is gone, as it will be once it has (uvicorn would raise RuntimeError).
            raise ClientDisconnected()
        await super().send(message)
        if self.close_sent:  # messages are discarded now: look for the peer's close frame
            self._parse_some()
            self._resume_when_done()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._next_part is not None:
            self._next_part.cancel()
            self._next_part = None
        self._parse_some(everything=True)  # what the client sent before it went comes first
        super().connection_lost(exc)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the upgrade was refused
        if scope is not None:
            # The app's task is created but has not run: it sees the extension from its start.
            scope["extensions"][ABORT_EXTENSION] = self._abort

    def _abort(self) -> None:
        self.stop_keepalive()
        self.close_sent = True
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self.transport.abort()

    def handle_ping(self) -> None:
        # websockets has queued the pong. A client whose data we cannot send (the transport
        # is paused above its high-water mark) does not get it: pongs must not grow the send
        # buffer of a client that sends pings and never reads.
        output = self.conn.data_to_send()
        if self.writable.is_set():
            self.transport.write(b"".join(output))


class HttpProtocol(H11Protocol):
    """Closes a connection whose request headers have not all arrived ``header_timeout_s``
    after it opened or after its previous response (``http_protocol`` sets the value)."""

    header_timeout_s = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._arm_header_timer()  # waiting for the next request's headers
        headers = self.headers
        super().data_received(data)
        if self.headers is not headers:  # a request's headers are complete
            self._cancel_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        log.debug("closed a connection: no request headers within %g s", self.header_timeout_s)
        self.transport.close()


def http_protocol(header_timeout_s: float) -> type[HttpProtocol]:
    return type("HttpProtocol", (HttpProtocol,), {"header_timeout_s": header_timeout_s})
