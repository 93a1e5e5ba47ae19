from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from classifier.inference import OnnxClassifier
from classifier.model import Manifest, read_manifest
from server.metrics import Metrics
from server.pool import InferenceFailed, InferencePool, Overloaded
from server.quality import SignalQuality
from tests.server.conftest import ScriptedClassifier, send_audio
from tests.server.recorder import Recorder
from tests.speech import to_pcm16

AUDIO = np.zeros(16000, dtype=np.float32)


def make_pool(
    classifier: ScriptedClassifier, workers: int = 1, queue_size: int = 0, timeout_s: float = 5.0
) -> InferencePool:
    return InferencePool(
        classifier,
        workers=workers,
        queue_size=queue_size,
        queue_timeout_s=timeout_s,
        metrics=Metrics(),
    )


@pytest.fixture
def classifier(tiny_model_dir: Path) -> ScriptedClassifier:
    return ScriptedClassifier(OnnxClassifier(tiny_model_dir))


def test_prediction_carries_scores_and_the_model_that_ran(classifier: ScriptedClassifier) -> None:
    pool = make_pool(classifier)
    prediction = asyncio.run(pool.classify(AUDIO))
    assert prediction.scores.shape == (6,)
    assert prediction.manifest is classifier.manifest
    pool.close()


def test_admission_is_bounded_and_released(classifier: ScriptedClassifier) -> None:
    gate = threading.Event()
    classifier.gate = gate
    pool = make_pool(classifier, workers=1, queue_size=1)

    async def run() -> list[object]:
        first = asyncio.ensure_future(pool.classify(AUDIO))
        second = asyncio.ensure_future(pool.classify(AUDIO))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="2 segments"):
            await pool.classify(AUDIO)
        assert not pool.accepting
        gate.set()
        return list(await asyncio.gather(first, second))

    assert len(asyncio.run(run())) == 2
    assert pool.accepting
    pool.close()


def test_cancelled_waiters_release_their_place(classifier: ScriptedClassifier) -> None:
    gate = threading.Event()
    classifier.gate = gate
    pool = make_pool(classifier, workers=1, queue_size=2)

    async def run() -> None:
        running = asyncio.ensure_future(pool.classify(AUDIO))
        queued = [asyncio.ensure_future(pool.classify(AUDIO)) for _ in range(2)]
        await asyncio.sleep(0.05)
        for task in queued:
            task.cancel()
        await asyncio.wait(queued)
        gate.set()
        await running
        await asyncio.sleep(0.05)

    asyncio.run(run())
    assert pool.accepting
    assert pool.metrics.queue_depth._value.get() == 0
    pool.close()


def test_failure_is_wrapped_and_pool_goes_on(tiny_model_dir: Path) -> None:
    pool = make_pool(ScriptedClassifier(OnnxClassifier(tiny_model_dir), fail_calls={0}))
    with pytest.raises(InferenceFailed, match="scripted failure on call 0"):
        asyncio.run(pool.classify(AUDIO))
    assert asyncio.run(pool.classify(AUDIO)).scores.sum() == pytest.approx(1.0, abs=1e-5)
    pool.close()


def test_swap_serves_new_model_and_admitted_work_finishes_on_old(
    classifier: ScriptedClassifier, tiny_model_dir_b: Path
) -> None:
    gate = threading.Event()
    classifier.gate = gate
    new = ScriptedClassifier(OnnxClassifier(tiny_model_dir_b))
    pool = make_pool(classifier, workers=2)

    async def run() -> tuple[str, str]:
        old_job = asyncio.ensure_future(pool.classify(AUDIO))
        await asyncio.sleep(0.05)
        assert pool.swap(new) is classifier
        new_result = await pool.classify(AUDIO)
        gate.set()
        return (await old_job).manifest.version, new_result.manifest.version

    old_version, new_version = asyncio.run(run())
    assert old_version == classifier.manifest.version
    assert new_version == new.manifest.version != old_version
    pool.close()


@pytest.fixture
def manifest(tiny_model_dir: Path) -> Manifest:
    return read_manifest(tiny_model_dir)


def tagged(tag: int) -> np.ndarray:
    return np.zeros(tag, dtype=np.float32)


