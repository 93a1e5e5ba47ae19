"""Where an upload's time goes: one 3 s speech WAV through ``POST /v1/classify``, stage by stage.

The real app (uvicorn, the real settings) runs in this process, in a thread, so that the
functions doing each stage can be wrapped with timers (bench/stages.py): receiving the
body, multipart, decode (with resampling), segmentation and the VAD model inside it,
int16/float conversions, the pool (queue wait and thread hops), the model run (and its
normalisation), the reply's JSON. Requests are sent one at a time by a client thread;
each stage is reported per request as wall-clock time and as a share of the request's
server time. Proportions, not headline timings: run on a quiet machine for figures.

    .venv/bin/python -m bench.upload_stages [--quick] [--requests 20] [--models convmm bundled]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from starlette.responses import JSONResponse

import classifier.inference
import server.api
import server.outcome
import server.recording
import vad
import vad.segmenter
import vad.stream
from bench import report
from bench.audio import paused_speech, speech_of_length, wav_bytes
from bench.models import build
from bench.stages import Tracer, breakdown, in_thread
from server.pool import InferencePool
from server.settings import BUNDLED_MODEL_DIR, Settings

NAME = "upload_stages"
CLIP_S = 3.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="timed uploads per model")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["convmm", "bundled"],
        choices=["convmm", "bundled"],
        help="convmm: the wav2vec2-base int8-convmm stand-in; bundled: models/default",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--intra-op-threads", type=int, default=1)
    parser.add_argument("--lone-threads", type=int, default=2)
    parser.add_argument("--vad", default="silero", choices=["silero", "webrtc"])
    parser.add_argument(
        "--clips",
        nargs="+",
        default=["continuous", "paused"],
        choices=["continuous", "paused"],
        help="continuous: bench/audio.py's 3 s of speech (one segment); paused: 1.6 s of "
        "speech, 0.5 s of silence, 0.9 s of speech (two segments)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.models, args.clips = 2, ["bundled"], ["paused"]
    return args


def model_dir(name: str, args: argparse.Namespace) -> Path:
    if name == "bundled":
        return BUNDLED_MODEL_DIR
    return build("base", args.work_dir).model_dir("int8-convmm")


def instrument(tracer: Tracer, pool: InferencePool, settings: Settings) -> None:
    """Wrap the functions of every stage of an upload."""
    tracer.wrap(server.api, "_upload", "body (receive + multipart)")
    tracer.wrap(server.api, "upload_bytes", "multipart")
    tracer.wrap(server.recording, "decode_audio", "decode (+ resample)")
    tracer.wrap(vad.StreamSegmenter, "feed_audio", "segmentation (VAD + segmenter)")
    tracer.wrap(vad.StreamSegmenter, "finish", "segmentation (VAD + segmenter)")
    tracer.wrap(vad.SileroDetector, "speech_probability", "  VAD model (Silero)")
    tracer.wrap(vad.WebRtcDetector, "__call__", "  VAD model (webrtcvad)")
    tracer.wrap(vad.stream, "to_int16", "  float -> int16")
    tracer.wrap(vad.segmenter, "to_float", "  int16 -> float (segments)")
    tracer.wrap(server.outcome, "model_rate", "model rate resample")
    tracer.wrap(InferencePool, "classify", "pool (queue + hops + run)")
    tracer.wrap(InferencePool, "_run", "worker run")
    tracer.wrap(classifier.inference, "normalize", "  normalize")
    tracer.wrap(server.recording, "plan", "layout plan")
    shared_threads, lone_threads = settings.intra_op_threads, settings.lone_intra_op_threads
    tracer.wrap(pool.classifier, "predict", f"model, shared session ({shared_threads} thr)")
    if pool.lone is not None:
        tracer.wrap(pool.lone, "predict", f"model, lone session ({lone_threads} thr)")
    tracer.wrap(server.recording.Recording, "body", "reply body")
    tracer.wrap(JSONResponse, "render", "JSON render")


def clip(name: str) -> bytes:
    if name == "continuous":
        return wav_bytes(speech_of_length(CLIP_S))
    return wav_bytes(paused_speech(CLIP_S))


def run_model(name: str, args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    settings = Settings(
        model_dir=model_dir(name, args),
        workers=args.workers,
        intra_op_threads=args.intra_op_threads,
        lone_intra_op_threads=args.lone_threads,
        **{"vad_detector": args.vad},  # a VAD setting (made from vad.config's table)
    )
    tracer = Tracer()
    rows: list[dict[str, Any]] = []
    sample: dict[str, Any] = {}
    cost = None
    with in_thread(settings) as served:
        service = served.service
        cost = getattr(service, "layout_cost", None)  # None before the upload plan existed
        url = f"{served.url}/v1/classify"
        files = {"file": ("speech.wav", body, "audio/wav")}
        instrument(tracer, service.pool, settings)
        try:
            with httpx.Client(timeout=120) as http:
                for i in range(args.requests + 2):  # two warm-up requests
                    tracer.clear()
                    start = time.perf_counter()
                    reply = http.post(url, files=files)
                    end = time.perf_counter()
                    reply.raise_for_status()
                    sample = reply.json()
                    if i < 2:
                        continue
                    spans = tracer.window(start, end)
                    # From the first byte of the body read to the reply rendered.
                    server_s = max(s.end for s in spans) - min(s.start for s in spans)
                    rows.append(
                        {
                            "client_ms": (end - start) * 1000,
                            "server_ms": server_s * 1000,
                            "stages": breakdown(spans, server_s),
                        }
                    )
        finally:
            tracer.restore()
    return {
        "model": name,
        "model_dir": str(settings.model_dir),
        "segments": [
            {k: s.get(k) for k in ("segment", "start_ms", "end_ms", "label", "skipped")}
            for s in sample.get("segments", [])
        ],
        "layout_cost": None if cost is None else {"speedup": cost.speedup, "workers": cost.workers},
        "client_ms": report.summary([r["client_ms"] for r in rows]),
        "server_ms": report.summary([r["server_ms"] for r in rows]),
        "stages": summarise(rows),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median over requests of each stage's calls, wall ms and summed ms, and its share."""
    names = list(dict.fromkeys(stage for r in rows for stage in r["stages"]))
    out: dict[str, dict[str, float]] = {}
    for stage in names:
        own = [r["stages"].get(stage) for r in rows]
        values = [s for s in own if s is not None]
        out[stage] = {
            key: statistics.median(s[key] for s in values)
            for key in ("calls", "wall_ms", "sum_ms", "wall_share")
        }
    return out


