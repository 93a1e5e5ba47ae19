"""MODEL_CARD.md for the bundled default model, written from its manifest's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.model import Manifest

CARD_FILE = "MODEL_CARD.md"


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f} %" if isinstance(value, int | float) else "n/a"


def _stages(stages: list[dict[str, Any]]) -> str:
    parts = [
        f"{s['epochs']} epochs at peak learning rate {s['learning_rate']:g}"
        + (" from random initialisation" if i == 0 else " continuing from the previous run")
        for i, s in enumerate(stages)
    ]
    return ", then ".join(parts)


def _results_table(metrics: dict[str, Any]) -> list[str]:
    white = metrics.get("accuracy_by_snr_db", {})
    mixed = metrics.get("synthetic_noise_by_snr_db", {})
    rows = [
        "| test condition | accuracy | macro-F1 |",
        "|---|---|---|",
        f"| clean | {_pct(metrics.get('accuracy'))} | {_pct(metrics.get('macro_f1'))} |",
    ]
    for snr, result in mixed.items():
        rows.append(
            f"| {snr} dB SNR, corpus noise (white, pink, babble, hum) "
            f"| {_pct(result['accuracy'])} | {_pct(result['macro_f1'])} |"
        )
    for snr, accuracy in white.items():
        if snr != "clean":
            rows.append(
                f"| {snr} dB SNR, white noise (`emostream evaluate`) | {_pct(accuracy)} | |"
            )
    return rows


def _per_class(metrics: dict[str, Any]) -> list[str]:
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return []
    rows = ["| emotion | precision | recall | F1 |", "|---|---|---|---|"]
    for label, m in per_class.items():
        rows.append(f"| {label} | {_pct(m['precision'])} | {_pct(m['recall'])} | {_pct(m['f1'])} |")
    return ["", "Per emotion (clean test set):", "", *rows]


def render_card(manifest: Manifest, per_class: dict[str, Any], size_bytes: int) -> str:
    metrics, prov = manifest.metrics, manifest.provenance
    recipe = prov.get("recipe", {})
    agreement = metrics.get("int8_vs_fp32", {})
    lines = [
        f"# {manifest.name} — version {manifest.version}",
        "",
        "The model bundled with emostream so that the service works offline on a fresh machine.",
        "**It has been trained and tested only on synthetic speech (espeak-ng with emotion",
        "prosody rules). It has not been validated on human speech, and it should not be",
        "expected to recognise emotions in real voices.** Replace it for any real use (below).",
        "",
        "## What it is",
        "",
        f"- Architecture: {prov.get('architecture', 'wav2vec2 classifier')}, "
        f"{prov.get('parameters', 0) / 1e6:.2f} M parameters; no pretrained weights.",
        f"- Graph: {manifest.graph.precision} ONNX, {size_bytes / 1e6:.1f} MB, "
        f"{manifest.sample_rate} Hz mono input, labels {', '.join(manifest.labels)}.",
        f"- Training: {_stages(recipe.get('stages', []))}; batch {recipe.get('batch_size')}, "
        f"random {recipe.get('max_seconds')} s crops, noise augmentation; "
        f"{prov.get('train_seconds', 0) / 60:.0f} min in all on 2 shared CPU cores.",
        f"- Rebuild: `{prov.get('command')}` (regenerates the corpus with seed "
        f"{recipe.get('seed')}, trains through `emostream train`, exports through "
        "`emostream export --precision int8`).",
        "",
        "## Training data",
        "",
        f"A synthetic corpus ({recipe.get('train_clips')} training, {recipe.get('val_clips')} "
        f"validation and {recipe.get('test_clips')} test clips of 1–3 s) made by "
        "`training/synth.py`: espeak-ng voices (language accents × voice variants) reading",
        "emotionally neutral sentences, with each emotion rendered through prosody rules after",
        "Murray & Arnott (1993) — pitch level and range, speech rate, intensity, pitch contour,",
        "voice quality (tremor, breathiness, creak, spectral tilt) — plus random background noise",
        "(0–30 dB SNR), room echo and level changes. The validation and test sets use voice",
        "variants *and* sentences that never occur in training. Details and the rules:",
        "docs/synthetic-corpus.md.",
        "",
        "## Results on held-out synthetic voices and sentences",
        "",
        *_results_table(metrics),
        *_per_class({"per_class": per_class}),
        "",
        f"int8 vs fp32 agreement (same clean test clips): {_pct(agreement.get('top1_agreement'))}"
        " top-1.",
        "",
        "These numbers say how well the model separates the prosody rules of the generator on",
        "voices and sentences it has not seen. They say nothing about real emotional speech.",
        "",
        "## Replacing it with a real model",
        "",
        "- Train on real emotional-speech corpora: `emostream prepare` the corpora, then",
        "  `emostream train --base facebook/wav2vec2-base ...` and `emostream export` (see",
        "  docs/training.md).",
        "- Or import a published checkpoint, e.g. `emostream import",
        "  superb/wav2vec2-base-superb-er --out models/superb-er` (needs the model hub, or a",
        "  local copy of the checkpoint directory).",
        "- Point the server at it with `EMOSTREAM_MODEL_DIR=models/superb-er` or `emostream serve",
        "  --model models/superb-er`.",
        "",
    ]
    return "\n".join(lines)


def write_card(model_dir: Path, manifest: Manifest, per_class: dict[str, Any]) -> Path:
    size = (model_dir / manifest.graph.file).stat().st_size
    path = model_dir / CARD_FILE
    path.write_text(render_card(manifest, per_class, size), encoding="utf-8")
    return path
