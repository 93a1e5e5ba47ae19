"""Test audio: speech synthesised with espeak-ng, silences and tones, all in memory.

Import it as ``from tests.speech import espeak`` (pytest runs with --import-mode=importlib).
"""

from __future__ import annotations

import io
import subprocess

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from pcm.format import pcm16_bytes

Float = npt.NDArray[np.float32]


def espeak(text: str, voice: str = "en", rate_wpm: int = 160, sample_rate: int = 16000) -> Float:
    """Speak ``text`` with espeak-ng; float32 mono at ``sample_rate``, trimmed of edge silence."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate_wpm), "--stdout", text],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if rate != sample_rate:
        audio = np.asarray(soxr.resample(audio, rate, sample_rate), dtype=np.float32)
    voiced = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[voiced[0] : voiced[-1] + 1]


def silence(seconds: float, sample_rate: int = 16000) -> Float:
    return np.zeros(round(seconds * sample_rate), dtype=np.float32)


def tone(
    seconds: float, freq_hz: float = 220.0, sample_rate: int = 16000, level: float = 0.3
) -> Float:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (level * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def to_pcm16(audio: Float) -> bytes:
    return pcm16_bytes(audio)


def wav_bytes(audio: Float, sample_rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def short_word(seconds: float = 0.15, sample_rate: int = 16000) -> Float:
    """The start of a spoken word: real speech, too short to make a classified segment
    (with the padding it stays under the default 500 ms minimum)."""
    return espeak("Oh.", rate_wpm=190, sample_rate=sample_rate)[: round(seconds * sample_rate)]
