"""Streaming resampling with soxr: low-pass filtered, delay-compensated, exact sample counts."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

# soxr grows its internal buffers to the largest chunk it is given and keeps them, so
# input is handed over in pieces of at most this many samples (output is unchanged).
MAX_CHUNK_SAMPLES = 1024


class Resampler:
    """Resamples one continuous mono float32 stream chunk by chunk.

    soxr compensates its own filter delay, so output sample n is at time n / out_rate_hz;
    after flush() the total output is round(total input * out_rate_hz / in_rate_hz).
    Equal rates pass audio through unchanged.
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int, quality: str = "HQ") -> None:
        for name, rate in (("in_rate_hz", in_rate_hz), ("out_rate_hz", out_rate_hz)):
            if rate <= 0:
                raise ValueError(f"{name} must be positive, got {rate}")
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self._stream: soxr.ResampleStream | None = None
        if in_rate_hz != out_rate_hz:
            self._stream = soxr.ResampleStream(
                in_rate_hz, out_rate_hz, 1, dtype="float32", quality=quality
            )
        self._flushed = False

    def process(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self._flushed:
            raise RuntimeError("resampler already flushed; the stream has ended")
        if audio.ndim != 1:
            raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
        samples = np.ascontiguousarray(audio, dtype=np.float32)
        stream = self._stream
        if stream is None:
            return samples
        if len(samples) <= MAX_CHUNK_SAMPLES:
            return _resample(stream, samples)
        parts = [
            _resample(stream, samples[start : start + MAX_CHUNK_SAMPLES])
            for start in range(0, len(samples), MAX_CHUNK_SAMPLES)
        ]
        return np.concatenate(parts)

    def flush(self) -> npt.NDArray[np.float32]:
        """The output still held in the filter; ends the stream (later calls return nothing)."""
        if self._flushed or self._stream is None:
            self._flushed = True
            return np.zeros(0, dtype=np.float32)
        self._flushed = True
        return _resample(self._stream, np.zeros(0, dtype=np.float32), last=True)


def _resample(
    stream: soxr.ResampleStream, samples: npt.NDArray[np.float32], last: bool = False
) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = stream.resample_chunk(samples, last=last)
    return out
