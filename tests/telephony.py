"""Test audio for telephony: G.711 encoding (nearest code) and interleaved stereo."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pcm.g711 import encode
from vad.framing import to_int16

Float = npt.NDArray[np.float32]


def g711(audio: Float, law: str = "mulaw") -> bytes:
    """Float audio to G.711 bytes: for each sample, the code that expands nearest to it."""
    return encode(to_int16(audio), law)


def interleave(left: Float, right: Float) -> Float:
    """Two mono signals as L R L R …, the shorter padded with silence."""
    length = max(len(left), len(right))
    frames = np.zeros((length, 2), dtype=np.float32)
    frames[: len(left), 0] = left
    frames[: len(right), 1] = right
    return frames.reshape(-1)
