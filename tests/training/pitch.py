"""Pitch of synthetic speech, for the prosody checks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from training.synthetic.acoustics import rms


def median_f0_hz(audio: npt.NDArray[np.float32], sample_rate_hz: int = 16000) -> float:
    """Median autocorrelation pitch over voiced 40 ms frames (60-500 Hz)."""
    frame, hop = int(0.04 * sample_rate_hz), int(0.01 * sample_rate_hz)
    lo, hi = sample_rate_hz // 500, sample_rate_hz // 60
    threshold = 0.3 * rms(audio)
    pitches = []
    for start in range(0, audio.size - frame, hop):
        x = audio[start : start + frame] - audio[start : start + frame].mean()
        if rms(x) < threshold:
            continue
        ac = np.correlate(x, x, "full")[frame - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            pitches.append(sample_rate_hz / lag)
    assert len(pitches) > 10, "too few voiced frames to estimate pitch"
    return float(np.median(pitches))
