"""Signal quality of a segment (``quality=1``): measures, warnings and ``uncertain``.

The measures are computed on an inference worker next to the model run (never on the
event loop). Thresholds were chosen by measurement; docs/quality.md says how.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

QualityWarning = Literal["low_snr", "too_quiet", "clipping", "low_confidence", "too_short_speech"]

FRAME_MS = 20
# A sample at or beyond this magnitude is at full scale (int16 ±32767/32768 as float).
FULL_SCALE = 32766 / 32768
# Frames whose power is this far above the noise floor are active speech (ITU-T P.56's
# margin, 15.9 dB, applied to frame powers rather than to its envelope).
ACTIVE_MARGIN_DB = 15.9
NOISE_PERCENTILE = 10
# Reported values are bounded: a digitally silent floor would give an infinite SNR.
MAX_SNR_DB = 60.0
MIN_LEVEL_DBFS = -100.0
_TINY_POWER = 10 ** (MIN_LEVEL_DBFS / 10)

# Warning thresholds (docs/quality.md: how each was chosen).
CLIPPED_SHARE_MAX = 0.001
LEVEL_DBFS_MIN = -43.0
SNR_DB_MIN = 10.0
SPEECH_SHARE_MIN = 0.5
CONFIDENCE_MIN = 0.5


@dataclass(frozen=True, slots=True)
class SignalQuality:
    speech: float  # share of the segment in frames the detector called speech
    snr_db: float  # estimated speech-to-noise ratio
    level_dbfs: float  # active speech level (mean square of active frames, 0 = full-scale square)
    clipped: float  # share of samples at full scale

    def as_dict(self) -> dict[str, float]:
        return {
            "speech": round(self.speech, 3),
            "snr_db": round(self.snr_db, 1),
            "level_dbfs": round(self.level_dbfs, 1),
            "clipped": round(self.clipped, 4),
        }


def measure(
    audio: npt.NDArray[np.float32], voiced_samples: int, sample_rate_hz: int = 16000
) -> SignalQuality:
    """The measures of mono float audio in [-1, 1] of which ``voiced_samples`` were speech."""
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected non-empty mono audio, got shape {audio.shape}")
    if not 0 <= voiced_samples <= audio.size:
        raise ValueError(f"voiced_samples must be from 0 to {audio.size}, got {voiced_samples}")
    powers = frame_powers(audio, sample_rate_hz)
    noise = max(float(np.percentile(powers, NOISE_PERCENTILE)), _TINY_POWER)
    active = powers[powers > noise * 10 ** (ACTIVE_MARGIN_DB / 10)]
    if active.size == 0:  # no frame stands out from the floor: all of it is one level
        active = powers
    level = max(float(active.mean()), _TINY_POWER)
    speech_power = level - noise
    snr_db = MAX_SNR_DB if speech_power <= 0 and noise <= _TINY_POWER else _db(speech_power / noise)
    return SignalQuality(
        speech=voiced_samples / audio.size,
        snr_db=min(MAX_SNR_DB, snr_db),
        level_dbfs=max(MIN_LEVEL_DBFS, _db(level)),
        clipped=float(np.count_nonzero(np.abs(audio) >= FULL_SCALE)) / audio.size,
    )


def frame_powers(audio: npt.NDArray[np.float32], sample_rate_hz: int) -> npt.NDArray[np.float64]:
    """Mean square of each whole FRAME_MS frame (of the whole audio when shorter)."""
    size = max(1, sample_rate_hz * FRAME_MS // 1000)
    count = max(1, audio.size // size)
    framed = audio[: count * size] if audio.size >= size else audio
    squares = np.square(framed.astype(np.float64))
    powers: npt.NDArray[np.float64] = squares.reshape(count, -1).mean(axis=1)
    return powers


def _db(ratio: float) -> float:
    return float(10 * np.log10(max(ratio, 1e-30)))


def warnings_for(quality: SignalQuality, confidence: float) -> list[QualityWarning]:
    """The warnings that apply, in the spec's order of the vocabulary."""
    found: list[QualityWarning] = []
    if quality.snr_db < SNR_DB_MIN:
        found.append("low_snr")
    if quality.level_dbfs < LEVEL_DBFS_MIN:
        found.append("too_quiet")
    if quality.clipped > CLIPPED_SHARE_MAX:
        found.append("clipping")
    if confidence < CONFIDENCE_MIN:
        found.append("low_confidence")
    if quality.speech < SPEECH_SHARE_MIN:
        found.append("too_short_speech")
    return found
