"""An uploaded recording decoded in memory, block by block, to mono float32 at one rate."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from server.upload import Data, UploadError

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
    max_samples: int,
    *,
    separate: bool = False,
) -> DecodedAudio:
    """Decode a WAV/FLAC/OGG file in memory to mono float32 at ``target_rate_hz``, or with
    ``separate`` each channel of a mono or two-channel file on its own.

    The file is read block by block, mixed to mono and resampled as it goes, so memory
    follows the decoded length (bounded by ``max_duration_ms``), never what a header claims.
    A file whose frames × channels pass ``max_samples`` (the setting
    ``max_upload_samples``) is refused: before decoding when
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
