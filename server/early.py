"""A tentative early endpoint: classify an utterance's last segment as the silence begins.

The segmenter knows the final segment's bounds as soon as ``post_padding_ms`` of silence
has arrived (``vad.StreamSegmenter.tentative_end``); the hangover only confirms them
later. This starts that segment's classification at once, at the pool's lowest
(``provisional``) priority and only while no work waits for a worker, so it never
delays or displaces a final. When the final segment arrives with the same bounds (the
same audio), its result is the early one, delivered as soon as the segment is known;
when voice comes back, the bounds change, the early job was refused, or it is still
waiting for a worker when the final arrives (it must not hold the final back behind other
work at the lowest priority), the early work is discarded and the final is classified as
usual, at final priority.
"""

from __future__ import annotations

import asyncio
import logging

import vad
from classifier.inference import Audio
from pcm.format import to_float
from server.outcome import measurer, model_rate
from server.pool import InferenceFailed, InferencePool, Overloaded, Prediction

log = logging.getLogger(__name__)

Early = asyncio.Task[Prediction | None]


class EarlyEnd:
    def __init__(
        self, pool: InferencePool, *, client: str, stream: str, quality: bool = False
    ) -> None:
        self._pool = pool
        self._quality = quality
        self._client = client
        self._stream = stream
        self._bounds: tuple[int, int] | None = None
        self._task: Early | None = None
        self._started = asyncio.Event()  # a worker has taken the current early job

    def update(self, tentative: vad.InProgress | None) -> None:
        """After each piece of audio: start, keep or withdraw the early classification."""
        if tentative is None:
            self._withdraw()
            return
        bounds = (tentative.start_sample, tentative.end_sample)
        if bounds == self._bounds:
            return
        self._withdraw()
        if self._pool.waiting:  # only when capacity is free
            return
        self._bounds = bounds
        self._started = asyncio.Event()  # a new one: the withdrawn job may still start
        audio = to_float(tentative.audio)  # the one copy: the segmenter reuses its buffer
        voiced = tentative.voiced_samples
        self._task = asyncio.create_task(
            self._classify(audio, voiced, self._started), name=f"early-{self._stream}"
        )

    def take(self, segment: vad.Segment) -> Early | None:
        """The early classification of ``segment`` if it is the one started; otherwise
        None, and any early work is discarded. Either way nothing early is left."""
        task, bounds, started = self._task, self._bounds, self._started.is_set()
        self._task = self._bounds = None
        if task is not None and started and bounds == (segment.start_sample, segment.end_sample):
            return task
        if task is not None:
            task.cancel()
        return None

    def close(self) -> Early | None:
        """Stop: returns the task in flight for the caller to cancel and await."""
        task, self._task, self._bounds = self._task, None, None
        return task

    def _withdraw(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = self._bounds = None

    async def _classify(
        self, audio: Audio, voiced_samples: int, started: asyncio.Event
    ) -> Prediction | None:
        try:
            return await self._pool.classify(
                model_rate(audio, self._pool),
                priority="provisional",
                client=self._client,
                stream=self._stream,
                on_start=started.set,
                measure=measurer(audio, voiced_samples) if self._quality else None,
            )
        except Overloaded:
            return None
        except InferenceFailed as exc:
            log.warning("early classification failed: %s", exc)
            return None
