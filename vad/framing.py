"""Arbitrary chunks of int16 samples to exact VAD frames."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# The audio format itself is pcm's (one definition for every part); vad re-exports the
# names its callers have always used.
from pcm.format import ENCODINGS as ENCODINGS
from pcm.format import Encoding as Encoding
from pcm.format import FrameError as FrameError
from pcm.format import check_encoding as check_encoding
from pcm.format import decode_pcm as decode_pcm
from pcm.format import sample_bytes as sample_bytes
from pcm.format import sanitize as sanitize
from pcm.format import split_channels as split_channels
from pcm.format import to_float as to_float
from pcm.format import to_int16 as to_int16


class Reframer:
    """Cuts a stream of arbitrary-length int16 chunks into frames of exactly frame_samples.

    Whole frames inside a pushed chunk are returned as read-only views of that chunk;
    a frame completed from the carried-over remainder is a new array.
    """

    def __init__(self, frame_samples: int) -> None:
        if frame_samples < 1:
            raise ValueError(f"frame_samples must be at least 1, got {frame_samples}")
        self.frame_samples = frame_samples
        self._partial = np.zeros(frame_samples, dtype=np.int16)
        self._filled = 0

    @property
    def pending_samples(self) -> int:
        """Samples held back because they do not yet make a whole frame."""
        return self._filled

    def push(self, samples: npt.NDArray[np.int16]) -> list[npt.NDArray[np.int16]]:
        if samples.ndim != 1 or samples.dtype != np.int16:
            raise ValueError(
                f"expected a 1-D int16 array, got {samples.ndim}-D {samples.dtype} array"
            )
        frames: list[npt.NDArray[np.int16]] = []
        used = 0
        if self._filled:
            used = min(self.frame_samples - self._filled, len(samples))
            self._partial[self._filled : self._filled + used] = samples[:used]
            self._filled += used
            if self._filled < self.frame_samples:
                return frames
            frames.append(self._partial.copy())
            self._filled = 0
        whole_end = used + (len(samples) - used) // self.frame_samples * self.frame_samples
        for start in range(used, whole_end, self.frame_samples):
            frame = samples[start : start + self.frame_samples].view()
            frame.flags.writeable = False
            frames.append(frame)
        rest = len(samples) - whole_end
        self._partial[:rest] = samples[whole_end:]
        self._filled = rest
        return frames

    def flush(self) -> npt.NDArray[np.int16] | None:
        """The held-back partial frame zero-padded to a whole frame, or None if nothing is held."""
        if not self._filled:
            return None
        frame = np.zeros(self.frame_samples, dtype=np.int16)
        frame[: self._filled] = self._partial[: self._filled]
        self._filled = 0
        return frame
