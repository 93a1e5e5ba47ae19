"""The Silero batcher: many streams' frames in one model call, with exactly the decisions
each stream would get alone."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import vad.silero as silero
from tests.speech import espeak, silence
from vad import BatcherClosed, SegmenterConfig, SileroBatcher, StreamSegmenter
from vad.batch import STEPS_PER_RUN
from vad.framing import to_int16
from vad.silero import FRAME_SAMPLES, SileroDetector, SileroModel

Int16 = npt.NDArray[np.int16]
Float32 = npt.NDArray[np.float32]


class SpyModel:
    """The real model, recording every call's batch size; fails on chosen calls."""

    def __init__(self, inner: SileroModel, failing: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.inner, self.failing = inner, failing
        self.sizes: list[int] = []

    def run(self, windows: Float32, state: Float32) -> tuple[Float32, Float32]:
        call = len(self.sizes)
        self.sizes.append(len(windows))
        if call in self.failing:
            raise RuntimeError(f"scripted model fault on call {call}")
        return self.inner.run(windows, state)


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return silero.shared_model()


@pytest.fixture(scope="module")
def streams() -> list[Int16]:
    """Six different streams: speech at different offsets, noise, silence."""
    rng = np.random.default_rng(7)
    talk = espeak("The meeting starts at nine tomorrow morning.")
    audio = [np.concatenate([silence(0.2 * k), talk, silence(0.6)]) for k in range(3)] + [
        rng.normal(0, 0.05, 40_000).astype(np.float32),
        silence(2.0),
        np.concatenate([talk[::-1], silence(0.3)]),
    ]
    return [to_int16(a) for a in audio]


def frames(samples: Int16) -> list[Int16]:
    usable = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
    return list(samples[:usable].reshape(-1, FRAME_SAMPLES))


def alone(model: SileroModel, samples: Int16) -> tuple[list[bool], list[float]]:
    detector = SileroDetector(model)
    voiced, probs = [], []
    for frame in frames(samples):
        voiced.append(detector(frame))
        probs.append(detector.probability)
    return voiced, probs


async def batched(
    batcher: SileroBatcher, samples: Int16, chunks: list[int], detector: SileroDetector
) -> tuple[list[bool], dict[int, float]]:
    """The stream's frames in chunks of the given sizes (0 included), one request each;
    the decisions, and the probability of each chunk's last frame by frame index."""
    todo = frames(samples)
    voiced: list[bool] = []
    probs: dict[int, float] = {}
    step = 0
    while todo:
        count = chunks[step % len(chunks)]
        step += 1
        chunk, todo = todo[:count], todo[count:]
        voiced += await batcher.decide(detector, chunk)
        if chunk:
            probs[len(voiced) - 1] = detector.probability
        await asyncio.sleep(0)
    return voiced, probs


def test_batched_streams_decide_exactly_as_alone(model: SileroModel, streams: list[Int16]) -> None:
    spy = SpyModel(model)
    patterns = [[1], [2, 0, 1], [3], [1, 1, 0], [0, 2], [1, 3]]

    async def main() -> list[tuple[list[bool], dict[int, float]]]:
        batcher = SileroBatcher(spy)  # type: ignore[arg-type]
        try:
            return await asyncio.gather(
                *(
                    batched(batcher, s, p, SileroDetector(model))
                    for s, p in zip(streams, patterns, strict=True)
                )
            )
        finally:
            batcher.close()

    results = asyncio.run(main())
    for samples, (voiced, probs) in zip(streams, results, strict=True):
        want_voiced, want_probs = alone(model, samples)
        assert voiced == want_voiced
        assert len(probs) > len(voiced) // 3
        for index, probability in probs.items():
            assert abs(probability - want_probs[index]) < 1e-5
    assert any(voiced for voiced, _ in results[:3])  # the speech streams were heard
    assert not any(results[4][0])  # and silence was not
    assert max(spy.sizes) > 1  # frames of several streams did share model calls
    assert sum(spy.sizes) == sum(len(frames(s)) for s in streams)


def test_waiting_streams_share_one_call_split_at_max_batch(model: SileroModel) -> None:
    rng = np.random.default_rng(1)
    chunk = [to_int16(rng.normal(0, 0.1, FRAME_SAMPLES).astype(np.float32))]

    async def main(max_batch: int) -> list[int]:
        spy = SpyModel(model)
        batcher = SileroBatcher(spy, max_batch=max_batch)  # type: ignore[arg-type]
        await asyncio.gather(*(batcher.decide(SileroDetector(model), chunk) for _ in range(8)))
        batcher.close()
        return spy.sizes

    assert asyncio.run(main(64)) == [8]
    assert asyncio.run(main(3)) == [3, 3, 2]


def test_a_stream_that_joins_while_a_batch_is_scheduled_shares_it(model: SileroModel) -> None:
    """Requests made in one event-loop iteration go in one call; later ones in the next."""
    spy = SpyModel(model)
    frame = [np.zeros(FRAME_SAMPLES, np.int16)]

    async def main() -> None:
        batcher = SileroBatcher(spy)  # type: ignore[arg-type]
        first = asyncio.ensure_future(batcher.decide(SileroDetector(model), frame))
        second = asyncio.ensure_future(batcher.decide(SileroDetector(model), frame))
        await asyncio.gather(first, second)
        await batcher.decide(SileroDetector(model), frame)
        batcher.close()

    asyncio.run(main())
    assert spy.sizes == [2, 1]


def test_a_long_request_does_not_hold_up_the_others(model: SileroModel) -> None:
    """A run decides at most STEPS_PER_RUN frames of each stream: a stream that sent 64
    frames at once is decided over several runs, and a stream that joins meanwhile is
    decided in the next run, not after all 64."""
    spy = SpyModel(model)
    frame = np.zeros(FRAME_SAMPLES, np.int16)
    done: list[tuple[str, int]] = []  # who got its decisions, after how many model calls

    async def decide(name: str, count: int) -> None:
        voiced = await batcher.decide(SileroDetector(model), [frame] * count)
        assert voiced == [False] * count
        done.append((name, len(spy.sizes)))

    async def main() -> None:
        long = asyncio.ensure_future(decide("long", 64))
        await decide("short", 1)
        await decide("late", 2)
        await long

    batcher = SileroBatcher(spy)  # type: ignore[arg-type]
    try:
        asyncio.run(main())
    finally:
        batcher.close()
    runs = 64 // STEPS_PER_RUN
    assert [name for name, _ in done] == ["short", "late", "long"]
    assert done[0][1] == STEPS_PER_RUN  # after the first run
    assert done[1][1] <= 3 * STEPS_PER_RUN  # a run or two later, not after all 64
    assert done[2][1] == runs * STEPS_PER_RUN
    assert spy.sizes[0] == 2  # the short one shared the long one's first call
    assert sum(spy.sizes) == 64 + 1 + 2


def test_an_unexpected_fault_fails_the_waiting_streams_instead_of_hanging(
    model: SileroModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = [np.zeros(FRAME_SAMPLES, np.int16)]

    def broken(self: SileroDetector, frame: Int16) -> Float32:
        raise MemoryError("scripted")

    async def main() -> None:
        batcher = SileroBatcher(model)
        monkeypatch.setattr(SileroDetector, "next_window", broken)
        with pytest.raises(MemoryError, match="scripted"):
            await asyncio.wait_for(batcher.decide(SileroDetector(model), frame), 5)
        monkeypatch.undo()
        assert await batcher.decide(SileroDetector(model), frame) == [False]
        batcher.close()

    asyncio.run(main())


def test_a_model_fault_fails_that_step_and_the_batcher_goes_on(model: SileroModel) -> None:
    spy = SpyModel(model, failing={0})
    frame = np.zeros(FRAME_SAMPLES, np.int16)
    calls: list[int] = []

    async def main() -> tuple[list[Any], list[bool]]:
        batcher = SileroBatcher(spy, on_batch=calls.append)  # type: ignore[arg-type]
        first = await asyncio.gather(
            batcher.decide(SileroDetector(model), [frame, frame]),
            batcher.decide(SileroDetector(model), [frame]),
            return_exceptions=True,
        )
        after = await batcher.decide(SileroDetector(model), [frame])
        batcher.close()
        return first, after

    first, after = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) and "scripted model fault" in str(r) for r in first)
    assert spy.sizes == [2, 1]  # the failed request's second frame was not run
    assert after == [False]
    assert calls == [1]  # on_batch counts the calls that ran


