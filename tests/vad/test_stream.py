"""The whole pipeline for one stream, with webrtcvad on speech synthesised by espeak-ng."""

from __future__ import annotations

import functools
import itertools
import tracemalloc
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.speech import espeak, silence, tone
from vad.config import SegmenterConfig
from vad.detector import EnergyDetector
from vad.events import Event, Segment, SpeechEnd, SpeechStart
from vad.framing import FrameError, to_float, to_int16
from vad.resample import Resampler
from vad.stream import StreamSegmenter

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Hello there, how are you today?",
    "I am feeling rather happy about this.",
)
NOISE_LEVEL = 0.003  # about -50 dBFS of white noise under everything
Float = npt.NDArray[np.float32]


@functools.cache
def scene(rate_hz: int) -> tuple[Float, tuple[tuple[float, float], ...]]:
    """Three sentences after 0.6 s of noise, 1.0 s apart; their (start_ms, end_ms)."""
    parts = [silence(0.6, rate_hz)]
    truth = []
    position = len(parts[0])
    for text in SENTENCES:
        speech = espeak(text, sample_rate=rate_hz)
        truth.append((position * 1000 / rate_hz, (position + len(speech)) * 1000 / rate_hz))
        parts += [speech, silence(1.0, rate_hz)]
        position += len(speech) + rate_hz
    audio = np.concatenate(parts)
    audio += np.random.default_rng(rate_hz).normal(0, NOISE_LEVEL, len(audio)).astype(np.float32)
    return audio, tuple(truth)


def encode(audio: Float, encoding: str) -> bytes:
    if encoding == "pcm_f32le":
        return audio.astype("<f4").tobytes()
    return to_int16(audio).astype("<i2").tobytes()


def feed_in_chunks(stream: StreamSegmenter, data: bytes, sizes: list[int]) -> list[Event]:
    sample_bytes = 4 if stream.encoding == "pcm_f32le" else 2
    events: list[Event] = []
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(data):
            break
        events += stream.feed_bytes(data[start : start + size * sample_bytes])
        start += size * sample_bytes
    return events + stream.finish()


def utterances(events: list[Event]) -> list[list[Event]]:
    """Split into utterances, checking each is SpeechStart, Segment..., SpeechEnd."""
    groups: list[list[Event]] = []
    for event in events:
        if isinstance(event, SpeechStart):
            groups.append([event])
        else:
            assert groups, f"{event} before any SpeechStart"
            assert not isinstance(groups[-1][-1], SpeechEnd), f"{event} after SpeechEnd"
            groups[-1].append(event)
    for group in groups:
        assert isinstance(group[-1], SpeechEnd)
        assert isinstance(group[-2], Segment)
        assert all(isinstance(event, Segment) for event in group[1:-1])
    return groups


def resampled_reference(audio: Float, rate_hz: int, encoding: str) -> Float:
    received = to_float(to_int16(audio)) if encoding == "pcm_s16le" else audio
    resampler = Resampler(rate_hz, 16000)
    out = np.concatenate([resampler.process(received), resampler.flush()])
    return to_float(to_int16(out))


@pytest.mark.parametrize("encoding", ["pcm_s16le", "pcm_f32le"])
@pytest.mark.parametrize("rate_hz", [8000, 16000, 44100, 48000])
def test_three_sentences_found_at_any_rate(rate_hz: int, encoding: str) -> None:
    audio, truth = scene(rate_hz)
    stream = StreamSegmenter(SegmenterConfig(), rate_hz, encoding)  # type: ignore[arg-type]
    sizes = [int(size) for size in np.random.default_rng(rate_hz).integers(1, 4000, 50)]
    events = feed_in_chunks(stream, encode(audio, encoding), sizes)

    groups = utterances(events)
    assert len(groups) == len(SENTENCES)
    reference = resampled_reference(audio, rate_hz, encoding)
    previous_end = 0
    for group, (start_ms, end_ms) in zip(groups, truth, strict=True):
        start, *segments, end = group
        assert isinstance(start, SpeechStart)
        assert isinstance(end, SpeechEnd)
        assert abs(start.t_ms - start_ms) <= 100
        assert abs(end.t_ms - end_ms) <= 100
        assert isinstance(segments[0], Segment)
        assert segments[0].start_sample >= previous_end
        for segment in segments:
            assert isinstance(segment, Segment)
            assert 0 < segment.end_sample - segment.start_sample <= 48000
            assert segment.start_ms == segment.start_sample * 1000 // 16000
            np.testing.assert_array_equal(
                segment.audio, reference[segment.start_sample : segment.end_sample]
            )
        for before, after in itertools.pairwise(segments):
            assert isinstance(before, Segment)
            assert isinstance(after, Segment)
            assert before.end_sample == after.start_sample
        assert isinstance(segments[-1], Segment)
        previous_end = segments[-1].end_sample
        assert previous_end >= end.sample
    assert stream.input_samples == len(audio)
    assert stream.audio_ms == len(audio) * 1000 // rate_hz


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=12),
    encoding=st.sampled_from(["pcm_s16le", "pcm_f32le"]),
)
def test_chunking_does_not_change_the_events(sizes: list[int], encoding: str) -> None:
    audio = scene(44100)[0][: 44100 * 5]
    data = encode(audio, encoding)
    one_shot = StreamSegmenter(SegmenterConfig(), 44100, encoding)  # type: ignore[arg-type]
    expected = one_shot.feed_bytes(data) + one_shot.finish()
    chunked = StreamSegmenter(SegmenterConfig(), 44100, encoding)  # type: ignore[arg-type]
    assert feed_in_chunks(chunked, data, sizes) == expected
    assert len(expected) >= 3


