"""Upload bodies, multipart parsing and decoding (server/upload.py, multipart.py,
decoding.py), without the HTTP layer."""

from __future__ import annotations

import asyncio
import io
import struct
import tracemalloc
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import soxr

from server import decoding
from server.decoding import (
    MAX_FILE_RATE_HZ,
    MIN_FILE_RATE_HZ,
    DecodedAudio,
    decode_audio,
    wav_truncation,
)
from server.multipart import MAX_PARTS, multipart_file, upload_bytes
from server.settings import MAX_UPLOAD_SAMPLES
from server.upload import UploadError, read_limited
from tests.speech import silence, tone, wav_bytes

Float = npt.NDArray[np.float32]
TARGET_HZ = 16000
LONG_MS = 600_000


def encode(audio: Float, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def peak_hz(audio: Float, rate: int = TARGET_HZ) -> float:
    window = np.hanning(audio.size)
    spectrum = np.abs(np.fft.rfft(audio * window))
    return float(np.fft.rfftfreq(audio.size, 1 / rate)[int(np.argmax(spectrum))])


def rms(audio: Float) -> float:
    return float(np.sqrt(np.mean(np.square(audio.astype(np.float64)))))


def decode(data: bytes, max_ms: int = LONG_MS) -> DecodedAudio:
    return decode_audio(data, TARGET_HZ, max_ms, MAX_UPLOAD_SAMPLES)


def outcome_of(data: bytes) -> DecodedAudio | UploadError:
    try:
        return decode(data)
    except UploadError as exc:
        return exc


def refused(data: bytes, max_ms: int = LONG_MS) -> UploadError:
    with pytest.raises(UploadError) as info:
        decode(data, max_ms)
    return info.value


def assert_tone(decoded: DecodedAudio, freq_hz: float, level: float, seconds: float) -> None:
    audio = decoded.audio
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert abs(audio.size - seconds * TARGET_HZ) <= 2
    assert decoded.duration_ms == round(seconds * 1000)
    assert peak_hz(audio) == pytest.approx(freq_hz, abs=1.5)
    # Skip the resampler's edges; a sine's RMS is its level over sqrt(2).
    middle = audio[800:-800]
    assert rms(middle) == pytest.approx(level / np.sqrt(2), rel=0.03)


# WAV variants


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_sample_formats(subtype: str) -> None:
    data = encode(tone(1.0, 440.0, 16000, level=0.5), 16000, subtype=subtype)
    assert sf.info(io.BytesIO(data)).subtype == subtype
    decoded = decode(data)
    assert decoded.sample_rate == 16000
    assert_tone(decoded, 440.0, 0.5, 1.0)


def test_wav_pcm_u8_is_centred() -> None:
    decoded = decode(encode(silence(0.5), 16000, subtype="PCM_U8"))
    assert np.max(np.abs(decoded.audio)) < 1e-2


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_wav_sample_rates_are_resampled(rate: int, subtype: str) -> None:
    data = encode(tone(1.0, 440.0, rate, level=0.4), rate, subtype=subtype)
    decoded = decode(data)
    assert decoded.sample_rate == rate
    assert_tone(decoded, 440.0, 0.4, 1.0)


def test_resampling_removes_content_above_the_new_nyquist() -> None:
    # 12 kHz is fine at 48 kHz but must not fold back to 4 kHz at 16 kHz (no sample picking).
    data = encode(tone(1.0, 12000.0, 48000, level=0.5), 48000, subtype="FLOAT")
    assert rms(decode(data).audio[800:-800]) < 0.01


def test_long_file_is_decoded_across_blocks_like_one_shot_resampling() -> None:
    rng = np.random.default_rng(3)
    audio = (tone(12.0, 440.0, 44100, level=0.3) + rng.normal(0, 0.05, 12 * 44100)).astype(
        np.float32
    )
    decoded = decode(encode(audio, 44100, subtype="FLOAT"))
    expected = soxr.resample(audio, 44100, TARGET_HZ)
    assert abs(decoded.audio.size - expected.size) <= 1
    n = min(decoded.audio.size, expected.size)
    np.testing.assert_allclose(decoded.audio[:n], expected[:n], atol=2e-3)
    assert decoded.duration_ms == 12_000


def test_stereo_is_mixed_to_mono() -> None:
    left = tone(1.0, 440.0, 44100, level=0.6)
    same = decode(encode(np.stack([left, left], axis=1), 44100))
    assert_tone(same, 440.0, 0.6, 1.0)
    one_side = decode(encode(np.stack([left, np.zeros_like(left)], axis=1), 44100))
    assert_tone(one_side, 440.0, 0.3, 1.0)
    opposed = decode(encode(np.stack([left, -left], axis=1), 44100))
    assert np.max(np.abs(opposed.audio)) < 1e-3


def test_many_channels_are_mixed_to_mono() -> None:
    channels = np.stack([tone(2.0, 300.0, 16000, level=0.8)] + [silence(2.0)] * 7, axis=1)
    decoded = decode(encode(channels, 16000, subtype="FLOAT"))
    assert_tone(decoded, 300.0, 0.1, 2.0)


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("FLAC", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")]
)
def test_flac_and_ogg(fmt: str, subtype: str) -> None:
    decoded = decode(encode(tone(2.0, 440.0, 48000, level=0.5), 48000, fmt, subtype))
    assert decoded.sample_rate == 48000
    assert_tone(decoded, 440.0, 0.5, 2.0)


def test_streamed_wav_with_placeholder_size_is_read() -> None:
    # sox and espeak-ng writing to a pipe leave 0x7FFFF000 as the data size.
    data = bytearray(wav_bytes(tone(1.0, 440.0, level=0.5)))
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0x7FFFF000)
    data[4:8] = struct.pack("<I", 0x7FFFF024)
    assert wav_truncation(bytes(data)) is None
    assert_tone(decode(bytes(data)), 440.0, 0.5, 1.0)


