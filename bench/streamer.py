"""A benchmark WebSocket client: streams PCM at real-time pace and timestamps every message."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import websockets

FRAME_MS = 40


@dataclass
class StreamLog:
    """Messages with their arrival (monotonic s); ``t0`` is when audio time 0 was due to be sent."""

    t0: float = 0.0
    audio_s: float = 0.0
    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    close_code: int | None = None
    error: str | None = None

    def of_type(self, *kinds: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages if m.get("type") in kinds]

    def overlapping(
        self, kinds: tuple[str, ...], start_s: float, end_s: float
    ) -> list[tuple[float, dict[str, Any]]]:
        """Messages of ``kinds`` whose span overlaps ``start_s``-``end_s`` (audio time)."""
        return [
            (t, m) for t, m in self.of_type(*kinds)
            if m["start_ms"] < end_s * 1000 and m["end_ms"] > start_s * 1000
        ]  # fmt: skip

    def answer(self, start_s: float, end_s: float) -> tuple[float, dict[str, Any]] | None:
        """What answers an utterance: of the results and skips overlapping it, the one that
        ends last (the utterance's last segment), with its arrival; None if none arrived."""
        covering = self.overlapping(("result", "skipped"), start_s, end_s)
        return max(covering, key=lambda tm: tm[1]["end_ms"]) if covering else None


def frames(pcm: bytes, sample_rate_hz: int = 16000, frame_ms: int = FRAME_MS) -> list[bytes]:
    step = sample_rate_hz * frame_ms // 1000 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


async def stream(
    url: str,
    chunks: list[bytes],
    frame_ms: int = FRAME_MS,
    headers: dict[str, str] | None = None,
) -> StreamLog:
    """Send ``chunks`` (each ``frame_ms`` of audio) on an absolute real-time schedule, then end.

    ``headers`` go with the opening handshake (e.g. ``X-Forwarded-For`` to a server that
    trusts this client as its proxy)."""
    log = StreamLog(audio_s=len(chunks) * frame_ms / 1000)
    try:
        async with websockets.connect(
            url, open_timeout=30, max_size=2**20, additional_headers=headers
        ) as ws:
            ready = json.loads(await ws.recv())
            log.messages.append((time.monotonic(), ready))

            async def receive() -> None:
                async for raw in ws:
                    log.messages.append((time.monotonic(), json.loads(raw)))

            receiver = asyncio.create_task(receive())
            log.t0 = time.monotonic()
            for i, chunk in enumerate(chunks):
                # chunk i holds audio up to (i + 1) * frame_ms: it exists only from then on
                delay = log.t0 + (i + 1) * frame_ms / 1000 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing to the audio clock, not polling
                await ws.send(chunk)
            await ws.send(json.dumps({"type": "end"}))
            await receiver
            log.close_code = ws.close_code
    except (OSError, websockets.WebSocketException, TimeoutError) as exc:
        log.error = f"{type(exc).__name__}: {exc}"
    return log
