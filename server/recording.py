"""A whole recording classified like a stream: decode, segment, classify every segment.

The one pipeline behind ``POST /v1/classify`` and ``emostream classify``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import vad
from server.outcome import SEGMENT_RATE_HZ, classify_segment, summarize
from server.protocol import SegmentOutcome, outcome_body
from server.service import Service
from server.upload import decode_audio

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recording:
    duration_ms: int
    outcomes: list[SegmentOutcome]

    def body(self) -> dict[str, Any]:
        """``duration_ms``, ``segments`` and ``summary`` as in the upload reply."""
        return {
            "duration_ms": self.duration_ms,
            "segments": [outcome_body(o) for o in self.outcomes],
            "summary": summarize(self.outcomes),
        }


async def classify_recording(service: Service, data: bytes) -> Recording:
    """Decode an audio file held in memory and classify it; ``UploadError`` when it is refused."""
    settings = service.settings
    decoded = await asyncio.to_thread(decode_audio, data, SEGMENT_RATE_HZ, settings.max_upload_ms)
    del data  # the caller's reference may outlive this call, ours need not
    outcomes = await classify_audio(service, decoded.audio)
    return Recording(decoded.duration_ms, outcomes)


async def classify_audio(service: Service, audio: npt.NDArray[np.float32]) -> list[SegmentOutcome]:
    """Segment a whole recording at 16 kHz like a stream and classify every segment in order."""
    segmenter = vad.StreamSegmenter(
        service.segmenter_config, SEGMENT_RATE_HZ, "pcm_f32le", detector=service.new_detector()
    )

    def segment() -> list[vad.Event]:
        events: list[vad.Event] = []
        for last in (False, True):
            try:
                events += segmenter.finish() if last else segmenter.feed_audio(audio)
            except vad.DetectorError as exc:
                # As in a stream, the failed frames counted as unvoiced and the rest goes
                # on; the reply has no error channel for this, so it is logged.
                log.error("recording: %s", exc, exc_info=exc.cause)
                events += exc.events
        return events

    events = await asyncio.to_thread(segment)
    segments = [e for e in events if isinstance(e, vad.Segment)]
    service.metrics.segments.labels(source="upload").inc(len(segments))
    # At most one segment per worker in flight, so one upload cannot crowd out live streams.
    gate = asyncio.Semaphore(service.settings.workers)

    async def one(index: int, segment: vad.Segment) -> SegmentOutcome:
        async with gate:
            outcome, _ = await classify_segment(service.pool, index, segment, time.monotonic())
        return outcome

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(segments))))
