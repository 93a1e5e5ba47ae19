"""What the segmenter reports: speech start and end, and segments of audio to classify."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class SpeechStart:
    sample: int
    t_ms: int


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    sample: int
    t_ms: int


@dataclass(frozen=True, slots=True, eq=False)
class Segment:
    """Audio in [start_sample, end_sample) of the segmenter's rate, as float32 in [-1, 1]."""

    start_sample: int
    end_sample: int
    start_ms: int
    end_ms: int
    audio: npt.NDArray[np.float32]
    too_short: bool

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segment):
            return NotImplemented
        return self._key() == other._key() and np.array_equal(self.audio, other.audio)

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[int, int, bool]:
        return (self.start_sample, self.end_sample, self.too_short)


Event = SpeechStart | SpeechEnd | Segment