def test_one_request_per_detector_at_a_time(model: SileroModel) -> None:
    frame = np.zeros(FRAME_SAMPLES, np.int16)

    async def main() -> None:
        batcher = SileroBatcher(model)
        detector = SileroDetector(model)
        first = asyncio.ensure_future(batcher.decide(detector, [frame]))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already has frames waiting"):
            await batcher.decide(detector, [frame])
        assert await first == [False]
        assert await batcher.decide(detector, [frame]) == [False]  # free again
        batcher.close()

    asyncio.run(main())


def test_close_fails_waiting_requests_and_refuses_new_ones(model: SileroModel) -> None:
    frame = np.zeros(FRAME_SAMPLES, np.int16)

    async def main() -> None:
        batcher = SileroBatcher(model)
        waiting = asyncio.ensure_future(batcher.decide(SileroDetector(model), [frame]))
        await asyncio.sleep(0)  # queued; the runner has not taken it yet
        batcher.close()
        with pytest.raises(BatcherClosed):
            await waiting
        with pytest.raises(BatcherClosed, match="closed"):
            await batcher.decide(SileroDetector(model), [frame])

    asyncio.run(main())


def test_bad_requests(model: SileroModel) -> None:
    async def main() -> None:
        batcher = SileroBatcher(model)
        assert await batcher.decide(SileroDetector(model), []) == []
        with pytest.raises(ValueError, match="512 samples, got shape"):
            await batcher.decide(SileroDetector(model), [np.zeros(320, np.int16)])
        batcher.close()

    asyncio.run(main())
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        SileroBatcher(model, max_batch=0)


