"""Helpers for tests that stream audio through the app in-process."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tests.server.conftest import collect, send_audio
from tests.speech import to_pcm16

END = json.dumps({"type": "end"})


def stream_all(
    client: Any, audio: np.ndarray, query: str = "", data: bytes | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    with client.websocket_connect(f"/v1/stream{query}") as ws:
        ready = json.loads(ws.receive_text())
        send_audio(ws, to_pcm16(audio) if data is None else data)
        ws.send_text(END)
        messages, code = collect(ws)
    return ready, messages, code


def outcomes(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] in ("result", "skipped")]


class FailingDetector:
    """Wraps the session's real detector; raises on the chosen frames of every stream."""

    def __init__(self, inner: Any, failing: set[int]) -> None:
        self.inner, self.failing, self.frames = inner, failing, 0

    def __call__(self, frame: np.ndarray) -> bool:
        self.frames += 1
        if self.frames - 1 in self.failing:
            raise RuntimeError("scripted detector fault")
        return bool(self.inner(frame))

    def reset(self) -> None:
        reset = getattr(self.inner, "reset", None)
        if reset is not None:
            reset()