def test_one_sample_file_is_read() -> None:
    decoded = decode(wav_bytes(np.array([0.5], dtype=np.float32)))
    assert decoded.audio.size == 1
    assert decoded.duration_ms == 0


# Refusals


def test_empty_file() -> None:
    error = refused(b"")
    assert (error.status, error.code) == (400, "bad_audio")
    assert "empty" in str(error)


def test_header_only_wav() -> None:
    header = wav_bytes(silence(0.0))
    assert len(header) == 44
    error = refused(header)
    assert (error.status, error.code) == (400, "bad_audio")
    assert "no audio samples" in str(error)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_wav_is_refused(keep: float) -> None:
    data = wav_bytes(tone(1.0))
    error = refused(data[: int(len(data) * keep)])
    assert (error.status, error.code) == (400, "bad_audio")
    assert "truncated" in str(error)
    assert "32000 bytes" in str(error)


@pytest.mark.parametrize("cut", [3, 11, 20, 30, 40])
def test_wav_cut_inside_the_header(cut: int) -> None:
    error = refused(wav_bytes(tone(1.0))[:cut])
    assert (error.status, error.code) == (400, "bad_audio")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        b"hello, this is a text file and not audio at all\n" * 20,
        b'{"audio": [0, 1, 2]}',
        np.random.default_rng(1).bytes(20_000),
        b"RIFF\x00\x00\x00\x00WAVE",
        b"fLaC" + bytes(100),
        b"OggS" + bytes(100),
    ],
    ids=["png", "text", "json", "random", "riff-only", "flac-magic", "ogg-magic"],
)
def test_not_audio(data: bytes) -> None:
    error = refused(data)
    assert (error.status, error.code) == (400, "bad_audio")
    assert str(error)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_non_finite_samples_are_refused(bad: float, subtype: str) -> None:
    audio = tone(1.0)
    audio[1234] = bad
    error = refused(encode(audio, 16000, subtype=subtype))
    assert (error.status, error.code) == (400, "bad_audio")
    assert "NaN or infinite" in str(error)


def test_too_long_audio() -> None:
    error = refused(wav_bytes(tone(2.0)), max_ms=1500)
    assert (error.status, error.code) == (413, "too_large")
    assert "2000 ms" in str(error)
    assert "1500 ms" in str(error)
    assert decode(wav_bytes(tone(1.5)), max_ms=1500).duration_ms == 1500


