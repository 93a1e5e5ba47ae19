from __future__ import annotations

import numpy as np
import pytest

from vad import resample
from vad.resample import Resampler

RATES_HZ = [8000, 11025, 22050, 44100, 48000]


def _stream(resampler: Resampler, audio: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    outs = []
    start = 0
    while start < len(audio):
        size = int(rng.integers(1, 3000))
        outs.append(resampler.process(audio[start : start + size]))
        start += size
    outs.append(resampler.flush())
    return np.concatenate(outs)


def _peak_frequency_hz(audio: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / rate_hz)[np.argmax(spectrum)])


@pytest.mark.parametrize("rate_hz", RATES_HZ)
@pytest.mark.parametrize("total", [0, 1, 2, 5, 1000, 12_345, 99_999])
def test_total_output_is_rounded_ratio_after_flush(rate_hz: int, total: int) -> None:
    audio = np.random.default_rng(total).uniform(-0.5, 0.5, total).astype(np.float32)
    out = _stream(Resampler(rate_hz, 16000), audio, seed=total)
    assert len(out) == round(total * 16000 / rate_hz)
    assert out.dtype == np.float32


@pytest.mark.parametrize("rate_hz", [8000, 22050, 44100, 48000])
def test_click_lands_on_the_right_output_sample(rate_hz: int) -> None:
    audio = np.zeros(rate_hz, dtype=np.float32)
    click_s = 0.4321
    audio[round(click_s * rate_hz)] = 1.0
    out = _stream(Resampler(rate_hz, 16000), audio)
    assert abs(int(np.argmax(np.abs(out))) - click_s * 16000) <= 2


@pytest.mark.parametrize("rate_hz", [8000, 44100, 48000])
def test_sine_keeps_its_frequency(rate_hz: int) -> None:
    t = np.arange(rate_hz) / rate_hz
    audio = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out = _stream(Resampler(rate_hz, 16000), audio)
    assert abs(_peak_frequency_hz(out, 16000) - 1000) <= 2


def test_tone_above_new_nyquist_is_filtered_not_aliased() -> None:
    rate_hz = 48000
    t = np.arange(rate_hz) / rate_hz
    audio = (0.5 * np.sin(2 * np.pi * 12_000 * t)).astype(np.float32)
    out = _stream(Resampler(rate_hz, 16000), audio)
    # Picking every third sample would fold 12 kHz onto 4 kHz at full level.
    picked = audio[::3]
    assert np.sqrt(np.mean(picked**2)) > 0.3
    assert np.sqrt(np.mean(out[1000:-1000] ** 2)) < 0.5 * 10 ** (-60 / 20)


def test_chunking_does_not_change_the_output() -> None:
    audio = np.random.default_rng(3).uniform(-0.5, 0.5, 44100).astype(np.float32)
    whole = Resampler(44100, 16000)
    one_shot = np.concatenate([whole.process(audio), whole.flush()])
    np.testing.assert_array_equal(_stream(Resampler(44100, 16000), audio, seed=9), one_shot)


def test_equal_rates_pass_through() -> None:
    audio = np.linspace(-1, 1, 1001, dtype=np.float32)
    resampler = Resampler(16000, 16000)
    np.testing.assert_array_equal(resampler.process(audio), audio)
    assert len(resampler.flush()) == 0


def test_process_after_flush_is_refused() -> None:
    resampler = Resampler(48000, 16000)
    resampler.flush()
    assert len(resampler.flush()) == 0
    with pytest.raises(RuntimeError, match="flushed"):
        resampler.process(np.zeros(10, dtype=np.float32))


def test_rejects_bad_rates_and_shapes() -> None:
    with pytest.raises(ValueError, match="in_rate_hz must be positive, got 0"):
        Resampler(0, 16000)
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        Resampler(48000, 16000).process(np.zeros((2, 5), dtype=np.float32))


def test_soxr_gets_bounded_pieces_of_a_large_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # soxr keeps buffers as large as the largest chunk it was given; a 64 KiB WebSocket
    # frame must not make every idle stream hold a buffer that size.
    sizes: list[int] = []
    original = resample._resample

    def recording(stream: object, samples: np.ndarray, last: bool = False) -> np.ndarray:
        sizes.append(len(samples))
        return original(stream, samples, last)

    monkeypatch.setattr(resample, "_resample", recording)
    audio = np.random.default_rng(4).uniform(-0.5, 0.5, 32768).astype(np.float32)
    resampler = Resampler(48000, 16000)
    out = np.concatenate([resampler.process(audio), resampler.flush()])
    assert max(sizes) <= resample.MAX_CHUNK_SAMPLES
    assert sum(sizes) == len(audio)
    monkeypatch.undo()
    np.testing.assert_array_equal(out, _stream(Resampler(48000, 16000), audio, seed=5))
