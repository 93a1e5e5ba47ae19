"""Signal checks for the browser tests: alignment, correlation, pitch, level."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float = npt.NDArray[np.float32]


def rms(audio: Float) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0


def align(received: Float, source: Float) -> tuple[int, float]:
    """Lag (received[i] ~ source[i - lag]) by FFT cross-correlation, and the Pearson r there."""
    size = 1 << int(np.ceil(np.log2(len(received) + len(source))))
    spectrum = np.fft.rfft(received, size) * np.conj(np.fft.rfft(source, size))
    xcorr = np.fft.irfft(spectrum, size)
    lag = int(np.argmax(xcorr))
    if lag > size // 2:
        lag -= size
    start = max(0, lag)
    stop = min(len(received), len(source) + lag)
    a = received[start:stop].astype(np.float64)
    b = source[start - lag : stop - lag].astype(np.float64)
    return lag, float(np.corrcoef(a, b)[0, 1])


def dominant_hz(audio: Float, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), 8 * len(audio)))
    return float(np.argmax(spectrum) * rate_hz / (8 * len(audio)))
