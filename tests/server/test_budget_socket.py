"""Message budgets over a real socket: each limit ends the session with ``limit`` naming
it, one step past its burst, and not at the burst; a sender faster than the stream
speed is slowed down, never refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets

from client.websocket import stream_pcm16
from server.settings import Settings
from tests.live import LiveServer, live_server
from tests.speech import espeak, silence

END = json.dumps({"type": "end"})
FLUSH = json.dumps({"type": "flush"})
FRAME = b"\0" * 640  # 20 ms of silence
BURST = 20  # 1 a second with a 20 s burst: refilling adds a token a second at most


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[LiveServer]:
    settings = Settings(
        model_dir=tiny_model_dir,
        vad_detector="webrtc",
        max_frames_per_s=1,
        max_texts_per_s=1,
        message_burst_s=BURST,
        max_bad_messages=3,
        bad_message_window_s=60,
    )
    with live_server(settings) as live:
        yield live


def exchange(url: str, messages: list[str | bytes]) -> tuple[list[dict[str, Any]], int | None]:
    async def run() -> tuple[list[dict[str, Any]], int | None]:
        async with websockets.connect(url) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            for message in messages:
                try:
                    await ws.send(message)
                except websockets.ConnectionClosed:
                    break
            received = []
            try:
                async for raw in ws:
                    received.append(json.loads(raw))
            except websockets.ConnectionClosed:
                pass
            return received, ws.close_code

    return asyncio.run(run())


def limit_errors(messages: list[dict[str, Any]]) -> list[str]:
    return [m["message"] for m in messages if m["type"] == "error" and m["code"] == "limit"]


@pytest.mark.parametrize(
    ("messages", "setting"),
    [
        ([FRAME] * BURST, None),
        ([FRAME] * (BURST + 2), "max_frames_per_s 1"),
        ([FLUSH] * (BURST - 1), None),  # and the end makes BURST text messages
        ([FLUSH] * (BURST + 2), "max_texts_per_s 1"),
    ],
    ids=["frames-at-burst", "frames-past-burst", "texts-at-burst", "texts-past-burst"],
)
def test_message_rates(
    server: LiveServer, messages: list[str | bytes], setting: str | None
) -> None:
    received, code = exchange(server.ws_url, [*messages, END])
    if setting is None:
        assert limit_errors(received) == []
        assert received[-1]["type"] == "end" and code == 1000
    else:
        (error,) = limit_errors(received)
        assert setting in error
        assert received[-1]["type"] == "error" and code == 1008


def test_rejected_messages_end_the_session_past_the_allowance(server: LiveServer) -> None:
    bad: list[str | bytes] = [b"\0", "not json", '{"type": "shout"}']
    received, code = exchange(server.ws_url, [*bad, END])
    assert [m["code"] for m in received if m["type"] == "error"] == [
        "bad_frame",
        "bad_message",
        "bad_message",
    ]
    assert received[-1]["type"] == "end" and code == 1000

    received, code = exchange(server.ws_url, [*bad, "[]", END])
    (error,) = limit_errors(received)
    assert "max_bad_messages 3" in error and "bad_message_window_s 60" in error
    assert code == 1008


def test_a_sender_faster_than_the_stream_speed_is_slowed_not_refused(
    tiny_model_dir: Path,
) -> None:
    # 4x real time after the first second: the 5 s below take the server at least 1 s
    settings = Settings(
        model_dir=tiny_model_dir, vad_detector="webrtc", max_stream_speed=4, message_burst_s=0.25
    )
    audio = np.concatenate([silence(0.5), espeak("Please close the door."), silence(2.5)])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with live_server(settings) as live:
        report = asyncio.run(stream_pcm16(live.ws_url, pcm, 16000, speed=0))
    assert report.close_code == 1000
    assert report.of_type("error") == []
    assert report.of_type("end")[0]["audio_ms"] == len(pcm) // 16
    assert len(report.finals) == 1
