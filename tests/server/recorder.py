"""A classifier that records what the pool asked of it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from classifier.model import Manifest


class Recorder:
    """A scripted classifier: records which job ran (tagged by its audio length) and where;
    every run waits for ``gate`` so a test can hold the worker(s)."""

    def __init__(self, manifest: Manifest, log: list[tuple[str, int]], name: str = "shared"):
        self.manifest = manifest
        self.name = name
        self.log = log
        self.gate = threading.Event()
        self.started = threading.Semaphore(0)

    def predict(self, audio: np.ndarray) -> np.ndarray:
        self.log.append((self.name, audio.size))
        self.started.release()
        assert self.gate.wait(10), "the test never opened the gate"
        return np.full(len(self.manifest.labels), 1 / len(self.manifest.labels), np.float32)


def ident(audio: np.ndarray) -> int:
    """A test segment's id: its first sample (segments of equal length told apart)."""
    return int(audio[0])


def segment(ident_: int, samples: int) -> np.ndarray:
    audio = np.zeros(samples, dtype=np.float32)
    audio[0] = ident_
    return audio


class BatchRecorder(Recorder):
    """A Recorder that also takes batches: ``calls`` lists each model call as its segments'
    ids; every segment's scores are filled with its id, so a test sees whose result it got."""

    def __init__(self, manifest: Manifest, fail_batches: bool = False) -> None:
        super().__init__(manifest, [])
        self.calls: list[list[int]] = []
        self.fail_batches = fail_batches
        self.batch_gate = self.gate  # a test may hold batches apart from single runs

    def _scores(self, audio: np.ndarray) -> np.ndarray:
        return np.full(len(self.manifest.labels), ident(audio), np.float32)

    def predict(self, audio: np.ndarray) -> np.ndarray:
        self.calls.append([ident(audio)])
        super().predict(audio)
        return self._scores(audio)

    def predict_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.calls.append([ident(a) for a in audios])
        self.started.release()
        assert self.batch_gate.wait(10), "the test never opened the gate"
        if self.fail_batches:
            raise RuntimeError(f"scripted failure of a batch of {len(audios)}")
        return [self._scores(a) for a in audios]
