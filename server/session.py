"""One WebSocket session: owns every piece of per-connection state."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

import vad
from server.outcome import classify_segment
from server.protocol import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    End,
    EndOfStream,
    Error,
    ErrorCode,
    ProtocolError,
    Ready,
    Result,
    ServerMessage,
    SpeechEnd,
    SpeechStart,
    StreamParams,
    parse_client_message,
    to_json,
)
from server.service import Service

log = logging.getLogger(__name__)

OUTBOX_SIZE = 64


@dataclasses.dataclass(frozen=True, slots=True)
class _Close:
    code: int


class Session:
    def __init__(self, websocket: WebSocket, service: Service, params: StreamParams) -> None:
        self.id = uuid.uuid4().hex[:16]
        self._ws = websocket
        self._service = service
        self._settings = service.settings
        self._params = params
        self._segmenter = vad.StreamSegmenter(
            service.segmenter_config,
            params.sample_rate,
            params.encoding,
            detector=service.new_detector(),
        )
        self._outbox: asyncio.Queue[ServerMessage | _Close] = asyncio.Queue(OUTBOX_SIZE)
        self._slots = asyncio.Semaphore(self._settings.max_pending_segments)
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: asyncio.Task[None] | None = None
        self._segments = 0
        self._shutdown = False
        self._deadline: asyncio.Timeout | None = None
        self._closed = asyncio.Event()
        self._wall_deadline = float("inf")

    # Called by the service on graceful shutdown.
    def request_shutdown(self) -> None:
        self._shutdown = True
        if self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time())

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def run(self) -> None:
        reader = asyncio.create_task(self._read_then_close(), name=f"session-{self.id}-reader")
        writer = asyncio.create_task(self._write_loop(), name=f"session-{self.id}-writer")
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and reader.result():
                await writer  # the reader queued a close: let the writer deliver everything first
        finally:
            for task in (*self._tasks, reader, writer):
                task.cancel()
            # asyncio.wait, not gather: a cancellation of this task while waiting must arrive
            # as the canceller's own CancelledError (gather would replace it with a child's).
            await asyncio.wait({*self._tasks, reader, writer})
            self._closed.set()

    async def _read_then_close(self) -> bool:
        """True when a close was queued, False when the client went away first."""
        await self._outbox.put(self._ready())
        # A slow trickle of audio cannot hold a connection longer than a real-time stream could.
        s = self._settings
        self._wall_deadline = (
            asyncio.get_running_loop().time() + (s.max_stream_ms + s.idle_timeout_ms) / 1000
        )
        code = await self._read_loop()
        if code is None:
            return False
        await self._outbox.put(_Close(code))
        return True

    def _ready(self) -> Ready:
        s = self._settings
        return Ready(
            session=self.id,
            model=self._service.manifest.summary(),
            sample_rate=self._params.sample_rate,
            encoding=self._params.encoding,
            limits={
                "max_frame_bytes": s.max_frame_bytes,
                "max_segment_ms": s.max_segment_ms,
                "max_stream_ms": s.max_stream_ms,
                "idle_timeout_ms": s.idle_timeout_ms,
            },
        )

    async def _read_loop(self) -> int | None:
        """Returns the close code, or None when the client went away."""
        while not self._shutdown:
            try:
                message = await self._receive()
            except TimeoutError:
                if self._shutdown:
                    break
                await self._finish()
                return await self._error("limit", self._timeout_reason(), CLOSE_POLICY)
            if message["type"] == "websocket.disconnect":
                return None
            code = await self._on_message(message)
            if code is not None:
                return code
        await self._finish()
        return await self._error("busy", "server is shutting down; reconnect", CLOSE_TRY_AGAIN)

    def _timeout_reason(self) -> str:
        if asyncio.get_running_loop().time() >= self._wall_deadline:
            return (
                f"stream exceeded max_stream_ms {self._settings.max_stream_ms} "
                "in wall-clock time (plus one idle timeout)"
            )
        return f"no audio or message for {self._settings.idle_timeout_ms} ms"

    async def _receive(self) -> Message:
        loop = asyncio.get_running_loop()
        wait_s = min(self._settings.idle_timeout_ms / 1000, self._wall_deadline - loop.time())
        async with asyncio.timeout(max(0.0, wait_s)) as deadline:
            self._deadline = deadline
            try:
                return await self._ws.receive()
            finally:
                self._deadline = None

    async def _on_message(self, message: Message) -> int | None:
        data: bytes | None = message.get("bytes")
        if data is not None:
            return await self._on_audio(data)
        return await self._on_text(message.get("text") or "")

    async def _on_audio(self, data: bytes) -> int | None:
        limit = self._settings.max_frame_bytes
        if len(data) > limit:
            return await self._error(
                "bad_frame",
                f"binary frame of {len(data)} bytes exceeds max_frame_bytes {limit}",
                CLOSE_TOO_BIG,
            )
        try:
            events = self._segmenter.feed_bytes(data)
        except vad.FrameError as exc:
            await self._error("bad_frame", f"{exc}; frame dropped")
            return None
        except vad.DetectorError as exc:
            await self._detector_failed(exc)
        else:
            await self._handle(events)
        if self._segmenter.audio_ms > self._settings.max_stream_ms:
            await self._finish()
            return await self._error(
                "limit",
                f"stream exceeded max_stream_ms {self._settings.max_stream_ms}",
                CLOSE_POLICY,
            )
        return None

    async def _on_text(self, text: str) -> int | None:
        try:
            request = parse_client_message(text)
        except ProtocolError as exc:
            await self._error(exc.code, str(exc))
            return None
        if isinstance(request, End):
            await self._finish()
            await self._outbox.put(EndOfStream(self._segments, self._segmenter.audio_ms))
            return CLOSE_NORMAL
        await self._handle(self._segmenter.flush())
        return None

    async def _finish(self) -> None:
        """Close the pending utterance and wait until every segment's outcome is queued."""
        try:
            await self._handle(self._segmenter.finish())
        except vad.DetectorError as exc:
            await self._detector_failed(exc)
        if self._last is not None:
            await self._last

    async def _detector_failed(self, exc: vad.DetectorError) -> None:
        """The stream goes on: the failed frames counted as unvoiced, the detector starts
        afresh; the client hears of it as an ``internal`` error."""
        log.error("session %s: %s", self.id, exc, exc_info=exc.cause)
        await self._error("internal", "voice detector failed on this audio; the stream goes on")
        await self._handle(exc.events)

    async def _error(self, code: ErrorCode, message: str, close: int | None = None) -> int | None:
        await self._outbox.put(Error(code, message))
        return close

    async def _handle(self, events: list[vad.Event]) -> None:
        for event in events:
            if isinstance(event, vad.SpeechStart):
                await self._outbox.put(SpeechStart(event.t_ms))
            elif isinstance(event, vad.SpeechEnd):
                await self._outbox.put(SpeechEnd(event.t_ms))
            else:
                await self._submit(event)

    async def _submit(self, segment: vad.Segment) -> None:
        await self._slots.acquire()
        index, self._segments = self._segments, self._segments + 1
        self._service.metrics.segments.labels(source="stream").inc()
        task = asyncio.create_task(
            self._classify(index, segment, time.monotonic(), self._last),
            name=f"session-{self.id}-segment-{index}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        self._last = task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _classify(
        self, index: int, segment: vad.Segment, known_at: float, previous: asyncio.Task[None] | None
    ) -> None:
        outcome, error = await classify_segment(self._service.pool, index, segment, known_at)
        if previous is not None:
            await previous  # outcomes leave in segment order
        if isinstance(outcome, Result):
            outcome = dataclasses.replace(
                outcome, latency_ms=round((time.monotonic() - known_at) * 1000)
            )
        if error is not None:
            await self._outbox.put(error)
        await self._outbox.put(outcome)

    async def _write_loop(self) -> None:
        ws = self._ws
        try:
            while True:
                item = await self._outbox.get()
                if isinstance(item, _Close):
                    if ws.application_state == WebSocketState.CONNECTED:
                        await ws.close(item.code)
                    return
                await ws.send_text(to_json(item))
        except (WebSocketDisconnect, RuntimeError, OSError):
            log.debug("session %s: client went away while sending", self.id)
