"""Recording conditions for synthetic speech: level, background noise at a set SNR, room echo."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.signal import fftconvolve

Audio = npt.NDArray[np.float32]
NOISE_KINDS = ("white", "pink", "babble", "hum")


def rms(audio: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)) + 1e-20))


def set_level(audio: Audio, level_dbfs: float, peak_limit: float = 0.98) -> Audio:
    """Scale to an RMS of ``level_dbfs`` dBFS, less if a peak would exceed ``peak_limit``."""
    gain = 10.0 ** (level_dbfs / 20.0) / rms(audio)
    peak = float(np.max(np.abs(audio))) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return np.asarray(audio * gain, dtype=np.float32)


def white_noise(samples: int, rng: np.random.Generator) -> Audio:
    return np.asarray(rng.standard_normal(samples), dtype=np.float32)


def pink_noise(samples: int, rng: np.random.Generator) -> Audio:
    """1/f power spectrum, shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    return np.asarray(np.fft.irfft(spectrum / np.sqrt(freqs), n=samples), dtype=np.float32)


def hum_noise(samples: int, rng: np.random.Generator, sample_rate_hz: int = 16000) -> Audio:
    """Mains hum: 50 or 60 Hz with random harmonics, plus a little hiss."""
    mains_hz = float(rng.choice([50.0, 60.0]))
    t = np.arange(samples) / sample_rate_hz
    hum = np.zeros(samples)
    for harmonic in range(1, 8):
        amplitude = rng.uniform(0.1, 1.0) / harmonic
        hum += amplitude * np.sin(2 * np.pi * mains_hz * harmonic * t + rng.uniform(0, 2 * np.pi))
    hiss = 0.02 * rng.standard_normal(samples)
    return np.asarray(hum / rms(hum) + hiss, dtype=np.float32)


def babble_noise(samples: int, rng: np.random.Generator, voices: list[Audio]) -> Audio:
    """Three to six talkers from ``voices``, each at a random offset and level, overlapped."""
    if not voices:
        raise ValueError("babble needs at least one voice recording")
    mix = np.zeros(samples, dtype=np.float64)
    for _ in range(int(rng.integers(3, 7))):
        voice = voices[int(rng.integers(len(voices)))]
        looped = np.tile(voice, samples // voice.size + 2)
        start = int(rng.integers(voice.size))
        mix += looped[start : start + samples] / rms(voice) * rng.uniform(0.5, 1.0)
    return np.asarray(mix, dtype=np.float32)


def make_noise(
    kind: str, samples: int, rng: np.random.Generator, babble_voices: list[Audio] | None = None
) -> Audio:
    if kind == "white":
        return white_noise(samples, rng)
    if kind == "pink":
        return pink_noise(samples, rng)
    if kind == "hum":
        return hum_noise(samples, rng)
    if kind == "babble":
        return babble_noise(samples, rng, babble_voices or [])
    raise ValueError(f"unknown noise kind {kind!r}; expected one of {list(NOISE_KINDS)}")


def add_noise(speech: Audio, noise: Audio, snr_db: float) -> Audio:
    """Mix ``noise`` under ``speech`` so that speech power / noise power is ``snr_db``."""
    if noise.size != speech.size:
        raise ValueError(f"noise has {noise.size} samples, speech has {speech.size}")
    scale = rms(speech) / (rms(noise) * 10.0 ** (snr_db / 20.0))
    return np.asarray(speech + scale * noise, dtype=np.float32)


def room_impulse(rt60_s: float, rng: np.random.Generator, sample_rate_hz: int = 16000) -> Audio:
    """A synthetic room response: direct sound, then noise decaying by 60 dB over ``rt60_s``."""
    if not 0.0 < rt60_s <= 3.0:
        raise ValueError(f"rt60_s must be in (0, 3], got {rt60_s}")
    length = int(rt60_s * sample_rate_hz)
    t = np.arange(length) / sample_rate_hz
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)
    predelay = int(rng.uniform(0.002, 0.01) * sample_rate_hz)
    tail[:predelay] = 0.0
    impulse = tail * rng.uniform(0.1, 0.4) / rms(tail[predelay:])
    impulse[0] = 1.0
    return np.asarray(impulse / np.sqrt(np.sum(impulse**2)), dtype=np.float32)


def reverberate(audio: Audio, impulse: Audio) -> Audio:
    """Convolve with ``impulse``, keeping the original length and loudness."""
    wet = fftconvolve(audio, impulse)[: audio.size]
    return np.asarray(wet * rms(audio) / rms(wet), dtype=np.float32)
