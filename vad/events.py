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
    # Samples of the segment in frames the detector called speech (after the babble gate).
    voiced_samples: int = 0

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


@dataclass(frozen=True, slots=True, eq=False)
class InProgress:
    """The segment still being spoken, as far as it would reach if the utterance ended now.

    ``audio`` is a read-only view of the segmenter's own buffer (no copy): it is valid only
    until the next frame is pushed, so a caller that keeps it must copy it first.
    ``joined_samples`` counts all audio that has joined the segment, including trailing
    silence not (yet) part of it; ``classifiable`` is true only when the segment can no
    longer end shorter than the minimum segment length, whatever audio follows.
    """

    start_sample: int
    end_sample: int
    start_ms: int
    end_ms: int
    joined_samples: int
    audio: npt.NDArray[np.int16]
    classifiable: bool
    voiced_samples: int = 0  # as in Segment


Event = SpeechStart | SpeechEnd | Segment
