"""An upload's segments planned as a whole (server/upload_layout.py): serial on the lone
session or parallel on the shared one, chosen from the measured speedup; results alike."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from classifier.model import Manifest, read_manifest
from server.metrics import Metrics
from server.pool import InferencePool
from server.recording import classify_audio, classify_recording
from server.service import Service
from server.settings import Settings
from server.upload_layout import LayoutCost, makespan, measure_layout, plan
from tests.server.recorder import Recorder
from tests.speech import wav_bytes


def test_makespan_gives_each_segment_in_order_to_the_first_free_worker() -> None:
    assert makespan([30, 10, 10, 10], 2) == 30
    assert makespan([10, 10, 30], 2) == 40
    assert makespan([10, 20], 1) == 30
    assert makespan([], 2) == 0


@pytest.mark.parametrize(
    ("lengths", "speedup", "workers", "layout"),
    [
        ([16000, 16000], 1.6, 2, "parallel"),  # equal halves: the workers share them evenly
        ([16000, 16000], 2.2, 2, "serial"),  # the lone session beats two workers
        ([40000, 8000], 1.6, 2, "serial"),  # one long, one short: the long one decides
        ([40000, 8000], 1.1, 2, "parallel"),  # the lone session barely faster
        ([16000, 16000, 16000], 1.9, 2, "serial"),  # three on two workers: one waits
        ([16000, 16000, 16000, 16000], 1.9, 2, "parallel"),
        ([16000, 16000], 1.5, 1, "serial"),  # one worker runs them in turn anyway
        ([48000], 0.5, 2, "parallel"),  # a single segment: the pool's own rule
    ],
)
def test_plan_picks_the_layout_that_ends_sooner(
    lengths: list[int], speedup: float, workers: int, layout: str
) -> None:
    assert plan(lengths, LayoutCost(speedup, workers)) == layout


def test_plan_without_a_lone_session_is_parallel() -> None:
    assert plan([40000, 8000], None) == "parallel"


class _Clock:
    """A clock that only the stub classifiers move: each run adds its cost."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


