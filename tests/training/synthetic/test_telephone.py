"""The telephone channel (training/synthetic/telephone.py) and the corpus augmentation with it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import soxr
from scipy.signal import sosfilt

from tests.programs import require
from training.synthetic.synth import CorpusConfig, babble_bank, partition, plan, render
from training.synthetic.telephone import PHONE_RATE_HZ, RATE_HZ, _band, telephone

Audio = npt.NDArray[np.float32]


def band_energy(audio: Audio, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / RATE_HZ)
    return float(spectrum[(freqs >= low_hz) & (freqs < high_hz)].sum())


def white(seconds: float = 2.0, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * RATE_HZ))).astype(np.float32)


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_telephone_keeps_300_to_3400_hz_only(law: str) -> None:
    audio = white()
    phone = telephone(audio, law)
    assert phone.dtype == np.float32 and phone.size == audio.size
    # Above the band (and above 4 kHz, which 8 kHz cannot carry) nearly nothing is left.
    assert band_energy(phone, 3800, 8000) < 1e-3 * band_energy(audio, 3800, 8000)
    assert band_energy(phone, 0, 150) < 0.02 * band_energy(audio, 0, 150)
    # In the band the signal passes (G.711's quantisation noise is ~35 dB down).
    kept = band_energy(phone, 500, 3000) / band_energy(audio, 500, 3000)
    assert 0.9 < kept < 1.1


def test_telephone_quantises_with_the_chosen_law() -> None:
    """The same channel without G.711 differs from it by the law's quantisation noise only:
    about 35 dB below the signal, and different for μ-law and A-law."""
    t = np.arange(RATE_HZ) / RATE_HZ
    speechlike = (0.05 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    narrow = sosfilt(_band(), speechlike.astype(np.float64)).astype(np.float32)
    unquantised = soxr.resample(
        soxr.resample(narrow, RATE_HZ, PHONE_RATE_HZ), PHONE_RATE_HZ, RATE_HZ
    )
    mulaw, alaw = telephone(speechlike, "mulaw"), telephone(speechlike, "alaw")
    assert not np.allclose(mulaw, alaw)
    for out in (mulaw, alaw):
        error = out - unquantised[: out.size]
        snr_db = 10 * np.log10(np.mean(unquantised**2) / np.mean(error**2))
        assert 25 < snr_db < 50


def test_telephone_refuses_an_unknown_law() -> None:
    with pytest.raises(ValueError, match=r"unknown G\.711 law 'gsm'"):
        telephone(white(0.1), "gsm")


def test_corpus_augmentation_band_limits_a_share_of_training_clips_only() -> None:
    require("espeak-ng")
    clips = {"train": 8, "val": 2, "test": 2}
    plain = CorpusConfig(seed=5, clips=clips)
    phone = CorpusConfig(seed=5, clips=clips, telephone_probability=0.5)
    part = partition(phone)
    banks = {split: babble_bank(split, phone, part) for split in clips}
    changed = 0
    for spec in plan(phone):
        a, b = render(spec, phone, banks[spec.split]), render(spec, plain, banks[spec.split])
        assert a.size == b.size
        if spec.split != "train":
            np.testing.assert_array_equal(a, b)  # validation and test stay wideband
        elif not np.array_equal(a, b):
            changed += 1
            assert band_energy(a, 3800, 8000) < 0.01 * band_energy(b, 3800, 8000)
        # Deterministic: the same clip renders the same again.
        np.testing.assert_array_equal(a, render(spec, phone, banks[spec.split]))
    assert 1 <= changed <= 7
    every = CorpusConfig(seed=5, clips={"train": 3}, telephone_probability=1.0)
    for spec in plan(every):
        audio = render(spec, every, banks["train"])
        assert band_energy(audio, 3800, 8000) < 1e-3 * band_energy(audio, 300, 3400)
