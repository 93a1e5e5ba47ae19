"""Client audio bytes to samples, and arbitrary chunks to exact VAD frames."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from vad.g711 import alaw_to_int16, mulaw_to_int16

Encoding = Literal["pcm_s16le", "pcm_f32le", "mulaw", "alaw"]
ENCODINGS: tuple[Encoding, ...] = get_args(Encoding)
_SAMPLE_BYTES: dict[str, int] = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1, "alaw": 1}
_INT16_SCALE = 32768.0


class FrameError(ValueError):
    """Audio bytes that cannot be decoded; the message names the byte count and encoding."""


def check_encoding(encoding: str) -> Encoding:
    if encoding not in _SAMPLE_BYTES:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    return encoding  # type: ignore[return-value]


def sample_bytes(encoding: Encoding) -> int:
    """Bytes one sample of ``encoding`` takes."""
    return _SAMPLE_BYTES[check_encoding(encoding)]


def split_channels(data: bytes, encoding: Encoding, channels: int) -> list[bytes]:
    """Interleaved frames (L R L R …) to one byte string per channel, in the same encoding.

    Raises FrameError when data is not a whole number of sample frames (a sample of
    every channel)."""
    size = _SAMPLE_BYTES[check_encoding(encoding)]
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if len(data) % (size * channels):
        raise FrameError(
            f"binary frame of {len(data)} bytes is not a whole number of {channels}-channel "
            f"sample frames of {size}-byte {encoding} samples ({size * channels} bytes each)"
        )
    if channels == 1:
        return [data]
    frames = np.frombuffer(data, dtype=f"V{size}").reshape(-1, channels)
    return [frames[:, channel].tobytes() for channel in range(channels)]


def decode_pcm(data: bytes, encoding: Encoding) -> npt.NDArray[np.float32]:
    """Little-endian mono PCM or G.711 (μ-law, A-law) to float32 in [-1, 1]; NaN and
    infinities become 0."""
    sample_bytes = _SAMPLE_BYTES[check_encoding(encoding)]
    if len(data) % sample_bytes:
        raise FrameError(
            f"binary frame of {len(data)} bytes is not a whole number of "
            f"{sample_bytes}-byte {encoding} samples"
        )
    if encoding == "pcm_s16le":
        return to_float(np.frombuffer(data, dtype="<i2"))
    if encoding == "mulaw":
        return to_float(mulaw_to_int16(data))
    if encoding == "alaw":
        return to_float(alaw_to_int16(data))
    return sanitize(np.frombuffer(data, dtype="<f4"))


def sanitize(audio: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """A new float32 copy with non-finite samples set to 0 and the rest clipped to [-1, 1]."""
    clean = np.nan_to_num(audio.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(clean, -1.0, 1.0, out=clean)


def to_int16(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """Float samples in [-1, 1] to int16, rounding, saturating at the int16 limits."""
    scaled: npt.NDArray[np.float32] = np.rint(audio * np.float32(_INT16_SCALE))
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype(np.int16)


def to_float(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    return (samples / np.float32(_INT16_SCALE)).astype(np.float32, copy=False)


class Reframer:
    """Cuts a stream of arbitrary-length int16 chunks into frames of exactly frame_samples.

    Whole frames inside a pushed chunk are returned as read-only views of that chunk;
    a frame completed from the carried-over remainder is a new array.
    """

    def __init__(self, frame_samples: int) -> None:
        if frame_samples < 1:
            raise ValueError(f"frame_samples must be at least 1, got {frame_samples}")
        self.frame_samples = frame_samples
        self._partial = np.zeros(frame_samples, dtype=np.int16)
        self._filled = 0

    @property
    def pending_samples(self) -> int:
        """Samples held back because they do not yet make a whole frame."""
        return self._filled

    def push(self, samples: npt.NDArray[np.int16]) -> list[npt.NDArray[np.int16]]:
        if samples.ndim != 1 or samples.dtype != np.int16:
            raise ValueError(
                f"expected a 1-D int16 array, got {samples.ndim}-D {samples.dtype} array"
            )
        frames: list[npt.NDArray[np.int16]] = []
        used = 0
        if self._filled:
            used = min(self.frame_samples - self._filled, len(samples))
            self._partial[self._filled : self._filled + used] = samples[:used]
            self._filled += used
            if self._filled < self.frame_samples:
                return frames
            frames.append(self._partial.copy())
            self._filled = 0
        whole_end = used + (len(samples) - used) // self.frame_samples * self.frame_samples
        for start in range(used, whole_end, self.frame_samples):
            frame = samples[start : start + self.frame_samples].view()
            frame.flags.writeable = False
            frames.append(frame)
        rest = len(samples) - whole_end
        self._partial[:rest] = samples[whole_end:]
        self._filled = rest
        return frames

    def flush(self) -> npt.NDArray[np.int16] | None:
        """The held-back partial frame zero-padded to a whole frame, or None if nothing is held."""
        if not self._filled:
            return None
        frame = np.zeros(self.frame_samples, dtype=np.int16)
        frame[: self._filled] = self._partial[: self._filled]
        self._filled = 0
        return frame
