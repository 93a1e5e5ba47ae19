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
        self._field = b""
        self._value = b""

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_part_data": self._data,
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
    """Decode a WAV/FLAC/OGG file in memory to mono float32 at ``target_rate_hz``."""
    if not data:
        raise UploadError(400, "bad_audio", "the uploaded file is empty")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.samplerate <= 0 or f.channels <= 0:
                raise UploadError(400, "bad_audio", "the file declares no sample rate or channels")
            duration_ms = f.frames * 1000 // f.samplerate
            if duration_ms > max_duration_ms:
                raise UploadError(
                    413,
                    "too_large",
                    f"audio lasts {duration_ms} ms, more than the limit of {max_duration_ms} ms",
                )
            frames = f.read(dtype="float32", always_2d=True)
            rate = f.samplerate
    except sf.LibsndfileError as exc:
        raise UploadError(400, "bad_audio", f"cannot decode audio: {exc.error_string}") from exc
    except (RuntimeError, TypeError, ValueError) as exc:
        if isinstance(exc, UploadError):
            raise
        raise UploadError(400, "bad_audio", f"cannot decode audio: {exc}") from exc
    if frames.shape[0] == 0:
        raise UploadError(400, "bad_audio", "the file holds no audio samples")
    mono = frames.mean(axis=1, dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise UploadError(400, "bad_audio", "the file holds NaN or infinite samples")
    if rate != target_rate_hz:
        mono = soxr.resample(mono, rate, target_rate_hz).astype(np.float32)
    return DecodedAudio(mono, rate, frames.shape[0] * 1000 // rate)
