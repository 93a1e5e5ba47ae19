"""Quantisation variants x ONNX Runtime graph optimisation levels: speed and int8-vs-fp32 error.

Variants (bench.models.VARIANTS): MatMul only, MatMul and Conv
except the first conv, MatMul and every Conv, MatMul with per-channel weight scales, encoder
convs as MatMul (convmm, the export default), convmm after ONNX Runtime's offline
transformer fusions, and convmm with uint8 weights, reduce_range, per-channel scales or
static QDQ quantisation (bench.graph_variants compares those at 1 and 2 threads). Each is
timed on a 3 s segment at every graph optimisation level, rounds interleaved within a
variant. Agreement: top-1 agreement with fp32 and logit errors over a small synthetic set
(espeak speech, clean/noisy/hum). With random weights the logits are nearly flat, so top-1
agreement here is a stress test of the rounding, not the model's real agreement figure.

    .venv/bin/python -m bench.quantization [--quick] [--rounds 8] [--clips 30]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench import report
from bench.audio import speech_of_length, synthetic_set
from bench.models import VARIANTS, build, describe_graph
from classifier.inference import OnnxClassifier, ThreadOptions

NAME = "quantization"
LEVELS = ("disable", "basic", "extended", "all")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["fp32", *(v.name for v in VARIANTS)])
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.clips, args.seconds = 2, 3, 1.0
    return args


def time_levels(model_dir: Path, audio: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    sessions = {
        level: OnnxClassifier(model_dir, ThreadOptions(args.threads, 1, level)) for level in LEVELS
    }
    cases: dict[str, Callable[[], object]] = {
        level: partial(clf.predict, audio) for level, clf in sessions.items()
    }
    times = report.interleaved(cases, args.rounds, warmup=2)
    return {level: report.summary([t * 1000 for t in ts]) for level, ts in times.items()}


def agreement(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict[str, float]:
    ref = np.stack(reference)
    cand = np.stack(candidate)
    errors = np.abs(ref - cand)
    spread = ref.max(axis=1) - ref.min(axis=1)
    return {
        "top1_agreement": float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1))),
        "max_abs_logit_error": float(errors.max()),
        "mean_abs_logit_error": float(errors.mean()),
        "mean_logit_spread": float(spread.mean()),
        "relative_error": float(errors.mean() / max(spread.mean(), 1e-12)),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    size = "tiny" if args.quick else "base"
    bench = build(size, args.work_dir)
    audio = speech_of_length(args.seconds)
    clips = synthetic_set(args.clips)
    fp32 = OnnxClassifier(bench.model_dir("fp32"), ThreadOptions(args.threads))
    reference = [fp32.logits(c) for c in clips]
    del fp32
    rows = []
    for variant in args.variants:
        model_dir = bench.model_dir(variant)
        print(f"timing {variant}", flush=True)
        clf = OnnxClassifier(model_dir, ThreadOptions(args.threads))
        row: dict[str, Any] = {
            "variant": variant,
            "graph": describe_graph(model_dir / "model.onnx"),
            "agreement_vs_fp32": agreement(reference, [clf.logits(c) for c in clips]),
        }
        del clf
        row["ms_by_level"] = time_levels(model_dir, audio, args)
        rows.append(row)
    return {
        "model": "wav2vec2-tiny (quick)"
        if args.quick
        else "wav2vec2-base, 6 classes, random weights",
        "segment_seconds": args.seconds,
        "threads": args.threads,
        "rounds": args.rounds,
        "clips": args.clips,
        "agreement_note": (
            "random weights: logits nearly flat, so top-1 agreement is a rounding stress "
            "test; the real figure is the default model's evaluation in its manifest"
        ),
        "rows": rows,
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, ax = report.figure(9, 4.2)
    rows = data["rows"]
    width = 0.8 / len(LEVELS)
    for i, level in enumerate(LEVELS):
        stats = [r["ms_by_level"][level] for r in rows]
        med = [s["median"] for s in stats]
        err = [
            [m - s["p10"] for m, s in zip(med, stats, strict=True)],
            [s["p90"] - m for m, s in zip(med, stats, strict=True)],
        ]
        xs = [j + i * width for j in range(len(rows))]
        ax.bar(xs, med, width, yerr=err, capsize=2, label=f"graph opt: {level}")
    ax.set_xticks([j + width * (len(LEVELS) - 1) / 2 for j in range(len(rows))])
    ax.set_xticklabels([r["variant"] for r in rows], fontsize=8)
    ax.set_ylabel(f"ms per {data['segment_seconds']:g} s segment (median, p10-p90)")
    ax.legend(fontsize=8)
    ax.set_title(f"Quantisation variants x graph optimisation, {data['model']}")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
