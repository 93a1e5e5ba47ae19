"""A bounded inference pool: fixed worker threads, bounded admission, queue deadline."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from server.inference import Audio, Classifier, Scores
from server.metrics import Metrics
from server.model import Manifest


class Overloaded(Exception):
    """The pool is saturated, or the segment waited longer than the queue timeout."""


class InferenceFailed(Exception):
    """The classifier raised; the cause is chained."""


@dataclass(frozen=True, slots=True)
class Prediction:
    scores: Scores
    manifest: Manifest


class InferencePool:
    """ONNX Runtime releases the GIL while it runs, so worker threads use the cores in parallel."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        workers: int,
        queue_size: int,
        queue_timeout_s: float,
        metrics: Metrics,
    ) -> None:
        self._classifier = classifier
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._capacity = workers + queue_size
        self._queue_timeout_s = queue_timeout_s
        self._metrics = metrics
        self._outstanding = 0

    @property
    def classifier(self) -> Classifier:
        return self._classifier

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    @property
    def accepting(self) -> bool:
        return self._outstanding < self._capacity

    def swap(self, classifier: Classifier) -> Classifier:
        """Serve ``classifier`` from now on; segments already admitted finish on the old one."""
        old, self._classifier = self._classifier, classifier
        return old

    async def classify(self, audio: Audio) -> Prediction:
        if self._outstanding >= self._capacity:
            raise Overloaded(f"inference pool is full ({self._capacity} segments admitted)")
        loop = asyncio.get_running_loop()
        self._outstanding += 1
        self._metrics.queue_depth.inc()
        future = self._executor.submit(self._run, self._classifier, audio, time.monotonic())
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._release, f))
        return await asyncio.wrap_future(future)

    def _release(self, future: Future[Prediction]) -> None:
        self._outstanding -= 1
        if future.cancelled():
            self._metrics.queue_depth.dec()

    def _run(self, classifier: Classifier, audio: Audio, admitted_at: float) -> Prediction:
        self._metrics.queue_depth.dec()
        waited_s = time.monotonic() - admitted_at
        self._metrics.queue_wait_seconds.observe(waited_s)
        if waited_s > self._queue_timeout_s:
            raise Overloaded(f"segment waited {waited_s:.2f} s for a worker")
        with self._metrics.in_progress.track_inprogress(), self._metrics.inference_seconds.time():
            try:
                scores = classifier.predict(audio)
            except Exception as exc:  # any fault of the model run is reported for this segment only
                raise InferenceFailed(f"{type(exc).__name__}: {exc}") from exc
        return Prediction(scores, classifier.manifest)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