def test_partial_sample_is_refused_and_changes_nothing() -> None:
    audio, _ = scene(16000)
    data = encode(audio[: 16000 * 4], "pcm_s16le")
    clean = StreamSegmenter(SegmenterConfig(), 16000)
    expected = clean.feed_bytes(data) + clean.finish()
    stream = StreamSegmenter(SegmenterConfig(), 16000)
    events = stream.feed_bytes(data[:20_000])
    with pytest.raises(FrameError, match=r"1023 bytes .* 2-byte pcm_s16le"):
        stream.feed_bytes(data[20_000:21_023])
    assert stream.input_samples == 10_000
    events += stream.feed_bytes(data[20_000:]) + stream.finish()
    assert events == expected


def test_f32_partial_sample_is_refused() -> None:
    stream = StreamSegmenter(SegmenterConfig(), 48000, "pcm_f32le")
    with pytest.raises(FrameError, match="6 bytes is not a whole number of 4-byte pcm_f32le"):
        stream.feed_bytes(b"\x00" * 6)


def test_finish_ends_speech_at_the_real_audio_end() -> None:
    rate_hz = 48000
    audio = np.concatenate([silence(1.0, rate_hz), tone(1.0123, sample_rate=rate_hz)])
    stream = StreamSegmenter(SegmenterConfig(), rate_hz, detector=EnergyDetector(-40.0))
    events = stream.feed_audio(audio) + stream.finish()
    total_16k = round(len(audio) * 16000 / rate_hz)
    assert total_16k % 480 != 0  # the last frame was padded
    assert [type(event) for event in events] == [SpeechStart, Segment, SpeechEnd]
    segment, end = events[1], events[2]
    assert isinstance(segment, Segment)
    assert isinstance(end, SpeechEnd)
    assert segment.end_sample == end.sample == total_16k
    assert len(segment.audio) == segment.end_sample - segment.start_sample
    assert stream.finish() == []
    with pytest.raises(RuntimeError, match="finished"):
        stream.feed_audio(audio)


def test_flush_ends_the_utterance_and_speech_may_resume() -> None:
    stream = StreamSegmenter(SegmenterConfig(), 16000, detector=EnergyDetector(-40.0))
    voice = tone(3.0)
    events = stream.feed_audio(voice[:16000])
    assert events == [SpeechStart(0, 0)]
    flushed = stream.flush()
    assert [type(event) for event in flushed] == [Segment, SpeechEnd]
    assert stream.flush() == []
    assert not stream.in_speech
    later = stream.feed_audio(voice[16000:]) + stream.finish()
    assert [type(event) for event in later] == [SpeechStart, Segment, SpeechEnd]
    first, second = flushed[0], later[1]
    assert isinstance(first, Segment)
    assert isinstance(second, Segment)
    assert second.start_sample >= first.end_sample


def test_float_upload_with_non_finite_samples() -> None:
    audio = tone(2.0).astype(np.float64)
    audio[1000:1100] = np.nan
    audio[5000] = np.inf
    stream = StreamSegmenter(SegmenterConfig(), 16000, detector=EnergyDetector(-40.0))
    events = stream.feed_audio(audio) + stream.finish()
    segment = events[1]
    assert isinstance(segment, Segment)
    assert np.isfinite(segment.audio).all()
    assert not segment.audio[1000:1100].any()
    with pytest.raises(ValueError, match=r"shape \(2, 100\)"):
        stream.feed_audio(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="got dtype int16"):
        stream.feed_audio(np.zeros(100, dtype=np.int16))


def test_empty_stream() -> None:
    stream = StreamSegmenter(SegmenterConfig(), 22050)
    assert stream.feed_bytes(b"") == []
    assert stream.finish() == []
    assert (stream.input_samples, stream.audio_ms) == (0, 0)


@pytest.mark.parametrize("rate_hz", [7999, 48001, 0])
def test_rate_outside_range_is_named(rate_hz: int) -> None:
    with pytest.raises(ValueError, match=f"sample rate {rate_hz} Hz is outside 8000-48000 Hz"):
        StreamSegmenter(SegmenterConfig(), rate_hz)


def test_unknown_encoding_is_named() -> None:
    with pytest.raises(ValueError, match="unknown encoding 'pcm_s24le'"):
        StreamSegmenter(SegmenterConfig(), 16000, "pcm_s24le")  # type: ignore[arg-type]


def _traced_bytes(action: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def test_idle_stream_holds_little_memory() -> None:
    quiet = encode(silence(10.0, 48000), "pcm_s16le")
    streams: list[StreamSegmenter] = []

    def open_and_idle() -> None:
        for _ in range(20):
            stream = StreamSegmenter(SegmenterConfig(), 48000)
            for start in range(0, len(quiet), 3840):
                stream.feed_bytes(quiet[start : start + 3840])
            streams.append(stream)

    per_stream = _traced_bytes(open_and_idle) / 20
    assert per_stream < 50_000


def test_active_stream_memory_is_bounded_by_the_segment_length() -> None:
    rate_hz = 48000
    voice = tone(1.0, sample_rate=rate_hz) + 0.05 * tone(1.0, 97.0, rate_hz)
    stream = StreamSegmenter(SegmenterConfig(), rate_hz, detector=EnergyDetector(-40.0))
    held: list[int] = []

    def speak_for_a_minute() -> None:
        for _ in range(60):
            stream.feed_audio(voice)  # events dropped at once, as a server would send them
            held.append(tracemalloc.get_traced_memory()[0])

    _traced_bytes(speak_for_a_minute)
    assert stream.in_speech
    assert max(held) < 2 * 48000 + 100_000  # one 3 s int16 segment buffer plus small change
    assert max(held[30:]) <= max(held[:30]) + 10_000  # no growth with the stream's length
