from __future__ import annotations

import numpy as np
import pytest

from vad.ring import SampleRing


def test_reads_back_the_latest_samples_across_wraps() -> None:
    ring = SampleRing(1000)
    stream = np.arange(10_000, dtype=np.int16)
    out = np.zeros(1000, dtype=np.int16)
    for start in range(0, 10_000, 480):
        ring.write(stream[start : start + 480])
        position = ring.end
        count = ring.read_into(out, ring.start)
        np.testing.assert_array_equal(out[:count], stream[max(0, position - 1000) : position])


def test_oversized_write_keeps_the_tail() -> None:
    ring = SampleRing(10)
    ring.write(np.arange(25, dtype=np.int16))
    out = np.zeros(10, dtype=np.int16)
    assert (ring.start, ring.end) == (15, 25)
    assert ring.read_into(out, 20) == 5
    np.testing.assert_array_equal(out[:5], np.arange(20, 25))


def test_rejects_positions_no_longer_held() -> None:
    ring = SampleRing(10)
    ring.write(np.zeros(30, dtype=np.int16))
    with pytest.raises(ValueError, match=r"position 5 is outside the held range \[20, 30\]"):
        ring.read_into(np.zeros(30, dtype=np.int16), 5)
    with pytest.raises(ValueError, match="capacity must be at least 1, got 0"):
        SampleRing(0)
