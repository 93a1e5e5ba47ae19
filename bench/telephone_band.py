"""The bundled model on telephone-band audio: its held-out and independent test sets as a
phone call would carry them, against the same clips as rendered.

Each clip (16 kHz, exactly as ``training.release.default_model`` renders and reads it) goes
through a narrowband phone channel (``training/synthetic/telephone.py``, the one the build
measures and the training corpus is augmented with): a 300–3400 Hz band-pass (4th-order
Butterworth, causal), resampling to 8 kHz (soxr), G.711 μ-law encoding (nearest code,
``pcm.g711.encode``) and decoding (``pcm.g711``, as the server does), and resampling back
to 16 kHz, the model's rate. A-law is measured too. All figures are deterministic counts
(top-1 accuracy).

    .venv/bin/python -m bench.telephone_band [--quick] [--limit N] [--work-dir DIR]

The clips are rendered once into ``--work-dir``/telephone_band and reused.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bench import report
from training.corpus.data import Example, load_audio
from training.models.evaluate import OnnxPredictor
from training.release.default_model import Recipe
from training.synthetic.synth import babble_bank, partition, plan_clip, render
from training.synthetic.telephone import DESCRIPTION, RATE_HZ, Audio, channel

NAME = "telephone_band"
CONDITIONS = ("wideband", "phone_mulaw", "phone_alaw")


def render_sets(work: Path, test_clips: int, independent_clips: int) -> dict[str, list[Example]]:
    """The held-out test split of the bundled model's corpus and the independent set, as WAV
    files in ``work`` (rendered once, then reused)."""
    from training.synthetic.independent import render as render_independent

    recipe = Recipe()
    config = recipe.corpus()
    part = partition(config)
    bank = babble_bank("test", config, part)
    sets: dict[str, list[Example]] = {"held_out": [], "independent": []}
    for index in range(test_clips):
        spec = plan_clip("test", index, config, part)
        path = work / "test" / f"{index:05d}.wav"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), render(spec, config, bank), RATE_HZ, subtype="PCM_16")
        sets["held_out"].append(Example(path, spec.emotion, spec.speaker, "test", ""))
    todo = [
        i for i in range(independent_clips) if not (work / "independent" / f"{i:05d}.wav").is_file()
    ]
    (work / "independent").mkdir(parents=True, exist_ok=True)
    for utt, audio in render_independent(recipe.seed, todo):
        sf.write(
            str(work / "independent" / f"{utt.index:05d}.wav"), audio, RATE_HZ, subtype="PCM_16"
        )
    from training.synthetic.independent import plan_utterance

    for index in range(independent_clips):
        utt = plan_utterance(recipe.seed, index)
        path = work / "independent" / f"{index:05d}.wav"
        sets["independent"].append(Example(path, utt.emotion, utt.speaker.name, "test", ""))
    return sets


def accuracy(
    predictor: OnnxPredictor, examples: list[Example], through: Callable[[Audio], Audio] | None
) -> float:
    ids = {label: i for i, label in enumerate(predictor.labels)}
    right = 0
    for ex in examples:
        audio = load_audio(ex.path, RATE_HZ)
        if through is not None:
            audio = through(audio)
        right += int(np.argmax(predictor.logits(audio)) == ids[ex.label])
    return right / len(examples)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--limit", type=int, default=0, help="clips per set (0: all)")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit = 6
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    recipe = Recipe()
    started = time.monotonic()
    sets = render_sets(
        args.work_dir / NAME,
        args.limit or recipe.test_clips,
        args.limit or recipe.independent_clips,
    )
    predictor = OnnxPredictor(args.model)
    conditions: dict[str, Callable[[Audio], Audio] | None] = {
        "wideband": None,
        "phone_mulaw": channel("mulaw"),
        "phone_alaw": channel("alaw"),
    }
    rows = []
    for name, examples in sets.items():
        row: dict[str, Any] = {"set": name, "clips": len(examples)}
        row |= {c: round(accuracy(predictor, examples, f), 4) for c, f in conditions.items()}
        row["drop_points_mulaw"] = round(100 * (row["wideband"] - row["phone_mulaw"]), 1)
        row["drop_points_alaw"] = round(100 * (row["wideband"] - row["phone_alaw"]), 1)
        rows.append(row)
    return {
        "model": predictor.classifier.manifest.version,
        "channel": DESCRIPTION,
        "rows": rows,
        "seconds": round(time.monotonic() - started),
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, axes = report.figure(6.0, 3.5)
    width = 0.25
    for i, condition in enumerate(CONDITIONS):
        xs = [j + (i - 1) * width for j in range(len(data["rows"]))]
        axes.bar(xs, [100 * row[condition] for row in data["rows"]], width, label=condition)
    axes.set_xticks(range(len(data["rows"])), [row["set"] for row in data["rows"]])
    axes.set_ylabel("top-1 accuracy (%)")
    axes.set_ylim(0, 100)
    axes.legend(loc="lower right")
    axes.set_title("The bundled model on telephone-band audio")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)
    for row in data["rows"]:
        print(
            f"{row['set']:12} ({row['clips']} clips): wideband {row['wideband']:.3f}, "
            f"μ-law {row['phone_mulaw']:.3f}, A-law {row['phone_alaw']:.3f}"
        )


if __name__ == "__main__":
    main()