class _Understating:
    """A decoder whose header claims one frame but which yields ``audio`` (soundfile itself
    stops at the header's count, so this is defence in depth for other decoders)."""

    samplerate = 16000
    channels = 1
    frames = 1

    def __init__(self, audio: Float) -> None:
        self._audio = audio[:, np.newaxis]
        self._at = 0

    def read(self, frames: int, dtype: str, always_2d: bool) -> Float:
        block = self._audio[self._at : self._at + frames]
        self._at += block.shape[0]
        return block


def test_too_long_is_found_while_decoding_whatever_the_header_says() -> None:
    with pytest.raises(UploadError) as info:
        decoding._decode(_Understating(tone(3.0)), TARGET_HZ, 1000, MAX_UPLOAD_SAMPLES)
    assert (info.value.status, info.value.code) == (413, "too_large")
    decoded = decoding._decode(_Understating(tone(0.9)), TARGET_HZ, 1000, MAX_UPLOAD_SAMPLES)
    assert decoded.duration_ms == 900


def _multichannel_flac(seconds: float, rate: int, channels: int) -> bytes:
    audio = np.zeros((int(seconds * rate), channels), dtype=np.float32)
    return encode(audio, rate, "FLAC")


def test_decode_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 s of silent 384 kHz × 8-channel FLAC: a small file, 6.1 million samples to decode.
    data = _multichannel_flac(2.0, 384_000, 8)
    assert len(data) < 200_000
    reads: list[int] = []
    real_read = sf.SoundFile.read

    def counted(self: sf.SoundFile, *args: object, **kwargs: object) -> object:
        reads.append(1)
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sf.SoundFile, "read", counted)
    with pytest.raises(UploadError) as info:
        decode_audio(data, TARGET_HZ, LONG_MS, max_samples=6_000_000)
    assert (info.value.status, info.value.code) == (413, "too_large")
    assert "768000 frames × 8 channels at 384000 Hz" in str(info.value)
    assert "6000000 samples" in str(info.value)
    assert reads == []
    assert decode_audio(data, TARGET_HZ, LONG_MS, max_samples=6_200_000).duration_ms == 2000


def test_decoded_samples_are_counted_whatever_the_header_says() -> None:
    with pytest.raises(UploadError, match="samples to decode") as info:
        decoding._decode(_Understating(tone(3.0)), TARGET_HZ, LONG_MS, 40_000)
    assert (info.value.status, info.value.code) == (413, "too_large")


def test_default_sample_budget_refuses_the_reported_bomb() -> None:
    # The review's bomb: 60 s of 384 kHz × 8 channels is 184 million samples to decode,
    # while 10 minutes of 48 kHz stereo (the largest ordinary upload) is within budget.
    assert 60 * 384_000 * 8 > MAX_UPLOAD_SAMPLES >= 600 * 48_000 * 2


def test_flac_of_unknown_length_is_not_called_too_long() -> None:
    data = bytearray(encode(tone(1.0, 440.0, 8000), 8000, "FLAC"))
    fields = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)  # total samples 0: unknown
    data[18:26] = fields.to_bytes(8, "big")
    outcome = outcome_of(bytes(data))
    if isinstance(outcome, UploadError):  # libsndfile cannot seek in such a stream in memory
        assert (outcome.status, outcome.code) == (400, "bad_audio")
        assert "cannot decode audio" in str(outcome)
    else:
        assert_tone(outcome, 440.0, 0.3, 1.0)


def _wav_with_rate(rate: int) -> bytes:
    data = bytearray(wav_bytes(tone(0.1)))
    at = data.index(b"fmt ")
    data[at + 12 : at + 16] = struct.pack("<I", rate)  # sample rate
    data[at + 16 : at + 20] = struct.pack("<I", rate * 2 % 2**32)  # byte rate
    return bytes(data)


@pytest.mark.parametrize("rate", [1, 100, MIN_FILE_RATE_HZ - 1, MAX_FILE_RATE_HZ + 1, 2_000_000])
def test_implausible_sample_rate_is_refused(rate: int) -> None:
    error = refused(_wav_with_rate(rate))
    assert (error.status, error.code) == (400, "bad_audio")
    assert f"{rate} Hz" in str(error)


