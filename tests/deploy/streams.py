"""A small WebSocket client for the deployment tests, with full control over the connection."""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection

from pcm.format import PIPELINE_RATE_HZ
from tests.speech import espeak, silence, to_pcm16

RATE_HZ = PIPELINE_RATE_HZ
FRAME_MS = 40
FRAME_BYTES = RATE_HZ * FRAME_MS // 1000 * 2

Message = dict[str, Any]


@functools.cache
def utterance_pcm() -> bytes:
    """One spoken sentence between silences: one classified segment, 16 kHz s16le."""
    speech = espeak("The weather was lovely this morning.")
    return to_pcm16(np.concatenate([silence(0.3), speech, silence(1.0)]))


@dataclass
class Stream:
    """An open /v1/stream session; received messages are collected in the background."""

    ws: ClientConnection
    messages: list[Message] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(cls, url: str, **connect: Any) -> Stream:
        connect.setdefault("open_timeout", 30)
        connect.setdefault("max_size", 2**20)
        stream = cls(await websockets.connect(url, **connect))
        stream._reader = asyncio.create_task(stream._read())
        return stream

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.messages.append(json.loads(raw))
                self._arrived.set()
        except websockets.ConnectionClosedError:
            pass
        finally:
            self._arrived.set()

    async def wait_for(self, kind: str, count: int = 1) -> list[Message]:
        """Wait until ``count`` messages of type ``kind`` arrived or the connection closed."""
        while len(self.of_type(kind)) < count and not self.closed:
            self._arrived.clear()
            await self._arrived.wait()
        return self.of_type(kind)

    def of_type(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def closed(self) -> bool:
        return self._reader is None or self._reader.done()

    async def send_audio(
        self, pcm: bytes, frame_bytes: int = FRAME_BYTES, *, real_time: bool = False
    ) -> None:
        """Send ``pcm`` in frames: as fast as the server reads, or paced like a microphone."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for offset in range(0, len(pcm), frame_bytes):
            if real_time:
                due_s = offset / 2 / RATE_HZ
                await asyncio.sleep(max(0.0, started + due_s - loop.time()))
            await self.ws.send(pcm[offset : offset + frame_bytes])

    async def finish(self) -> int | None:
        """Send ``end``, read until the server closes; the close code."""
        await self.ws.send(json.dumps({"type": "end"}))
        return await self.closed_code()

    async def closed_code(self) -> int | None:
        assert self._reader is not None
        await self._reader
        await self.ws.wait_closed()
        return self.ws.close_code

    async def abort(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await self._reader


async def refused(url: str, **connect: Any) -> tuple[list[Message], int | None]:
    """Connect, send nothing, read until the server closes: (messages, close code)."""
    stream = await Stream.open(url, **connect)
    return stream.messages, await stream.closed_code()


async def full_session(url: str, pcm: bytes, **connect: Any) -> Stream:
    """Stream ``pcm`` as fast as the server reads it, then ``end``; the finished stream."""
    stream = await Stream.open(url, **connect)
    await stream.send_audio(pcm)
    await stream.finish()
    return stream
