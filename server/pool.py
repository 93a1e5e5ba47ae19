"""The inference pool: fixed worker threads, bounded admission by priority, fair across clients.

Work waits in one queue per priority class (``final`` live segments, then ``upload``
segments, then ``provisional`` work such as partial results). A free worker takes the
oldest job of the best class that has any, serving that class round-robin across
client addresses and, within an address, across its streams, so a client that sends
many segments at once only delays its own. When the pool is full a newcomer takes the
place of the newest waiting job of a worse class, or of the client that holds the most
places in its own class while it holds fewer; otherwise it is refused (``Overloaded``).
Provisional work never displaces anything, holds no place once it runs, and runs on at
most ``workers - 1`` workers (one when there is a single worker), so a final segment
finds a worker free sooner; a provisional run whose caller gave up (a partial overtaken
by its final) still occupies its worker but no longer counts against that limit.

The adaptive layout: a job that would run alone (no other job running or waiting) runs
on the ``lone`` classifier, an ONNX Runtime session with more intra-op threads, when
one is configured; otherwise each worker uses one ``shared`` session thread. A job that
arrives while a lone run is in progress starts at once on the shared session (the cores
are briefly oversubscribed) rather than waiting for it.

Batching (``batch_max`` > 1, ``EMOSTREAM_BATCH_MAX``): a worker that takes a ``final`` or
``upload`` job also takes, up to ``batch_max`` in all, other waiting jobs of that class whose
audio has exactly the same number of samples, in the same round-robin order (only the job
at the head of each stream, so a stream's segments still run in order), and runs them in one
``predict_batch`` call. Unequal lengths are never padded together (wav2vec2 has no attention
mask). Each job keeps its own result, quality, deadline and metrics; a failed call fails
each of its jobs. Provisional work is never batched: its worker limit counts runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, get_args

from classifier.inference import Audio, BatchClassifier, Classifier, Scores
from classifier.model import Manifest
from server.metrics import Metrics
from server.quality import SignalQuality

Priority = Literal["final", "upload", "provisional"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)  # best first


class Overloaded(Exception):
    """The pool is saturated, the job gave its place to better work, or it waited too long."""


class InferenceFailed(Exception):
    """The classifier raised; the cause is chained."""


@dataclass(frozen=True, slots=True)
class Prediction:
    scores: Scores
    manifest: Manifest
    quality: SignalQuality | None = None  # when the job asked for it (quality=1)


@dataclass(eq=False, slots=True)
class _Job:
    audio: Audio
    rank: int  # index in PRIORITIES
    client: str
    stream: str
    admitted_at: float
    future: asyncio.Future[Prediction]
    seq: int = field(default=0)
    running: bool = False
    abandoned: bool = False  # its caller gave up while it ran
    on_start: Callable[[], None] | None = None
    measure: Callable[[], SignalQuality] | None = None
    may_run_lone: bool = True


def _failure_like(exc: InferenceFailed) -> InferenceFailed:
    copy = InferenceFailed(*exc.args)
    copy.__cause__ = exc.__cause__
    return copy


class _FairQueue:
    """The waiting jobs of one class: round-robin over clients, then over a client's streams."""

    def __init__(self) -> None:
        self._clients: OrderedDict[str, OrderedDict[str, deque[_Job]]] = OrderedDict()
        self.size = 0

    def push(self, job: _Job) -> None:
        streams = self._clients.setdefault(job.client, OrderedDict())
        streams.setdefault(job.stream, deque()).append(job)
        self.size += 1

    def pop(self) -> _Job:
        client, streams = next(iter(self._clients.items()))
        stream, jobs = next(iter(streams.items()))
        job = jobs.popleft()
        self._served(client, streams, stream, jobs)
        return job

    def remove(self, job: _Job) -> bool:
        streams = self._clients.get(job.client)
        jobs = streams.get(job.stream) if streams is not None else None
        if streams is None or jobs is None or job not in jobs:
            return False
        jobs.remove(job)
        self.size -= 1
        if not jobs:
            del streams[job.stream]
        if not streams:
            del self._clients[job.client]
        return True

    def _served(
        self, client: str, streams: OrderedDict[str, deque[_Job]], stream: str, jobs: deque[_Job]
    ) -> None:
        self.size -= 1
        if jobs:
            streams.move_to_end(stream)
        else:
            del streams[stream]
        if streams:
            self._clients.move_to_end(client)
        else:
            del self._clients[client]

    def take_alike(self, size: int, limit: int) -> list[_Job]:
        """Up to ``limit`` jobs whose audio has exactly ``size`` samples, each the head of its
        stream, in round-robin order: each take moves its client and stream to the back, as
        ``pop`` does."""
        taken: list[_Job] = []
        while len(taken) < limit:
            found = next(
                (
                    (client, streams, stream, jobs)
                    for client, streams in self._clients.items()
                    for stream, jobs in streams.items()
                    if jobs[0].audio.size == size
                ),
                None,
            )
            if found is None:
                break
            client, streams, stream, jobs = found
            taken.append(jobs.popleft())
            self._served(client, streams, stream, jobs)
        return taken

    def count(self, client: str) -> int:
        return sum(len(jobs) for jobs in self._clients.get(client, {}).values())

    def newest_of_busiest(self) -> tuple[_Job, int] | None:
        """The newest job of the client that has the most jobs waiting, and that count."""
        if not self._clients:
            return None
        client = max(self._clients, key=self.count)
        newest = max((jobs[-1] for jobs in self._clients[client].values()), key=lambda j: j.seq)
        return newest, self.count(client)

    def newest(self) -> _Job | None:
        tails = [jobs[-1] for streams in self._clients.values() for jobs in streams.values()]
        return max(tails, key=lambda j: j.seq) if tails else None


