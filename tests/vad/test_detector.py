from __future__ import annotations

import math

import numpy as np
import pytest

from vad.detector import EnergyDetector, WebRtcDetector, frame_dbfs

FRAME = 480


def sine(level: float, freq_hz: float = 440.0) -> np.ndarray:
    t = np.arange(FRAME) / 16000
    return np.rint(level * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype(np.int16)


def test_frame_dbfs() -> None:
    assert frame_dbfs(np.zeros(FRAME, dtype=np.int16)) == -math.inf
    assert frame_dbfs(np.full(FRAME, -32768, dtype=np.int16)) == 0.0
    assert frame_dbfs(sine(0.5)) == pytest.approx(-9.03, abs=0.1)


def test_energy_detector_threshold() -> None:
    detector = EnergyDetector(-30.0)
    assert detector(sine(0.1))  # -23 dBFS
    assert not detector(sine(0.01))  # -43 dBFS
    assert not detector(np.zeros(FRAME, dtype=np.int16))


@pytest.mark.parametrize("threshold", [1.0, float("nan"), -float("inf")])
def test_energy_detector_rejects_bad_thresholds(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold_dbfs must be a finite value <= 0"):
        EnergyDetector(threshold)


def test_webrtc_detector_rejects_silence_and_bad_settings() -> None:
    assert WebRtcDetector(3, 16000)(np.zeros(FRAME, dtype=np.int16)) is False
    with pytest.raises(ValueError, match="aggressiveness must be 0, 1, 2 or 3, got 5"):
        WebRtcDetector(5, 16000)
    with pytest.raises(ValueError, match="sample_rate_hz=22050"):
        WebRtcDetector(2, 22050)


@pytest.mark.parametrize("rate_hz", [8000, 16000, 32000, 48000])
def test_webrtc_detector_accepts_its_rates(rate_hz: int) -> None:
    frame = np.zeros(rate_hz * 30 // 1000, dtype=np.int16)
    assert WebRtcDetector(2, rate_hz)(frame) is False
