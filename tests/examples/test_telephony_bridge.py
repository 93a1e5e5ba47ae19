"""examples/telephony_bridge.py against a real server: a call platform's JSON media messages
(base64 μ-law at 8 kHz, two tracks) in, one emostream stream per track, results out."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
import websockets

from tests.served import Served, start_server, stop_server
from tests.speech import espeak, silence
from tests.telephony import g711

REPO = Path(__file__).resolve().parents[2]
BRIDGE = REPO / "examples" / "telephony_bridge.py"
CHUNK_BYTES = 160  # 20 ms of 8 kHz μ-law, as call platforms send it


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path) -> Iterator[Served]:
    server = start_server(tiny_model_dir)
    yield server
    assert stop_server(server) == 0, "".join(server.log)


class Bridge:
    def __init__(self, emostream_url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(BRIDGE), "--listen", "127.0.0.1:0", "--emostream", emostream_url],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        assert self.process.stderr is not None
        first = self.process.stderr.readline()
        assert first.startswith("bridge: listening on "), first
        self.url = "ws://" + first.rsplit(" ", 1)[1].strip()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def messages_until_ended(self, tracks: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        """Printed lines until every track's stream has said ``end``."""
        out: list[dict[str, Any]] = []
        while sum(m["type"] == "end" for m in out) < tracks:
            line = self.lines.get(timeout=timeout_s)
            assert line is not None, "the bridge exited: " + self.stop()
            out.append(json.loads(line))
        return out

    def stop(self) -> str:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        assert self.process.stderr is not None and self.process.stdout is not None
        self._reader.join(timeout=30)
        self.process.stdout.close()
        with self.process.stderr as stderr:
            return stderr.read()


def media(track: str, chunk: bytes) -> str:
    payload = base64.b64encode(chunk).decode()
    return json.dumps({"event": "media", "media": {"track": track, "payload": payload}})


async def play_call(url: str, tracks: dict[str, bytes]) -> None:
    """A platform forking a call: start, 20 ms media messages of each track in turn, stop."""
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"event": "connected"}))
        await ws.send(json.dumps({"event": "start", "start": {"callSid": "CA-test"}}))
        length = max(len(audio) for audio in tracks.values())
        for offset in range(0, length, CHUNK_BYTES):
            for track, audio in tracks.items():
                if offset < len(audio):
                    await ws.send(media(track, audio[offset : offset + CHUNK_BYTES]))
        await ws.send("not json")  # ignored, with a note on the bridge's standard error
        await ws.send(json.dumps({"event": "stop"}))


def test_bridge_forwards_each_track_of_a_call_to_its_own_stream(served: Served) -> None:
    def at_8k(text: str) -> Any:
        speech = espeak(text, rate_wpm=190)
        return soxr.resample(speech, 16000, 8000).astype(np.float32)

    caller = np.concatenate(
        [silence(0.3, 8000), at_8k("Hello, my line has been cut off."), silence(1.0, 8000)]
    )
    agent = np.concatenate(
        [silence(1.0, 8000), at_8k("I can help you with that today."), silence(1.0, 8000)]
    )
    bridge = Bridge(served.url)
    try:
        asyncio.run(play_call(bridge.url, {"inbound": g711(caller), "outbound": g711(agent)}))
        messages = bridge.messages_until_ended(tracks=2)
    finally:
        errors = bridge.stop()
    assert "ignoring a message that is not a media event" in errors
    assert {m["call"] for m in messages} == {"CA-test"}
    for track, audio in (("inbound", caller), ("outbound", agent)):
        mine = [m for m in messages if m["track"] == track]
        ready = mine[0]
        assert ready["type"] == "ready"
        assert (ready["encoding"], ready["sample_rate"]) == ("mulaw", 8000)
        assert [m["type"] for m in mine if m["type"] in ("result", "skipped")] == ["result"]
        assert mine[-1] == {
            "call": "CA-test",
            "track": track,
            "type": "end",
            "segments": 1,
            "audio_ms": len(audio) // 8,
        }
