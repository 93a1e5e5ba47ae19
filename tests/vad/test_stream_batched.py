"""StreamSegmenter.segment_batched: one call for batched and unbatched detection, with the
detector-fault handling of both in vad."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

import vad.silero as silero
from tests.speech import espeak, silence
from vad import DetectorError, SegmenterConfig, SileroBatcher, StreamSegmenter
from vad.detector import EnergyDetector
from vad.framing import to_int16
from vad.silero import SileroDetector, SileroModel


class FailingModel:
    def run(self, windows: object, state: object) -> object:
        raise RuntimeError("scripted model fault")


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return silero.shared_model()


@pytest.fixture(scope="module")
def pcm() -> bytes:
    talk = espeak("The meeting starts at nine tomorrow morning.")
    audio = np.concatenate([silence(0.3), talk, silence(0.8), talk, silence(0.8)])
    return to_int16(audio).astype("<i2").tobytes()


def _run(stream: StreamSegmenter, pcm: bytes, batcher_of: Any) -> list[Any]:
    async def main() -> list[Any]:
        batcher = batcher_of()
        events: list[Any] = []
        for i in range(0, len(pcm), 640):
            events += await stream.segment_batched(stream.frames_of(pcm[i : i + 640]), batcher)
        if batcher is not None:
            batcher.close()
        return events

    return asyncio.run(main())


def test_batched_silero_gives_the_events_of_its_own_detector(
    model: SileroModel, pcm: bytes
) -> None:
    config = SegmenterConfig()
    alone = StreamSegmenter(config, 16000, detector=SileroDetector(model))
    want = alone.feed_bytes(pcm)
    batched = StreamSegmenter(config, 16000, detector=SileroDetector(model))
    assert _run(batched, pcm, lambda: SileroBatcher(model)) == want
    assert len(want) >= 4


def test_another_detector_or_no_batcher_decides_on_its_own(model: SileroModel, pcm: bytes) -> None:
    config = SegmenterConfig()
    want = StreamSegmenter(config, 16000, detector=EnergyDetector()).feed_bytes(pcm)
    stream = StreamSegmenter(config, 16000, detector=EnergyDetector())
    assert _run(stream, pcm, lambda: SileroBatcher(model)) == want
    plain = StreamSegmenter(SegmenterConfig(), 16000, detector=SileroDetector(model))
    assert _run(plain, pcm, lambda: None) == StreamSegmenter(
        SegmenterConfig(), 16000, detector=SileroDetector(model)
    ).feed_bytes(pcm)


def test_a_batch_fault_counts_the_frames_unvoiced_and_raises_detector_error(
    model: SileroModel,
) -> None:
    detector = SileroDetector(model)
    stream = StreamSegmenter(SegmenterConfig(), 16000, detector=detector)
    frames = stream.frames_of(np.zeros(4 * silero.FRAME_SAMPLES, "<i2").tobytes())

    async def main() -> None:
        batcher = SileroBatcher(FailingModel())  # type: ignore[arg-type]
        try:
            await stream.segment_batched(frames, batcher)
        finally:
            batcher.close()

    with pytest.raises(DetectorError) as info:
        asyncio.run(main())
    assert "scripted model fault" in str(info.value.cause)
    assert info.value.events == []  # silence, counted unvoiced: nothing starts
    assert stream.input_samples == 4 * silero.FRAME_SAMPLES
