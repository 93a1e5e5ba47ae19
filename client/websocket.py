"""The reference WebSocket client: stream a recording, collect the messages (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
import random as _random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from pcm.format import (
    BYTES_PER_SAMPLE,
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
    PIPELINE_RATE_HZ,
    Encoding,
    to_int16,
)

Message = dict[str, Any]
_WS_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


@dataclass
class StreamReport:
    messages: list[Message] = field(default_factory=list)
    close_code: int | None = None  # of the last connection
    connections: list[Connection] = field(default_factory=list)
    sent_samples: int = 0
    finished: bool = False  # the server answered ``end``
    gave_up: str | None = None  # why reconnecting stopped before the stream finished

    def of_type(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def partials(self) -> list[Message]:
        """Provisional results (only when the stream asked with interim_ms), as they came."""
        return self.of_type("partial")

    @property
    def finals(self) -> list[Message]:
        """Each segment's one ``result`` or ``skipped``, in segment order."""
        return [m for m in self.messages if m.get("type") in ("result", "skipped")]


def load_pcm16(path: Path, channels: int = 1) -> tuple[npt.NDArray[np.int16], int]:
    """A recording as 16-bit PCM at a rate the protocol accepts: mono (mixed down), or with
    ``channels=2`` the two channels of a stereo file as a (frames, 2) array."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    if channels == 1:
        audio = audio.mean(axis=1)
    elif audio.shape[1] != channels:
        raise ValueError(
            f"{path} has {audio.shape[1]} channel(s); streaming with {channels} channels "
            f"needs a {channels}-channel file"
        )
    if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        audio, rate = soxr.resample(audio, rate, PIPELINE_RATE_HZ), PIPELINE_RATE_HZ
    return to_int16(audio), int(rate)


def stream_url(
    url: str,
    sample_rate: int,
    token: str | None = None,
    interim_ms: int = 0,
    encoding: Encoding = "pcm_s16le",
    channels: int = 1,
) -> str:
    """``url`` with this stream's query; http(s) becomes ws(s), other query parameters stay.

    ``interim_ms`` > 0 asks for partial results (0 adds nothing: the server sends none);
    ``channels`` other than 1 is sent as ``channels``."""
    parts = urlsplit(url)
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"stream URL must look like ws://host:port/v1/stream, got {url!r}")
    ours = {"sample_rate": str(sample_rate), "encoding": encoding}
    if token:
        ours["token"] = token
    if interim_ms:
        ours["interim_ms"] = str(interim_ms)
    if channels != 1:
        ours["channels"] = str(channels)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode([*ours.items(), *kept])))


class ServerMessageError(ValueError):
    """The server sent something the protocol does not allow; the stream is not retried."""


@dataclass(frozen=True)
class Reconnect:
    """How a stream reconnects after the server ended it early (``busy``/1013, a lost link).

    Delays grow from ``initial_s`` by ``factor`` up to ``max_s``, each moved by up to
    ±``jitter`` of itself. ``max_attempts`` bounds the attempts in a row that reach no
    ``ready`` (refused, reset, busy at the door); ``max_reconnects`` bounds the
    reconnections of one stream in all, so a server that accepts and then closes every
    stream at once cannot keep the client forever.
    """

    initial_s: float = 0.5
    max_s: float = 8.0
    factor: float = 2.0
    jitter: float = 0.2
    max_attempts: int = 6
    max_reconnects: int = 20
    ready_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {self.initial_s}, {self.max_s}")
        if not self.factor >= 1:
            raise ValueError(f"factor must be at least 1, got {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if self.max_attempts < 1 or self.max_reconnects < 0:
            raise ValueError("max_attempts must be >= 1 and max_reconnects >= 0")
        if not self.ready_timeout_s > 0:
            raise ValueError(f"ready_timeout_s must be positive, got {self.ready_timeout_s}")

    def delay_s(self, failures: int, random: Callable[[], float]) -> float:
        """The wait before the next attempt, after ``failures`` attempts in a row failed."""
        base = min(self.max_s, self.initial_s * self.factor**failures)
        return min(self.max_s, base * (1 + self.jitter * (2 * random() - 1)))


# Close codes after which reconnecting cannot help: done, or the stream itself is at fault.
_FINAL_CLOSE_CODES = frozenset({1000, 1002, 1003, 1007, 1008, 1009, 1010})
_TIME_FIELDS = ("start_ms", "end_ms", "t_ms")


@dataclass
class Connection:
    """One WebSocket connection of a stream: which part of the recording went over it."""

    start_sample: int
    sent_samples: int = 0
    session: str | None = None
    close_code: int | None = None
    failure: str | None = None  # why it ended without a ready, or was lost
    ready_at: float | None = None  # event-loop time of its ready
    closed_at: float | None = None  # event-loop time it ended

    @property
    def opened(self) -> bool:
        return self.session is not None


async def stream_pcm16(
    url: str,
    pcm: npt.NDArray[np.int16],
    sample_rate: int,
    *,
    speed: float = 1.0,
    frame_ms: int = 40,
    token: str | None = None,
    interim_ms: int = 0,
    on_message: Callable[[Message], None] | None = None,
    open_timeout_s: float = 10.0,
    finish_timeout_s: float = 60.0,
    reconnect: Reconnect | None = None,
    on_retry: Callable[[str, float], None] | None = None,
    random: Callable[[], float] = _random.random,
    tls: ssl.SSLContext | None = None,
) -> StreamReport:
    """Send ``pcm`` at ``speed`` × real time (0 = as fast as possible), then ``end``.

    ``pcm`` is mono, or a (frames, 2) array for a two-channel stream (``channels=2``);
    sample counts and offsets are then in sample frames.

    With ``reconnect``, a stream the server ends early (``busy``/1013, a reset, a failed
    open) continues on a new connection from the first sample not yet sent; audio is
    paced from the first connection's start, so what piled up while away goes at once.
    Times in the messages (``start_ms``, ``end_ms``, ``t_ms``) are moved onto the
    recording's timeline. Audio the server had not read when it closed is lost; the
    report's ``connections`` say what went over each. ``on_retry(reason, delay_s)`` is
    called before each wait. ``tls`` is the TLS context for ``wss://`` (default: the
    system's trust store). With ``interim_ms`` > 0 the server also sends ``partial``
    messages (``report.partials``); ``on_message`` sees them as they arrive.
    """
    report = StreamReport()
    frame = max(1, sample_rate * frame_ms // 1000)
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    target = stream_url(url, sample_rate, token, interim_ms, channels=channels)
    loop = asyncio.get_running_loop()
    started = loop.time()
    failures = 0
    while True:
        connection = Connection(start_sample=report.sent_samples)
        report.connections.append(connection)
        try:
            await _one_connection(
                target,
                pcm,
                sample_rate,
                frame,
                connection,
                report,
                pace=_Pace(started, sample_rate, speed),
                open_timeout_s=open_timeout_s,
                finish_timeout_s=finish_timeout_s,
                tls=tls,
                ready_timeout_s=reconnect.ready_timeout_s if reconnect else None,
                on_message=on_message,
            )
        except _Retryable as exc:
            if reconnect is None:
                raise exc.cause from None
            connection.failure = str(exc)
        finally:
            connection.closed_at = loop.time()
        report.close_code = connection.close_code
        if reconnect is None or (
            connection.failure is None
            and (connection.close_code in _FINAL_CLOSE_CODES or report.finished)
        ):
            return report
        failures = 0 if connection.opened else failures + 1
        if failures >= reconnect.max_attempts:
            report.gave_up = f"{failures} attempts in a row failed, the last: {connection.failure}"
            return report
        if len(report.connections) > reconnect.max_reconnects:
            report.gave_up = (
                f"the server ended the stream {len(report.connections)} times "
                f"(at most {reconnect.max_reconnects} reconnections); the last: "
                f"{connection.failure}"
            )
            return report
        delay_s = reconnect.delay_s(failures, random)
        if on_retry is not None:
            on_retry(connection.failure or f"closed {connection.close_code}", delay_s)
        await asyncio.sleep(delay_s)


class _Retryable(Exception):
    """A connection ended in a way that another connection may fix."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class _Pace:
    started: float
    sample_rate: int
    speed: float

    def due(self, sample: int) -> float:
        if self.speed <= 0:
            return self.started
        return self.started + sample / self.sample_rate / self.speed


