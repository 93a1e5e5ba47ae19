"""The tentative early endpoint on its own, with a stand-in pool."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import vad
from server.early import EarlyEnd
from server.pool import InferenceFailed, Overloaded


class FakePool:
    """Each job is taken by a worker at once (``on_start``), unless ``workers_free`` is cleared."""

    def __init__(self, waiting: int = 0, fail: Exception | None = None) -> None:
        self.waiting = waiting
        self.fail = fail
        self.calls: list[tuple[int, str]] = []
        self.measures: list[Callable[[], Any] | None] = []
        self.gate = asyncio.Event()
        self.workers_free = asyncio.Event()
        self.workers_free.set()
        self.classifier = SimpleNamespace(manifest=SimpleNamespace(sample_rate=16000))

    async def classify(
        self,
        audio: np.ndarray,
        *,
        priority: str,
        client: str,
        stream: str,
        on_start: Callable[[], None],
        measure: Callable[[], Any] | None = None,
    ) -> Any:
        self.calls.append((audio.size, priority))
        self.measures.append(measure)
        await self.workers_free.wait()
        on_start()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(size=audio.size)


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop (no async plugin here)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def tentative(start: int, end: int) -> vad.InProgress:
    audio = np.arange(end - start, dtype=np.int16)
    return vad.InProgress(start, end, start // 16, end // 16, end - start, audio, True)


def segment(start: int, end: int) -> vad.Segment:
    audio = np.zeros(end - start, np.float32)
    return vad.Segment(start, end, start // 16, end // 16, audio, False)


@in_loop
async def test_the_early_result_is_used_for_the_same_segment() -> None:
    pool = FakePool()
    early = EarlyEnd(pool, client="c", stream="s")  # type: ignore[arg-type]
    early.update(tentative(100, 9000))
    early.update(tentative(100, 9000))  # unchanged: not started twice
    await asyncio.sleep(0)
    assert pool.calls == [(8900, "provisional")]
    task = early.take(segment(100, 9000))
    assert task is not None
    pool.gate.set()
    assert (await task).size == 8900
    assert early.take(segment(100, 9000)) is None  # taken once


@in_loop
async def test_an_early_job_still_waiting_for_a_worker_does_not_hold_the_final_back() -> None:
    pool = FakePool()
    pool.workers_free.clear()  # the early job waits behind other work
    early = EarlyEnd(pool, client="c", stream="s")  # type: ignore[arg-type]
    early.update(tentative(100, 9000))
    await asyncio.sleep(0)
    waiting = early._task
    assert waiting is not None and pool.calls == [(8900, "provisional")]
    assert early.take(segment(100, 9000)) is None  # the final goes the usual way
    await asyncio.sleep(0)
    assert waiting.cancelled()


@in_loop
async def test_a_withdrawn_job_that_starts_late_does_not_count_for_the_next() -> None:
    pool = FakePool()
    pool.workers_free.clear()
    early = EarlyEnd(pool, client="c", stream="s")  # type: ignore[arg-type]
    early.update(tentative(0, 9000))
    await asyncio.sleep(0)
    early.update(tentative(0, 12000))  # other bounds: the first is withdrawn, a second starts
    await asyncio.sleep(0)
    assert len(pool.calls) == 2
    assert early.take(segment(0, 12000)) is None  # the second has not started either


@in_loop
async def test_voice_coming_back_or_other_bounds_discard_the_early_work() -> None:
    pool = FakePool()
    early = EarlyEnd(pool, client="c", stream="s")  # type: ignore[arg-type]
    early.update(tentative(0, 9000))
    await asyncio.sleep(0)
    first = early._task
    early.update(None)  # voiced again
    await asyncio.sleep(0)
    assert first is not None and first.cancelled()
    early.update(tentative(0, 20000))
    await asyncio.sleep(0)
    second = early._task
    assert early.take(segment(0, 21000)) is None  # the final came out otherwise
    await asyncio.sleep(0)
    assert second is not None and second.cancelled()
    assert [priority for _, priority in pool.calls] == ["provisional", "provisional"]


@in_loop
async def test_nothing_starts_while_work_waits_for_a_worker() -> None:
    pool = FakePool(waiting=1)
    early = EarlyEnd(pool, client="c", stream="s")  # type: ignore[arg-type]
    early.update(tentative(0, 9000))
    await asyncio.sleep(0)
    assert pool.calls == []
    assert early.take(segment(0, 9000)) is None


@pytest.mark.parametrize("fault", [Overloaded("full"), InferenceFailed("boom")])
@in_loop
async def test_a_refused_or_failed_early_job_gives_none(fault: Exception) -> None:
    pool = FakePool(fail=fault)
    early = EarlyEnd(pool, client="c", stream="s")  # type: ignore[arg-type]
    early.update(tentative(0, 9000))
    await asyncio.sleep(0)  # a worker takes it
    task = early.take(segment(0, 9000))
    assert task is not None
    pool.gate.set()
    assert await task is None  # the session then classifies the final as usual


@in_loop
async def test_close_hands_over_the_task_in_flight() -> None:
    pool = FakePool()
    early = EarlyEnd(pool, client="c", stream="s")  # type: ignore[arg-type]
    early.update(tentative(0, 9000))
    task = early.close()
    assert task is not None and not task.done()
    task.cancel()
    assert early.close() is None


@in_loop
async def test_with_quality_the_early_job_measures_its_audio_and_voiced_share() -> None:
    pool = FakePool()
    pool.gate.set()
    early = EarlyEnd(pool, client="c", stream="s", quality=True)  # type: ignore[arg-type]
    progress = tentative(100, 9000)
    early.update(dataclasses.replace(progress, voiced_samples=4450))
    await asyncio.sleep(0)
    (measure,) = pool.measures
    assert measure is not None and measure().speech == pytest.approx(0.5)
    plain = FakePool()
    EarlyEnd(plain, client="c", stream="s").update(progress)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert plain.measures == [None]
