"""Benchmark 1: per-segment model cost, ours (ONNX int8/fp32) against the prototype's pipeline.

For 1, 2 and 3 s segments of speech, times one classification through:
- ``onnx-int8`` / ``onnx-fp32``: ``classifier.inference.OnnxClassifier.predict`` (the served path:
  normalisation, ONNX Runtime, softmax) on the in-memory samples;
- ``prototype-pipeline``: Transformers ``pipeline("audio-classification")`` on a WAV file, as
  the prototype did (ffmpeg decode, feature extraction, PyTorch fp32 forward, top-k);
- ``torch-forward``: the PyTorch forward pass alone, to separate model time from overhead.
Rounds are interleaved; medians, p10/p90 and per-round speed-up ratios are reported, with
FLOPs per segment (analytic, cross-checked by PyTorch's FlopCounterMode) over time against
the CPU's theoretical peak.

    .venv/bin/python -m bench.model_cost [--quick] [--rounds 15]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench import flops, report
from bench.audio import speech_of_length, write_wav
from bench.machine import measured_sgemm_gflops, peak
from bench.models import BenchModel, build, model_config
from classifier.inference import OnnxClassifier, ThreadOptions

NAME = "model_cost"
PROTOTYPE = "prototype-pipeline"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--threads", type=int, default=2, help="ORT intra-op and torch threads")
    parser.add_argument(
        "--int8",
        nargs="+",
        default=["int8-matmul", "int8-convmm"],
        help="int8 variants to time (bench.models)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 2, [1.0]
    return args


def prototype_cases(
    bench: BenchModel, wavs: dict[float, Path], audio: dict[float, Any], threads: int
) -> tuple[dict[float, Callable[[], object]], dict[float, Callable[[], object]]]:
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    pipe = pipeline("audio-classification", model=str(bench.hf_dir), device="cpu")
    model = pipe.model.eval()  # type: ignore[no-untyped-call]

    def run_pipeline(path: Path) -> Callable[[], object]:
        return lambda: pipe(str(path))

    def run_forward(samples: np.ndarray) -> Callable[[], object]:
        tensor = torch.from_numpy(samples)[None]

        def forward() -> object:
            with torch.inference_mode():
                return model(input_values=tensor).logits

        return forward

    return (
        {s: run_pipeline(p) for s, p in wavs.items()},
        {s: run_forward(a) for s, a in audio.items()},
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    size = "tiny" if args.quick else "base"
    bench = build(size, args.work_dir)
    config = model_config(size)
    threads = ThreadOptions(intra_op_threads=args.threads)
    paths = {"onnx-fp32": "fp32", **{f"onnx-{v}": v for v in args.int8}}
    classifiers = {name: OnnxClassifier(bench.model_dir(v), threads) for name, v in paths.items()}
    audio = {s: speech_of_length(s) for s in args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        wavs = {s: write_wav(Path(tmp) / f"{s:g}s.wav", a) for s, a in audio.items()}
        pipelines, forwards = prototype_cases(bench, wavs, audio, args.threads)
        cases: dict[str, Callable[[], object]] = {}
        for s, samples in audio.items():
            for name, clf in classifiers.items():
                cases[f"{name}@{s:g}"] = partial(clf.predict, samples)
            cases[f"{PROTOTYPE}@{s:g}"] = pipelines[s]
            cases[f"torch-forward@{s:g}"] = forwards[s]
        times = report.interleaved(cases, args.rounds, warmup=2)
    return analyse(args, config, times, [*classifiers, PROTOTYPE, "torch-forward"])


def analyse(
    args: argparse.Namespace, config: Any, times: dict[str, list[float]], paths: list[str]
) -> dict[str, Any]:
    cpu = peak()
    rows = []
    for s in args.seconds:
        samples = round(s * 16000)
        count = flops.count(config, samples)
        base = times[f"{PROTOTYPE}@{s:g}"]
        for path in paths:
            series = times[f"{path}@{s:g}"]
            stats = report.summary([t * 1000 for t in series])
            gflops_per_s = count.total / 1e9 / (stats["median"] / 1000)
            ceiling = cpu.int8_gops if "int8" in path else cpu.fp32_gflops
            rows.append(
                {
                    "path": path,
                    "seconds": s,
                    "ms": stats,
                    "speedup_vs_prototype": report.ratio_spread(base, series),
                    "gflop": count.total / 1e9,
                    "achieved_gflops": gflops_per_s,
                    "fraction_of_fp32_peak": gflops_per_s / cpu.fp32_gflops,
                    "fraction_of_own_peak": gflops_per_s / ceiling,
                }
            )
    largest = round(max(args.seconds) * 16000)
    return {
        "model": "wav2vec2-tiny (quick)"
        if args.quick
        else "wav2vec2-base, 6 classes, random weights",
        "threads": args.threads,
        "rounds": args.rounds,
        "flops_method": (
            "analytic multiply-add count of convolutions and matrix products (x2), "
            "cross-checked with torch.utils.flop_counter.FlopCounterMode"
        ),
        "flops_breakdown": {
            f"{s:g}": flops.count(config, round(s * 16000)).as_dict() for s in args.seconds
        },
        "flops_torch_counter_ratio": torch_counter_ratio(args, largest),
        "measured_sgemm_gflops": measured_sgemm_gflops(512 if args.quick else 2048),
        "rows": rows,
    }


def torch_counter_ratio(args: argparse.Namespace, samples: int) -> float:
    from transformers import Wav2Vec2ForSequenceClassification

    size = "tiny" if args.quick else "base"
    config = model_config(size)
    model = Wav2Vec2ForSequenceClassification.from_pretrained(
        str(build(size, args.work_dir).hf_dir)
    )
    model.eval()  # type: ignore[no-untyped-call]
    return flops.torch_flops(model, samples) / flops.count(config, samples).total


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, (left, right) = report.figure(11, 4.2, ncols=2)
    rows = data["rows"]
    paths = list(dict.fromkeys(r["path"] for r in rows))
    seconds = sorted({r["seconds"] for r in rows})
    width = 0.8 / len(paths)
    for i, path in enumerate(paths):
        sel = [next(r for r in rows if r["path"] == path and r["seconds"] == s) for s in seconds]
        med = [r["ms"]["median"] for r in sel]
        err = [
            [m - r["ms"]["p10"] for m, r in zip(med, sel, strict=True)],
            [r["ms"]["p90"] - m for m, r in zip(med, sel, strict=True)],
        ]
        xs = [j + i * width for j in range(len(seconds))]
        left.bar(xs, med, width, yerr=err, capsize=3, label=path)
        right.bar(xs, [r["speedup_vs_prototype"]["median"] for r in sel], width, label=path)
    for ax in (left, right):
        ax.set_xticks([j + width * (len(paths) - 1) / 2 for j in range(len(seconds))])
        ax.set_xticklabels([f"{s:g} s segment" for s in seconds])
    left.set_ylabel("ms per segment (median, p10-p90)")
    left.legend(fontsize=8)
    right.axhline(2.5, color="red", linestyle="--", linewidth=1, label="target 2.5x")
    right.set_ylabel("speed-up vs prototype pipeline")
    right.legend(fontsize=8)
    fig.suptitle(f"Per-segment cost, {data['model']}, {data['threads']} threads")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
