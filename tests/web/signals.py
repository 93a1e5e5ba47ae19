"""Signal checks for the browser tests: alignment, correlation, pitch, level."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Float = npt.NDArray[np.float32]


def rms(audio: Float) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0


def align_lag(received: Float, source: Float) -> int:
    """Lag (received[i] ~ source[i - lag]) by FFT cross-correlation."""
    size = 1 << int(np.ceil(np.log2(len(received) + len(source))))
    spectrum = np.fft.rfft(received, size) * np.conj(np.fft.rfft(source, size))
    xcorr = np.fft.irfft(spectrum, size)
    lag = int(np.argmax(xcorr))
    return lag - size if lag > size // 2 else lag


def align(received: Float, source: Float) -> tuple[int, float]:
    """Lag (received[i] ~ source[i - lag]) by FFT cross-correlation, and the Pearson r there."""
    lag = align_lag(received, source)
    start = max(0, lag)
    stop = min(len(received), len(source) + lag)
    a = received[start:stop].astype(np.float64)
    b = source[start - lag : stop - lag].astype(np.float64)
    return lag, float(np.corrcoef(a, b)[0, 1])


def dominant_hz(audio: Float, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)), 8 * len(audio)))
    return float(np.argmax(spectrum) * rate_hz / (8 * len(audio)))


def piecewise_correlation(
    received: Float, source: Float, rate_hz: int = 16000, window_s: float = 0.25
) -> list[float]:
    """Pearson r of each voiced window of ``received`` at its own best lag in ``source``.

    Chromium's fake capture device drops a render quantum now and then on a busy or slow
    host (seen here: 10 ms, up to eight times in 7 s), which shifts everything after it;
    one global lag then misaligns the rest. Aligning each window on its own keeps the test
    about what the page does to the audio (rate, resampling, encoding): a wrong chain makes
    every window disagree, a dropped quantum only the window it falls in.
    """
    window = round(window_s * rate_hz)
    level = 0.1 * rms(received)
    correlations = []
    for start in range(0, len(received) - window + 1, window):
        piece = received[start : start + window]
        if rms(piece) < level:
            continue
        lag = align_lag(piece, source)
        first, last = max(0, lag), min(window, len(source) + lag)  # piece[i] ~ source[i - lag]
        if last - first < window // 2:  # the window lies past the source's end: nothing to match
            continue
        a = piece[first:last].astype(np.float64)
        b = source[first - lag : last - lag].astype(np.float64)
        correlations.append(float(np.corrcoef(a, b)[0, 1]))
    return correlations


def assert_same_audio(received: Float, source: Float) -> None:
    """The typical voiced window matches the source almost exactly, and half of them closely
    (windows across a dropped quantum, or across a tone's onset, may not)."""
    correlations = piecewise_correlation(received, source)
    assert len(correlations) >= 4, "too little voiced audio received"
    good = sum(r > 0.9 for r in correlations) / len(correlations)
    assert float(np.median(correlations)) > 0.95 and good >= 0.5, correlations
