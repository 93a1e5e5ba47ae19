from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vad.framing import FrameError, Reframer, decode_pcm, sanitize, to_float, to_int16


def test_decode_s16_scales_to_unit_range() -> None:
    ints = np.array([0, 1, -1, 32767, -32768, 16384], dtype="<i2")
    audio = decode_pcm(ints.tobytes(), "pcm_s16le")
    assert audio.dtype == np.float32
    np.testing.assert_array_equal(audio, ints.astype(np.float32) / 32768)
    assert audio.min() == -1.0
    assert audio.max() < 1.0


def test_decode_f32_passes_values_through() -> None:
    values = np.array([0.0, 0.5, -0.25, 1.0, -1.0], dtype="<f4")
    np.testing.assert_array_equal(decode_pcm(values.tobytes(), "pcm_f32le"), values)


def test_decode_is_little_endian() -> None:
    assert decode_pcm(b"\x00\x40", "pcm_s16le")[0] == 0.5
    assert decode_pcm(np.array([0.5], dtype=">f4").tobytes(), "pcm_f32le")[0] != 0.5


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le"])
def test_decode_empty_bytes_gives_empty_array(encoding: str) -> None:
    audio = decode_pcm(b"", encoding)  # type: ignore[arg-type]
    assert audio.shape == (0,)
    assert audio.dtype == np.float32


@pytest.mark.parametrize(
    ("encoding", "size", "sample_bytes"),
    [("pcm_s16le", 1023, 2), ("pcm_s16le", 1, 2), ("pcm_f32le", 1022, 4), ("pcm_f32le", 3, 4)],
)
def test_decode_partial_sample_names_count_and_encoding(
    encoding: str, size: int, sample_bytes: int
) -> None:
    with pytest.raises(FrameError) as caught:
        decode_pcm(b"\x00" * size, encoding)  # type: ignore[arg-type]
    message = str(caught.value)
    assert f"{size} bytes" in message
    assert f"{sample_bytes}-byte {encoding}" in message


def test_frame_error_is_a_value_error() -> None:
    assert issubclass(FrameError, ValueError)


def test_decode_unknown_encoding_names_it() -> None:
    with pytest.raises(ValueError, match="'pcm_u8'"):
        decode_pcm(b"\x00\x00", "pcm_u8")  # type: ignore[arg-type]


def test_decode_f32_replaces_non_finite_with_zero_and_clips() -> None:
    values = np.array([np.nan, np.inf, -np.inf, 0.5, 3.0, -7.0], dtype="<f4")
    audio = decode_pcm(values.tobytes(), "pcm_f32le")
    np.testing.assert_array_equal(audio, [0.0, 0.0, 0.0, 0.5, 1.0, -1.0])


def test_sanitize_copies() -> None:
    source = np.array([0.25, np.nan], dtype=np.float64)
    clean = sanitize(source)
    assert clean.dtype == np.float32
    assert np.isnan(source[1])


def test_int16_round_trip_is_exact() -> None:
    ints = np.arange(-32768, 32768, dtype=np.int16)
    np.testing.assert_array_equal(to_int16(to_float(ints)), ints)


def test_to_int16_saturates_and_rounds() -> None:
    audio = np.array([1.0, -1.0, 2.0, 0.5 / 32768, 1.6 / 32768], dtype=np.float32)
    np.testing.assert_array_equal(to_int16(audio), [32767, -32768, 32767, 0, 2])


def test_reframer_random_chunks_reproduce_input() -> None:
    rng = np.random.default_rng(7)
    samples = rng.integers(-32768, 32767, size=50_000, dtype=np.int16)
    reframer = Reframer(480)
    frames: list[np.ndarray] = []
    start = 0
    while start < len(samples):
        size = int(rng.integers(0, 2000))
        frames += reframer.push(samples[start : start + size])
        start += size
    assert all(frame.shape == (480,) and frame.dtype == np.int16 for frame in frames)
    whole = len(samples) // 480 * 480
    np.testing.assert_array_equal(np.concatenate(frames), samples[:whole])
    assert reframer.pending_samples == len(samples) - whole
    last = reframer.flush()
    assert last is not None
    np.testing.assert_array_equal(last[: len(samples) - whole], samples[whole:])
    assert not last[len(samples) - whole :].any()


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=700), max_size=30),
    frame_samples=st.sampled_from([80, 160, 320, 480]),
)
def test_reframer_any_chunking_gives_the_same_frames(sizes: list[int], frame_samples: int) -> None:
    samples = np.arange(sum(sizes), dtype=np.int16)
    reframer = Reframer(frame_samples)
    frames: list[np.ndarray] = []
    start = 0
    for size in sizes:
        frames += reframer.push(samples[start : start + size])
        start += size
    tail = reframer.flush()
    out = np.concatenate([*frames, tail] if tail is not None else [*frames, samples[:0]])
    np.testing.assert_array_equal(out[: len(samples)], samples)
    assert len(out) == -(-len(samples) // frame_samples) * frame_samples


def test_reframer_flush_with_nothing_pending_is_none() -> None:
    reframer = Reframer(160)
    assert reframer.flush() is None
    assert len(reframer.push(np.zeros(320, dtype=np.int16))) == 2
    assert reframer.flush() is None


def test_reframer_frames_do_not_change_when_the_carry_buffer_is_reused() -> None:
    reframer = Reframer(4)
    first = reframer.push(np.array([1, 2, 3], dtype=np.int16))
    assert first == []
    (frame,) = reframer.push(np.array([4, 5, 6], dtype=np.int16))
    reframer.push(np.array([7, 8, 9, 10, 11], dtype=np.int16))
    np.testing.assert_array_equal(frame, [1, 2, 3, 4])


def test_reframer_rejects_wrong_dtype_and_shape() -> None:
    reframer = Reframer(160)
    with pytest.raises(ValueError, match="float32"):
        reframer.push(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        reframer.push(np.zeros((2, 160), dtype=np.int16))


def test_reframer_rejects_empty_frames() -> None:
    with pytest.raises(ValueError, match="frame_samples must be at least 1, got 0"):
        Reframer(0)
