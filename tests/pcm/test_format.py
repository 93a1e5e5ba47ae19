"""The shared audio format: one int16 scale and rounding rule, both ways, for every part."""

from __future__ import annotations

import numpy as np
import pytest

from pcm.format import (
    BYTES_PER_SAMPLE,
    ENCODINGS,
    INT16_SCALE,
    FrameError,
    decode_pcm,
    pcm16_bytes,
    to_float,
    to_int16,
)


def test_every_encoding_has_a_sample_width() -> None:
    assert set(BYTES_PER_SAMPLE) == set(ENCODINGS)


def test_pcm16_bytes_round_trip_is_within_half_a_step() -> None:
    audio = np.random.default_rng(0).uniform(-0.999, 0.999, 10_000).astype(np.float32)
    decoded = decode_pcm(pcm16_bytes(audio), "pcm_s16le")
    assert np.max(np.abs(decoded - audio)) <= 0.5 / INT16_SCALE + 1e-7


def test_int16_to_float_and_back_is_exact() -> None:
    ints = np.arange(-32768, 32768, dtype=np.int16)
    np.testing.assert_array_equal(to_int16(to_float(ints)), ints)


def test_float64_input_and_saturation() -> None:
    assert to_int16(np.array([1.5, -1.5, 0.25])).tolist() == [32767, -32768, 8192]
    assert pcm16_bytes(np.array([-1.0])) == (-32768).to_bytes(2, "little", signed=True)


def test_a_partial_sample_is_refused_naming_the_encoding() -> None:
    with pytest.raises(FrameError, match=r"3 bytes .* 2-byte pcm_s16le"):
        decode_pcm(b"\x00\x01\x02", "pcm_s16le")
