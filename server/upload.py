"""Uploaded recordings: the body read into memory under a size limit, then decoded."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

UPLOAD_FIELD = "file"
MAX_PARTS = 16
# RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
MAX_BOUNDARY_CHARS = 70
# Sample rates a recording may have; anything outside is a broken or hostile header.
MIN_FILE_RATE_HZ = 1000
MAX_FILE_RATE_HZ = 384_000
# libsndfile's frame count for a stream of unknown length (SF_COUNT_MAX).
_UNKNOWN_FRAMES = 2**63 - 1
# Decoded samples (frames × channels) a file may hold: 10 minutes of 48 kHz stereo. This
# bounds the decoding work, which duration alone does not (384 kHz × 8 channels is 64 times
# as much work per second as 48 kHz mono).
MAX_DECODED_SAMPLES = 600 * 48_000 * 2
# Samples (frames × channels) decoded at a time.
_BLOCK_SAMPLES = 1 << 18
# WAV chunks looked at before the data chunk. Writers that stream to a pipe cannot fill in
# its size: they leave 0, or a huge placeholder (sox and espeak-ng 0x7FFFF000, others 2**32-1).
_MAX_WAV_CHUNKS = 64
_PLACEHOLDER_WAV_SIZE = 0x7FFFF000


# A file held in memory: the request body, or a view of the part of it that is the file.
Data = bytes | bytearray | memoryview


class UploadError(ValueError):
    """A refused upload: ``status`` and ``code`` as in the protocol's error table."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def read_limited(
    chunks: AsyncIterator[bytes],
    max_bytes: int,
    timeout_s: float,
    min_rate_bytes_s: float = 0,
    grace_s: float = 0,
) -> bytearray:
    """The whole body, refused past ``max_bytes`` or when it has not all come in ``timeout_s``.

    With ``min_rate_bytes_s``, after ``grace_s`` the body must also keep up that average
    rate (from the start): a trickle is refused with 408 as soon as it falls behind, not
    only at ``timeout_s``. Each wait for the next chunk has the deadline by which the bytes
    so far stop being enough.
    """
    body = bytearray()
    loop = asyncio.get_running_loop()
    started = loop.time()
    final = started + timeout_s
    iterator = aiter(chunks)
    while True:
        deadline = final
        if min_rate_bytes_s > 0:
            deadline = min(deadline, started + grace_s + len(body) / min_rate_bytes_s)
        try:
            async with asyncio.timeout_at(deadline):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return body
        except TimeoutError:
            raise _too_slow(body, deadline >= final, timeout_s, min_rate_bytes_s) from None
        body += chunk
        if len(body) > max_bytes:
            raise UploadError(413, "too_large", f"request body exceeds {max_bytes} bytes")


def _too_slow(body: bytearray, whole: bool, timeout_s: float, rate: float) -> UploadError:
    if whole:
        reason = f"request body not received within {timeout_s:g} s"
    else:
        reason = f"request body arriving slower than {rate:g} bytes/s"
    return UploadError(408, "bad_request", f"{reason} ({len(body)} bytes came)")


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    # Where the part's data lies in the body, or a copy of a piece the parser held back.
    pieces: list[slice | bytes] = field(default_factory=list)

    def data(self, body: Data) -> Data:
        """The part's data: a view of the body when it is in one piece (no copy)."""
        view = memoryview(body)
        if len(self.pieces) == 1 and isinstance(self.pieces[0], slice):
            return view[self.pieces[0]]
        return b"".join(view[p] if isinstance(p, slice) else p for p in self.pieces)


class _PartCollector:
    """Collects the parts of a multipart body in memory (never in temporary files)."""

    def __init__(self, body: Data) -> None:
        self._body = body
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
        pieces = self.parts[-1].pieces
        if data is not self._body:  # a boundary look-behind the parser gives back
            pieces.append(bytes(data[start:end]))
        elif pieces and isinstance(pieces[-1], slice) and pieces[-1].stop == start:
            pieces[-1] = slice(pieces[-1].start, end)
        else:
            pieces.append(slice(start, end))

    def _end(self) -> None:
        self.complete = True