def recorder_pool(
    manifest: Manifest, workers: int = 1, queue_size: int = 16, lone: bool = False
) -> tuple[InferencePool, Recorder, list[tuple[str, int]]]:
    log: list[tuple[str, int]] = []
    shared = Recorder(manifest, log)
    wide = Recorder(manifest, log, "lone") if lone else None
    if wide is not None:
        wide.gate = shared.gate
    pool = InferencePool(
        shared,
        lone=wide,
        workers=workers,
        queue_size=queue_size,
        queue_timeout_s=30,
        metrics=Metrics(),
    )
    return pool, shared, log


async def hold_worker(pool: InferencePool, recorder: Recorder, tag: int = 1) -> asyncio.Task[Any]:
    """Start a job that occupies the (only) worker until the gate opens."""
    task = asyncio.ensure_future(pool.classify(tagged(tag), client="holder", stream="h"))
    await asyncio.to_thread(recorder.started.acquire, True, 5)
    return task


def run_order(log: list[tuple[str, int]]) -> list[int]:
    return [tag for _, tag in log]


def test_priority_classes_run_best_first(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest)

    async def run() -> None:
        holder = await hold_worker(pool, recorder)
        jobs = [
            pool.classify(tagged(10), priority="provisional", client="a"),
            pool.classify(tagged(20), priority="upload", client="b"),
            pool.classify(tagged(30), priority="final", client="c"),
            pool.classify(tagged(21), priority="upload", client="b"),
            pool.classify(tagged(31), priority="final", client="d"),
        ]
        tasks = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await asyncio.gather(holder, *tasks)

    asyncio.run(run())
    assert run_order(log) == [1, 30, 31, 20, 21, 10]
    pool.close()


def test_uploads_cannot_starve_live_finals(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest, queue_size=32)

    async def run() -> None:
        holder = await hold_worker(pool, recorder)
        uploads = [
            asyncio.ensure_future(pool.classify(tagged(100 + i), priority="upload", client="u"))
            for i in range(20)
        ]
        await asyncio.sleep(0.01)
        final = asyncio.ensure_future(pool.classify(tagged(7), client="live", stream="s"))
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await asyncio.gather(holder, final, *uploads)

    asyncio.run(run())
    assert run_order(log)[:2] == [1, 7]  # the final runs as soon as the worker is free
    pool.close()


def test_a_flooding_stream_only_delays_itself(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest, queue_size=32)

    async def run() -> None:
        holder = await hold_worker(pool, recorder)
        flood = [
            asyncio.ensure_future(pool.classify(tagged(100 + i), client="10.0.0.1", stream="f"))
            for i in range(10)
        ]
        await asyncio.sleep(0.01)
        other = [
            asyncio.ensure_future(pool.classify(tagged(200 + i), client="10.0.0.2", stream="o"))
            for i in range(3)
        ]
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await asyncio.gather(holder, *flood, *other)

    asyncio.run(run())
    order = run_order(log)[1:]
    # Round-robin: the other stream's segments alternate with the flood's, in their own order.
    assert order[:6] == [100, 200, 101, 201, 102, 202]
    assert order[6:] == list(range(103, 110))
    pool.close()


def test_streams_of_one_address_share_its_turn(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest, queue_size=32)

    async def run() -> None:
        holder = await hold_worker(pool, recorder)
        tasks = []
        for i in range(2):  # one address with two sockets, each with two segments
            for stream in ("s1", "s2"):
                tag = (100 if stream == "s1" else 200) + i
                tasks.append(pool.classify(tagged(tag), client="10.0.0.1", stream=stream))
        tasks += [pool.classify(tagged(300 + i), client="10.0.0.2") for i in range(2)]
        futures = [asyncio.ensure_future(t) for t in tasks]
        await asyncio.sleep(0.01)
        recorder.gate.set()
        await asyncio.gather(holder, *futures)

    asyncio.run(run())
    assert run_order(log)[1:] == [100, 300, 200, 301, 101, 201]
    pool.close()


def test_a_full_pool_takes_places_from_the_flooding_client(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest, queue_size=4)

    async def run() -> list[BaseException | object]:
        holder = await hold_worker(pool, recorder)
        flood = [
            asyncio.ensure_future(pool.classify(tagged(100 + i), client="flood")) for i in range(4)
        ]
        await asyncio.sleep(0.01)
        assert not pool.accepting
        mine = [
            asyncio.ensure_future(pool.classify(tagged(200 + i), client="me")) for i in range(3)
        ]
        await asyncio.sleep(0.01)
        recorder.gate.set()
        return list(await asyncio.gather(holder, *flood, *mine, return_exceptions=True))

    outcomes = asyncio.run(run())
    flood, mine = outcomes[1:5], outcomes[5:]
    # "me" gets an equal share (2 of the 4 places); its third segment is refused, not the flood's.
    assert [isinstance(o, Overloaded) for o in flood] == [False, False, True, True]
    assert "gave its place" in str(flood[3])
    assert [isinstance(o, Overloaded) for o in mine] == [False, False, True]
    assert "pool is full" in str(mine[2])
    assert run_order(log) == [1, 100, 200, 101, 201]
    metrics = pool.metrics
    assert metrics.pool_dropped.labels(priority="final", reason="displaced")._value.get() == 2
    assert metrics.pool_dropped.labels(priority="final", reason="full")._value.get() == 1
    pool.close()