def show(result: dict[str, Any]) -> None:
    cost = result["layout_cost"]
    lone = f"lone session speedup {cost['speedup']:.2f}" if cost else "no lone session"
    segments = ", ".join(f"{s['start_ms']}-{s['end_ms']}" for s in result["segments"])
    print(
        f"\n{result['clip']} clip, {result['model']} ({lone}): "
        f"client {result['client_ms']['median']:.1f} ms, "
        f"server {result['server_ms']['median']:.1f} ms, segments {segments}"
    )
    for stage, s in result["stages"].items():
        print(
            f"  {stage:42s} {s['calls']:5.0f} calls {s['wall_ms']:8.2f} ms wall "
            f"{s['sum_ms']:8.2f} ms summed {100 * s['wall_share']:5.1f} %"
        )


def plot(data: dict[str, Any], out_dir: Path) -> None:
    results = data["results"]
    fig, axes = report.figure(11, 1.2 + 2.4 * len(results), ncols=1)
    stages = list(dict.fromkeys(stage for r in results for stage in r["stages"]))
    for i, result in enumerate(results):
        shares = [100 * result["stages"].get(s, {}).get("wall_share", 0.0) for s in stages]
        offset = i * 0.8 / len(results)
        axes.barh(
            [j + offset for j in range(len(stages))],
            shares,
            0.8 / len(results),
            label=f"{result['clip']} clip, {result['model']} "
            f"({result['server_ms']['median']:.0f} ms)",
        )
    axes.set_yticks(range(len(stages)))
    axes.set_yticklabels([s.strip() for s in stages], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("share of the request's server time, % (median over requests)")
    axes.legend(fontsize=7)
    fig.suptitle("Where an upload's time goes, 3 s WAV, POST /v1/classify")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    results = []
    for clip_name in args.clips:
        body = clip(clip_name)
        for name in args.models:
            result = {"clip": clip_name, **run_model(name, args, body)}
            show(result)
            results.append(result)
    data = {
        "clip_s": CLIP_S,
        "requests": args.requests,
        "layout": {
            "workers": args.workers,
            "intra_op_threads": args.intra_op_threads,
            "lone_intra_op_threads": args.lone_threads,
        },
        "vad": args.vad,
        "results": results,
    }
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
