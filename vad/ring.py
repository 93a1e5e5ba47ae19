"""A fixed-size ring of the most recent int16 samples of a stream, addressed by stream position."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class SampleRing:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._data = np.zeros(capacity, dtype=np.int16)
        self.end = 0

    @property
    def start(self) -> int:
        """Stream position of the oldest sample still held."""
        return max(0, self.end - self.capacity)

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        if len(samples) > self.capacity:
            self.end += len(samples) - self.capacity
            samples = samples[-self.capacity :]
        at = self.end % self.capacity
        first = min(len(samples), self.capacity - at)
        self._data[at : at + first] = samples[:first]
        self._data[: len(samples) - first] = samples[first:]
        self.end += len(samples)

    def read_into(self, out: npt.NDArray[np.int16], start: int) -> int:
        """Copy the samples from stream position start to the end into out; returns the count."""
        if not self.start <= start <= self.end:
            raise ValueError(
                f"position {start} is outside the held range [{self.start}, {self.end}]"
            )
        count = self.end - start
        at = start % self.capacity
        first = min(count, self.capacity - at)
        out[:first] = self._data[at : at + first]
        out[first:count] = self._data[: count - first]
        return count

    def clear(self) -> None:
        self.end = 0
