"""Worker x intra-op-thread layouts: throughput and per-segment latency under full load.

W worker threads share one ``OnnxClassifier`` (ONNX Runtime releases the GIL in ``run``;
with one intra-op thread each run executes on its calling thread) and classify 3 s
segments back to back for a fixed time. Reports segments per second (throughput at
saturation) and the latency of one segment in that state. A 1 x T row with a single
caller is also the idle-server latency of one segment.

    .venv/bin/python -m bench.layout [--quick] [--seconds 20] [--variant int8-matmul]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.audio import speech_of_length
from bench.models import build
from classifier.inference import OnnxClassifier, ThreadOptions

NAME = "layout"
LAYOUTS = ((1, 1), (1, 2), (2, 1), (2, 2), (3, 1))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="load duration per layout")
    parser.add_argument("--segment-seconds", type=float, default=3.0)
    parser.add_argument("--variants", nargs="+", default=["int8-matmul", "int8-convmm"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.segment_seconds, args.repeats = 1.0, 1.0, 1
    return args


def saturate(clf: OnnxClassifier, audio: Any, workers: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            clf.predict(audio)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    started = time.perf_counter()
    cpu_start = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "segments": len(latencies),
        "segments_per_s": len(latencies) / wall,
        "cpu_utilisation": (time.process_time() - cpu_start) / wall,
        "latency_ms": report.summary([x * 1000 for x in latencies]),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    bench = build("tiny" if args.quick else "base", args.work_dir)
    audio = speech_of_length(args.segment_seconds)
    rows = []
    for variant in args.variants:
        model_dir = bench.model_dir(variant)
        for repeat in range(args.repeats):  # repeats interleave the layouts
            for workers, intra in LAYOUTS:
                clf = OnnxClassifier(model_dir, ThreadOptions(intra_op_threads=intra))
                for _ in range(2):
                    clf.predict(audio)
                result = saturate(clf, audio, workers, args.seconds)
                rows.append(
                    {
                        "variant": variant,
                        "workers": workers,
                        "intra_op_threads": intra,
                        "repeat": repeat,
                        **result,
                    }
                )
                print(variant, workers, intra, round(result["segments_per_s"], 2), flush=True)
    return {
        "model": "wav2vec2-tiny (quick)"
        if args.quick
        else "wav2vec2-base, 6 classes, random weights",
        "segment_seconds": args.segment_seconds,
        "load_seconds": args.seconds,
        "rows": rows,
        "summary": summarise(rows),
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = sorted({(r["variant"], r["workers"], r["intra_op_threads"]) for r in rows})
    out = []
    for variant, workers, intra in keys:
        sel = [
            r
            for r in rows
            if (r["variant"], r["workers"], r["intra_op_threads"]) == (variant, workers, intra)
        ]
        rates = [r["segments_per_s"] for r in sel]
        out.append(
            {
                "variant": variant,
                "workers": workers,
                "intra_op_threads": intra,
                "segments_per_s": report.summary(rates),
                "latency_ms_median": report.summary([r["latency_ms"]["median"] for r in sel]),
            }
        )
    return out


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, (left, right) = report.figure(10, 3.8, ncols=2)
    rows = data["summary"]
    labels = [f"{r['variant']}\n{r['workers']}w x {r['intra_op_threads']}t" for r in rows]
    rates = [r["segments_per_s"] for r in rows]
    left.bar(
        labels,
        [r["median"] for r in rates],
        yerr=[[r["median"] - r["min"] for r in rates], [r["max"] - r["median"] for r in rates]],
        capsize=4,
    )
    left.set_ylabel(f"{data['segment_seconds']:g} s segments per second (min-max)")
    right.bar(labels, [r["latency_ms_median"]["median"] for r in rows])
    right.set_ylabel("latency per segment at saturation, ms")
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"Workers x intra-op threads on {data['machine_cores']} cores, {data['model']}")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    import os

    args = parse(argv)
    data = measure(args)
    data["machine_cores"] = os.cpu_count()
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