def test_lowest_priority_is_dropped_first_and_never_costs_a_final(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest, queue_size=3)

    async def run() -> list[BaseException | object]:
        holder = await hold_worker(pool, recorder)
        partial = asyncio.ensure_future(pool.classify(tagged(10), priority="provisional"))
        upload = asyncio.ensure_future(pool.classify(tagged(20), priority="upload", client="u"))
        final = asyncio.ensure_future(pool.classify(tagged(30), client="a"))
        await asyncio.sleep(0.01)
        # Full. Provisional work never takes a place; a final displaces the partial, then
        # the upload; the upload displaces nothing but provisional work.
        with pytest.raises(Overloaded, match="full"):
            await pool.classify(tagged(11), priority="provisional")
        second = asyncio.ensure_future(pool.classify(tagged(31), client="b"))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="full"):
            await pool.classify(tagged(21), priority="upload", client="u2")
        third = asyncio.ensure_future(pool.classify(tagged(32), client="c"))
        await asyncio.sleep(0.01)
        recorder.gate.set()
        return list(
            await asyncio.gather(
                holder, partial, upload, final, second, third, return_exceptions=True
            )
        )

    outcomes = asyncio.run(run())
    partial, upload, *finals = outcomes[1:]
    assert isinstance(partial, Overloaded)
    assert isinstance(upload, Overloaded)
    assert not any(isinstance(o, BaseException) for o in finals)
    assert run_order(log) == [1, 30, 31, 32]
    pool.close()


def test_provisional_work_leaves_a_worker_for_finals(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest, workers=2)

    async def run() -> None:
        partials = [
            asyncio.ensure_future(
                pool.classify(tagged(10 + i), priority="provisional", stream=str(i))
            )
            for i in range(2)
        ]
        await asyncio.to_thread(recorder.started.acquire, True, 5)
        await asyncio.sleep(0.05)
        assert run_order(log) == [10]  # the second partial waits: one worker stays free
        final = asyncio.ensure_future(pool.classify(tagged(30)))
        await asyncio.to_thread(recorder.started.acquire, True, 5)
        assert run_order(log) == [10, 30]
        recorder.gate.set()
        await asyncio.gather(final, *partials)

    asyncio.run(run())
    assert run_order(log) == [10, 30, 11]
    pool.close()


def test_adaptive_layout_lone_segment_on_the_wide_session(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest, workers=2, lone=True)

    async def run() -> None:
        recorder.gate.set()
        await pool.classify(tagged(1))  # alone: the wide session
        recorder.gate.clear()
        first = asyncio.ensure_future(pool.classify(tagged(2)))
        await asyncio.sleep(0)  # dispatched alone, before the others arrive
        rest = [asyncio.ensure_future(pool.classify(tagged(3 + i))) for i in range(3)]
        await asyncio.sleep(0.05)
        recorder.gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(run())
    layouts = dict((tag, name) for name, tag in log)
    assert layouts[1] == "lone"
    assert layouts[2] == "lone"
    # Several waiting: one thread per worker until the queue is down to one job.
    assert layouts[3] == "shared"
    assert layouts[4] == "shared"
    runs = pool.metrics.layout_runs
    assert runs.labels(layout="lone")._value.get() + runs.labels(layout="shared")._value.get() == 5
    pool.close()


def test_unknown_priority_is_refused(manifest: Manifest) -> None:
    pool, _, _ = recorder_pool(manifest)
    with pytest.raises(ValueError, match="priority must be one of final, upload, provisional"):
        asyncio.run(pool.classify(tagged(1), priority="urgent"))  # type: ignore[arg-type]
    pool.close()


