"""uvicorn's WebSocket protocol with two additions: the app may abort a connection, and
pongs are not queued for a client that does not read.

ASGI has no way to drop a connection without a close handshake, and a close handshake
cannot finish with a client that does not read (uvicorn would hold its socket until the
send buffer drained, which it never does). The protocol puts an abort callable in the
connection scope's extensions; ``abort_transport`` calls it.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

ABORT_EXTENSION = "emostream.transport.abort"


def abort_transport(scope: MutableMapping[str, Any]) -> bool:
    """Drop the connection at once (the peer sees a reset); False when the server cannot."""
    abort: Callable[[], None] | None = scope.get("extensions", {}).get(ABORT_EXTENSION)
    if abort is None:
        return False
    abort()
    return True


class WebSocketProtocol(WebSocketsSansIOProtocol):
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
