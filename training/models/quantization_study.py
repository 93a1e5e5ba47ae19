"""Compare the int8 recipes on one checkpoint and one labelled set (numbers in docs/training.md).

    python -m training.models.quantization_study CHECKPOINT --data SPLIT.csv [--split test] [--limit N]

For every recipe in training.models.quantization.QUANTIZATIONS: graph size, top-1 agreement with
fp32, max/mean absolute logit error, and accuracy, on clean clips and with white noise at
10 dB SNR, all through classifier.inference.OnnxClassifier.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.corpus.data import Example, load_audio, read_split, select, zero_mean_unit_var
from training.models.evaluate import OnnxPredictor, collect_logits
from training.models.export import export_for, export_fp32, package_graph
from training.models.finetune import load_checkpoint, load_feature_extractor, model_labels
from training.models.scoring import agreement
from training.models.quantization import MAX_CALIBRATION_CLIPS, QUANTIZATIONS, quantize_int8

NOISY_SNR_DB = 10.0


def study(checkpoint: Path, examples: Sequence[Example], seed: int = 0) -> list[dict[str, Any]]:
    model = load_checkpoint(checkpoint)
    extractor = load_feature_extractor(checkpoint)
    labels = list(model_labels(model))
    truth = np.array([labels.index(ex.label) for ex in examples])
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rate_hz = int(extractor.sampling_rate)
        fp32_graph = export_fp32(model, tmp / "fp32.onnx", rate_hz)

        def measure(graph: Path, name: str) -> dict[str, Any]:
            package_graph(
                graph,
                tmp / name,
                name=name,
                labels=labels,
                precision="fp32" if name == "fp32" else "int8",
                sample_rate=int(extractor.sampling_rate),
                normalize=bool(extractor.do_normalize),
            )
            predictor = OnnxPredictor(tmp / name)
            return {
                "recipe": name,
                "size_bytes": graph.stat().st_size,
                "clean": collect_logits(predictor, examples, None, seed),
                "noisy": collect_logits(predictor, examples, NOISY_SNR_DB, seed),
            }

        reference = measure(fp32_graph, "fp32")
        rows.append(_row(reference, reference, truth))
        for name, quant in QUANTIZATIONS.items():
            source = fp32_graph
            if quant.conv_as_matmul:
                source = export_for(model, tmp / f"fp32-{name}.onnx", quant, rate_hz)
            clips = calibration(examples, rate_hz, bool(extractor.do_normalize)) if quant.static else []
            int8 = quantize_int8(source, tmp / f"{name}.onnx", name, clips)
            rows.append(_row(measure(int8, name), reference, truth))
    return rows


def calibration(examples: Sequence[Example], rate_hz: int, normalize: bool) -> list[np.ndarray]:
    """A static recipe's calibration clips: the studied clips themselves (so its agreement
    figure here is slightly optimistic), normalised as the server normalises."""
    audio = [load_audio(e.path, rate_hz) for e in examples[:MAX_CALIBRATION_CLIPS]]
    clips = [np.pad(a, (0, max(0, 400 - a.size))) for a in audio]
    return [zero_mean_unit_var(c) if normalize else c for c in clips]


def _row(result: dict[str, Any], reference: dict[str, Any], truth: np.ndarray) -> dict[str, Any]:
    row: dict[str, Any] = {"recipe": result["recipe"], "size_bytes": result["size_bytes"]}
    for condition in ("clean", "noisy"):
        logits = result[condition]
        row[condition] = {
            "accuracy": float(np.mean(logits.argmax(axis=1) == truth)),
            **agreement(reference[condition], logits),
        }
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| recipe | MB | accuracy clean / 10 dB | top-1 agreement clean / 10 dB "
        "| max abs logit error clean / 10 dB | mean abs logit error clean / 10 dB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, n = r["clean"], r["noisy"]
        size_mb = r["size_bytes"] / 1e6
        lines.append(
            f"| {r['recipe']} | {size_mb:.1f} | {c['accuracy']:.3f} / {n['accuracy']:.3f} "
            f"| {c['top1_agreement']:.3f} / {n['top1_agreement']:.3f} "
            f"| {c['max_abs_logit_error']:.3f} / {n['max_abs_logit_error']:.3f} "
            f"| {c['mean_abs_logit_error']:.4f} / {n['mean_abs_logit_error']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", choices=("train", "val", "test"), default="test")
    parser.add_argument("--limit", type=int, help="use the first N clips of the split")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    examples = select(read_split(args.data), args.split)[: args.limit]
    rows = study(args.checkpoint, examples)
    print(f"{len(examples)} clips of {args.data} ({args.split})")
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
