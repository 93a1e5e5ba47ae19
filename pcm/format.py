"""One definition of the audio the project passes around (docs/architecture.md).

Client audio arrives as little-endian PCM or G.711 (pcm/g711.py) in one of ``ENCODINGS``,
mono or interleaved channels, at a rate from
``MIN_SAMPLE_RATE_HZ`` to ``MAX_SAMPLE_RATE_HZ``; inside, audio is ``PIPELINE_RATE_HZ``.
int16 and float samples convert with one scale (32768: -32768 is exactly -1.0) and one
rounding rule (to nearest, saturating at the int16 limits), in both directions.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from pcm.g711 import alaw_to_int16, mulaw_to_int16

Encoding = Literal["pcm_s16le", "pcm_f32le", "mulaw", "alaw"]
ENCODINGS: tuple[Encoding, ...] = get_args(Encoding)
BYTES_PER_SAMPLE: dict[Encoding, int] = {"pcm_s16le": 2, "pcm_f32le": 4, "mulaw": 1, "alaw": 1}

# Client sample rates the protocol accepts, and the rate segmentation and models run at.
MIN_SAMPLE_RATE_HZ = 8000
MAX_SAMPLE_RATE_HZ = 48000
PIPELINE_RATE_HZ = 16000

INT16_SCALE = 32768.0


class FrameError(ValueError):
    """Audio bytes that cannot be decoded; the message names the byte count and encoding."""


def check_encoding(encoding: str) -> Encoding:
    if encoding not in BYTES_PER_SAMPLE:
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    return encoding


def sample_bytes(encoding: Encoding) -> int:
    """Bytes one sample of ``encoding`` takes."""
    return BYTES_PER_SAMPLE[check_encoding(encoding)]


def split_channels(data: bytes, encoding: Encoding, channels: int) -> list[bytes]:
    """Interleaved frames (L R L R …) to one byte string per channel, in the same encoding.

    Raises FrameError when data is not a whole number of sample frames (a sample of
    every channel)."""
    size = sample_bytes(encoding)
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
    sample_bytes = BYTES_PER_SAMPLE[check_encoding(encoding)]
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


def to_int16(audio: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """Float samples in [-1, 1] to int16, rounding, saturating at the int16 limits."""
    scaled: npt.NDArray[np.float32] = np.rint(audio * np.float32(INT16_SCALE))
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype(np.int16)


def to_float(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    return (samples / np.float32(INT16_SCALE)).astype(np.float32, copy=False)


def pcm16_bytes(audio: npt.NDArray[np.floating]) -> bytes:
    """Float samples in [-1, 1] as pcm_s16le bytes (to_int16's rounding)."""
    return to_int16(audio).astype("<i2", copy=False).tobytes()
