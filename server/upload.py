"""Uploaded recordings: the body read into memory under a size limit, then decoded."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

UPLOAD_FIELD = "file"
MAX_PARTS = 16
# Sample rates a recording may have; anything outside is a broken or hostile header.
MIN_FILE_RATE_HZ = 1000
MAX_FILE_RATE_HZ = 384_000
# libsndfile's frame count for a stream of unknown length (SF_COUNT_MAX).
_UNKNOWN_FRAMES = 2**63 - 1
# Samples (frames × channels) decoded at a time.
_BLOCK_SAMPLES = 1 << 18
# WAV chunks looked at before the data chunk. Writers that stream to a pipe cannot fill in
# its size: they leave 0, or a huge placeholder (sox and espeak-ng 0x7FFFF000, others 2**32-1).
_MAX_WAV_CHUNKS = 64
_PLACEHOLDER_WAV_SIZE = 0x7FFFF000


class UploadError(ValueError):
    """A refused upload: ``status`` and ``code`` as in the protocol's error table."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise UploadError(413, "too_large", f"request body exceeds {max_bytes} bytes")
    return bytes(body)


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


class _PartCollector:
    """Collects the parts of a multipart body in memory (never in temporary files)."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self.complete = False
        self._field = b""
        self._value = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_part_data": self._data,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise UploadError(400, "bad_request", f"multipart body has more than {MAX_PARTS} parts")
        self.parts.append(_Part())

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self.parts[-1].headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].data += data[start:end]

    def _end(self) -> None:
        self.complete = True


def multipart_file(body: bytes, content_type: str) -> bytes:
    """The contents of the ``file`` field of a multipart/form-data body."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_request", "multipart/form-data body has no boundary")
    collector = _PartCollector()
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(400, "bad_request", f"malformed multipart body: {exc}") from exc
    if not collector.complete:
        raise UploadError(400, "bad_request", "multipart body ends before its closing boundary")
    for part in collector.parts:
        _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
        if disposition.get(b"name") == UPLOAD_FIELD.encode():
            return bytes(part.data)
    raise UploadError(400, "bad_request", f"multipart body has no {UPLOAD_FIELD!r} field")


def upload_bytes(body: bytes, content_type: str) -> bytes:
    """The audio file carried by a request body, by its content type."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return multipart_file(body, content_type)
    if media_type.startswith("audio/"):
        return body
    raise UploadError(
        415,
        "unsupported_media_type",
        f"content type {media_type[:60]!r} is not accepted: send multipart/form-data "
        "with a 'file' field, or the raw file as audio/*",
    )


@dataclass(frozen=True)
class DecodedAudio:
    audio: npt.NDArray[np.float32]
    sample_rate: int
    duration_ms: int


def decode_audio(data: bytes, target_rate_hz: int, max_duration_ms: int) -> DecodedAudio:
    """Decode a WAV/FLAC/OGG file in memory to mono float32 at ``target_rate_hz``.

    The file is read block by block, mixed to mono and resampled as it goes, so memory
    follows the decoded length (bounded by ``max_duration_ms``), never what a header claims.
    """
    if not data:
        raise UploadError(400, "bad_audio", "the uploaded file is empty")
    truncation = wav_truncation(data)
    if truncation is not None:
        raise UploadError(400, "bad_audio", truncation)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            return _decode(f, target_rate_hz, max_duration_ms)
    except sf.SoundFileError as exc:
        reason = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
        raise UploadError(400, "bad_audio", f"cannot decode audio: {reason}") from exc


def _decode(f: sf.SoundFile, target_rate_hz: int, max_duration_ms: int) -> DecodedAudio:
    rate, channels = f.samplerate, f.channels
    if not MIN_FILE_RATE_HZ <= rate <= MAX_FILE_RATE_HZ:
        raise UploadError(
            400,
            "bad_audio",
            f"sample rate {rate} Hz is outside {MIN_FILE_RATE_HZ}–{MAX_FILE_RATE_HZ} Hz",
        )
    if channels < 1:
        raise UploadError(400, "bad_audio", f"the file declares {channels} channels")
    max_frames = max_duration_ms * rate // 1000
    if _UNKNOWN_FRAMES > f.frames > max_frames:
        raise _too_long(f.frames * 1000 // rate, max_duration_ms)
    resampler = (
        soxr.ResampleStream(rate, target_rate_hz, 1, dtype="float32")
        if rate != target_rate_hz
        else None
    )
    block_frames = max(1, _BLOCK_SAMPLES // channels)
    pieces: list[npt.NDArray[np.float32]] = []
    frames = 0
    while True:
        block = f.read(block_frames, dtype="float32", always_2d=True)
        frames += block.shape[0]
        if frames > max_frames:
            raise _too_long(frames * 1000 // rate, max_duration_ms)
        mono = np.ascontiguousarray(block.mean(axis=1, dtype=np.float32))
        if not np.isfinite(mono).all():
            raise UploadError(400, "bad_audio", "the file holds NaN or infinite samples")
        last = block.shape[0] < block_frames
        pieces.append(mono if resampler is None else resampler.resample_chunk(mono, last=last))
        if last:
            break
    if frames == 0:
        raise UploadError(400, "bad_audio", "the file holds no audio samples")
    audio: npt.NDArray[np.float32] = np.concatenate(pieces).astype(np.float32, copy=False)
    return DecodedAudio(audio, rate, frames * 1000 // rate)


def wav_truncation(data: bytes) -> str | None:
    """Why a RIFF/WAVE file is cut short (its data chunk runs past the end), else None.

    libsndfile quietly decodes what is there; a cut recording is refused instead.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset = 12
    for _ in range(_MAX_WAV_CHUNKS):
        if offset + 8 > len(data):
            return None
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        if data[offset : offset + 4] == b"data":
            available = len(data) - offset - 8
            if size == 0 or size >= _PLACEHOLDER_WAV_SIZE or size <= available:
                return None
            return (
                f"the WAV file is truncated: its data chunk declares {size} bytes "
                f"but only {available} follow"
            )
        offset += 8 + size + (size & 1)
    return None


def _too_long(duration_ms: int, max_duration_ms: int) -> UploadError:
    return UploadError(
        413,
        "too_large",
        f"audio lasts {duration_ms} ms, more than the limit of {max_duration_ms} ms",
    )
