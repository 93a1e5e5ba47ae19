"""Per-segment cost of served model directories on one thread, side by side.

    python -m training.models.cost MODEL_DIR [MODEL_DIR ...] [--seconds 3] [--rounds 30]

Each round classifies one segment of synthetic speech (espeak-ng if installed, else a
harmonic tone) through ``classifier.inference.OnnxClassifier.predict`` — the served path:
normalisation, ONNX Runtime with one intra-op thread, softmax — once per model, in an
interleaved order, after a warm-up. Prints the median and p10/p90 per model in
milliseconds and each model's median against the first one's. Timings are only
meaningful on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from classifier.inference import OnnxClassifier, ThreadOptions
from classifier.model import ModelError
from pcm.format import PIPELINE_RATE_HZ

SAMPLE_RATE_HZ = PIPELINE_RATE_HZ


def speech(seconds: float) -> npt.NDArray[np.float32]:
    """``seconds`` of audio: espeak-ng reading a sentence (repeated to length), or a tone."""
    samples = int(seconds * SAMPLE_RATE_HZ)
    if shutil.which("espeak-ng") is not None:
        import io

        import soundfile as sf
        import soxr

        text = "The parcel arrived on Tuesday afternoon while everyone was out at work"
        wav = subprocess.run(
            ["espeak-ng", "--stdout", text], check=True, capture_output=True, timeout=60
        ).stdout
        audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
        audio = soxr.resample(audio, rate, SAMPLE_RATE_HZ).astype(np.float32)
        return np.resize(audio, samples)
    t = np.arange(samples) / SAMPLE_RATE_HZ
    tone = np.zeros(samples)
    for k in range(1, 8):
        tone += np.sin(2 * np.pi * 140 * k * t) / k
    return (0.1 * tone).astype(np.float32)


def measure(
    model_dirs: Sequence[Path], seconds: float, rounds: int, warmup: int = 3
) -> dict[str, dict[str, float]]:
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if not 0.1 <= seconds <= 60:
        raise ValueError(f"seconds must be from 0.1 to 60, got {seconds}")
    classifiers = [OnnxClassifier(d, ThreadOptions(intra_op_threads=1)) for d in model_dirs]
    audio = speech(seconds)
    for classifier in classifiers:
        for _ in range(warmup):
            classifier.predict(audio)
    times: list[list[float]] = [[] for _ in classifiers]
    for round_ in range(rounds):
        order = range(len(classifiers)) if round_ % 2 == 0 else reversed(range(len(classifiers)))
        for i in order:
            started = time.perf_counter()
            classifiers[i].predict(audio)
            times[i].append(1000 * (time.perf_counter() - started))
    first = float(np.median(times[0]))
    results = {}
    for directory, rows in zip(model_dirs, times, strict=True):
        median = float(np.median(rows))
        results[str(directory)] = {
            "median_ms": median,
            "p10_ms": float(np.percentile(rows, 10)),
            "p90_ms": float(np.percentile(rows, 90)),
            "vs_first": median / first,
        }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", type=Path, nargs="+", help="served model directories")
    parser.add_argument("--seconds", type=float, default=3.0, help="segment length")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="3 rounds (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    try:
        results = measure(args.models, args.seconds, 3 if args.quick else args.rounds)
    except (ModelError, ValueError) as exc:
        parser.error(str(exc))
    print(f"one thread, {args.seconds:g} s segment, median (p10-p90) ms, median vs the first:")
    for name, row in results.items():
        print(
            f"  {name}: {row['median_ms']:.2f} ({row['p10_ms']:.2f}-{row['p90_ms']:.2f}) "
            f"x{row['vs_first']:.2f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