class InferencePool:
    """ONNX Runtime releases the GIL while it runs, so worker threads use the cores in parallel.

    The scheduling state lives on the event loop that calls ``classify``; worker threads
    only run the classifier.
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        workers: int,
        queue_size: int,
        queue_timeout_s: float,
        metrics: Metrics,
        lone: Classifier | None = None,
        batch_max: int = 1,
    ) -> None:
        if batch_max < 1:
            raise ValueError(f"batch_max must be at least 1, got {batch_max}")
        self._classifier = classifier
        self._lone = lone
        self._workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._capacity = workers + queue_size
        self._max_provisional = max(1, workers - 1)
        self._queue_timeout_s = queue_timeout_s
        self._metrics = metrics
        self._queues = [_FairQueue() for _ in PRIORITIES]
        self._running = [0] * len(PRIORITIES)
        self._abandoned = [0] * len(PRIORITIES)
        self._busy = 0  # workers running a model call (one call may carry several jobs)
        self._batch_max = batch_max
        self._seq = 0
        self._closed = False

    @property
    def classifier(self) -> Classifier:
        return self._classifier

    @property
    def lone(self) -> Classifier | None:
        return self._lone

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    @property
    def open(self) -> bool:
        """The pool takes work (it may still refuse a job while it is momentarily full)."""
        return not self._closed

    @property
    def accepting(self) -> bool:
        """There is a free place for a job right now."""
        return self._admitted < self._capacity

    @property
    def waiting(self) -> int:
        return sum(q.size for q in self._queues)

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits."""
        return self._busy == 0 and self.waiting == 0

    @property
    def _admitted(self) -> int:
        # Provisional work that is running holds a worker but no place: it cannot be
        # displaced, so counting it would let a partial cost a final its place.
        return self.waiting + sum(self._running[: PRIORITIES.index("provisional")])

    def swap(self, classifier: Classifier, lone: Classifier | None = None) -> Classifier:
        """Serve ``classifier`` (and ``lone``) from now on; admitted jobs may finish on the old."""
        old, self._classifier, self._lone = self._classifier, classifier, lone
        return old

    async def classify(
        self,
        audio: Audio,
        *,
        priority: Priority = "final",
        client: str = "",
        stream: str = "",
        on_start: Callable[[], None] | None = None,
        measure: Callable[[], SignalQuality] | None = None,
        may_run_lone: bool = True,
    ) -> Prediction:
        """Classify ``audio`` as work of ``priority`` for ``stream`` of ``client`` (an address).

        Raises ``Overloaded`` when refused or displaced, ``InferenceFailed`` when the model
        fails. Cancelling the call gives up the job's place if it has not started.
        ``on_start`` is called (on the event loop) when a worker takes the job;
        ``measure``, on the worker after the model run, gives the prediction's quality.
        ``may_run_lone=False`` keeps the job on the shared session even when it runs alone
        (its caller is about to send siblings that will run beside it).
        """
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
        if self._closed:
            raise Overloaded("inference pool is closed")
        loop = asyncio.get_running_loop()
        job = _Job(
            audio,
            PRIORITIES.index(priority),
            client,
            stream,
            time.monotonic(),
            loop.create_future(),
            on_start=on_start,
            measure=measure,
            may_run_lone=may_run_lone,
        )
        self._admit(job)
        self._dispatch()
        try:
            return await job.future
        except asyncio.CancelledError:
            if self._queues[job.rank].remove(job):
                self._publish_depth()
            elif job.running and not job.abandoned:
                # The model run cannot be stopped, but it no longer counts against the
                # provisional limit: the next provisional job may take a free worker.
                job.abandoned = True
                self._abandoned[job.rank] += 1
                self._dispatch()
            raise

    def _admit(self, job: _Job) -> None:
        if self._admitted >= self._capacity:
            victim = self._victim_for(job)
            if victim is None:
                self._drop(PRIORITIES[job.rank], "full")
                raise Overloaded(f"inference pool is full ({self._capacity} segments admitted)")
            self._queues[victim.rank].remove(victim)
            self._drop(PRIORITIES[victim.rank], "displaced")
            if not victim.future.done():
                victim.future.set_exception(
                    Overloaded(f"gave its place in the full pool to {PRIORITIES[job.rank]} work")
                )
        self._seq += 1
        job.seq = self._seq
        self._queues[job.rank].push(job)
        self._publish_depth()

    def _victim_for(self, job: _Job) -> _Job | None:
        if PRIORITIES[job.rank] == "provisional":
            return None
        for rank in range(len(PRIORITIES) - 1, job.rank, -1):  # worst class first
            newest = self._queues[rank].newest()
            if newest is not None:
                return newest
        busiest = self._queues[job.rank].newest_of_busiest()
        if busiest is None:
            return None
        victim, held = busiest
        mine = self._queues[job.rank].count(job.client)
        return victim if held >= mine + 2 else None

    def _dispatch(self) -> None:
        while self._busy < self._workers:
            job = self._next_job()
            if job is None:
                break
            if not self._in_time(job):
                continue
            alone = self.idle and job.may_run_lone
            classifier = self._lone if alone and self._lone is not None else self._classifier
            jobs = [job, *self._companions(job, classifier)]
            self._metrics.layout_runs.labels(
                layout="lone" if classifier is self._lone else "shared"
            ).inc()
            self._metrics.batch_size.observe(len(jobs))
            self._busy += 1
            for each in jobs:
                self._running[each.rank] += 1
                each.running = True
                if each.on_start is not None:
                    each.on_start()
            future = self._executor.submit(self._run, classifier, jobs)
            future.add_done_callback(self._on_done(jobs))
        self._publish_depth()

    def _in_time(self, job: _Job) -> bool:
        """Whether ``job`` (just taken from its queue) may still run; fails it if not."""
        waited_s = time.monotonic() - job.admitted_at
        self._metrics.queue_wait_seconds.observe(waited_s)
        if waited_s <= self._queue_timeout_s:
            return True
        self._drop(PRIORITIES[job.rank], "deadline")
        job.future.set_exception(Overloaded(f"segment waited {waited_s:.2f} s for a worker"))
        return False

    def _companions(self, first: _Job, classifier: Classifier) -> list[_Job]:
        """Waiting jobs of ``first``'s class and exact length to run in its call."""
        if (
            self._batch_max == 1
            or PRIORITIES[first.rank] == "provisional"
            or not isinstance(classifier, BatchClassifier)
            # a graph whose batch axis is fixed at 1 would run them one after another
            or not getattr(classifier, "batching", True)
        ):
            return []
        queue = self._queues[first.rank]
        companions: list[_Job] = []
        while len(companions) < self._batch_max - 1:
            taken = queue.take_alike(first.audio.size, self._batch_max - 1 - len(companions))
            if not taken:
                break
            companions += [j for j in taken if not j.future.done() and self._in_time(j)]
        return companions

    def _next_job(self) -> _Job | None:
        for rank, queue in enumerate(self._queues):
            if queue.size == 0:
                continue
            live = self._running[rank] - self._abandoned[rank]
            if PRIORITIES[rank] == "provisional" and live >= self._max_provisional:
                return None
            job = queue.pop()
            if job.future.done():  # its caller gave up
                continue
            return job
        return None

    def _on_done(self, jobs: list[_Job]) -> Callable[[Future[list[Prediction | Exception]]], None]:
        loop = jobs[0].future.get_loop()

        def done(future: Future[list[Prediction | Exception]]) -> None:  # on the worker thread
            loop.call_soon_threadsafe(self._finished, jobs, future)

        return done

    def _finished(self, jobs: list[_Job], future: Future[list[Prediction | Exception]]) -> None:
        self._busy -= 1
        failure = future.exception()
        outcomes: list[Prediction | BaseException] = (
            [failure] * len(jobs) if failure is not None else list(future.result())
        )
        for job, outcome in zip(jobs, outcomes, strict=True):
            self._running[job.rank] -= 1
            if job.abandoned:
                self._abandoned[job.rank] -= 1
            if job.future.done():
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        self._dispatch()

    def _run(self, classifier: Classifier, jobs: list[_Job]) -> list[Prediction | Exception]:
        """One model call for ``jobs``; each job's prediction, or the error that failed it."""
        n = len(jobs)
        self._metrics.in_progress.inc(n)
        start = time.perf_counter()
        try:
            all_scores = self._predict(classifier, [job.audio for job in jobs])
        except InferenceFailed as exc:
            return [_failure_like(exc) for _ in jobs]  # one each: awaiters add tracebacks
        finally:
            self._metrics.in_progress.dec(n)
            # Each segment's share of the call, so the histogram's sum stays model time.
            share = (time.perf_counter() - start) / n
            for _ in range(n):
                self._metrics.inference_seconds.observe(share)
        outcomes: list[Prediction | Exception] = []
        for job, scores in zip(jobs, all_scores, strict=True):
            try:
                quality = job.measure() if job.measure is not None else None
            except ValueError as exc:
                outcomes.append(InferenceFailed(f"signal measures failed: {exc}"))
                continue
            outcomes.append(Prediction(scores, classifier.manifest, quality))
        return outcomes

    @staticmethod
    def _predict(classifier: Classifier, audios: list[Audio]) -> list[Scores]:
        try:
            if len(audios) == 1:
                return [classifier.predict(audios[0])]
            assert isinstance(classifier, BatchClassifier)
            scores = classifier.predict_batch(audios)
        except Exception as exc:  # any fault of the model run is reported for its jobs only
            raise InferenceFailed(f"{type(exc).__name__}: {exc}") from exc
        if len(scores) != len(audios):
            raise InferenceFailed(f"predict_batch gave {len(scores)} results for {len(audios)}")
        return scores

    def _drop(self, priority: Priority, reason: str) -> None:
        self._metrics.pool_dropped.labels(priority=priority, reason=reason).inc()

    def _publish_depth(self) -> None:
        self._metrics.queue_depth.set(self.waiting)

    def close(self) -> None:
        self._closed = True
        for queue in self._queues:
            while queue.size:
                job = queue.pop()
                if not job.future.done():
                    job.future.set_exception(Overloaded("inference pool is closed"))
        self._executor.shutdown(wait=True, cancel_futures=True)
