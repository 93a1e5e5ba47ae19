"""One WebSocket session: owns every piece of per-connection state."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid

import numpy as np
import numpy.typing as npt
from starlette.types import Message
from starlette.websockets import (
    WebSocket,
    WebSocketDisconnect,
    WebSocketDisconnected,
    WebSocketState,
)

import vad
from server.budget import Allowance, LimitExceeded, MessageBudget
from server.channel import Channel
from server.connection import client_of
from server.early import Early
from server.outcome import classify_segment, result_of
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
    SegmentOutcome,
    ServerMessage,
    SpeechEnd,
    SpeechStart,
    StreamParams,
    parse_client_message,
    to_json,
)
from server.service import Service
from server.transport import abort_transport

log = logging.getLogger(__name__)

OUTBOX_SIZE = 64


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """Deliver every message queued so far, then close the connection with ``code``."""

    code: int


@dataclasses.dataclass(frozen=True, slots=True)
class Gone:
    """The client went away: nothing more can be sent."""


@dataclasses.dataclass(frozen=True, slots=True)
class Abort:
    """Messages could not be delivered in time: drop the connection without a close handshake."""

    reason: str


Ending = Close | Gone | Abort

# What sending, closing or accepting raises once the client has gone: Starlette's
# WebSocketDisconnect (the peer closed, or the transport failed while connected) and
# WebSocketDisconnected (a send after the close), uvicorn's ClientDisconnected (an OSError,
# also for a connection this server aborted), and other OSErrors of the transport. Any
# other RuntimeError is a fault, and ends the session as one.
CLIENT_GONE: tuple[type[Exception], ...] = (WebSocketDisconnect, WebSocketDisconnected, OSError)


class Session:
    """Two tasks share the connection: the reader (audio and messages in, events queued) and
    the writer (the outbox to the socket). The reader decides to close, the writer finds out
    that the client has gone or stopped reading, and ``run`` turns the first into the end."""

    def __init__(self, websocket: WebSocket, service: Service, params: StreamParams) -> None:
        self.id = uuid.uuid4().hex[:16]
        self._ws = websocket
        self._service = service
        self._settings = service.settings
        self._params = params
        self._quality = params.quality == 1
        self._outbox: asyncio.Queue[ServerMessage | Close] = asyncio.Queue(OUTBOX_SIZE)
        self._slots = asyncio.Semaphore(self._settings.max_pending_segments)
        self._tasks: set[asyncio.Task[None]] = set()
        self._shutdown = False
        self._closing: Close | None = None
        self._deadline: asyncio.Timeout | None = None
        self._closed = asyncio.Event()
        self._wall_deadline = float("inf")
        self._delivery_s = self._settings.idle_timeout_ms / 1000
        self._budget = MessageBudget(Allowance.of(self._settings))
        self._client = client_of(websocket, service)
        count = params.channel_count
        self._channels = [
            Channel(
                None if count == 1 else index,
                service,
                params,
                self._outbox.put,
                client=self._client,
                session=self.id,
            )
            for index in range(count)
        ]

    # Called by the service on graceful shutdown.
    def request_shutdown(self) -> None:
        self._shutdown = True
        if self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time())

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def run(self) -> Ending:
        """The one place where the session ends; how comes from the reader or the writer."""
        reader = asyncio.create_task(self._read(), name=f"session-{self.id}-reader")
        writer = asyncio.create_task(self._write(), name=f"session-{self.id}-writer")
        ending: Ending = Gone()
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            ending = reader.result() if reader.done() else writer.result()
            if isinstance(ending, Close):
                ending = await writer  # it delivers everything queued before the close
        finally:
            extra = [task for channel in self._channels for task in channel.close()]
            for task in (*self._tasks, *extra, reader, writer):
                task.cancel()
            # asyncio.wait, not gather: a cancellation of this task while waiting must arrive
            # as the canceller's own CancelledError (gather would replace it with a child's).
            await asyncio.wait({*self._tasks, *extra, reader, writer})
            if isinstance(ending, Abort):
                log.info("session %s dropped: %s", self.id, ending.reason)
                if not abort_transport(self._ws.scope):
                    log.debug("session %s: the server cannot abort a connection", self.id)
            self._closed.set()
        return ending

    async def _read(self) -> Close | Gone:
        await self._outbox.put(self._ready())
        # A slow trickle of audio cannot hold a connection longer than a real-time stream could.
        s = self._settings
        self._wall_deadline = (
            asyncio.get_running_loop().time() + (s.max_stream_ms + s.idle_timeout_ms) / 1000
        )
        while (closing := self._closing) is None:
            if self._shutdown:
                await self._finish()
                await self._close("busy", "server is shutting down; reconnect", CLOSE_TRY_AGAIN)
                continue
            try:
                message = await self._receive()
            except TimeoutError:
                if not self._shutdown:
                    await self._finish()
                    await self._close("limit", self._timeout_reason(), CLOSE_POLICY)
                continue
            if message["type"] == "websocket.disconnect":
                return Gone()
            await self._on_message(message)
            # One message per wake-up, so another connection's frames wait for one of ours
            # at most; audio beyond max_stream_speed waits to be read (server/budget.py).
            read_s = self._channels[0].segmenter.input_samples / self._params.sample_rate
            await asyncio.sleep(self._budget.pause_s(read_s))
        await self._outbox.put(closing)  # the writer closes once it reaches this
        return closing

    async def _close(self, code: ErrorCode, message: str, close_code: int) -> None:
        """Send an error, then close with ``close_code`` once everything before it is sent."""
        await self._outbox.put(Error(code, message))
        self._closing = Close(close_code)

    def _ready(self) -> Ready:
        s = self._settings
        return Ready(
            session=self.id,
            model=self._service.manifest.summary(),
            sample_rate=self._params.sample_rate,
            encoding=self._params.encoding,
            limits={
                "max_frame_bytes": s.max_frame_bytes,
                "max_segment_ms": self._service.segmenter_config.max_segment_ms,
                "max_stream_ms": s.max_stream_ms,
                "idle_timeout_ms": s.idle_timeout_ms,
            },
            interim_ms=self._params.interim_ms,
            channels=self._params.channels,
            quality=self._params.quality,
        )

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

    async def _on_message(self, message: Message) -> None:
        data: bytes | None = message.get("bytes")
        metrics = self._service.metrics
        try:
            if data is not None:
                metrics.ws_binary_messages.inc()
                self._budget.frame()
                await self._on_audio(data)
            else:
                metrics.ws_text_messages.inc()
                self._budget.text()
                await self._on_text(message.get("text") or "")
        except LimitExceeded as exc:
            await self._finish()
            await self._close("limit", str(exc), CLOSE_POLICY)

    async def _on_audio(self, data: bytes) -> None:
        limit = self._settings.max_frame_bytes
        if len(data) > limit:
            message = f"binary frame of {len(data)} bytes exceeds max_frame_bytes {limit}"
            await self._close("bad_frame", message, CLOSE_TOO_BIG)
            return
        try:
            frames = self._frames_of(data)
        except vad.FrameError as exc:
            await self._outbox.put(Error("bad_frame", f"{exc}; frame dropped"))
            self._budget.bad()
            return
        for channel, outcome in zip(self._channels, await self._segment_all(frames), strict=True):
            if isinstance(outcome, vad.DetectorError):
                await self._detector_failed(channel, outcome)
            else:
                await self._handle(channel, outcome)
            channel.after_audio()
        if self._audio_ms > self._settings.max_stream_ms:
            await self._finish()
            message = f"stream exceeded max_stream_ms {self._settings.max_stream_ms}"
            await self._close("limit", message, CLOSE_POLICY)

    @property
    def _audio_ms(self) -> int:
        return self._channels[0].segmenter.audio_ms  # every channel has as many samples

    def _frames_of(self, data: bytes) -> list[list[npt.NDArray[np.int16]]]:
        """Each channel's whole detector frames; FrameError before any channel takes audio."""
        if len(self._channels) == 1:
            return [self._channels[0].segmenter.frames_of(data)]
        pieces = vad.split_channels(data, self._params.encoding, len(self._channels))
        return [
            channel.segmenter.frames_of(piece)
            for channel, piece in zip(self._channels, pieces, strict=True)
        ]

    async def _segment_all(
        self, frames: list[list[npt.NDArray[np.int16]]]
    ) -> list[list[vad.Event] | vad.DetectorError]:
        """Each channel's events, or its detector's fault. Two channels' frames are decided
        together, so the Silero batcher takes them in one model call."""
        if len(self._channels) == 1:
            try:
                return [await self._segment(self._channels[0], frames[0])]
            except vad.DetectorError as exc:
                return [exc]
        outcomes = await asyncio.gather(
            *(self._segment(c, f) for c, f in zip(self._channels, frames, strict=True)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, vad.DetectorError):
                raise outcome
        return outcomes  # type: ignore[return-value]

    async def _segment(
        self, channel: Channel, frames: list[npt.NDArray[np.int16]]
    ) -> list[vad.Event]:
        """The channel's events; vad decides whether the frames share the batcher's call."""
        return await channel.segmenter.segment_batched(frames, self._service.vad_batcher)

    async def _on_text(self, text: str) -> None:
        try:
            request = parse_client_message(text)
        except ProtocolError as exc:
            await self._outbox.put(Error(exc.code, str(exc)))
            self._budget.bad()
            return
        if isinstance(request, End):
            await self._finish()
            segments = sum(channel.segments for channel in self._channels)
            await self._outbox.put(EndOfStream(segments, self._audio_ms))
            self._closing = Close(CLOSE_NORMAL)
            return
        for channel in self._channels:  # flush ends every channel's utterance
            await self._handle(channel, channel.segmenter.flush())

    async def _finish(self) -> None:
        """Close the pending utterances and wait until every segment's outcome is queued."""
        for channel in self._channels:
            try:
                await self._handle(channel, channel.segmenter.finish())
            except vad.DetectorError as exc:
                await self._detector_failed(channel, exc)
        for channel in self._channels:
            if channel.last is not None:
                await channel.last

    async def _detector_failed(self, channel: Channel, exc: vad.DetectorError) -> None:
        """The stream goes on: the failed frames counted as unvoiced, the detector starts
        afresh; the client hears of it as an ``internal`` error."""
        log.error("session %s: %s", self.id, exc, exc_info=exc.cause)
        message = "voice detector failed on this audio; the stream goes on"
        await self._outbox.put(Error("internal", message))
        await self._handle(channel, exc.events)

    async def _handle(self, channel: Channel, events: list[vad.Event]) -> None:
        for event in events:
            if isinstance(event, vad.SpeechStart):
                await self._outbox.put(channel.tag(SpeechStart(event.t_ms)))
            elif isinstance(event, vad.SpeechEnd):
                await self._outbox.put(channel.tag(SpeechEnd(event.t_ms)))
            else:
                await self._submit(channel, event)

    async def _submit(self, channel: Channel, segment: vad.Segment) -> None:
        if channel.interim is not None:
            channel.interim.end_segment()  # before its final can be queued
        await self._slots.acquire()
        index, channel.segments = channel.segments, channel.segments + 1
        self._service.metrics.segments.labels(source="stream").inc()
        early = channel.early.take(segment) if channel.early is not None else None
        task = asyncio.create_task(
            self._classify(channel, index, segment, time.monotonic(), channel.last, early),
            name=f"session-{channel.stream}-segment-{index}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        channel.last = task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _classify(
        self,
        channel: Channel,
        index: int,
        segment: vad.Segment,
        known_at: float,
        previous: asyncio.Task[None] | None,
        early: Early | None = None,
    ) -> None:
        prediction = await early if early is not None else None
        if prediction is not None:  # classified while the hangover ran: the same audio
            outcome: SegmentOutcome = result_of(index, segment, prediction, known_at)
            error = None
        else:
            outcome, error = await classify_segment(
                self._service.pool,
                index,
                segment,
                known_at,
                client=self._client,
                stream=channel.stream,
                quality=self._quality,
            )
        if previous is not None:
            await previous  # outcomes leave in segment order, per channel
        if isinstance(outcome, Result):
            outcome = dataclasses.replace(
                outcome, latency_ms=round((time.monotonic() - known_at) * 1000)
            )
        if error is not None:
            await self._outbox.put(error)
        await self._outbox.put(channel.tag(outcome))

    async def _write(self) -> Close | Gone | Abort:
        """Send the outbox in order; every send has a deadline of one idle timeout."""
        ws = self._ws
        while True:
            item = await self._outbox.get()
            try:
                async with asyncio.timeout(self._delivery_s):
                    if isinstance(item, Close):
                        if ws.application_state == WebSocketState.CONNECTED:
                            await ws.close(item.code)
                        return item
                    await ws.send_text(to_json(item))
            except TimeoutError:
                ms = self._settings.idle_timeout_ms
                return Abort(f"the client took no message for {ms} ms")
            except CLIENT_GONE:
                log.debug("session %s: client went away while sending", self.id)
                return Gone()
