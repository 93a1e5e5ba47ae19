"""From a cut segment to its ``result`` or ``skipped`` outcome, and the upload summary."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import soxr

import vad
from classifier.inference import Audio
from pcm.format import PIPELINE_RATE_HZ
from server.pool import InferenceFailed, InferencePool, Overloaded, Prediction, Priority
from server.protocol import Error, Result, SegmentOutcome, Skipped
from server.quality import SignalQuality, measure, warnings_for

log = logging.getLogger(__name__)


async def classify_segment(
    pool: InferencePool,
    index: int,
    segment: vad.Segment,
    known_at: float,
    *,
    priority: Priority = "final",
    client: str = "",
    stream: str = "",
    quality: bool = False,
    may_run_lone: bool = True,
) -> tuple[SegmentOutcome, Error | None]:
    """The outcome of one segment; an inference fault also yields an ``internal`` error.

    With ``quality`` the result carries the signal measures, warnings and ``uncertain``.
    ``may_run_lone``: as for ``InferencePool.classify``."""
    if segment.too_short:
        return _skip(pool, index, segment, "too_short"), None
    try:
        prediction = await pool.classify(
            model_rate(segment.audio, pool),
            priority=priority,
            client=client,
            stream=stream,
            measure=measurer(segment.audio, segment.voiced_samples) if quality else None,
            may_run_lone=may_run_lone,
        )
    except Overloaded:
        return _skip(pool, index, segment, "overloaded"), None
    except InferenceFailed as exc:
        log.error("inference failed on segment %d: %s", index, exc, exc_info=exc.__cause__)
        error = Error("internal", f"inference failed on segment {index}; the stream goes on")
        return _skip(pool, index, segment, "error"), error
    return result_of(index, segment, prediction, known_at), None


def result_of(index: int, segment: vad.Segment, prediction: Prediction, known_at: float) -> Result:
    label, confidence, scores = readout(prediction)
    return Result(
        segment=index,
        start_ms=segment.start_ms,
        end_ms=segment.end_ms,
        label=label,
        confidence=confidence,
        scores=scores,
        model_version=prediction.manifest.version,
        latency_ms=round((time.monotonic() - known_at) * 1000),
        **quality_fields(prediction.quality, confidence),
    )


def measurer(audio: Audio, voiced_samples: int) -> Callable[[], SignalQuality]:
    """The signal measures of segment audio at PIPELINE_RATE_HZ, for a worker to compute."""
    return functools.partial(measure, audio, voiced_samples, PIPELINE_RATE_HZ)


def quality_fields(quality: SignalQuality | None, confidence: float) -> dict[str, Any]:
    """``quality``, ``warnings`` and ``uncertain`` for a result or partial (none without)."""
    if quality is None:
        return {}
    warnings = warnings_for(quality, confidence)
    return {
        "quality": quality.as_dict(),
        "warnings": list(warnings),
        "uncertain": bool(warnings),
    }


def model_rate(audio: Audio, pool: InferencePool) -> Audio:
    """Segment audio (at PIPELINE_RATE_HZ) at the served model's rate."""
    rate = pool.classifier.manifest.sample_rate
    if rate == PIPELINE_RATE_HZ:
        return audio
    resampled: Audio = soxr.resample(audio, PIPELINE_RATE_HZ, rate).astype(np.float32)
    return resampled


def readout(prediction: Prediction) -> tuple[str, float, dict[str, float]]:
    """The label, its confidence and every label's score, rounded for the wire."""
    labels = prediction.manifest.labels
    scores = {label: round(float(p), 6) for label, p in zip(labels, prediction.scores, strict=True)}
    best = labels[int(np.argmax(prediction.scores))]
    return best, scores[best], scores


def _skip(pool: InferencePool, index: int, segment: vad.Segment, reason: str) -> Skipped:
    pool.metrics.skipped.labels(reason=reason).inc()
    return Skipped(index, segment.start_ms, segment.end_ms, reason)  # type: ignore[arg-type]


def summarize(outcomes: list[SegmentOutcome]) -> dict[str, object]:
    """Scores averaged over the classified segments, weighted by duration."""
    results = [o for o in outcomes if isinstance(o, Result)]
    weights = [r.end_ms - r.start_ms for r in results]
    if not results or sum(weights) <= 0:
        return {"label": None, "confidence": None, "scores": {}}
    labels = list(results[0].scores)
    total = float(sum(weights))
    scores = {
        label: round(
            sum(r.scores.get(label, 0.0) * w for r, w in zip(results, weights, strict=True))
            / total,
            6,
        )
        for label in labels
    }
    label = max(scores, key=scores.__getitem__)
    return {"label": label, "confidence": scores[label], "scores": scores}
