"""Fairness inside the process: one connection's backlog does not delay another's frames.

Two sessions share one event loop, each on a fake WebSocket whose receive returns at
once while messages wait (as uvicorn's queue does), and a scripted classifier that
answers on the loop itself, so the interleaving is deterministic: the test counts how
many of the flood's messages the server read before the other connection's result went
out, never how long anything took.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.websockets import WebSocketState

from classifier.inference import Audio
from classifier.model import Manifest, read_manifest
from server.pool import Prediction
from server.protocol import StreamParams
from server.service import Service
from server.session import Session
from server.settings import Settings
from tests.speech import espeak, silence, to_pcm16

FLOOD = 20_000  # 2-byte frames waiting on the flooding connection


class FakeWebSocket:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in messages:
            self.inbox.put_nowait(message)
        self.reads = 0
        self.client = None
        self.headers: dict[str, str] = {}
        self.scope: dict[str, Any] = {}
        self.application_state = WebSocketState.CONNECTED
        self.peer: FakeWebSocket | None = None
        # each message sent, with how many messages the peer's connection had had read
        self.sent_at: list[tuple[str, int]] = []

    async def receive(self) -> dict[str, Any]:
        message = await self.inbox.get()  # no suspension while messages wait
        self.reads += 1
        return message

    async def send_text(self, text: str) -> None:
        kind = json.loads(text)["type"]
        self.sent_at.append((kind, self.peer.reads if self.peer is not None else 0))

    async def close(self, code: int) -> None:
        self.application_state = WebSocketState.DISCONNECTED


class ScriptedPool:
    """Answers every segment at once, on the loop, with the same scores."""

    def __init__(self, manifest: Manifest, metrics: Any) -> None:
        self.classifier = self
        self.manifest = manifest
        self.metrics = metrics
        self.waiting = 0
        self.calls = 0

    async def classify(self, audio: Audio, **_: Any) -> Prediction:
        self.calls += 1
        scores = np.full(len(self.manifest.labels), 1 / len(self.manifest.labels), np.float32)
        return Prediction(scores, self.manifest)


class InlineService(Service):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.scripted = ScriptedPool(read_manifest(settings.model_dir), self.metrics)

    @property
    def pool(self) -> Any:
        return self.scripted


def frames(pcm: bytes, size: int = 1280) -> list[dict[str, Any]]:
    return [
        {"type": "websocket.receive", "bytes": pcm[i : i + size]} for i in range(0, len(pcm), size)
    ]


@pytest.fixture(scope="module")
def speech() -> bytes:
    return to_pcm16(np.concatenate([silence(0.3), espeak("Please close the door."), silence(1.0)]))


def run_pair(settings: Settings, speech: bytes) -> tuple[FakeWebSocket, FakeWebSocket]:
    flood = [{"type": "websocket.receive", "bytes": b"\0\0"}] * FLOOD
    flooder = FakeWebSocket([*flood, {"type": "websocket.disconnect"}])
    end = {"type": "websocket.receive", "text": '{"type": "end"}'}
    speaker = FakeWebSocket([*frames(speech), end])
    speaker.peer = flooder
    service = InlineService(settings)

    async def main() -> None:
        first = Session(flooder, service, StreamParams())  # type: ignore[arg-type]
        second = Session(speaker, service, StreamParams())  # type: ignore[arg-type]
        # the flood's reader starts first: without fairness it would read all of it
        await asyncio.gather(first.run(), second.run())

    asyncio.run(main())
    service.decoder.shutdown()
    return flooder, speaker


def test_a_flood_does_not_delay_another_connections_results(
    tiny_model_dir: Path, speech: bytes
) -> None:
    settings = Settings(
        model_dir=tiny_model_dir,
        vad_detector="webrtc",
        early_endpoint=False,
        max_frames_per_s=1_000_000,  # the flood is not cut short: fairness alone is tested
    )
    flooder, speaker = run_pair(settings, speech)
    kinds = [kind for kind, _ in speaker.sent_at]
    assert kinds[0] == "ready" and kinds[-1] == "end"
    assert kinds.count("result") == 1
    assert flooder.reads == FLOOD + 1  # the flood was served too, to its end
    # The speaker's messages were read while the flood waited, about one of the flood's
    # per one of its own, not after the flood's 20 000.
    flood_read = dict(speaker.sent_at)
    assert flood_read["result"] <= 2 * speaker.reads + 20
    assert flood_read["end"] <= 2 * speaker.reads + 40
