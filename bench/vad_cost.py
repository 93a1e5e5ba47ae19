"""Benchmark 4: VAD and segmentation cost per stream (CPU seconds per second of audio).

Feeds a conversation (espeak utterances and pauses, about half speech) through
``vad.StreamSegmenter`` in 20 ms pcm_s16le chunks, as the WebSocket session does, at the
model's 16 kHz and at browser rates that need resampling, with each voice detector
(Silero VAD on ONNX Runtime, webrtcvad). Measures this process's CPU time (user +
system) per second of audio; repeated, with the spread. The Silero model is loaded
before the clock starts (a server loads it once at start).

Then K streams at once, as a server's sessions run them: each stream plays the same
conversation from a different point, all advancing one 20 ms message per step (one
asyncio task per stream and message, as a session awaits each message). Silero inline
(each stream calls the model on its own frames) against batched, the server's default
(``vad.SileroBatcher``: one model call per step for every stream waiting), in the same
harness and interleaved, so the difference is the batching alone.

    .venv/bin/python -m bench.vad_cost [--quick] [--repeats 5] [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from bench import report
from bench.audio import SAMPLE_RATE_HZ, conversation, to_pcm16
from vad import (
    DETECTORS,
    Event,
    Segment,
    SegmenterConfig,
    SileroBatcher,
    SileroDetector,
    StreamSegmenter,
    make_detector,
)
from vad.silero import shared_model

NAME = "vad_cost"
CHUNK_MS = 20


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rates", type=int, nargs="+", default=[16000, 44100, 48000])
    parser.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    parser.add_argument(
        "--streams", type=int, nargs="+", default=[1, 8, 32], help="batched Silero: streams at once"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.seconds, args.rates, args.streams = 1, 10.0, [16000, 48000], [1, 4]
    return args


def chunks(audio: np.ndarray, rate_hz: int) -> list[bytes]:
    pcm = to_pcm16(audio)
    step = rate_hz * CHUNK_MS // 1000 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def run_once(frames: list[bytes], rate_hz: int, config: SegmenterConfig) -> tuple[float, int, int]:
    stream = StreamSegmenter(config, rate_hz, detector=make_detector(config))
    segments = too_short = 0
    start = time.process_time()
    for frame in frames:
        for event in stream.feed_bytes(frame):
            if isinstance(event, Segment):
                segments += 1
                too_short += event.too_short
    for event in stream.finish():
        if isinstance(event, Segment):
            segments += 1
            too_short += event.too_short
    return time.process_time() - start, segments, too_short


def measure(args: argparse.Namespace) -> dict[str, Any]:
    audio, spans = conversation(args.seconds)
    audio_s = audio.size / SAMPLE_RATE_HZ
    rows = []
    for detector in args.detectors:
        config = SegmenterConfig(detector=detector)
        make_detector(config)  # load the shared Silero session outside the timing
        rows += measure_detector(args, audio, audio_s, config)
        if detector == "silero":
            rows += measure_streams(args, audio, audio_s, config)
    return {
        "audio_seconds": audio_s,
        "utterances": len(spans),
        "speech_fraction": sum(e - s for s, e in spans) / audio_s,
        "chunk_ms": CHUNK_MS,
        "repeats": args.repeats,
        "config": "vad.SegmenterConfig() defaults but the detector (its own frame)",
        "rows": rows,
    }


def measure_detector(
    args: argparse.Namespace, audio: np.ndarray, audio_s: float, config: SegmenterConfig
) -> list[dict[str, Any]]:
    rows = []
    for rate in args.rates:
        resampled = audio if rate == SAMPLE_RATE_HZ else soxr.resample(audio, SAMPLE_RATE_HZ, rate)
        frames = chunks(resampled.astype(np.float32), rate)
        costs = []
        segments = too_short = 0
        for _ in range(args.repeats):
            cpu_s, segments, too_short = run_once(frames, rate, config)
            costs.append(cpu_s / audio_s)
        stats = report.summary([c * 1000 for c in costs])
        rows.append(
            {
                "detector": config.detector,
                "frame_ms": config.frame_ms,
                "input_rate_hz": rate,
                "cpu_ms_per_audio_s": stats,
                "streams_per_core": 1000 / stats["median"],
                "segments": segments,
                "too_short": too_short,
            }
        )
    return rows


async def run_streams(
    streams: list[list[bytes]], config: SegmenterConfig, batched: bool
) -> tuple[float, int, int]:
    model = shared_model()
    detectors = [
        SileroDetector(model, config.speech_threshold, config.threshold_hysteresis) for _ in streams
    ]
    segmenters = [StreamSegmenter(config, SAMPLE_RATE_HZ, detector=d) for d in detectors]
    batcher = SileroBatcher(model)
    segments = too_short = 0

    def count(events: list[Event]) -> None:
        nonlocal segments, too_short
        for event in events:
            if isinstance(event, Segment):
                segments += 1
                too_short += event.too_short

    async def one(index: int, message: bytes) -> None:
        segmenter, detector = segmenters[index], detectors[index]
        frames = segmenter.frames_of(message)
        if batched:
            count(segmenter.segment(frames, await batcher.decide(detector, frames)))
        else:
            count(segmenter.segment(frames))

    start = time.process_time()
    for step in range(len(streams[0])):
        await asyncio.gather(*(one(i, stream[step]) for i, stream in enumerate(streams)))
    for segmenter in segmenters:
        count(segmenter.finish())
    cpu_s = time.process_time() - start
    batcher.close()
    return cpu_s, segments, too_short


def measure_streams(
    args: argparse.Namespace, audio: np.ndarray, audio_s: float, config: SegmenterConfig
) -> list[dict[str, Any]]:
    rows = []
    for count in args.streams:
        # Each stream starts at a different point of the conversation (speech unaligned).
        streams = [
            chunks(np.roll(audio, i * len(audio) // count).astype(np.float32), SAMPLE_RATE_HZ)
            for i in range(count)
        ]
        costs: dict[bool, list[float]] = {False: [], True: []}
        found: dict[bool, tuple[int, int]] = {}
        for _ in range(args.repeats):
            for batched in (False, True):
                cpu_s, segments, too_short = asyncio.run(run_streams(streams, config, batched))
                costs[batched].append(cpu_s / (audio_s * count))
                found[batched] = (segments, too_short)
        for batched in (False, True):
            stats = report.summary([c * 1000 for c in costs[batched]])
            rows.append(
                {
                    "detector": "silero (batched)" if batched else "silero (inline)",
                    "streams": count,
                    "frame_ms": config.frame_ms,
                    "input_rate_hz": SAMPLE_RATE_HZ,
                    "cpu_ms_per_audio_s": stats,
                    "streams_per_core": 1000 / stats["median"],
                    "segments": found[batched][0],
                    "too_short": found[batched][1],
                }
            )
    return rows


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, ax = report.figure(6, 3.5)
    rows = data["rows"]
    med = [r["cpu_ms_per_audio_s"]["median"] for r in rows]
    err = [
        [m - r["cpu_ms_per_audio_s"]["min"] for m, r in zip(med, rows, strict=True)],
        [r["cpu_ms_per_audio_s"]["max"] - m for m, r in zip(med, rows, strict=True)],
    ]
    labels = [
        f"{r['detector']}\n{r['input_rate_hz']} Hz"
        + (f", {r['streams']} streams" if "streams" in r else "")
        for r in rows
    ]
    ax.bar(labels, med, yerr=err, capsize=4)
    ax.set_ylabel("CPU ms per second of audio (median, min-max)")
    ax.set_title("VAD + resampling + segmentation cost per stream")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
