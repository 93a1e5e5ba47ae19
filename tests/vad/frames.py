"""Scripted frames and segmenters for the segmenter's tests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from vad.config import SegmenterConfig
from vad.detector import EnergyDetector
from vad.segmenter import Segmenter

FRAME = 480


LEVELS = {".": 0.0, "n": 0.001, "q": 0.03, "x": 0.3}  # silence, noise, quiet voice, voice


Frames = list[npt.NDArray[np.int16]]


def frames_for(pattern: str) -> Frames:
    """One frame per character; voiced characters are a 440 Hz tone at that level."""
    t = np.arange(len(pattern) * FRAME) / 16000
    tone = np.sin(2 * np.pi * 440 * t)
    noise = np.random.default_rng(0).uniform(-1, 1, len(t))
    frames = []
    for index, char in enumerate(pattern):
        part = slice(index * FRAME, (index + 1) * FRAME)
        wave = noise[part] if char == "n" else tone[part]
        frames.append(np.rint(wave * LEVELS[char] * 32767).astype(np.int16))
    return frames


def config(**overrides: object) -> SegmenterConfig:
    """webrtcvad's 30 ms frames and the 600 ms hangover these patterns are drawn for (the
    short hangover off unless a test turns it on)."""
    values: dict[str, object] = {
        "detector": "webrtc",
        "hangover_ms": 600,
        "short_hangover_ms": 0,
        **overrides,
    }
    return SegmenterConfig(**values)  # type: ignore[arg-type]


def energy_segmenter(**overrides: object) -> Segmenter:
    return Segmenter(config(**overrides), EnergyDetector(-40.0))


class Scripted:
    """A detector that answers from a string of '1' and '0', one per frame."""

    def __init__(self, flags: str) -> None:
        self._flags: Iterator[str] = iter(flags)

    def __call__(self, frame: npt.NDArray[np.int16]) -> bool:
        return next(self._flags) == "1"
