"""A narrowband telephone channel: what a phone call does to 16 kHz speech.

300–3400 Hz band-pass (4th-order Butterworth, causal), resampling to 8 kHz (soxr), G.711
μ-law or A-law encoding (``pcm.g711.encode``, nearest code) and decoding (``pcm.g711``, as
the server does), and resampling back to 16 kHz. Used to augment the synthetic training
corpus (``CorpusConfig.telephone_probability``), and to measure the bundled model on
telephone-band copies of its test sets (``training.release.default_model``,
``bench/telephone_band.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import cast

import numpy as np
import numpy.typing as npt
import soxr
from scipy.signal import butter, sosfilt

from pcm.format import Encoding, decode_pcm, to_int16
from pcm.g711 import encode

Audio = npt.NDArray[np.float32]
RATE_HZ = 16000
PHONE_RATE_HZ = 8000
BAND_HZ = (300.0, 3400.0)
LAWS = ("mulaw", "alaw")
DESCRIPTION = "band-pass 300-3400 Hz (Butterworth order 4), 8 kHz, G.711, back to 16 kHz"


@lru_cache(maxsize=1)
def _band() -> npt.NDArray[np.float64]:
    return np.asarray(butter(4, BAND_HZ, btype="bandpass", fs=RATE_HZ, output="sos"))


def telephone(audio: Audio, law: str = "mulaw") -> Audio:
    """``audio`` (float, 16 kHz) through the phone channel with G.711 ``law``; same rate and
    length (the resamplers keep the duration to a sample, which is trimmed or padded)."""
    if law not in LAWS:
        raise ValueError(f"unknown G.711 law {law!r}: expected one of {', '.join(LAWS)}")
    narrow = sosfilt(_band(), np.asarray(audio, dtype=np.float64)).astype(np.float32)
    at_8k = np.asarray(soxr.resample(narrow, RATE_HZ, PHONE_RATE_HZ), dtype=np.float32)
    decoded = decode_pcm(encode(to_int16(at_8k), law), cast(Encoding, law))
    back = np.asarray(soxr.resample(decoded, PHONE_RATE_HZ, RATE_HZ), dtype=np.float32)
    return np.pad(back[: len(audio)], (0, max(0, len(audio) - len(back))))


def channel(law: str) -> Callable[[Audio], Audio]:
    """The phone channel with one law, as a function of the audio."""
    if law not in LAWS:
        raise ValueError(f"unknown G.711 law {law!r}: expected one of {', '.join(LAWS)}")
    return lambda audio: telephone(audio, law)
