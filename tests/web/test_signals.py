"""The audio comparison of the browser tests: tolerant of dropped quanta, not of wrong audio."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from tests.speech import espeak, silence
from tests.web.signals import assert_same_audio


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return np.concatenate(
        [silence(0.3), espeak("The quick brown fox jumps over the lazy dog."), silence(0.3)]
    )


def test_a_few_dropped_quanta_still_match(speech: np.ndarray) -> None:
    received = speech.copy()
    for at in (8000, 20000, 33000):  # 10 ms lost at three places, as Chromium's fake device does
        received = np.delete(received, np.s_[at : at + 160])
    assert_same_audio(received, speech)


def test_audio_at_the_wrong_rate_does_not_match(speech: np.ndarray) -> None:
    received = soxr.resample(speech, 16000, 16800).astype(np.float32)  # a 5 % rate error
    with pytest.raises(AssertionError):
        assert_same_audio(received, speech)


def test_other_audio_does_not_match(speech: np.ndarray) -> None:
    noise = np.random.default_rng(0).normal(0, 0.1, speech.size).astype(np.float32)
    with pytest.raises(AssertionError):
        assert_same_audio(noise, speech)