def test_closed_pool_refuses_and_fails_waiting_jobs(manifest: Manifest) -> None:
    pool, recorder, _ = recorder_pool(manifest)

    async def run() -> None:
        holder = await hold_worker(pool, recorder)
        waiting = asyncio.ensure_future(pool.classify(tagged(5)))
        await asyncio.sleep(0.01)
        recorder.gate.set()
        pool.close()
        assert not pool.open
        with pytest.raises(Overloaded, match="closed"):
            await waiting
        with pytest.raises(Overloaded, match="closed"):
            await pool.classify(tagged(6))
        await holder

    asyncio.run(run())


def test_readyz_stays_200_while_the_pool_is_full(
    make_client: Any, tiny_model_dir: Path, one_utterance: np.ndarray
) -> None:
    log: list[tuple[str, int]] = []
    recorder = Recorder(read_manifest(tiny_model_dir), log)
    client = make_client(
        loader=lambda path: recorder, workers=1, queue_size=0, early_endpoint=False
    )
    with client.websocket_connect("/v1/stream?sample_rate=16000") as ws:
        ws.receive_text()
        send_audio(ws, to_pcm16(one_utterance))
        ws.send_text('{"type": "flush"}')
        assert recorder.started.acquire(timeout=10)  # the one worker is busy: the pool is full
        pool = client.app.state.service.pool
        assert not pool.accepting
        reply = client.get("/readyz")
        recorder.gate.set()
    assert reply.status_code == 200


def test_service_loads_a_wide_session_for_lone_segments(make_client: Any) -> None:
    service = make_client(intra_op_threads=1, lone_intra_op_threads=2).app.state.service
    assert service.pool.lone is not None
    assert service.pool.lone.manifest.version == service.pool.classifier.manifest.version
    assert make_client(lone_intra_op_threads=0).app.state.service.pool.lone is None


def test_a_running_partial_holds_no_place_a_final_needs(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest, queue_size=1)

    async def run() -> list[object]:
        partial = asyncio.ensure_future(pool.classify(tagged(10), priority="provisional"))
        await asyncio.to_thread(recorder.started.acquire, True, 5)
        finals = [
            asyncio.ensure_future(pool.classify(tagged(30 + i), client=str(i))) for i in range(2)
        ]
        await asyncio.sleep(0.01)
        recorder.gate.set()
        return list(await asyncio.gather(partial, *finals))

    assert len(asyncio.run(run())) == 3  # capacity 2 (one worker, one queue place): both fit
    assert run_order(log) == [10, 30, 31]
    pool.close()


def test_an_abandoned_provisional_run_frees_the_provisional_limit(manifest: Manifest) -> None:
    pool, recorder, log = recorder_pool(manifest, workers=2)

    async def run() -> None:
        stale = asyncio.ensure_future(pool.classify(tagged(10), priority="provisional"))
        await asyncio.to_thread(recorder.started.acquire, True, 5)
        early = asyncio.ensure_future(pool.classify(tagged(20), priority="provisional"))
        await asyncio.sleep(0.05)
        assert run_order(log) == [10]  # the provisional limit (one of two workers)
        stale.cancel()  # its caller gave up; the model run goes on
        await asyncio.to_thread(recorder.started.acquire, True, 5)
        assert run_order(log) == [10, 20]  # on the free worker, without waiting for it
        recorder.gate.set()
        await early
        await asyncio.sleep(0.05)
        third = asyncio.ensure_future(pool.classify(tagged(30), priority="provisional"))
        await third
        with pytest.raises(asyncio.CancelledError):
            await stale

    asyncio.run(run())
    assert run_order(log) == [10, 20, 30]
    assert pool._abandoned == [0, 0, 0]
    pool.close()


def test_a_job_measures_on_the_worker_after_the_model_and_a_bad_measure_fails_it(
    classifier: ScriptedClassifier,
) -> None:
    pool = make_pool(classifier)
    threads: list[str] = []

    def measure() -> SignalQuality:
        threads.append(threading.current_thread().name)
        return SignalQuality(speech=1.0, snr_db=20.0, level_dbfs=-20.0, clipped=0.0)

    def broken() -> SignalQuality:
        raise ValueError("no audio")

    prediction = asyncio.run(pool.classify(AUDIO, measure=measure))
    assert prediction.quality == measure() and threads[0].startswith("inference")
    assert asyncio.run(pool.classify(AUDIO)).quality is None
    with pytest.raises(InferenceFailed, match="signal measures failed: no audio"):
        asyncio.run(pool.classify(AUDIO, measure=broken))
    pool.close()
