"""A whole recording classified like a stream: decode, segment, classify every segment.

The one pipeline behind ``POST /v1/classify`` and ``emostream classify``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import vad
from pcm.format import PIPELINE_RATE_HZ
from server.decoding import decode_audio
from server.outcome import classify_segment, summarize
from server.protocol import CHANNEL_MODES, ChannelMode, SegmentOutcome, outcome_body
from server.service import Service
from server.upload import Data
from server.upload_layout import plan

_SEGMENTER_BLOCK_SAMPLES = 10 * PIPELINE_RATE_HZ

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recording:
    duration_ms: int
    outcomes: list[SegmentOutcome]
    # channels=separate: the number of channels, whose outcomes carry ``channel``.
    channels: int | None = None

    def body(self) -> dict[str, Any]:
        """``duration_ms``, ``segments`` and ``summary`` as in the upload reply, and with
        channels=separate ``channels``: each channel's summary."""
        body: dict[str, Any] = {
            "duration_ms": self.duration_ms,
            "segments": [outcome_body(o) for o in self.outcomes],
            "summary": summarize(self.outcomes),
        }
        if self.channels is not None:
            body["channels"] = [
                {
                    "channel": channel,
                    "summary": summarize([o for o in self.outcomes if o.channel == channel]),
                }
                for channel in range(self.channels)
            ]
        return body


def channel_mode(text: str) -> ChannelMode:
    """The ``channels`` query parameter of an upload; ValueError naming a bad value."""
    if text not in CHANNEL_MODES:
        raise ValueError(f"channels must be mix or separate, got {text[:40]!r}")
    return text


async def classify_recording(
    service: Service,
    source: Awaitable[Data],
    client: str = "",
    channels: ChannelMode = "mix",
    *,
    quality: bool = False,
) -> Recording:
    """Decode the audio file ``source`` gives and classify it; ``UploadError`` when refused.

    With ``quality`` each result carries the signal measures, warnings and ``uncertain``.
    With channels="separate", each channel of a mono or two-channel file is segmented and
    classified on its own; segments carry ``channel`` and are listed in time order (by
    start, then channel).

    The file's bytes are held here alone and released once decoded, so an upload's peak
    memory is its file plus its decoded audio, not several copies of both.
    """
    settings = service.settings
    data = await source
    decode = functools.partial(
        decode_audio,
        data,
        PIPELINE_RATE_HZ,
        settings.max_upload_ms,
        settings.max_upload_samples,
        separate=channels == "separate",
    )
    del data
    decoded = await asyncio.get_running_loop().run_in_executor(service.decoder, decode)
    del decode
    duration_ms = decoded.duration_ms
    tracks = list(decoded.tracks)
    del decoded  # from here on the segments hold what is classified
    if channels == "mix":
        segments = await _segment(service, tracks.pop())
        return Recording(duration_ms, await _classify(service, segments, client, quality))
    per_channel: list[list[vad.Segment]] = []
    for channel in range(len(tracks)):
        per_channel.append(await _segment(service, tracks[channel]))
        tracks[channel] = tracks[channel][:0]  # release the channel's audio
    # Every channel's segments in one plan: the second channel's need not wait for the
    # first's to be classified. Each channel numbers its own segments from 0.
    found = await _classify(
        service,
        [segment for segments in per_channel for segment in segments],
        client,
        quality,
        [index for segments in per_channel for index in range(len(segments))],
    )
    channel_of = [channel for channel, segments in enumerate(per_channel) for _ in segments]
    outcomes = [
        dataclasses.replace(o, channel=channel)
        for o, channel in zip(found, channel_of, strict=True)
    ]
    outcomes.sort(key=lambda o: (o.start_ms, o.channel or 0))
    return Recording(duration_ms, outcomes, channels=len(tracks))


async def classify_audio(
    service: Service, audio: npt.NDArray[np.float32], client: str = ""
) -> list[SegmentOutcome]:
    """Segment a whole recording at 16 kHz like a stream and classify every segment in order."""
    return await _classify(service, await _segment(service, audio), client)


async def _segment(service: Service, audio: npt.NDArray[np.float32]) -> list[vad.Segment]:
    segmenter = vad.StreamSegmenter(
        service.segmenter_config, PIPELINE_RATE_HZ, "pcm_f32le", detector=service.new_detector()
    )

    def run() -> list[vad.Event]:
        # Block by block: the segmenter's working copies stay the size of one block.
        events: list[vad.Event] = []
        blocks = range(0, audio.shape[0], _SEGMENTER_BLOCK_SAMPLES)
        for start in [*blocks, None]:
            try:
                if start is None:
                    events += segmenter.finish()
                else:
                    events += segmenter.feed_audio(audio[start : start + _SEGMENTER_BLOCK_SAMPLES])
            except vad.DetectorError as exc:
                # As in a stream, the failed frames counted as unvoiced and the rest goes
                # on; the reply has no error channel for this, so it is logged.
                log.error("recording: %s", exc, exc_info=exc.cause)
                events += exc.events
        return events

    events = await asyncio.get_running_loop().run_in_executor(service.decoder, run)
    segments = [e for e in events if isinstance(e, vad.Segment)]
    service.metrics.segments.labels(source="upload").inc(len(segments))
    return segments


async def _classify(
    service: Service,
    segments: list[vad.Segment],
    client: str,
    quality: bool = False,
    indexes: list[int] | None = None,
) -> list[SegmentOutcome]:
    """The outcomes of ``segments``, in order; ``indexes``: their numbers (default 0, 1 …)."""
    # At the pool's upload priority (after live segments), at most one segment per worker
    # in flight, so one upload cannot crowd out live streams. On an idle pool the segments
    # run in the layout that ends sooner (server/upload_layout.py): one after another on
    # the lone session, or side by side on the shared one; never the first on the lone
    # session while the next runs beside it on the same cores.
    lengths = [s.end_sample - s.start_sample for s in segments if not s.too_short]
    layout = plan(lengths, service.layout_cost) if service.pool.idle else "parallel"
    gate = asyncio.Semaphore(1 if layout == "serial" else service.settings.workers)
    may_run_lone = layout == "serial" or len(lengths) < 2
    upload = f"upload-{uuid.uuid4().hex[:16]}"

    async def one(index: int, segment: vad.Segment) -> SegmentOutcome:
        async with gate:
            outcome, _ = await classify_segment(
                service.pool,
                index,
                segment,
                time.monotonic(),
                priority="upload",
                client=client,
                stream=upload,
                quality=quality,
                may_run_lone=may_run_lone,
            )
        return outcome

    numbers = indexes if indexes is not None else list(range(len(segments)))
    return list(await asyncio.gather(*(one(i, s) for i, s in zip(numbers, segments, strict=True))))