async def _open(target: str, open_timeout_s: float, tls: ssl.SSLContext | None) -> ClientConnection:
    options: dict[str, Any] = {"open_timeout": open_timeout_s, "max_size": 2**20}
    if tls is not None:
        options["ssl"] = tls  # wss:// only; without it wss uses the system's trust store
    try:
        return await websockets.connect(target, **options)
    except InvalidStatus as exc:
        status = exc.response.status_code
        if 400 <= status < 500 and status not in (408, 429):
            raise  # refused for good: a token, an Origin, a wrong path
        raise _Retryable(f"the server answered the handshake with HTTP {status}", exc) from exc
    except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
        raise _Retryable(f"cannot connect: {exc or type(exc).__name__}", exc) from exc


def _parse(raw: str | bytes) -> Message:
    try:
        message = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServerMessageError(f"the server sent a message that is not JSON: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ServerMessageError(f"the server sent a message without a type: {str(raw)[:200]}")
    return message


def _on_timeline(message: Message, offset_ms: float) -> Message:
    if not offset_ms:
        return message
    moved = dict(message)
    for key in _TIME_FIELDS:
        if isinstance(moved.get(key), int | float) and not isinstance(moved[key], bool):
            moved[key] = round(moved[key] + offset_ms)
    return moved


def _receive(
    ws: ClientConnection,
    connection: Connection,
    report: StreamReport,
    on_message: Callable[[Message], None] | None,
    offset_ms: float = 0.0,
    ready: asyncio.Event | None = None,
) -> Callable[[], Coroutine[Any, Any, None]]:
    """The reader of one connection: every message into the report, in order (times
    moved onto the whole stream's timeline by ``offset_ms``)."""

    async def receive() -> None:
        async for raw in ws:
            message = _on_timeline(_parse(raw), offset_ms)
            if message["type"] == "ready":
                connection.session = str(message.get("session", ""))
                connection.ready_at = asyncio.get_running_loop().time()
                if ready is not None:
                    ready.set()
            elif message["type"] == "end":
                report.finished = True
            report.messages.append(message)
            if on_message is not None:
                on_message(message)

    return receive


async def _exchange(
    ws: ClientConnection,
    receive: Callable[[], Coroutine[Any, Any, None]],
    send: Callable[[asyncio.Task[None]], Awaitable[None]],
    connection: Connection,
    finish_timeout_s: float,
) -> None:
    """Send (given the reader's task) while reading, then read what the server still
    sends until it closes: at most finish_timeout_s (then TimeoutError). A server
    ``error`` that ends the stream is raised as ServerMessageError."""
    async with ws:
        receiver = asyncio.create_task(receive())
        try:
            await send(receiver)
        except websockets.ConnectionClosed:
            pass  # the server closed first; the receiver still reads what it sent before
        except BaseException:
            receiver.cancel()
            await asyncio.wait({receiver})
            raise
        await asyncio.wait({receiver}, timeout=finish_timeout_s)
        if not receiver.done():
            receiver.cancel()
            await asyncio.wait({receiver})
            raise TimeoutError(
                f"the server did not finish the stream within {finish_timeout_s:g} s"
            )
        error = None if receiver.cancelled() else receiver.exception()
        if isinstance(error, ServerMessageError):
            raise error
        connection.close_code = ws.close_code


async def _one_connection(
    target: str,
    pcm: npt.NDArray[np.int16],
    sample_rate: int,
    frame: int,
    connection: Connection,
    report: StreamReport,
    *,
    pace: _Pace,
    open_timeout_s: float,
    finish_timeout_s: float,
    tls: ssl.SSLContext | None,
    ready_timeout_s: float | None,
    on_message: Callable[[Message], None] | None,
) -> None:
    ws = await _open(target, open_timeout_s, tls)
    offset_ms = connection.start_sample * 1000 / sample_rate
    ready = asyncio.Event()
    if ready_timeout_s is None:
        ready.set()  # without reconnecting, audio goes out at once, as it always did

    async def send(receiver: asyncio.Task[None]) -> None:
        if ready_timeout_s is not None:
            await _wait_ready(ready, receiver, ready_timeout_s)
        if ready.is_set():
            await _send(ws, pcm, frame, pace, receiver, connection, report)

    receive = _receive(ws, connection, report, on_message, offset_ms, ready)
    try:
        await _exchange(ws, receive, send, connection, finish_timeout_s)
    except TimeoutError as exc:
        raise _Retryable(str(exc), exc) from None
    if ready_timeout_s is not None and not connection.opened:
        last = next((m for m in reversed(report.messages) if m["type"] == "error"), None)
        detail = f": {last.get('code')} {last.get('message')}" if last else ""
        raise _Retryable(f"closed {ws.close_code} before ready{detail}", ConnectionError())


async def _wait_ready(ready: asyncio.Event, receiver: asyncio.Task[None], timeout_s: float) -> None:
    waiter = asyncio.ensure_future(ready.wait())
    try:
        await asyncio.wait({waiter, receiver}, timeout=timeout_s, return_when="FIRST_COMPLETED")
    finally:
        waiter.cancel()
    if not ready.is_set() and not receiver.done():
        raise _Retryable(
            f"no ready within {timeout_s:g} s", TimeoutError("the server sent no ready")
        )


async def _send(
    ws: ClientConnection,
    pcm: npt.NDArray[np.int16],
    frame: int,
    pace: _Pace,
    receiver: asyncio.Task[None],
    connection: Connection,
    report: StreamReport,
) -> None:
    loop = asyncio.get_running_loop()
    for offset in range(report.sent_samples, len(pcm), frame):
        if receiver.done():  # the server closed the stream
            return
        await asyncio.sleep(max(0.0, pace.due(offset) - loop.time()))
        chunk = pcm[offset : offset + frame]
        await ws.send(chunk.tobytes())
        connection.sent_samples += len(chunk)
        report.sent_samples += len(chunk)
    if not receiver.done():
        await ws.send(json.dumps({"type": "end"}))


async def stream_chunks(
    url: str,
    chunks: AsyncIterator[bytes],
    sample_rate: int,
    *,
    encoding: Encoding = "pcm_s16le",
    channels: int = 1,
    frame_ms: int = 40,
    token: str | None = None,
    interim_ms: int = 0,
    on_message: Callable[[Message], None] | None = None,
    open_timeout_s: float = 10.0,
    finish_timeout_s: float = 60.0,
    tls: ssl.SSLContext | None = None,
) -> StreamReport:
    """Stream raw PCM as it comes (a pipe from ``arecord``/``sox``, say), then ``end``.

    ``chunks`` yields bytes of any length; they go out as frames of ``frame_ms`` whole
    samples, as soon as a frame is full, so a live source is paced by itself. A trailing
    part of a sample frame at the end is dropped. ``channels=2``: the bytes are interleaved
    stereo; sample counts are in sample frames. One connection: a live source cannot be
    replayed, so there is no reconnecting here.
    """
    report = StreamReport()
    connection = Connection(start_sample=0)
    report.connections.append(connection)
    width = BYTES_PER_SAMPLE[encoding] * channels  # bytes of one sample frame
    frame_bytes = max(1, sample_rate * frame_ms // 1000) * width
    target = stream_url(url, sample_rate, token, interim_ms, encoding, channels)
    try:
        ws = await _open(target, open_timeout_s, tls)
    except _Retryable as exc:
        raise exc.cause from None

    async def send(receiver: asyncio.Task[None]) -> None:
        pending = b""
        async for chunk in chunks:
            if receiver.done():
                return  # the server closed the stream
            pending += chunk
            while len(pending) >= frame_bytes:
                await ws.send(pending[:frame_bytes])
                pending = pending[frame_bytes:]
                connection.sent_samples += frame_bytes // width
        whole = len(pending) - len(pending) % width
        if whole and not receiver.done():
            await ws.send(pending[:whole])
            connection.sent_samples += whole // width
        if not receiver.done():
            await ws.send(json.dumps({"type": "end"}))

    receive = _receive(ws, connection, report, on_message)
    await _exchange(ws, receive, send, connection, finish_timeout_s)
    report.close_code = connection.close_code
    report.sent_samples = connection.sent_samples
    return report
