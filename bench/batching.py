"""Batching across segments: equal-length segments in one ONNX Runtime call vs separate calls.

Offline throughput (no server) of ``OnnxClassifier.predict_batch`` against one ``predict``
per segment, for B equal-length segments (B = 1, 2, 4, 8) at 1 and 2 intra-op threads,
and the pool's layouts for the same segments: 2 workers x 1 thread running separate calls
in parallel (today's shared layout), the same 2 workers each running a batch, and one call
of the whole batch on 2 threads. Every case runs once per round, rounds interleaved. Also
records how far batched scores move from separate ones (dynamic int8 quantisation picks
one activation scale for the whole batch). ``EMOSTREAM_BATCH_MAX`` stays 1 unless this
shows a gain on the CPU that serves.

    .venv/bin/python -m bench.batching [--quick] [--rounds 12] [--models base-int8 bundled]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench import report
from bench.audio import speech_of_length
from bench.models import build
from classifier.inference import OnnxClassifier, ThreadOptions
from server.settings import BUNDLED_MODEL_DIR

NAME = "batching"
BATCH_SIZES = (1, 2, 4, 8)
THREADS = (1, 2)
MODELS = ("base-int8", "bundled")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="interleaved rounds per model")
    parser.add_argument("--segment-seconds", type=float, default=3.0)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--base-variant", default="int8-convmm", help="wav2vec2-base variant (bench/models.py)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.quick:
        args.rounds, args.segment_seconds = 2, 1.0
    return args


def model_dir(name: str, args: argparse.Namespace) -> tuple[Path, str]:
    if name == "bundled":
        return BUNDLED_MODEL_DIR, "models/default (bundled)"
    size = "tiny" if args.quick else "base"
    variant = "int8-matmul" if args.quick else args.base_variant
    return build(size, args.work_dir).model_dir(variant), f"wav2vec2-{size} {variant}"


def segments(count: int, seconds: float) -> list[np.ndarray]:
    """``count`` different segments of exactly ``seconds`` each, cut from continuous speech."""
    speech = speech_of_length(count * seconds)
    n = round(seconds * 16000)
    return [speech[i * n : (i + 1) * n].copy() for i in range(count)]


def cases(
    clfs: dict[int, OnnxClassifier], segs: list[np.ndarray], pool: ThreadPoolExecutor
) -> dict[tuple[str, int, int], Callable[[], object]]:
    """(layout, segments, threads per call) -> one timed run of that many segments."""

    def separate(clf: OnnxClassifier, batch: list[np.ndarray]) -> Callable[[], object]:
        return lambda: [clf.predict(s) for s in batch]

    def one_call(clf: OnnxClassifier, batch: list[np.ndarray]) -> Callable[[], object]:
        return lambda: clf.predict_batch(batch)

    def two_workers(
        clf: OnnxClassifier, batch: list[np.ndarray], batched: bool
    ) -> Callable[[], object]:
        halves = [batch[0::2], batch[1::2]]  # each worker's share, as the pool deals them

        def run() -> object:
            fn = clf.predict_batch if batched else lambda part: [clf.predict(s) for s in part]
            return [f.result() for f in [pool.submit(fn, half) for half in halves]]

        return run

    out: dict[tuple[str, int, int], Callable[[], object]] = {}
    for b in BATCH_SIZES:
        batch = segs[:b]
        for threads, clf in clfs.items():
            out[("separate calls", b, threads)] = separate(clf, batch)
            if b > 1:
                out[("one call", b, threads)] = one_call(clf, batch)
        if b > 1:
            out[("2 workers x 1 thread, separate calls", b, 1)] = two_workers(clfs[1], batch, False)
        if b > 2:
            out[("2 workers x 1 thread, a batch each", b, 1)] = two_workers(clfs[1], batch, True)
    return out


def agreement(clf: OnnxClassifier, segs: list[np.ndarray]) -> dict[str, float]:
    """How far scores of a batch of all ``segs`` move from each segment run alone."""
    alone = np.stack([clf.logits(s) for s in segs])
    batched = np.stack(clf.logits_batch(segs))
    return {
        "segments": len(segs),
        "max_abs_logit_diff": float(np.abs(alone - batched).max()),
        "top1_agreement": float(np.mean(alone.argmax(1) == batched.argmax(1))),
    }


def measure_model(name: str, args: argparse.Namespace, segs: list[np.ndarray]) -> dict[str, Any]:
    path, label = model_dir(name, args)
    clfs = {t: OnnxClassifier(path, ThreadOptions(intra_op_threads=t)) for t in THREADS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        timed = cases(clfs, segs, pool)
        keys = list(timed)
        times = report.interleaved(
            {"|".join(map(str, k)): timed[k] for k in keys}, args.rounds, warmup=1
        )
    rows = []
    for key in keys:
        layout, b, threads = key
        series = times["|".join(map(str, key))]
        rows.append(
            {
                "layout": layout,
                "segments": b,
                "intra_op_threads": threads,
                "ms_per_segment": report.summary([t * 1000 / b for t in series]),
                "segments_per_s": report.summary([b / t for t in series]),
            }
        )
        print(label, layout, b, threads, round(rows[-1]["segments_per_s"]["median"], 2))
    for row in rows:  # the same segments as separate calls on the same threads, same rounds
        if row["layout"] != "separate calls":
            base = times[f"separate calls|{row['segments']}|{row['intra_op_threads']}"]
            mine = times[f"{row['layout']}|{row['segments']}|{row['intra_op_threads']}"]
            row["speedup_vs_separate"] = report.ratio_spread(base, mine)
    # The pool's question: today's 2 workers x 1 thread on separate calls against batching.
    workers = "2 workers x 1 thread, separate calls"
    pool_layouts = []
    for b in BATCH_SIZES[1:]:
        base = times[f"{workers}|{b}|1"]
        for other in (f"one call|{b}|2", f"2 workers x 1 thread, a batch each|{b}|1"):
            if other in times:
                pool_layouts.append(
                    {
                        "segments": b,
                        "layout": "one call on 2 threads" if "one call" in other else other[:-4],
                        "speedup_vs_2_workers_separate": report.ratio_spread(base, times[other]),
                    }
                )
    return {
        "model": name,
        "label": label,
        "vs_pool_layout": pool_layouts,
        "precision": clfs[1].manifest.graph.precision,
        "batch_axis": clfs[1].batching,
        "rows": rows,
        "batched_vs_alone": agreement(clfs[1], segs),
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    models = data["models"]
    fig, axes = report.figure(5.5 * len(models), 4.0, ncols=len(models))
    for ax, model in zip(np.atleast_1d(axes), models, strict=True):
        layouts = sorted({(r["layout"], r["intra_op_threads"]) for r in model["rows"]})
        for layout, threads in layouts:
            sel = [
                r
                for r in model["rows"]
                if (r["layout"], r["intra_op_threads"]) == (layout, threads)
            ]
            ax.plot(
                [r["segments"] for r in sel],
                [r["segments_per_s"]["median"] for r in sel],
                marker="o",
                label=f"{layout}" + ("" if "workers" in layout else f", {threads} thread(s)"),
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(BATCH_SIZES, [str(b) for b in BATCH_SIZES])
        ax.set_xlabel(f"equal {data['segment_seconds']:g} s segments")
        ax.set_ylabel("segments per second (median of rounds)")
        ax.set_title(model["label"], fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(f"Batching equal-length segments, {data['machine_kind']}", fontsize=9)
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    from bench.machine import describe

    args = parse(argv)
    segs = segments(max(BATCH_SIZES), args.segment_seconds)
    data = {
        "segment_seconds": args.segment_seconds,
        "rounds": args.rounds,
        "machine_kind": describe()["cpu_kind"],
        "models": [measure_model(name, args, segs) for name in args.models],
    }
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
