"""The int8 graphs a model directory may carry, on this CPU: speed, agreement, auto's pick.

For the wav2vec2-base stand-in (random weights), every recipe a release can write as an
alternative (training.models.quantization: convmm, convmm-u8u8, convmm-reduce-range,
convmm-perchannel, and convmm-static, QDQ calibrated on 16 synthetic clips;
bench.models.VARIANTS builds them): ms per 3 s segment through
``OnnxClassifier.predict`` at 1 and 2 intra-op threads, all variants and thread counts
interleaved within each round; top-1 agreement with fp32 on a small synthetic set; and the
graph ``EMOSTREAM_GRAPH=auto`` would pick from these timings (classifier.selection, with
the 1-thread timings as the server's workers use, and with the 2-thread ones as a lone
session would). With random weights the logits are nearly flat, so agreement here is a
rounding stress test: the pick is also given ignoring the agreement floor.

    .venv/bin/python -m bench.graph_variants [--quick] [--rounds 10] [--clips 30]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import report
from bench.audio import speech_of_length, synthetic_set
from bench.models import build, describe_graph
from bench.quantization import agreement
from classifier.inference import OnnxClassifier, ThreadOptions
from classifier.model import GraphSpec, Manifest
from classifier.selection import MIN_AGREEMENT, NEAR_TIE, select_graph

NAME = "graph_variants"
# The served recipe first (the manifest's ``graph``), then the alternatives in the order
# ``--alternatives all`` writes them.
VARIANTS = (
    "int8-convmm",
    "int8-convmm-u8u8",
    "int8-convmm-reduce-range",
    "int8-convmm-perchannel",
    "int8-convmm-static",
)
THREADS = (1, 2)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.clips, args.seconds = 2, 3, 1.0
    return args


def auto_pick(
    medians: dict[str, float], agreements: dict[str, float], floor: bool
) -> dict[str, Any]:
    """What classifier.selection.select_graph chooses from these timings and agreements."""

    def spec(variant: str) -> GraphSpec:
        return GraphSpec(
            file=f"{variant}.onnx",
            sha256="0" * 64,
            variant=variant,
            agreement=agreements[variant] if floor else 1.0,
        )

    manifest = Manifest(
        name="stand-in",
        version="bench",
        labels=("a", "b"),
        sample_rate=16000,
        graph=spec(VARIANTS[0]),
        alternatives=tuple(spec(v) for v in VARIANTS[1:]),
    )
    chosen = select_graph(manifest, "auto", lambda graph: medians[graph.variant])
    return {"variant": chosen.name, "by": chosen.by, "reason": chosen.reason}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    size = "tiny" if args.quick else "base"
    bench = build(size, args.work_dir)
    audio = speech_of_length(args.seconds)
    clips = synthetic_set(args.clips)
    fp32 = OnnxClassifier(bench.model_dir("fp32"), ThreadOptions(1))
    reference = [fp32.logits(c) for c in clips]
    del fp32
    rows: dict[str, dict[str, Any]] = {}
    cases: dict[str, Callable[[], object]] = {}
    sessions = []
    for variant in VARIANTS:
        model_dir = bench.model_dir(variant)
        print(f"loading {variant}", flush=True)
        one = OnnxClassifier(model_dir, ThreadOptions(1))
        rows[variant] = {
            "variant": variant,
            "sha256": one.graph.sha256,
            "graph": describe_graph(model_dir / "model.onnx"),
            "agreement_vs_fp32": agreement(reference, [one.logits(c) for c in clips]),
        }
        for threads in THREADS:
            clf = one if threads == 1 else OnnxClassifier(model_dir, ThreadOptions(threads))
            sessions.append(clf)
            cases[f"{variant}@{threads}"] = partial(clf.predict, audio)
    print(f"timing {len(cases)} cases x {args.rounds} rounds, interleaved", flush=True)
    times = report.interleaved(cases, args.rounds, warmup=2)
    for variant, row in rows.items():
        row["ms_by_threads"] = {
            str(t): report.summary([s * 1000 for s in times[f"{variant}@{t}"]]) for t in THREADS
        }
    agreements = {v: rows[v]["agreement_vs_fp32"]["top1_agreement"] for v in VARIANTS}
    picks = {}
    for threads in THREADS:
        medians = {v: rows[v]["ms_by_threads"][str(threads)]["median"] for v in VARIANTS}
        picks[str(threads)] = {
            "with_agreement_floor": auto_pick(medians, agreements, floor=True),
            "speed_only": auto_pick(medians, agreements, floor=False),
        }
    return {
        "model": "wav2vec2-tiny (quick)"
        if args.quick
        else "wav2vec2-base, 6 classes, random weights",
        "segment_seconds": args.seconds,
        "threads": list(THREADS),
        "rounds": args.rounds,
        "clips": args.clips,
        "rule": f"fastest median; within {NEAR_TIE:.0%} of it, the earlier in manifest order; "
        f"alternatives below {MIN_AGREEMENT} agreement left out",
        "agreement_note": (
            "random weights: logits nearly flat, so top-1 agreement is a rounding stress "
            "test; a release measures the real figure on its evaluation clips"
        ),
        "rows": list(rows.values()),
        "auto_pick_by_threads": picks,
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, ax = report.figure(8, 4.0)
    rows = data["rows"]
    width = 0.8 / len(THREADS)
    for i, threads in enumerate(THREADS):
        stats = [r["ms_by_threads"][str(threads)] for r in rows]
        med = [s["median"] for s in stats]
        err = [
            [m - s["p10"] for m, s in zip(med, stats, strict=True)],
            [s["p90"] - m for m, s in zip(med, stats, strict=True)],
        ]
        xs = [j + i * width for j in range(len(rows))]
        ax.bar(xs, med, width, yerr=err, capsize=2, label=f"{threads} thread(s)")
    ax.set_xticks([j + width * (len(THREADS) - 1) / 2 for j in range(len(rows))])
    ax.set_xticklabels([r["variant"] for r in rows], fontsize=8)
    ax.set_ylabel(f"ms per {data['segment_seconds']:g} s segment (median, p10-p90)")
    ax.legend(fontsize=8)
    pick = data["auto_pick_by_threads"]["1"]["with_agreement_floor"]["variant"]
    ax.set_title(f"int8 graph variants, {data['model']}; auto picks {pick}")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
