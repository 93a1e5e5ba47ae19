"""server/quality.py: the signal measures and the warnings drawn from them."""

from __future__ import annotations

import numpy as np
import pytest

from server.quality import (
    CONFIDENCE_MIN,
    FULL_SCALE,
    MAX_SNR_DB,
    SignalQuality,
    measure,
    warnings_for,
)

RATE = 16000


def bursts(level: float, seconds: float = 2.0) -> np.ndarray:
    """A 200 Hz tone switched on and off every 250 ms (speech-like: loud and quiet parts),
    with quiet gaps that hold the noise floor."""
    t = np.arange(round(seconds * RATE)) / RATE
    on = (t % 0.5) < 0.25
    return (level * np.sin(2 * np.pi * 200 * t) * on).astype(np.float32)


def test_clean_audio_with_silent_gaps_has_the_highest_snr_and_its_active_level() -> None:
    audio = bursts(0.1)
    quality = measure(audio, voiced_samples=audio.size // 2)
    assert quality.speech == pytest.approx(0.5)
    assert quality.snr_db == MAX_SNR_DB
    # a sine of amplitude 0.1 has a mean square of 0.005: -23 dB; the gaps are not counted
    assert quality.level_dbfs == pytest.approx(-23.0, abs=0.3)
    assert quality.clipped == 0.0


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_snr_follows_white_noise_added_at_a_known_ratio(snr_db: float) -> None:
    audio = bursts(0.1)
    speech_power = 0.005
    noise = np.random.default_rng(1).normal(
        0, np.sqrt(speech_power / 10 ** (snr_db / 10)), audio.size
    )
    quality = measure((audio + noise).astype(np.float32), voiced_samples=audio.size // 2)
    assert quality.snr_db == pytest.approx(snr_db, abs=3.0)


def test_clipped_share_counts_samples_at_full_scale() -> None:
    audio = np.clip(bursts(4.0), -1.0, 1.0)
    quality = measure(audio, voiced_samples=audio.size)
    # |4 sin| reaches full scale where |sin| >= 1/4, and the tone is on half of the time
    expected = 0.5 * (1 - 2 / np.pi * np.arcsin(FULL_SCALE / 4))
    assert quality.clipped == pytest.approx(expected, abs=0.01)  # 80 samples a period


def test_digital_silence_is_bounded_not_infinite() -> None:
    quality = measure(np.zeros(RATE, dtype=np.float32), voiced_samples=0)
    assert quality.level_dbfs == -100.0
    assert np.isfinite(quality.snr_db)


@pytest.mark.parametrize(
    ("audio", "voiced", "problem"),
    [
        (np.zeros((2, 10), dtype=np.float32), 0, "mono audio"),
        (np.zeros(0, dtype=np.float32), 0, "non-empty"),
        (np.zeros(10, dtype=np.float32), 11, "voiced_samples must be from 0 to 10, got 11"),
    ],
)
def test_bad_input_is_refused(audio: np.ndarray, voiced: int, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        measure(audio, voiced)


CLEAN = SignalQuality(speech=0.9, snr_db=30.0, level_dbfs=-20.0, clipped=0.0)


@pytest.mark.parametrize(
    ("changes", "warning"),
    [
        ({"snr_db": 5.0}, "low_snr"),
        ({"level_dbfs": -50.0}, "too_quiet"),
        ({"clipped": 0.05}, "clipping"),
        ({"speech": 0.3}, "too_short_speech"),
    ],
)
def test_each_threshold_raises_its_warning(changes: dict[str, float], warning: str) -> None:
    values = {**CLEAN.as_dict(), **changes}
    assert warnings_for(SignalQuality(**values), confidence=0.9) == [warning]


def test_clean_and_confident_has_no_warning_and_low_confidence_has_its_own() -> None:
    assert warnings_for(CLEAN, confidence=0.9) == []
    assert warnings_for(CLEAN, confidence=CONFIDENCE_MIN - 0.01) == ["low_confidence"]


def test_wire_form_is_rounded_numbers() -> None:
    quality = SignalQuality(speech=0.93333, snr_db=17.54, level_dbfs=-24.04, clipped=0.000123)
    assert quality.as_dict() == {
        "speech": 0.933,
        "snr_db": 17.5,
        "level_dbfs": -24.0,
        "clipped": 0.0001,
    }