class _Timed:
    def __init__(self, manifest: Manifest, clock: _Clock, cost_s: float) -> None:
        self.manifest = manifest
        self.clock = clock
        self.cost_s = cost_s
        self.calls = 0

    def predict(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        self.calls += 1
        self.clock.advance(self.cost_s)
        return np.full(len(self.manifest.labels), 1 / len(self.manifest.labels), np.float32)


def test_measure_layout_compares_the_lone_run_with_all_workers_at_once(
    tiny_model_dir: Path,
) -> None:
    manifest = read_manifest(tiny_model_dir)
    clock = _Clock()
    shared = _Timed(manifest, clock, 0.3)  # two at once advance the clock by 0.6
    lone = _Timed(manifest, clock, 0.4)
    cost = measure_layout(shared, lone, 2, clock=clock)
    assert cost == LayoutCost(pytest.approx(0.6 / 0.4), 2)  # type: ignore[arg-type]
    assert lone.calls == 3 and shared.calls == 6  # a warm-up run, then two timed runs each


LIVE_SAMPLES = 8000


class _Counting:
    """Records which session ran each segment and how many ran at once."""

    def __init__(self, manifest: Manifest, name: str, state: dict[str, Any]) -> None:
        self.manifest = manifest
        self.name = name
        self.state = state

    def predict(self, audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        state = self.state
        if audio.size == LIVE_SAMPLES:  # the live segment: held until the test lets it go
            state["log"].append(self.name)
            assert state["hold"].wait(10)
            return np.full(len(self.manifest.labels), 1 / len(self.manifest.labels), np.float32)
        with state["lock"]:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            state["log"].append(self.name)
            if state["running"] > 1:
                state["sibling"].set()
        # Waits for a sibling to start beside it, if one was sent (a serial run waits out
        # the short timeout and goes on alone).
        state["sibling"].wait(state["sibling_wait_s"])
        with state["lock"]:
            state["running"] -= 1
        return np.full(len(self.manifest.labels), 1 / len(self.manifest.labels), np.float32)


def scripted_service(
    tiny_model_dir: Path, speedup: float, sibling_wait_s: float = 0.1
) -> tuple[Service, dict[str, Any]]:
    manifest = read_manifest(tiny_model_dir)
    state: dict[str, Any] = {
        "lock": threading.Lock(),
        "running": 0,
        "most": 0,
        "log": [],
        "sibling": threading.Event(),
        "sibling_wait_s": sibling_wait_s,
        "hold": threading.Event(),
    }
    service = Service(Settings(model_dir=tiny_model_dir, workers=2, vad_detector="webrtc"))
    service.start()
    service.pool.swap(_Counting(manifest, "shared", state), _Counting(manifest, "lone", state))
    service.layout_cost = LayoutCost(speedup, 2)
    return service, state


@pytest.mark.parametrize(
    ("speedup", "sessions", "most_at_once", "sibling_wait_s"),
    [(2.5, {"lone"}, 1, 0.1), (0.5, {"shared"}, 2, 10.0)],
)
def test_upload_segments_run_in_the_planned_layout(
    tiny_model_dir: Path,
    three_utterances: npt.NDArray[np.float32],
    speedup: float,
    sessions: set[str],
    most_at_once: int,
    sibling_wait_s: float,
) -> None:
    service, state = scripted_service(tiny_model_dir, speedup, sibling_wait_s)
    try:
        outcomes = asyncio.run(classify_audio(service, three_utterances))
    finally:
        service.stop()
    assert len(outcomes) == 3
    assert set(state["log"]) == sessions
    assert state["most"] == most_at_once


def test_a_busy_pool_gets_the_upload_side_by_side_on_the_shared_session(
    tiny_model_dir: Path, three_utterances: npt.NDArray[np.float32]
) -> None:
    service, state = scripted_service(tiny_model_dir, 2.5)  # serial, were the pool idle

    async def run() -> None:
        live = asyncio.ensure_future(service.pool.classify(np.zeros(LIVE_SAMPLES, np.float32)))
        await asyncio.sleep(0)  # the live segment is running when the upload is planned
        await classify_audio(service, three_utterances)
        state["hold"].set()
        await live

    try:
        asyncio.run(run())
    finally:
        service.stop()
    assert state["log"][0] == "lone"  # the live segment, alone when it came
    assert state["log"][1:] == ["shared"] * 3


def _segments(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if k != "latency_ms"} for s in reply["segments"]]


def test_an_upload_gives_the_same_results_in_every_layout(
    make_client: Any, three_utterances: npt.NDArray[np.float32]
) -> None:
    body = wav_bytes(three_utterances)
    files = {"file": ("speech.wav", body, "audio/wav")}
    replies = []
    for lone_threads, speedup in ((0, None), (2, 100.0), (2, 0.01)):
        client = make_client(workers=2, lone_intra_op_threads=lone_threads)
        service = client.app.state.service
        if speedup is not None:
            assert service.layout_cost is not None  # measured when the model loaded
            service.layout_cost = LayoutCost(speedup, 2)
        reply = client.post("/v1/classify", files=files)
        assert reply.status_code == 200, reply.text
        replies.append(reply.json())
    fixed, serial, parallel = replies
    assert len(fixed["segments"]) == 3
    assert _segments(serial) == _segments(parallel) == _segments(fixed)
    assert serial["summary"] == parallel["summary"] == fixed["summary"]


def test_a_job_kept_off_the_lone_session_runs_on_the_shared_one_on_an_idle_pool(
    tiny_model_dir: Path,
) -> None:
    manifest = read_manifest(tiny_model_dir)
    log: list[tuple[str, int]] = []
    shared, lone = Recorder(manifest, log), Recorder(manifest, log, "lone")
    shared.gate.set()
    lone.gate.set()
    pool = InferencePool(
        shared, lone=lone, workers=2, queue_size=4, queue_timeout_s=30, metrics=Metrics()
    )

    async def run() -> None:
        assert pool.idle
        await pool.classify(np.zeros(100, np.float32), may_run_lone=False)
        await pool.classify(np.zeros(200, np.float32))
        assert pool.idle

    try:
        asyncio.run(run())
    finally:
        pool.close()
    assert log == [("shared", 100), ("lone", 200)]


def test_both_channels_of_a_separate_upload_are_planned_together(
    tiny_model_dir: Path, one_utterance: npt.NDArray[np.float32]
) -> None:
    # One utterance on each channel: side by side (the plan says parallel), where before
    # the second channel's segment waited for the first channel's to be classified.
    stereo = np.stack([one_utterance, one_utterance[::-1].copy()], axis=1)
    service, state = scripted_service(tiny_model_dir, 0.5, sibling_wait_s=10.0)

    async def data() -> bytes:
        return wav_bytes(stereo)

    try:
        recording = asyncio.run(classify_recording(service, data(), channels="separate"))
    finally:
        service.stop()
    assert [(o.channel, o.segment) for o in recording.outcomes] in (
        [(0, 0), (1, 0)],
        [(1, 0), (0, 0)],
    )
    assert state["most"] == 2
