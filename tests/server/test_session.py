"""What the session takes for a departed client: only what a departed client raises."""

from __future__ import annotations

from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected
from uvicorn.protocols.utils import ClientDisconnected

from server.session import CLIENT_GONE


def test_a_departed_client_is_gone() -> None:
    for exc in (
        WebSocketDisconnect(1006),
        WebSocketDisconnected('Cannot call "send" once a close message has been sent.'),
        ClientDisconnected(),
        ConnectionResetError(),
    ):
        assert isinstance(exc, CLIENT_GONE), exc


def test_other_runtime_errors_are_faults_not_departures() -> None:
    assert not isinstance(RuntimeError("a bug in the session"), CLIENT_GONE)
    assert not isinstance(ValueError("bad"), CLIENT_GONE)
