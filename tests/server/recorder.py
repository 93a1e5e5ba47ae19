"""A classifier that records what the pool asked of it."""

from __future__ import annotations

import threading

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
