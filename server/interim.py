"""Partial results of one stream: provisional classifications of the segment in progress."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import vad
from classifier.inference import Audio
from pcm.format import to_float
from server.metrics import Metrics
from server.outcome import measurer, model_rate, quality_fields, readout
from server.pool import InferenceFailed, InferencePool, Overloaded
from server.protocol import Partial

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Job:
    segment: int
    start_ms: int
    end_ms: int
    audio: Audio
    due_at: float
    voiced_samples: int


class Interim:
    """Every ``interim_ms`` of audio that joins the segment in progress, one partial is due.

    At most one is in flight (waiting in the pool or running); a partial that falls due
    meanwhile waits here, and a newer one replaces it. When the segment ends, the one in
    flight is abandoned and the waiting one dropped, so no partial follows its final.
    """

    def __init__(
        self,
        interim_ms: int,
        sample_rate_hz: int,
        pool: InferencePool,
        metrics: Metrics,
        send: Callable[[Partial], Awaitable[None]],
        *,
        client: str,
        stream: str,
        quality: bool = False,
    ) -> None:
        self._step = interim_ms * sample_rate_hz // 1000
        self._pool = pool
        self._metrics = metrics
        self._send = send
        self._client = client
        self._stream = stream
        self._quality = quality
        self._segment = -1
        self._due = 0  # joined samples at which the next partial falls due
        self._last_end = -1  # end sample of the last partial taken for this segment
        self._running: asyncio.Task[None] | None = None
        self._waiting: _Job | None = None

    def update(self, segment: int, progress: vad.InProgress | None) -> None:
        """``progress`` is segment number ``segment`` so far, after the latest audio."""
        if progress is None:
            return
        if segment != self._segment:
            self.end_segment()
            self._segment, self._due, self._last_end = segment, self._step, -1
        if progress.joined_samples < self._due:
            return
        while self._due <= progress.joined_samples:
            self._due += self._step
        if not progress.classifiable or progress.end_sample <= self._last_end:
            return
        self._last_end = progress.end_sample
        job = _Job(
            segment,
            progress.start_ms,
            progress.end_ms,
            to_float(progress.audio),  # the one copy: the segmenter reuses its buffer
            time.monotonic(),
            progress.voiced_samples,
        )
        if self._running is None:
            self._start(job)
            return
        if self._waiting is not None:
            self._drop("superseded")
        self._waiting = job

    def end_segment(self) -> None:
        """The segment in progress has ended (its final is on its way): no more partials."""
        if self._waiting is not None:
            self._waiting = None
            self._drop("superseded")
        running, self._running = self._running, None
        if running is not None and running.cancel():
            self._drop("final")

    def close(self) -> asyncio.Task[None] | None:
        """Stop: nothing more starts; returns the task in flight for the caller to cancel."""
        self._waiting = None
        running, self._running = self._running, None
        return running

    def _start(self, job: _Job) -> None:
        task = asyncio.create_task(self._classify(job), name=f"partial-{self._stream}")
        self._running = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        if self._running is not task:  # abandoned by end_segment
            return
        self._running = None
        job, self._waiting = self._waiting, None
        if job is not None:
            self._start(job)

    async def _classify(self, job: _Job) -> None:
        try:
            prediction = await self._pool.classify(
                model_rate(job.audio, self._pool),
                priority="provisional",
                client=self._client,
                stream=self._stream,
                measure=measurer(job.audio, job.voiced_samples) if self._quality else None,
            )
        except Overloaded:
            self._drop("pool")
            return
        except InferenceFailed as exc:
            log.warning("partial of segment %d failed: %s", job.segment, exc)
            self._drop("error")
            return
        label, confidence, scores = readout(prediction)
        await self._send(
            Partial(
                segment=job.segment,
                start_ms=job.start_ms,
                end_ms=job.end_ms,
                label=label,
                confidence=confidence,
                scores=scores,
                model_version=prediction.manifest.version,
                latency_ms=round((time.monotonic() - job.due_at) * 1000),
                **quality_fields(prediction.quality, confidence),
            )
        )
        self._metrics.partials_computed.inc()

    def _drop(self, reason: str) -> None:
        self._metrics.partials_dropped.labels(reason=reason).inc()
