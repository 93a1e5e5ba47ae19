"""Each server limit hit over a real socket, while a well-behaved stream keeps its results.

The server runs as `emostream serve` in a child process, configured by EMOSTREAM_*
variables, exactly as in the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from bench.processes import ServerProcess
from server.runner import FINAL_GRACE_S
from server.settings import Settings
from tests.deploy.streams import FRAME_BYTES, Message, Stream, refused, utterance_pcm
from tests.rawws import frame, open_raw, reset_within
from tests.speech import silence, to_pcm16

pytestmark = pytest.mark.slow

CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN = 1000, 1008, 1009, 1013
MAX_FRAME_BYTES = 4096
IDLE_TIMEOUT_MS = 1500
MAX_STREAM_MS = 20_000
RSS_GROWTH_BOUND_BYTES = 200 * 1024 * 1024

LIMITS = {
    "max_connections": "50",
    "max_connections_per_ip": "2",
    "trusted_proxies": "127.0.0.1/32",
    "max_frame_bytes": str(MAX_FRAME_BYTES),
    "idle_timeout_ms": str(IDLE_TIMEOUT_MS),
    "max_stream_ms": str(MAX_STREAM_MS),
    "workers": "1",
    # well under the default (5000), so that a flood on a loaded machine is surely past it
    "max_frames_per_s": "1000",
}


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tiny_model_dir, LIMITS)
    yield proc
    proc.stop()


def forwarded(ip: str) -> dict[str, object]:
    return {"additional_headers": {"X-Forwarded-For": ip}}


async def with_good_stream(url: str, client_ip: str, attack: Callable[[], object]) -> Stream:
    """One utterance, the attack, a second utterance; the finished well-behaved stream."""
    good = await Stream.open(url, **forwarded(client_ip))
    await good.send_audio(utterance_pcm())
    await good.wait_for("result", 1)
    # Like a live microphone, the well-behaved stream keeps sending (silence) during the attack,
    # so its idle timeout does not depend on how long the attack takes on a loaded machine.
    keep_talking = asyncio.create_task(good.send_audio(to_pcm16(silence(60.0)), real_time=True))
    try:
        await attack()  # type: ignore[misc]
    finally:
        keep_talking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keep_talking
    await good.send_audio(utterance_pcm())
    await good.finish()
    return good


def assert_unharmed(good: Stream) -> None:
    assert [m["segment"] for m in good.of_type("result")] == [0, 1], good.messages
    assert [m["segments"] for m in good.of_type("end")] == [2]
    assert good.ws.close_code == CLOSE_NORMAL


def error_codes(messages: list[Message]) -> list[object]:
    return [m["code"] for m in messages if m.get("type") == "error"]


# Connection caps


def test_connection_flood_beyond_the_cap_is_refused_busy(
    start_server: Callable[..., ServerProcess],
) -> None:
    cap = 3
    server = start_server({**LIMITS, "max_connections": str(cap), "max_connections_per_ip": "100"})
    outcomes: list[tuple[str, int | None]] = []

    async def flood() -> None:
        streams = await asyncio.gather(
            *(Stream.open(server.ws_url, **forwarded(f"198.51.100.{i}")) for i in range(12))
        )
        for stream in streams:
            first = (await stream.wait_for("ready")) or stream.messages
            if first and first[0]["type"] == "ready":
                outcomes.append(("ready", None))
            else:
                code = await stream.closed_code()
                outcomes.append((str(error_codes(stream.messages)), code))
        for stream in streams:
            await stream.abort()

    good = asyncio.run(with_good_stream(server.ws_url, "192.0.2.1", flood))

    assert outcomes.count(("ready", None)) == cap - 1
    assert outcomes.count((str(["busy"]), CLOSE_TRY_AGAIN)) == 12 - (cap - 1)
    assert_unharmed(good)
    assert server.alive()


def test_per_ip_limit_counts_the_forwarded_address_from_a_trusted_proxy(
    server: ServerProcess,
) -> None:
    async def scenario() -> tuple[list[str], list[Message], int | None]:
        held = [await Stream.open(server.ws_url, **forwarded("203.0.113.7")) for _ in range(2)]
        first = [(await s.wait_for("ready"))[0]["type"] for s in held]
        messages, code = await refused(server.ws_url, **forwarded("203.0.113.7"))
        other = await Stream.open(server.ws_url, **forwarded("203.0.113.8"))
        first.append((await other.wait_for("ready"))[0]["type"])
        for stream in [*held, other]:
            await stream.abort()
        return first, messages, code

    accepted, messages, code = asyncio.run(scenario())
    assert accepted == ["ready", "ready", "ready"]
    assert error_codes(messages) == ["busy"]
    assert "203.0.113.7" in str(messages[0]["message"])
    assert code == CLOSE_TRY_AGAIN


def test_forwarded_address_from_an_untrusted_peer_is_ignored(server: ServerProcess) -> None:
    # 127.0.0.2 is a loopback address the server does not trust as a proxy: its
    # X-Forwarded-For headers must not let one client pose as many.
    untrusted = {"local_addr": ("127.0.0.2", 0)}

    async def scenario() -> tuple[list[Message], int | None]:
        held = [
            await Stream.open(server.ws_url, **untrusted, **forwarded(f"203.0.113.{20 + i}"))
            for i in range(2)
        ]
        for stream in held:
            await stream.wait_for("ready")
        result = await refused(server.ws_url, **untrusted, **forwarded("203.0.113.30"))
        for stream in held:
            await stream.abort()
        return result

    messages, code = asyncio.run(scenario())
    assert error_codes(messages) == ["busy"]
    assert "127.0.0.2" in str(messages[0]["message"])
    assert code == CLOSE_TRY_AGAIN


# Frames


def test_oversized_frames_close_1009(server: ServerProcess) -> None:
    closes: dict[str, tuple[list[object], int | None]] = {}

    async def oversized() -> None:
        for name, size in (("just over", MAX_FRAME_BYTES + 2), ("huge", 1024 * 1024)):
            bad = await Stream.open(server.ws_url, **forwarded("203.0.113.40"))
            await bad.wait_for("ready")
            await bad.ws.send(bytes(size))
            code = await bad.closed_code()
            closes[name] = (error_codes(bad.messages), code)

    good = asyncio.run(with_good_stream(server.ws_url, "192.0.2.2", oversized))

    assert closes["just over"] == (["bad_frame"], CLOSE_TOO_BIG)
    # Far over the limit the WebSocket layer refuses the frame before the app sees it.
    assert closes["huge"][1] == CLOSE_TOO_BIG
    assert_unharmed(good)


def test_partial_sample_frame_is_dropped_and_the_stream_goes_on(server: ServerProcess) -> None:
    async def scenario() -> Stream:
        stream = await Stream.open(server.ws_url, **forwarded("203.0.113.41"))
        await stream.ws.send(bytes(FRAME_BYTES + 1))
        await stream.wait_for("error")
        await stream.send_audio(utterance_pcm())
        await stream.finish()
        return stream

    stream = asyncio.run(scenario())
    assert error_codes(stream.messages) == ["bad_frame"]
    assert len(stream.of_type("result")) == 1
    assert stream.ws.close_code == CLOSE_NORMAL


def test_flood_of_tiny_frames_is_cut_off_without_harm(server: ServerProcess) -> None:
    frames = 20_000
    flooded: list[Stream] = []

    async def tiny_frames() -> None:
        flood = await Stream.open(server.ws_url, **forwarded("203.0.113.50"))
        flooded.append(flood)
        with contextlib.suppress(websockets.ConnectionClosed):
            await flood.send_audio(bytes(2 * frames), frame_bytes=2)  # one sample per frame
        await flood.closed_code()

    good = asyncio.run(with_good_stream(server.ws_url, "192.0.2.3", tiny_frames))

    (flood,) = flooded
    errors = flood.of_type("error")
    assert [e["code"] for e in errors] == ["limit"]
    assert "max_frames_per_s 1000" in str(errors[0]["message"])
    assert flood.ws.close_code == CLOSE_POLICY
    assert_unharmed(good)
    assert server.alive()


# Time limits


def test_idle_client_is_closed_with_limit(server: ServerProcess) -> None:
    async def scenario() -> tuple[Stream, Stream]:
        good = await Stream.open(server.ws_url, **forwarded("192.0.2.4"))
        sleeper = await Stream.open(server.ws_url, **forwarded("203.0.113.60"))
        await sleeper.send_audio(to_pcm16(silence(0.2)))  # then nothing at all
        # The well-behaved client talks like a microphone for longer than the timeout.
        await good.send_audio(utterance_pcm(), real_time=True)
        await sleeper.closed_code()
        await good.finish()
        return good, sleeper

    good, sleeper = asyncio.run(scenario())
    assert error_codes(sleeper.messages) == ["limit"]
    assert str(IDLE_TIMEOUT_MS) in str(sleeper.of_type("error")[0]["message"])
    assert sleeper.ws.close_code == CLOSE_POLICY
    assert len(good.of_type("result")) == 1
    assert good.ws.close_code == CLOSE_NORMAL


def test_stream_longer_than_max_stream_ms_is_closed_with_limit(server: ServerProcess) -> None:
    async def too_long() -> tuple[list[object], int | None]:
        stream = await Stream.open(server.ws_url, **forwarded("203.0.113.61"))
        audio = to_pcm16(silence(MAX_STREAM_MS / 1000 + 5))
        with contextlib.suppress(websockets.ConnectionClosed):
            await stream.send_audio(audio)  # the server may close before all of it is sent
        code = await stream.closed_code()
        return error_codes(stream.messages), code

    assert asyncio.run(too_long()) == (["limit"], CLOSE_POLICY)


def silent_peer(port: int, client_ip: str) -> tuple[list[Opcode], int | None]:
    """Open a stream, then read without ever answering: (frames received, close code).

    A sans-I/O protocol object parses what arrives; what it would send back (the
    pongs) is dropped, as from a peer that vanished without closing.
    """
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/v1/stream"))
    request = protocol.connect()
    request.headers["X-Forwarded-For"] = client_ip
    protocol.send_request(request)
    received: list[Opcode] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for data in protocol.data_to_send():
            sock.sendall(data)
        while data := sock.recv(65536):  # until the server closes the connection
            protocol.receive_data(data)
            received += [e.opcode for e in protocol.events_received() if isinstance(e, Frame)]
    protocol.receive_eof()
    return received, protocol.close_code


def test_peer_that_stops_answering_pings_is_dropped(
    start_server: Callable[..., ServerProcess],
) -> None:
    keepalive = {
        "ws_ping_interval_s": "0.5",
        "ws_ping_timeout_s": "0.5",
        "idle_timeout_ms": "60000",
    }
    server = start_server({**LIMITS, **keepalive})

    received, code = silent_peer(server.port, "203.0.113.70")

    assert Opcode.PING in received, received
    assert code == 1011  # keepalive ping timeout (the idle timeout would be 1008)
    assert server.alive()


# Faster than real time


def test_faster_than_real_time_sender_keeps_memory_bounded(
    start_server: Callable[..., ServerProcess],
) -> None:
    # Not paced, nor cut off for its rate of frames: as fast as the server can read.
    unpaced = {"max_stream_speed": "10000", "max_frames_per_s": "1000000"}
    server = start_server({"workers": "1", "max_connections_per_ip": "100", **unpaced})
    process = psutil.Process(server.pid)
    utterances = 120  # about 6.5 minutes of audio, sent as fast as the server reads it
    peak_rss: list[int] = []

    async def warm_up() -> None:
        stream = await Stream.open(server.ws_url)
        await stream.send_audio(utterance_pcm())
        await stream.finish()

    async def flood() -> Stream:
        stream = await Stream.open(server.ws_url)
        for _ in range(utterances):
            await stream.send_audio(utterance_pcm())
            peak_rss.append(process.memory_info().rss)
        await stream.finish()
        return stream

    asyncio.run(warm_up())
    baseline = process.memory_info().rss
    fast = asyncio.run(flood())

    outcomes = fast.of_type("result") + fast.of_type("skipped")
    assert sorted(m["segment"] for m in outcomes) == list(range(utterances))
    assert fast.ws.close_code == CLOSE_NORMAL
    assert max(peak_rss) - baseline < RSS_GROWTH_BOUND_BYTES, (baseline, max(peak_rss))
    assert server.alive()


# Graceful shutdown


def test_shutdown_finishes_the_utterance_then_closes_1013(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server({"workers": "1", "shutdown_timeout_s": "10"})
    speech = utterance_pcm()
    mid_utterance = speech[: len(speech) * 2 // 3 // 2 * 2]

    async def scenario() -> Stream:
        stream = await Stream.open(server.ws_url)
        await stream.send_audio(mid_utterance)
        await stream.wait_for("speech_start")
        server.proc.send_signal(signal.SIGTERM)
        await stream.closed_code()
        return stream

    stream = asyncio.run(scenario())
    kinds = [m["type"] for m in stream.messages]
    assert kinds[-2:] == ["result", "error"], json.dumps(stream.messages)
    assert error_codes(stream.messages) == ["busy"]
    assert stream.ws.close_code == CLOSE_TRY_AGAIN
    assert server.proc.wait(timeout=30) == 0  # a clean stop, not a death by signal


def test_sigterm_with_a_stuck_session_exits_within_the_documented_stop_time(
    start_server: Callable[..., ServerProcess],
) -> None:
    # Default drain and idle timeout: the stuck session (its client never reads, so its
    # writer waits on a full socket) outlives the drain, and uvicorn's grace must be short.
    server = start_server({"workers": "1"})
    settings = Settings()
    budget_s = settings.shutdown_timeout_s + FINAL_GRACE_S
    sock = open_raw(server.http_url)
    try:
        # Junk frames until the server closes the session (max_bad_messages), and then some,
        # but far less than the 256 KiB after its close at which it would reset the
        # connection (a flooder that goes on writing): its close handshake then waits on a
        # client that never answers.
        sock.sendall(frame(0x2, b"\x01") * 512 * 16)
        reset_at = reset_within(sock, 4.0)
        assert reset_at is None  # still stuck: the idle timeout (30 s) has not passed
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=60)
        stopped_s = time.monotonic() - started
    finally:
        sock.close()
    assert code == 0
    assert stopped_s < budget_s + 3, f"stopped in {stopped_s:.1f} s, budget {budget_s} s"