@pytest.mark.parametrize("rate", [0, 4_000_000_000])
def test_impossible_sample_rate_is_refused(rate: int) -> None:
    error = refused(_wav_with_rate(rate))
    assert (error.status, error.code) == (400, "bad_audio")


@pytest.mark.parametrize("rate", [MIN_FILE_RATE_HZ, MAX_FILE_RATE_HZ])
def test_extreme_but_plausible_rates_decode(rate: int) -> None:
    decoded = decode(_wav_with_rate(rate))
    assert decoded.sample_rate == rate
    assert decoded.audio.size == pytest.approx(1600 * TARGET_HZ / rate, abs=2)


def _peak_bytes_while(data: bytes) -> tuple[DecodedAudio | UploadError, int]:
    tracemalloc.start()
    try:
        outcome: DecodedAudio | UploadError = decode(data)
    except UploadError as exc:
        outcome = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return outcome, peak


def test_wav_header_claiming_gigabytes_decodes_what_is_there() -> None:
    data = bytearray(wav_bytes(tone(1.0, 440.0, level=0.5)))
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFF0)
    data[4:8] = struct.pack("<I", 0xFFFFFFF8)
    outcome, peak = _peak_bytes_while(bytes(data))
    assert isinstance(outcome, DecodedAudio)
    assert_tone(outcome, 440.0, 0.5, 1.0)
    assert peak < 16 * 2**20


def test_flac_header_claiming_gigabytes_allocates_no_more_than_it_decodes() -> None:
    # 8 channels at 48 kHz, STREAMINFO patched to claim 7 million frames (146 s, under the
    # duration and decoded-samples limits): reading "all frames" at once would allocate
    # 7e6 * 8 * 4 = 224 MB.
    audio = np.zeros((4800, 8), dtype=np.float32)
    audio[:, 0] = tone(0.1, 440.0, 48000)
    data = bytearray(encode(audio, 48000, "FLAC"))
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big")  # rate, channels, bits, 36-bit total samples
    fields = (fields & ~((1 << 36) - 1)) | 7_000_000
    data[18:26] = fields.to_bytes(8, "big")
    assert sf.info(io.BytesIO(bytes(data))).frames == 7_000_000
    outcome, peak = _peak_bytes_while(bytes(data))
    if isinstance(outcome, UploadError):
        assert (outcome.status, outcome.code) == (400, "bad_audio")
    else:
        assert outcome.audio.size <= 1700
    assert peak < 64 * 2**20


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")]
)
def test_mutated_files_decode_or_are_refused(fmt: str, subtype: str) -> None:
    original = encode(tone(0.3, 440.0, 22050), 22050, fmt, subtype)
    rng = np.random.default_rng(7)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(150):
        data = bytearray(original)
        for at in rng.integers(0, len(data), size=int(rng.integers(1, 8))):
            data[at] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(1, len(data)))]
        outcome = outcome_of(bytes(data))
        if isinstance(outcome, UploadError):
            assert outcome.status in (400, 413)
            outcomes["refused"] += 1
        else:
            assert outcome.audio.dtype == np.float32
            assert np.all(np.isfinite(outcome.audio))
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 0


# Request bodies


def boundary_body(
    parts: list[tuple[str, bytes]], boundary: str = "XyZ", close: bool = True
) -> bytes:
    out = b""
    for name, value in parts:
        out += (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{name}"; filename="{name}.wav"\r\n'
                "Content-Type: audio/wav\r\n\r\n"
            ).encode()
            + value
            + b"\r\n"
        )
    if close:
        out += f"--{boundary}--\r\n".encode()
    return out


MULTIPART = "multipart/form-data; boundary=XyZ"


def test_multipart_file_field() -> None:
    wav = wav_bytes(tone(0.2))
    body = boundary_body([("note", b"hello"), ("file", wav), ("other", b"x")])
    assert multipart_file(body, MULTIPART) == wav
    assert upload_bytes(body, MULTIPART) == wav


def test_multipart_file_is_a_view_of_the_body_not_a_copy() -> None:
    wav = wav_bytes(tone(0.5))
    body = bytearray(boundary_body([("note", b"hello"), ("file", wav)]))
    part = multipart_file(body, MULTIPART)
    assert isinstance(part, memoryview)
    assert part.obj is body
    assert part == wav
    assert decode_audio(part, TARGET_HZ, LONG_MS, MAX_UPLOAD_SAMPLES).duration_ms == 500