def multipart_file(body: Data, content_type: str) -> Data:
    """The contents of the ``file`` field of a multipart/form-data body."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_request", "multipart/form-data body has no boundary")
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise UploadError(
            400,
            "bad_request",
            f"multipart boundary of {len(boundary)} characters is longer than "
            f"{MAX_BOUNDARY_CHARS} (RFC 2046)",
        )
    collector = _PartCollector(body)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        parser.write(body)  # type: ignore[arg-type]  # any buffer: it is only indexed
        parser.finalize()
    except FormParserError as exc:
        raise UploadError(400, "bad_request", f"malformed multipart body: {exc}") from exc
    if not collector.complete:
        raise UploadError(400, "bad_request", "multipart body ends before its closing boundary")
    for part in collector.parts:
        _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
        if disposition.get(b"name") == UPLOAD_FIELD.encode():
            return part.data(body)
    raise UploadError(400, "bad_request", f"multipart body has no {UPLOAD_FIELD!r} field")


def upload_bytes(body: Data, content_type: str) -> Data:
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


# Channels a file may have to be classified channel by channel (channels=separate).
MAX_SEPARATE_CHANNELS = 2


@dataclass(frozen=True)
class DecodedAudio:
    # One mono mix; with separate=True, each of the file's channels.
    tracks: tuple[npt.NDArray[np.float32], ...]
    sample_rate: int
    duration_ms: int

    @property
    def audio(self) -> npt.NDArray[np.float32]:
        """The first track: the mono mix unless decoded with separate=True."""
        return self.tracks[0]


def decode_audio(
    data: Data,
    target_rate_hz: int,
    max_duration_ms: int,
    max_samples: int = MAX_DECODED_SAMPLES,
    *,
    separate: bool = False,
) -> DecodedAudio:
    """Decode a WAV/FLAC/OGG file in memory to mono float32 at ``target_rate_hz``, or with
    ``separate`` each channel of a mono or two-channel file on its own.

    The file is read block by block, mixed to mono and resampled as it goes, so memory
    follows the decoded length (bounded by ``max_duration_ms``), never what a header claims.
    A file whose frames × channels pass ``max_samples`` is refused: before decoding when
    its header gives its length, as soon as the count passes the limit otherwise.
    """
    if not data:
        raise UploadError(400, "bad_audio", "the uploaded file is empty")
    truncation = wav_truncation(data)
    if truncation is not None:
        raise UploadError(400, "bad_audio", truncation)
    try:
        with sf.SoundFile(_Reader(data)) as f:
            return _decode(f, target_rate_hz, max_duration_ms, max_samples, separate)
    except sf.SoundFileError as exc:
        reason = exc.error_string if isinstance(exc, sf.LibsndfileError) else str(exc)
        raise UploadError(400, "bad_audio", f"cannot decode audio: {reason}") from exc


class _Reader:
    """A read-only file over a buffer without copying it (``io.BytesIO`` copies all but bytes)."""

    def __init__(self, data: Data) -> None:
        self._view = memoryview(data).cast("B")
        self._position = 0

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size < 0 else self._position + size
        data = bytes(self._view[self._position : end])
        self._position += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        piece = self._view[self._position : self._position + len(buffer)]
        buffer[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)


def _decode(
    f: sf.SoundFile,
    target_rate_hz: int,
    max_duration_ms: int,
    max_samples: int,
    separate: bool = False,
) -> DecodedAudio:
    rate, channels = f.samplerate, f.channels
    if not MIN_FILE_RATE_HZ <= rate <= MAX_FILE_RATE_HZ:
        raise UploadError(
            400,
            "bad_audio",
            f"sample rate {rate} Hz is outside {MIN_FILE_RATE_HZ}–{MAX_FILE_RATE_HZ} Hz",
        )
    if channels < 1:
        raise UploadError(400, "bad_audio", f"the file declares {channels} channels")
    if separate and channels > MAX_SEPARATE_CHANNELS:
        raise UploadError(
            400,
            "bad_request",
            f"channels=separate takes a mono or two-channel file; this one has {channels} "
            "channels (use channels=mix)",
        )
    tracks = channels if separate else 1
    max_frames = min(max_duration_ms * rate // 1000, max_samples // channels)
    known = f.frames < _UNKNOWN_FRAMES
    if known and f.frames > max_frames:
        raise _too_much(f.frames, rate, channels, max_duration_ms, max_samples)
    resamplers = [
        soxr.ResampleStream(rate, target_rate_hz, 1, dtype="float32")
        if rate != target_rate_hz
        else None
        for _ in range(tracks)
    ]
    block_frames = max(1, _BLOCK_SAMPLES // channels)
    # Each output is filled in place: one array the size of the decoded audio, no pieces to join.
    expected = (f.frames if known else max_frames) * target_rate_hz // rate
    outs = [_Output(expected + 1024 if known else min(expected, 1 << 20)) for _ in range(tracks)]
    frames = 0
    while True:
        block = f.read(block_frames, dtype="float32", always_2d=True)
        frames += block.shape[0]
        if frames > max_frames:
            raise _too_much(frames, rate, channels, max_duration_ms, max_samples)
        pieces = (
            [np.ascontiguousarray(block[:, c]) for c in range(channels)]
            if separate
            else [np.ascontiguousarray(block.mean(axis=1, dtype=np.float32))]
        )
        del block
        if not all(np.isfinite(piece).all() for piece in pieces):
            raise UploadError(400, "bad_audio", "the file holds NaN or infinite samples")
        last = pieces[0].shape[0] < block_frames
        for out, resampler, piece in zip(outs, resamplers, pieces, strict=True):
            out.append(piece if resampler is None else resampler.resample_chunk(piece, last=last))
        if last:
            break
    if frames == 0:
        raise UploadError(400, "bad_audio", "the file holds no audio samples")
    return DecodedAudio(tuple(out.audio() for out in outs), rate, frames * 1000 // rate)


class _Output:
    """A float32 buffer filled block by block; it grows (by half) only past its first size."""

    def __init__(self, capacity: int) -> None:
        self._data = np.empty(max(capacity, 1), dtype=np.float32)
        self._size = 0

    def append(self, piece: npt.NDArray[np.float32]) -> None:
        end = self._size + piece.shape[0]
        if end > self._data.shape[0]:
            grown = np.empty(max(end, self._data.shape[0] * 3 // 2), dtype=np.float32)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : end] = piece
        self._size = end

    def audio(self) -> npt.NDArray[np.float32]:
        return self._data[: self._size]


def wav_truncation(data: Data) -> str | None:
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


def _too_much(
    frames: int, rate: int, channels: int, max_duration_ms: int, max_samples: int
) -> UploadError:
    duration_ms = frames * 1000 // rate
    if duration_ms > max_duration_ms:
        message = f"audio lasts {duration_ms} ms, more than the limit of {max_duration_ms} ms"
    else:
        message = (
            f"audio of {frames} frames × {channels} channels at {rate} Hz is more than "
            f"{max_samples} samples to decode"
        )
    return UploadError(413, "too_large", message)
