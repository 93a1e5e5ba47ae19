"""The pool's batching (EMOSTREAM_BATCH_MAX): equal-length waiting jobs of one class share
one predict_batch call, in round-robin order; each keeps its own outcome."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from classifier.model import Manifest, read_manifest
from server.metrics import Metrics
from server.pool import InferenceFailed, InferencePool, Priority
from server.quality import SignalQuality
from server.settings import Settings
from tests.server.recorder import BatchRecorder, Recorder, segment


@pytest.fixture
def manifest(tiny_model_dir: Path) -> Manifest:
    return read_manifest(tiny_model_dir)


def make_pool(classifier: Recorder, batch_max: int, workers: int = 1) -> InferencePool:
    return InferencePool(
        classifier,
        workers=workers,
        queue_size=32,
        queue_timeout_s=30,
        metrics=Metrics(),
        batch_max=batch_max,
    )


async def hold(pool: InferencePool, recorder: Recorder) -> asyncio.Task[Any]:
    """Occupy the only worker (id 0) until the gate opens."""
    task = asyncio.ensure_future(pool.classify(segment(0, 7), client="holder", stream="h"))
    await asyncio.to_thread(recorder.started.acquire, True, 5)
    return task


def submit(
    pool: InferencePool,
    jobs: list[tuple[int, int, str, str]],
    priority: Priority = "final",
) -> list[asyncio.Task[Any]]:
    """(id, samples, client, stream) each; every job measures a quality naming its id."""
    return [
        asyncio.ensure_future(
            pool.classify(
                segment(i, n),
                priority=priority,
                client=client,
                stream=stream,
                measure=lambda i=i: SignalQuality(1.0, 0.0, -float(i), 0.0),
            )
        )
        for i, n, client, stream in jobs
    ]


def test_equal_lengths_share_a_call_in_round_robin_order(manifest: Manifest) -> None:
    recorder = BatchRecorder(manifest)
    pool = make_pool(recorder, batch_max=4)

    async def run() -> list[Any]:
        holder = await hold(pool, recorder)
        tasks = submit(
            pool,
            [
                (1, 800, "a", "s"),
                (2, 900, "b", "s"),  # another length: not in the batch
                (3, 800, "c", "s"),
                (4, 800, "a", "s"),  # a's next turn comes after d's and e's
                (5, 800, "d", "s"),
                (6, 800, "e", "s"),
            ],
        )
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await holder
        return list(await asyncio.gather(*tasks))

    predictions = asyncio.run(run())
    assert recorder.calls == [[0], [1, 3, 5, 6], [2], [4]]
    for i, prediction in enumerate(predictions, start=1):
        assert prediction.scores[0] == i  # its own scores
        assert prediction.quality.level_dbfs == -i  # its own quality
        assert prediction.manifest is manifest
    metrics = pool.metrics
    assert metrics.batch_size._sum.get() == 1 + 4 + 1 + 1
    assert metrics.inference_seconds._sum.get() > 0
    counts = {s.name: s.value for s in metrics.inference_seconds.collect()[0].samples}
    assert counts["emostream_inference_seconds_count"] == 7  # each segment counted
    assert pool.accepting and pool.waiting == 0 and sum(pool._running) == 0 and pool._busy == 0
    pool.close()


def test_other_classes_and_partials_are_not_batched(manifest: Manifest) -> None:
    recorder = BatchRecorder(manifest)
    pool = make_pool(recorder, batch_max=8)

    async def run() -> None:
        holder = await hold(pool, recorder)
        tasks = submit(pool, [(1, 800, "a", "s"), (2, 800, "b", "s")])
        tasks += submit(pool, [(3, 800, "c", "s"), (4, 800, "d", "s")], "upload")
        tasks += submit(pool, [(5, 800, "e", "s"), (6, 800, "f", "s")], "provisional")
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await asyncio.gather(holder, *tasks)

    asyncio.run(run())
    assert recorder.calls == [[0], [1, 2], [3, 4], [5], [6]]
    pool.close()


@pytest.mark.parametrize("case", ["batch_max 1", "no predict_batch", "fixed batch axis"])
def test_off_by_default_without_predict_batch_or_a_batch_axis(
    manifest: Manifest, case: str
) -> None:
    log: list[tuple[str, int]] = []
    recorder: Recorder = (
        Recorder(manifest, log) if case == "no predict_batch" else BatchRecorder(manifest)
    )
    if case == "fixed batch axis":
        recorder.batching = False  # as OnnxClassifier says of a graph with batch axis 1
    pool = make_pool(recorder, batch_max=1 if case == "batch_max 1" else 4)

    async def run() -> None:
        holder = await hold(pool, recorder)
        tasks = submit(pool, [(i, 800, f"c{i}", "s") for i in range(1, 4)])
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await asyncio.gather(holder, *tasks)

    asyncio.run(run())
    if isinstance(recorder, BatchRecorder):
        assert recorder.calls == [[0], [1], [2], [3]]
    else:
        assert [size for _, size in log] == [7, 800, 800, 800]
    pool.close()


def test_a_batch_does_not_starve_other_lengths(manifest: Manifest) -> None:
    # A flood of equal segments from one stream, and one other-length segment behind it:
    # it runs in the next call after the batch, not after the flood.
    recorder = BatchRecorder(manifest)
    pool = make_pool(recorder, batch_max=3)

    async def run() -> None:
        holder = await hold(pool, recorder)
        tasks = submit(pool, [(i, 800, "flood", "s") for i in range(1, 8)])
        tasks += submit(pool, [(9, 900, "other", "s")])
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await asyncio.gather(holder, *tasks)

    asyncio.run(run())
    assert recorder.calls == [[0], [1, 2, 3], [9], [4, 5, 6], [7]]
    pool.close()


def test_cancelling_one_batched_job_leaves_the_others(manifest: Manifest) -> None:
    recorder = BatchRecorder(manifest)
    pool = make_pool(recorder, batch_max=4)

    recorder.batch_gate = threading.Event()

    async def run() -> list[Any]:
        holder = await hold(pool, recorder)
        tasks = submit(pool, [(1, 800, "a", "s"), (2, 800, "b", "s"), (3, 800, "c", "s")])
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await holder
        assert await asyncio.to_thread(recorder.started.acquire, True, 5)  # the batch runs
        tasks[1].cancel()
        await asyncio.sleep(0.01)
        assert sum(pool._abandoned) == 1
        recorder.batch_gate.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    first, second, third = asyncio.run(run())
    assert recorder.calls == [[0], [1, 2, 3]]
    assert first.scores[0] == 1 and third.scores[0] == 3
    assert isinstance(second, asyncio.CancelledError)
    assert pool.accepting and sum(pool._running) == 0 and sum(pool._abandoned) == 0
    pool.close()


def test_a_failed_batch_fails_each_of_its_jobs_and_the_pool_goes_on(manifest: Manifest) -> None:
    recorder = BatchRecorder(manifest, fail_batches=True)
    pool = make_pool(recorder, batch_max=4)

    async def run() -> tuple[list[Any], Any]:
        holder = await hold(pool, recorder)
        tasks = submit(pool, [(1, 800, "a", "s"), (2, 800, "b", "s"), (3, 900, "c", "s")])
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await holder
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        after = await pool.classify(segment(4, 800))
        return list(outcomes), after

    outcomes, after = asyncio.run(run())
    assert recorder.calls == [[0], [1, 2], [3], [4]]
    for failed in outcomes[:2]:
        assert isinstance(failed, InferenceFailed)
        assert "scripted failure of a batch of 2" in str(failed)
        assert isinstance(failed.__cause__, RuntimeError)
    assert outcomes[2].scores[0] == 3 and after.scores[0] == 4
    pool.close()


def test_a_bad_measure_fails_only_its_own_job(manifest: Manifest) -> None:
    recorder = BatchRecorder(manifest)
    pool = make_pool(recorder, batch_max=4)

    def broken() -> SignalQuality:
        raise ValueError("no samples")

    async def run() -> list[Any]:
        holder = await hold(pool, recorder)
        good = pool.classify(segment(1, 800), client="a")
        bad = pool.classify(segment(2, 800), client="b", measure=broken)
        tasks = [asyncio.ensure_future(good), asyncio.ensure_future(bad)]
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await holder
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    ok, failed = asyncio.run(run())
    assert recorder.calls == [[0], [1, 2]]
    assert ok.scores[0] == 1
    assert isinstance(failed, InferenceFailed) and "signal measures failed" in str(failed)
    pool.close()


def test_batch_max_setting(monkeypatch: pytest.MonkeyPatch, manifest: Manifest) -> None:
    assert Settings().batch_max == 1
    monkeypatch.setenv("EMOSTREAM_BATCH_MAX", "8")
    assert Settings().batch_max == 8
    monkeypatch.setenv("EMOSTREAM_BATCH_MAX", "0")
    with pytest.raises(ValueError, match="batch_max"):
        Settings()
    with pytest.raises(ValueError, match="batch_max must be at least 1"):
        make_pool(Recorder(manifest, []), batch_max=0)