def test_multipart_quoted_boundary_and_binary_content() -> None:
    payload = bytes(range(256)) * 40 + b"\r\n--Xy"  # looks like a boundary start but is not
    body = boundary_body([("file", payload)], boundary="a'b(c)")
    assert multipart_file(body, 'multipart/form-data; boundary="a\'b(c)"') == payload


def test_multipart_without_file_field() -> None:
    with pytest.raises(UploadError, match="no 'file' field") as info:
        multipart_file(boundary_body([("audio", b"abc")]), MULTIPART)
    assert (info.value.status, info.value.code) == (400, "bad_request")


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary="])
def test_multipart_without_boundary(content_type: str) -> None:
    with pytest.raises(UploadError, match="no boundary") as info:
        multipart_file(boundary_body([("file", b"abc")]), content_type)
    assert (info.value.status, info.value.code) == (400, "bad_request")


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\xffgarbage" * 100,
        b"--XyZ\r\nno colon in this header\r\n\r\nabc\r\n--XyZ--\r\n",
        b'--XyZ\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc',
        b"--XyZ\r\n",
        b"",
        b"--Other\r\n\r\n\r\n--Other--\r\n",
    ],
    ids=["garbage", "bad-header", "unterminated", "only-boundary", "empty", "other-boundary"],
)
def test_malformed_multipart(body: bytes) -> None:
    with pytest.raises(UploadError) as info:
        multipart_file(body, MULTIPART)
    assert (info.value.status, info.value.code) == (400, "bad_request")


def test_multipart_part_limit() -> None:
    many = [(f"f{i}", b"x") for i in range(MAX_PARTS)]
    assert multipart_file(boundary_body([*many[:-1], ("file", b"ok")]), MULTIPART) == b"ok"
    with pytest.raises(UploadError, match=f"more than {MAX_PARTS} parts") as info:
        multipart_file(boundary_body([*many, ("file", b"late")]), MULTIPART)
    assert (info.value.status, info.value.code) == (400, "bad_request")


@pytest.mark.parametrize(
    "content_type",
    ["audio/wav", "audio/x-wav", "AUDIO/WAV", "audio/flac; rate=16000", " audio/ogg "],
)
def test_raw_audio_content_types(content_type: str) -> None:
    assert upload_bytes(b"RIFF....", content_type) == b"RIFF...."


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/json", "", "application/octet-stream", "video/mp4", "audio"],
)
def test_unsupported_content_types(content_type: str) -> None:
    with pytest.raises(UploadError) as info:
        upload_bytes(b"data", content_type)
    assert (info.value.status, info.value.code) == (415, "unsupported_media_type")
    assert repr(content_type.strip().lower()) in str(info.value)


def test_unsupported_content_type_is_quoted_briefly() -> None:
    with pytest.raises(UploadError) as info:
        upload_bytes(b"data", "x/" + "y" * 5000)
    assert len(str(info.value)) < 200


async def _chunks(parts: list[bytes], then_fail: bool = False) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    if then_fail:
        raise AssertionError("read past the limit")


def test_read_limited_joins_chunks_up_to_the_limit() -> None:
    assert asyncio.run(read_limited(_chunks([b"ab", b"", b"cd"]), 4, 10.0)) == b"abcd"


def test_read_limited_times_out_a_slow_body() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b"0123456789"
        await asyncio.Event().wait()  # the rest of the declared body never comes
        yield b"never"

    with pytest.raises(UploadError, match=r"not received within 0\.2 s") as info:
        asyncio.run(read_limited(trickle(), 1_000_000, 0.2))
    assert (info.value.status, info.value.code) == (408, "bad_request")
    assert "10 bytes came" in str(info.value)


def test_read_limited_stops_at_the_first_chunk_over_the_limit() -> None:
    with pytest.raises(UploadError, match="exceeds 4 bytes") as info:
        asyncio.run(read_limited(_chunks([b"abc", b"de"], then_fail=True), 4, 10.0))
    assert (info.value.status, info.value.code) == (413, "too_large")
