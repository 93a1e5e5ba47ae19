"""The reference client's reconnecting mode (``stream_pcm16(reconnect=...)``, ``emostream
stream --reconnect``) against scripted WebSocket servers, friendly and hostile.

The failover through Caddy with real servers is in tests/deploy/test_failover.py.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.sync.server import ServerConnection as SyncConnection
from websockets.sync.server import serve as sync_serve

import client.websocket
from client.websocket import Reconnect, ServerMessageError, StreamReport, stream_pcm16
from emostream.cli import main
from tests.speech import wav_bytes

RATE = 16000
FAST = Reconnect(initial_s=0.01, max_s=0.02, max_attempts=3, max_reconnects=5)

Handler = Callable[[ServerConnection], Awaitable[None]]


def recording(seconds: float = 2.0) -> npt.NDArray[np.int16]:
    return (np.arange(int(RATE * seconds)) % 2000 - 1000).astype("<i2")


def ready(session: str) -> str:
    return json.dumps({"type": "ready", "session": session})


async def finish_normally(ws: ServerConnection, received: list[bytes]) -> None:
    """Read audio until ``end``, answer it and close 1000."""
    async for message in ws:
        if isinstance(message, bytes):
            received.append(message)
        elif json.loads(message) == {"type": "end"}:
            audio_ms = sum(len(m) for m in received) // 2 * 1000 // RATE
            await ws.send(json.dumps({"type": "end", "segments": 0, "audio_ms": audio_ms}))
            await ws.close(1000)
            return


def run(
    handler: Handler,
    pcm: npt.NDArray[np.int16],
    *,
    process_request: Any = None,
    **kwargs: Any,
) -> StreamReport:
    async def go() -> StreamReport:
        async with serve(
            handler, "127.0.0.1", 0, max_queue=None, process_request=process_request
        ) as srv:
            port = next(iter(srv.sockets)).getsockname()[1]
            return await stream_pcm16(f"ws://127.0.0.1:{port}/v1/stream", pcm, RATE, **kwargs)

    return asyncio.run(asyncio.wait_for(go(), 30))


# Backoff


def test_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    policy = Reconnect(initial_s=0.5, max_s=8.0, factor=2.0, jitter=0.2)
    assert [policy.delay_s(n, lambda: 0.5) for n in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert policy.delay_s(0, lambda: 0.0) == pytest.approx(0.4)
    assert policy.delay_s(0, lambda: 1.0) == pytest.approx(0.6)
    assert policy.delay_s(10, lambda: 1.0) == 8.0  # jitter never passes the cap


@pytest.mark.parametrize(
    "bad",
    [
        {"initial_s": 0},
        {"initial_s": 2, "max_s": 1},
        {"factor": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"max_attempts": 0},
        {"max_reconnects": -1},
        {"ready_timeout_s": 0},
        {"initial_s": float("nan")},
    ],
)
def test_backoff_refuses_nonsense(bad: dict[str, float]) -> None:
    name = next(iter(bad)).split("_")[0]
    with pytest.raises(ValueError, match=name):
        Reconnect(**bad)  # type: ignore[arg-type]


# A stream the server ends early goes on where it stopped


def test_busy_close_continues_on_a_new_connection_from_the_unsent_audio() -> None:
    pcm = recording(2.0)
    per_connection: list[list[bytes]] = []

    async def handler(ws: ServerConnection) -> None:
        received: list[bytes] = []
        per_connection.append(received)
        if len(per_connection) == 1:
            await ws.send(ready("a"))
            while len(received) < 10:
                message = await ws.recv()
                assert isinstance(message, bytes)
                received.append(message)
            await ws.send(json.dumps({"type": "speech_start", "t_ms": 100}))
            await ws.send(json.dumps({"type": "error", "code": "busy", "message": "shutting down"}))
            await ws.close(1013)
        else:
            await ws.send(ready("b"))
            await ws.send(json.dumps({"type": "speech_start", "t_ms": 100}))
            await finish_normally(ws, received)

    retries: list[tuple[str, float]] = []
    report = run(
        handler,
        pcm,
        speed=4.0,
        reconnect=FAST,
        on_retry=lambda reason, delay: retries.append((reason, delay)),
    )
    assert report.gave_up is None and report.finished and report.close_code == 1000
    first, second = report.connections
    assert (first.session, first.close_code, second.session) == ("a", 1013, "b")
    assert [reason for reason, _ in retries] == ["closed 1013"]
    assert 0.008 <= retries[0][1] <= 0.012
    # The first server read a prefix; the second got everything from the first unsent sample.
    data = pcm.tobytes()
    got_first, got_second = b"".join(per_connection[0]), b"".join(per_connection[1])
    assert data.startswith(got_first)
    assert second.start_sample == first.sent_samples >= len(got_first) // 2
    assert got_second == data[second.start_sample * 2 :]
    assert first.sent_samples + second.sent_samples == len(pcm) == report.sent_samples
    # Times of the second connection are on the recording's timeline.
    starts = [m["t_ms"] for m in report.of_type("speech_start")]
    assert starts == [100, 100 + round(second.start_sample * 1000 / RATE)]
    assert [m["session"] for m in report.of_type("ready")] == ["a", "b"]


def test_a_reset_connection_reconnects() -> None:
    pcm = recording(1.0)
    calls = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal calls
        calls += 1
        await ws.send(ready(str(calls)))
        if calls == 1:
            await ws.recv()
            ws.transport.abort()  # a TCP reset, no close frame
            return
        await finish_normally(ws, [])

    report = run(handler, pcm, speed=0.0, reconnect=FAST)
    assert report.finished and report.gave_up is None
    assert [c.close_code for c in report.connections] == [1006, 1000]


def test_a_lost_connection_after_end_sends_end_again() -> None:
    pcm = recording(0.5)
    ends: list[int] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.send(ready(str(len(ends))))
        async for message in ws:
            if isinstance(message, str):
                ends.append(len(ends))
                if len(ends) == 1:
                    await ws.close(1013)  # drained while finishing
                    return
                await ws.send(json.dumps({"type": "end", "segments": 0, "audio_ms": 0}))
                await ws.close(1000)
                return

    report = run(handler, pcm, speed=0.0, reconnect=FAST)
    assert report.finished and ends == [0, 1]
    assert report.connections[1].sent_samples == 0


# Bounds: a server that never lets the stream finish cannot keep the client


def test_busy_at_the_door_repeatedly_gives_up_after_max_attempts() -> None:
    attempts = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await ws.send(json.dumps({"type": "error", "code": "busy", "message": "at the limit"}))
        await ws.close(1013)

    report = run(handler, recording(0.5), speed=0.0, reconnect=FAST)
    assert attempts == FAST.max_attempts == len(report.connections)
    assert report.gave_up is not None and not report.finished
    assert "3 attempts in a row" in report.gave_up
    assert "busy at the limit" in report.gave_up
    assert report.sent_samples == 0


def test_ready_then_busy_forever_is_bounded_by_max_reconnects() -> None:
    attempts = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        await ws.send(ready(str(attempts)))
        await ws.recv()
        await ws.close(1013)

    report = run(handler, recording(3.0), speed=0.0, reconnect=FAST)
    assert attempts == FAST.max_reconnects + 1 == len(report.connections)
    assert report.gave_up is not None and "at most 5 reconnections" in report.gave_up


def test_a_server_that_sends_no_ready_is_retried_then_given_up() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    policy = Reconnect(initial_s=0.01, max_s=0.01, max_attempts=2, ready_timeout_s=0.2)
    report = run(handler, recording(0.5), speed=0.0, reconnect=policy)
    assert len(report.connections) == 2
    assert report.gave_up is not None and "no ready within 0.2 s" in report.gave_up


def test_a_closed_port_is_retried_then_given_up() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        report = asyncio.run(
            stream_pcm16(f"ws://127.0.0.1:{port}/v1/stream", recording(0.2), RATE, reconnect=FAST)
        )
    assert len(report.connections) == FAST.max_attempts
    assert report.gave_up is not None and "cannot connect" in report.gave_up


def test_a_server_that_never_finishes_is_not_waited_for_forever() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(ready("x"))
        async for _ in ws:
            pass  # reads everything, answers nothing

    with pytest.raises(TimeoutError):
        run(handler, recording(0.2), speed=0.0, finish_timeout_s=0.3)


# Refusals and nonsense are not retried


def _refuse(status: http.HTTPStatus) -> Any:
    def process_request(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(status, "refused\n")

    return process_request


async def _never_called(ws: ServerConnection) -> None:
    raise AssertionError("the handshake was refused; no session may start")


@pytest.mark.parametrize("status", [http.HTTPStatus.UNAUTHORIZED, http.HTTPStatus.FORBIDDEN])
def test_a_refused_handshake_fails_at_once(status: http.HTTPStatus) -> None:
    with pytest.raises(websockets.InvalidStatus, match=str(status.value)):
        run(
            _never_called,
            recording(0.2),
            process_request=_refuse(status),
            reconnect=FAST,
        )


def test_a_503_handshake_is_retried() -> None:
    handshakes = 0

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        nonlocal handshakes
        handshakes += 1
        if handshakes == 1:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "no upstream\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        await ws.send(ready("ok"))
        await finish_normally(ws, [])

    report = run(
        handler, recording(0.2), speed=0.0, process_request=process_request, reconnect=FAST
    )
    assert handshakes == 2 and report.finished
    assert report.connections[0].failure == "the server answered the handshake with HTTP 503"


@pytest.mark.parametrize(
    "garbage",
    ["not json", "[1, 2]", '{"no": "type"}', '{"type": 7}', b"\x00\x01binary"],
)
def test_a_malformed_message_fails_without_retrying(garbage: str | bytes) -> None:
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.send(ready("x"))
        await ws.send(garbage)
        await ws.wait_closed()

    with pytest.raises(ServerMessageError, match="the server sent a message"):
        run(handler, recording(1.0), speed=0.0, reconnect=FAST)
    assert connections == 1


def test_without_reconnect_a_busy_close_ends_the_stream() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(ready("x"))
        await ws.recv()
        await ws.close(1013)

    report = run(handler, recording(1.0), speed=0.0)
    assert report.close_code == 1013 and len(report.connections) == 1
    assert report.gave_up is None and not report.finished


# The command


def test_cli_reconnect_reports_giving_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav_bytes(np.zeros(RATE // 2, dtype=np.float32)))
    quick = functools.partial(Reconnect, initial_s=0.01, max_s=0.01, max_attempts=2)
    monkeypatch.setattr(client.websocket, "Reconnect", quick)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/v1/stream"
        code = main(["stream", str(wav), "--url", url, "--fast", "--reconnect"])
    err = capsys.readouterr().err
    assert code == 1
    assert "reconnecting in 0.0 s" in err
    assert "gave up reconnecting: 2 attempts in a row failed" in err


def test_cli_without_reconnect_fails_at_once_on_a_closed_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav_bytes(np.zeros(RATE // 2, dtype=np.float32)))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{sock.getsockname()[1]}/v1/stream"
        code = main(["stream", str(wav), "--url", url, "--fast"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot stream to" in err and "reconnecting" not in err


def test_cli_reconnect_goes_on_after_busy_and_prints_recording_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav_bytes(np.zeros(RATE, dtype=np.float32)))
    monkeypatch.setattr(
        client.websocket, "Reconnect", functools.partial(Reconnect, initial_s=0.01, max_s=0.01)
    )
    connections: list[int] = []

    def handler(ws: SyncConnection) -> None:
        connections.append(len(connections))
        ws.send(ready(str(len(connections))))
        if len(connections) == 1:
            for _ in range(5):
                ws.recv()
            ws.send(json.dumps({"type": "error", "code": "busy", "message": "stopping"}))
            ws.close(1013)
            return
        ws.send(json.dumps({"type": "speech_start", "t_ms": 10}))
        for message in ws:
            if isinstance(message, str):
                ws.send(json.dumps({"type": "end", "segments": 0, "audio_ms": 0}))
                ws.close(1000)
                return

    with sync_serve(handler, "127.0.0.1", 0, max_queue=None) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        url = f"ws://127.0.0.1:{srv.socket.getsockname()[1]}/v1/stream"
        code = main(["stream", str(wav), "--url", url, "--fast", "--reconnect", "--json"])
        srv.shutdown()
        thread.join(10)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert connections == [0, 1]
    assert "closed 1013; reconnecting in 0.0 s" in err
    printed = [json.loads(line) for line in out.splitlines()]
    assert [m["type"] for m in printed] == ["ready", "error", "ready", "speech_start", "end"]
    # the second connection began where the first stopped sending, at least 5 frames in
    assert printed[3]["t_ms"] >= 10 + 5 * 40
