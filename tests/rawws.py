"""A WebSocket client by hand, for clients no library would be: ones that never read.

Import it as ``from tests.rawws import open_raw, frame, flood, reset_within``.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import struct
import time


def frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 §5.2) with a zero mask, so the payload is as is."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    else:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    return header + b"\0\0\0\0" + payload


def open_raw(http_url: str, headers: str = "") -> socket.socket:
    """A WebSocket opened by hand on a socket with a tiny receive buffer; reads only the 101."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    port = int(http_url.rsplit(":", 1)[1])
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: nothing past the handshake is read
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def flood(sock: socket.socket, data: bytes, seconds: float) -> tuple[int, float | None]:
    """Send ``data`` over and over for up to ``seconds``, never reading, until the peer resets
    the connection: the bytes sent and when the reset was seen (None if it was not)."""
    sock.setblocking(False)
    events = select.poll()
    events.register(sock, select.POLLOUT)
    sent, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        # POLLHUP: both directions are shut, which only a reset does while we keep ours open.
        if any(mask & (select.POLLHUP | select.POLLERR) for _, mask in events.poll(50)):
            return sent, time.monotonic()
        try:
            sent += sock.send(data)
        except BlockingIOError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return sent, time.monotonic()
    return sent, None


def reset_within(sock: socket.socket, seconds: float) -> float | None:
    """Watch ``sock`` for up to ``seconds``, sending and reading nothing: when the peer reset
    the connection, or None if it did not."""
    events = select.poll()
    events.register(sock, select.POLLOUT)
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if any(mask & (select.POLLHUP | select.POLLERR) for _, mask in events.poll(50)):
            return time.monotonic()
        time.sleep(0.05)
    return None
