"""Silero VAD for many streams at once: one ONNX Runtime call per step for all of them.

A stream's frames must go through the model in order (its recurrent state), but frames of
different streams are independent, so step ``t`` stacks the ``t``-th waiting frame of
every stream into one batch. A request schedules the batch for the event loop's next
iteration, so every stream whose audio arrived in this one joins it, and requests that
arrive while a batch runs go in the next: under load the batches grow by themselves and
no request waits for a timer. A run takes at most ``STEPS_PER_RUN`` frames of each
stream and leaves the rest for a later run, after the loop's other callbacks: a stream
that sent a second of audio in one frame does not hold up the others' decisions. On
this project's 2-core machine a frame costs ~110 us alone and ~40-60 us in a batch of
4-64 (BENCHMARKS.md section 4). The batch runs on the event loop: handing it to a worker
thread and back cost more CPU (~120 us a hop) than it saved, and a batch of 64 frames
takes under 3 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vad.silero import CONTEXT_SAMPLES, FRAME_SAMPLES, SileroDetector, SileroModel

DEFAULT_MAX_BATCH = 64
# Frames of one stream per run (32 ms each): a 40-100 ms client frame is decided in one.
STEPS_PER_RUN = 4


class BatcherClosed(RuntimeError):
    """The batcher was closed while a request waited."""


@dataclass(slots=True, eq=False)
class _Request:
    detector: SileroDetector
    frames: list[npt.NDArray[np.int16]]
    future: asyncio.Future[list[bool]]
    voiced: list[bool] = field(default_factory=list)
    fault: Exception | None = None


class SileroBatcher:
    """Voice decisions for the frames of many streams, each with its own SileroDetector
    (state, context, hysteresis) on the one shared model; for one event loop.

    ``on_batch(size)`` is called for every model call (metrics). A model fault fails
    every request of that step with the model's exception; the batcher goes on.
    """

    def __init__(
        self,
        model: SileroModel,
        max_batch: int = DEFAULT_MAX_BATCH,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.model = model
        self.max_batch = max_batch
        self._on_batch = on_batch
        self._waiting: list[_Request] = []
        self._busy: set[SileroDetector] = set()
        self._scheduled: asyncio.Handle | None = None
        self._closed = False
        self._windows = np.empty((max_batch, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)

    async def decide(
        self, detector: SileroDetector, frames: Sequence[npt.NDArray[np.int16]]
    ) -> list[bool]:
        """One decision per frame, in order; raises the model's exception on a fault.

        A detector may have one request at a time (its frames are a sequence); a second
        one while the first waits is a caller's error and raises RuntimeError."""
        if not frames:
            return []
        if self._closed:
            raise BatcherClosed("the voice detector batcher is closed")
        if detector in self._busy:
            raise RuntimeError("this detector already has frames waiting in the batcher")
        for frame in frames:
            if frame.shape != (FRAME_SAMPLES,):
                raise ValueError(
                    f"Silero VAD takes frames of {FRAME_SAMPLES} samples, got shape {frame.shape}"
                )
        loop = asyncio.get_running_loop()
        request = _Request(detector, list(frames), loop.create_future())
        self._busy.add(detector)
        self._waiting.append(request)
        if self._scheduled is None:
            self._scheduled = loop.call_soon(self._run)
        try:
            return await request.future
        finally:
            self._busy.discard(detector)

    def close(self) -> None:
        """Fail what waits (BatcherClosed); later requests are refused."""
        self._closed = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self._fail(self._waiting, BatcherClosed("the voice detector batcher is closed"))
        self._waiting = []

    def _run(self) -> None:
        """Up to STEPS_PER_RUN frames of every request waiting; the rest in a later run."""
        self._scheduled = None
        # A request whose session was cancelled meanwhile is dropped.
        requests = [r for r in self._waiting if not r.future.done()]
        self._waiting = []
        if not requests:
            return
        try:
            self._compute(requests)
        except Exception as exc:  # noqa: BLE001 - no waiting stream may be left hanging
            self._fail(requests, exc)
            return
        for request in requests:
            if request.fault is not None:
                request.future.set_exception(request.fault)
            elif len(request.voiced) == len(request.frames):
                request.future.set_result(request.voiced)
            else:
                self._waiting.append(request)
        if self._waiting:
            self._scheduled = asyncio.get_running_loop().call_soon(self._run)

    @staticmethod
    def _fail(requests: list[_Request], exc: Exception) -> None:
        for request in requests:
            if not request.future.done():
                request.future.set_exception(exc)

    def _compute(self, requests: list[_Request]) -> None:
        """The next STEPS_PER_RUN frames of every request, max_batch streams per call."""
        for _ in range(STEPS_PER_RUN):
            active = [r for r in requests if r.fault is None and len(r.voiced) < len(r.frames)]
            for start in range(0, len(active), self.max_batch):
                self._step(active[start : start + self.max_batch])

    def _step(self, requests: list[_Request]) -> None:
        size = len(requests)
        windows = self._windows[:size]
        for row, request in enumerate(requests):
            windows[row] = request.detector.next_window(request.frames[len(request.voiced)])
        state = np.concatenate([r.detector.state for r in requests], axis=1)
        try:
            probs, new_state = self.model.run(windows, state)
        except Exception as exc:  # noqa: BLE001 - handed to each waiting stream
            for request in requests:
                request.fault = exc
            return
        if self._on_batch is not None:
            self._on_batch(size)
        for row, request in enumerate(requests):
            voiced = request.detector.accept(float(probs[row]), new_state[:, row : row + 1].copy())
            request.voiced.append(voiced)
