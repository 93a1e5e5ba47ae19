"""Per-frame voice detectors: Silero (vad.silero), webrtcvad, and an energy threshold."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import webrtcvad

if TYPE_CHECKING:
    from vad.config import SegmenterConfig
    from vad.events import Event

# One stream's detector: a frame of int16 samples in, voiced or not out. A detector with
# state has a reset() that the segmenter calls when its stream starts over.
Detector = Callable[[npt.NDArray[np.int16]], bool]
WEBRTC_RATES_HZ = (8000, 16000, 32000, 48000)
_FULL_SCALE_POWER = 32768.0**2


def frame_energy(frame: npt.NDArray[np.int16]) -> float:
    """Mean power of an int16 frame, in squared sample units."""
    samples = frame.astype(np.float64)
    return float(np.dot(samples, samples)) / max(len(frame), 1)


def frame_dbfs(frame: npt.NDArray[np.int16]) -> float:
    """Frame power relative to a full-scale square wave; -inf for digital silence."""
    power = frame_energy(frame)
    return 10.0 * math.log10(power / _FULL_SCALE_POWER) if power > 0 else -math.inf


class WebRtcDetector:
    """webrtcvad's GMM detector; frames must be 10, 20 or 30 ms at one of WEBRTC_RATES_HZ."""

    def __init__(self, aggressiveness: int = 2, sample_rate_hz: int = 16000) -> None:
        if aggressiveness not in range(4):
            raise ValueError(f"aggressiveness must be 0, 1, 2 or 3, got {aggressiveness}")
        if sample_rate_hz not in WEBRTC_RATES_HZ:
            raise ValueError(
                f"webrtcvad does not support sample_rate_hz={sample_rate_hz}; "
                f"use one of {WEBRTC_RATES_HZ}"
            )
        self.sample_rate_hz = sample_rate_hz
        self._vad = webrtcvad.Vad(aggressiveness)

    def __call__(self, frame: npt.NDArray[np.int16]) -> bool:
        return bool(
            self._vad.is_speech(frame.astype("<i2", copy=False).tobytes(), self.sample_rate_hz)
        )


class EnergyDetector:
    """Voiced when the frame's power is at least threshold_dbfs; deterministic.

    Meant for tests and as a fallback where webrtcvad is unavailable; it cannot tell
    speech from other loud sound.
    """

    def __init__(self, threshold_dbfs: float = -40.0) -> None:
        if not math.isfinite(threshold_dbfs) or threshold_dbfs > 0:
            raise ValueError(f"threshold_dbfs must be a finite value <= 0, got {threshold_dbfs}")
        self.threshold_dbfs = threshold_dbfs
        self._threshold_power = _FULL_SCALE_POWER * 10.0 ** (threshold_dbfs / 10.0)

    def __call__(self, frame: npt.NDArray[np.int16]) -> bool:
        return bool(frame_energy(frame) >= self._threshold_power)


class DetectorError(RuntimeError):
    """The detector raised on a frame; ``events`` are what the stream produced anyway
    (that frame counted as unvoiced), ``cause`` is the detector's exception."""

    def __init__(self, events: Sequence[Event], cause: BaseException) -> None:
        super().__init__(f"voice detector failed: {type(cause).__name__}: {cause}")
        self.events: list[Event] = list(events)
        self.cause = cause


def make_detector(config: SegmenterConfig, silero_model: Path | None = None) -> Detector:
    """A fresh detector for one stream as config says; Silero streams share one model
    session per process (loaded and checked on first use, see vad.silero)."""
    if config.detector == "webrtc":
        return WebRtcDetector(config.aggressiveness, config.sample_rate_hz)
    from vad.silero import SileroDetector, shared_model

    return SileroDetector(
        shared_model(silero_model), config.speech_threshold, config.threshold_hysteresis
    )
