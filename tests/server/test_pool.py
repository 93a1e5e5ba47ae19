from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from server.inference import OnnxClassifier
from server.metrics import Metrics
from server.pool import InferenceFailed, InferencePool, Overloaded
from tests.server.conftest import ScriptedClassifier

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
