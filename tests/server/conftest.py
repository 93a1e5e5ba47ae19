from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from classifier.inference import Audio, OnnxClassifier, Scores
from classifier.model import Manifest
from server.app import create_app
from server.service import ClassifierLoader
from server.settings import Settings
from tests.speech import espeak, silence

SENTENCES = (
    "The weather was lovely this morning.",
    "Please close the door when you leave.",
    "I never expected to see you here.",
)


@pytest.fixture(scope="session")
def three_utterances() -> npt.NDArray[np.float32]:
    """Three spoken sentences (each under 3 s) separated by 1 s silences, 16 kHz."""
    parts = [silence(0.5)]
    for sentence in SENTENCES:
        parts += [espeak(sentence, rate_wpm=190), silence(1.0)]
    return np.concatenate(parts)


@pytest.fixture(scope="session")
def one_utterance() -> npt.NDArray[np.float32]:
    return np.concatenate([silence(0.4), espeak(SENTENCES[0], rate_wpm=190), silence(1.0)])


def send_audio(ws: Any, data: bytes, frame_bytes: int = 1280) -> None:
    for offset in range(0, len(data), frame_bytes):
        ws.send_bytes(data[offset : offset + frame_bytes])


def collect(ws: Any) -> tuple[list[dict[str, Any]], int]:
    """Every message until the server closes, and the close code."""
    messages: list[dict[str, Any]] = []
    while True:
        try:
            messages.append(json.loads(ws.receive_text()))
        except WebSocketDisconnect as exc:
            return messages, exc.code


def types(messages: list[dict[str, Any]]) -> list[str]:
    return [m["type"] for m in messages]


@pytest.fixture
def vad_detector() -> str:
    """The voice detector make_client's apps use; a module that runs its tests under every
    detector overrides this with a parametrised fixture (see VAD_DETECTORS)."""
    return "silero"


VAD_DETECTORS = ("silero", "webrtc")


@pytest.fixture
def make_client(tiny_model_dir: Path, vad_detector: str) -> Iterator[Any]:
    """Build a TestClient for an app with the given settings (model defaults to the tiny one)."""
    clients: list[TestClient] = []

    def make(loader: ClassifierLoader | None = None, **settings: Any) -> TestClient:
        settings.setdefault("model_dir", tiny_model_dir)
        settings.setdefault("vad_detector", vad_detector)
        client = TestClient(create_app(Settings(**settings), loader), client=("127.0.0.1", 50000))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


class ScriptedClassifier:
    """Wraps a real classifier; fails or blocks on the calls a test chooses."""

    def __init__(
        self,
        inner: OnnxClassifier,
        fail_calls: set[int] = frozenset(),
        gate: threading.Event | None = None,
    ) -> None:  # type: ignore[assignment]
        self.inner = inner
        self.manifest: Manifest = inner.manifest
        self.fail_calls = set(fail_calls)
        self.gate = gate
        self.calls = 0
        self._lock = threading.Lock()

    def predict(self, audio: Audio) -> Scores:
        with self._lock:
            call = self.calls
            self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        if call in self.fail_calls:
            raise RuntimeError(f"scripted failure on call {call}")
        return self.inner.predict(audio)