def test_frames_of_then_segment_equals_feed_bytes(model: SileroModel, streams: list[Int16]) -> None:
    """The two halves of feed_bytes, with decisions from the batcher, give the same events."""
    config = SegmenterConfig()
    pcm = np.concatenate(streams[:3]).astype("<i2").tobytes()
    step = 640  # 20 ms messages

    whole = StreamSegmenter(config, 16000, detector=SileroDetector(model))
    want = [e for i in range(0, len(pcm), step) for e in whole.feed_bytes(pcm[i : i + step])]

    async def main() -> list[Any]:
        batcher = SileroBatcher(model)
        detector = SileroDetector(model)
        split = StreamSegmenter(config, 16000, detector=detector)
        events: list[Any] = []
        for i in range(0, len(pcm), step):
            chunk = split.frames_of(pcm[i : i + step])
            events += split.segment(chunk, await batcher.decide(detector, chunk))
        batcher.close()
        return events

    got = asyncio.run(main())
    assert got == want  # events compare by type and bounds
    assert len(want) >= 6


def test_segment_needs_one_decision_per_frame(model: SileroModel) -> None:
    stream = StreamSegmenter(SegmenterConfig(), 16000, detector=SileroDetector(model))
    chunk = stream.frames_of(np.zeros(2 * FRAME_SAMPLES, "<i2").tobytes())
    with pytest.raises(ValueError, match="1 voicing decisions for 2 frames"):
        stream.segment(chunk, [True])
