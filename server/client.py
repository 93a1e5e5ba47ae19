"""The reference WebSocket client: stream a recording, collect the messages (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
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

from server.protocol import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ

Message = dict[str, Any]
_WS_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


@dataclass
class StreamReport:
    messages: list[Message] = field(default_factory=list)
    close_code: int | None = None

    def of_type(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m.get("type") == kind]


def load_pcm16(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """A recording as mono 16-bit PCM at a rate the protocol accepts."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        mono, rate = soxr.resample(mono, rate, 16000), 16000
    return (np.clip(mono, -1.0, 1.0) * 32767).astype("<i2"), int(rate)


def stream_url(url: str, sample_rate: int, token: str | None = None) -> str:
    """``url`` with this stream's query; http(s) becomes ws(s), other query parameters stay."""
    parts = urlsplit(url)
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"stream URL must look like ws://host:port/v1/stream, got {url!r}")
    ours = {"sample_rate": str(sample_rate), "encoding": "pcm_s16le"}
    if token:
        ours["token"] = token
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode([*ours.items(), *kept])))


async def stream_pcm16(
    url: str,
    pcm: npt.NDArray[np.int16],
    sample_rate: int,
    *,
    speed: float = 1.0,
    frame_ms: int = 40,
    token: str | None = None,
    on_message: Callable[[Message], None] | None = None,
    open_timeout_s: float = 10.0,
) -> StreamReport:
    """Send ``pcm`` at ``speed`` × real time (0 = as fast as possible), then ``end``."""
    report = StreamReport()
    frame = max(1, sample_rate * frame_ms // 1000)
    async with websockets.connect(
        stream_url(url, sample_rate, token), open_timeout=open_timeout_s, max_size=2**20
    ) as ws:

        async def receive() -> None:
            async for raw in ws:
                message = json.loads(raw)
                report.messages.append(message)
                if on_message is not None:
                    on_message(message)

        receiver = asyncio.create_task(receive())
        try:
            await _send(ws, pcm, sample_rate, frame, speed, receiver)
        except websockets.ConnectionClosed:
            pass  # the server closed first; the receiver still reads what it sent before
        except BaseException:
            receiver.cancel()
            raise
        with contextlib.suppress(websockets.ConnectionClosed):
            await receiver
        report.close_code = ws.close_code
    return report


async def _send(
    ws: ClientConnection,
    pcm: npt.NDArray[np.int16],
    sample_rate: int,
    frame: int,
    speed: float,
    receiver: asyncio.Task[None],
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    for offset in range(0, len(pcm), frame):
        if receiver.done():  # the server closed the stream
            return
        if speed > 0:
            due = started + offset / sample_rate / speed
            await asyncio.sleep(max(0.0, due - loop.time()))
        await ws.send(pcm[offset : offset + frame].tobytes())
    if not receiver.done():
        await ws.send(json.dumps({"type": "end"}))
