"""server.interim.Interim on its own: when partials fall due, one in flight, what is dropped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

import vad
from classifier.model import Manifest, read_manifest
from server.interim import Interim
from server.metrics import Metrics
from server.pool import InferencePool
from server.protocol import Partial
from tests.server.recorder import Recorder

RATE = 16000


def progress(
    joined_ms: int, end_ms: int | None = None, classifiable: bool = True
) -> vad.InProgress:
    end_ms = joined_ms if end_ms is None else end_ms
    audio = np.zeros(end_ms * RATE // 1000, dtype=np.int16)
    return vad.InProgress(0, audio.size, 0, end_ms, joined_ms * RATE // 1000, audio, classifiable)


@pytest.fixture
def manifest(tiny_model_dir: Path) -> Manifest:
    return read_manifest(tiny_model_dir)


def make(
    manifest: Manifest, interim_ms: int = 500
) -> tuple[Interim, Recorder, list[Partial], Metrics]:
    log: list[tuple[str, int]] = []
    recorder = Recorder(manifest, log)
    metrics = Metrics()
    pool = InferencePool(recorder, workers=1, queue_size=4, queue_timeout_s=30, metrics=metrics)
    sent: list[Partial] = []

    async def send(partial: Partial) -> None:
        sent.append(partial)

    interim = Interim(interim_ms, RATE, pool, metrics, send, client="c", stream="s")
    return interim, recorder, sent, metrics


def dropped(metrics: Metrics, reason: str) -> float:
    value: float = metrics.partials_dropped.labels(reason=reason)._value.get()
    return value


def test_one_partial_per_interim_and_only_when_classifiable(manifest: Manifest) -> None:
    interim, recorder, sent, metrics = make(manifest)
    recorder.gate.set()

    async def run() -> None:
        interim.update(0, progress(400))  # not due yet
        interim.update(0, progress(520, classifiable=False))  # due, but could end too short
        interim.update(0, progress(700))  # the next one falls due at 1000
        interim.update(0, progress(1010))
        await asyncio.sleep(0.2)
        interim.update(0, progress(1300))
        interim.update(0, progress(2600))  # 1500, 2000 and 2500 passed: one partial
        await asyncio.sleep(0.2)
        interim.update(0, progress(3100, end_ms=2600))  # no new voiced audio: nothing to send
        await asyncio.sleep(0.2)

    asyncio.run(run())
    assert [(p.segment, p.end_ms) for p in sent] == [(0, 1010), (0, 2600)]
    assert metrics.partials_computed._value.get() == 2


def test_a_newer_partial_replaces_the_waiting_one(manifest: Manifest) -> None:
    interim, recorder, sent, metrics = make(manifest)

    async def run() -> None:
        interim.update(0, progress(500))  # starts, held in the model
        await asyncio.to_thread(recorder.started.acquire, True, 5)
        interim.update(0, progress(1000))  # waits
        interim.update(0, progress(1500))  # replaces it
        recorder.gate.set()
        await asyncio.sleep(0.3)

    asyncio.run(run())
    assert [p.end_ms for p in sent] == [500, 1500]
    assert dropped(metrics, "superseded") == 1


def test_ending_the_segment_abandons_the_partial_in_flight(manifest: Manifest) -> None:
    interim, recorder, sent, metrics = make(manifest)

    async def run() -> None:
        interim.update(0, progress(500))
        await asyncio.to_thread(recorder.started.acquire, True, 5)
        interim.update(0, progress(1000))
        interim.end_segment()  # the final is on its way
        recorder.gate.set()
        await asyncio.sleep(0.3)
        interim.update(1, progress(600))  # the next segment starts afresh
        await asyncio.sleep(0.3)

    asyncio.run(run())
    assert [(p.segment, p.end_ms) for p in sent] == [(1, 600)]
    assert dropped(metrics, "final") == 1
    assert dropped(metrics, "superseded") == 1


def test_a_refused_partial_is_counted_and_sends_nothing(manifest: Manifest) -> None:
    log: list[tuple[str, int]] = []
    recorder = Recorder(manifest, log)
    metrics = Metrics()
    pool = InferencePool(recorder, workers=1, queue_size=0, queue_timeout_s=30, metrics=metrics)
    sent: list[Partial] = []

    async def send(partial: Partial) -> None:
        sent.append(partial)

    interim = Interim(500, RATE, pool, metrics, send, client="c", stream="s")

    async def run() -> None:
        final = asyncio.ensure_future(pool.classify(np.zeros(9, np.float32)))  # the only place
        await asyncio.to_thread(recorder.started.acquire, True, 5)
        interim.update(0, progress(500))
        await asyncio.sleep(0.1)
        recorder.gate.set()
        await final

    asyncio.run(run())
    assert sent == []
    assert dropped(metrics, "pool") == 1
    pool.close()
