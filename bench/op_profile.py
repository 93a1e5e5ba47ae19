"""Where the time goes: ONNX Runtime's own profiler, time per operator type, per variant.

Runs a 3 s segment through each variant with session profiling on and sums the kernel
times of the profile by operator type. Explains the quantisation results (for example,
how much of a run ConvInteger takes against the float Conv it replaces).

    .venv/bin/python -m bench.op_profile [--quick] [--variants fp32 int8-matmul ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench import report
from bench.audio import speech_of_length
from bench.models import build
from classifier.inference import ThreadOptions, session_options

NAME = "op_profile"
TOP = 8


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["fp32", "int8-matmul", "int8-matmul-conv", "int8-convmm"],
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.variants, args.runs, args.seconds = ["fp32", "int8-matmul"], 2, 1.0
    return args


def profile(graph: Path, audio: np.ndarray, runs: int, threads: int) -> dict[str, float]:
    """Mean milliseconds per run spent in each operator type."""
    with tempfile.TemporaryDirectory() as tmp:
        options = session_options(ThreadOptions(intra_op_threads=threads))
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: audio[np.newaxis, :]}
        for _ in range(runs + 1):  # the first run is a warm-up, left out below
            session.run(None, feed)
        trace = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    run_events = sorted(e["ts"] + e["dur"] for e in trace if e.get("name") == "model_run")
    warm_up_end = run_events[0]
    by_op: dict[str, float] = {}
    for event in trace:
        kernel = event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
        if kernel and event["ts"] > warm_up_end:
            op = event["args"]["op_name"]
            by_op[op] = by_op.get(op, 0.0) + event["dur"] / 1000
    return {op: ms / runs for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    bench = build("tiny" if args.quick else "base", args.work_dir)
    audio = speech_of_length(args.seconds)
    rows = []
    for variant in args.variants:
        graph = bench.model_dir(variant) / "model.onnx"
        ms = profile(graph, audio, args.runs, args.threads)
        rows.append(
            {"variant": variant, "kernel_ms_by_op": ms, "kernel_ms_total": sum(ms.values())}
        )
        print(variant, {k: round(v, 1) for k, v in list(ms.items())[:TOP]}, flush=True)
    return {
        "model": "wav2vec2-tiny (quick)"
        if args.quick
        else "wav2vec2-base, 6 classes, random weights",
        "segment_seconds": args.seconds,
        "threads": args.threads,
        "runs": args.runs,
        "rows": rows,
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, ax = report.figure(9, 4.2)
    rows = data["rows"]
    ops: list[str] = []
    for row in rows:
        for op in list(row["kernel_ms_by_op"])[:TOP]:
            if op not in ops:
                ops.append(op)
    bottoms = [0.0] * len(rows)
    names = [r["variant"] for r in rows]
    for op in ops:
        values = [r["kernel_ms_by_op"].get(op, 0.0) for r in rows]
        ax.bar(names, values, bottom=bottoms, label=op)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    others = [r["kernel_ms_total"] - b for r, b in zip(rows, bottoms, strict=True)]
    ax.bar(names, others, bottom=bottoms, label="other", color="lightgrey")
    ax.set_ylabel(f"kernel ms per {data['segment_seconds']:g} s segment (ORT profiler)")
    ax.legend(fontsize=7, ncols=2)
    ax.set_title(f"Time per operator type, {data['model']}, {data['threads']} threads")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
