"""Rebuild the bundled default model from scratch: synthetic corpus, training, int8 export, card.

    python -m training.default_model --out models/default

Every step goes through the same commands a real model uses (`emostream train` with
``--from-config``, `emostream export --precision int8 --eval`), run in this process. Work files
(corpus, checkpoint, reports) go to ``--work``; with ``--reuse`` a finished step found there
is not redone. See docs/synthetic-corpus.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Wav2Vec2Config

from server.model import CANONICAL_LABELS, Manifest, read_manifest, write_manifest
from training.default_card import write_card
from training.synth import TEST_SNRS_DB, CorpusConfig, write_corpus

MODEL_NAME = "emostream-synthetic-default"


@dataclass(frozen=True)
class Stage:
    """One `emostream train` run: the first starts from the config, later ones from the last."""

    epochs: int
    learning_rate: float
    warmup_ratio: float


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the default model, in one place."""

    seed: int = 0
    train_clips: int = 4200
    val_clips: int = 600
    test_clips: int = 600
    stages: tuple[Stage, ...] = (Stage(3, 1e-3, 0.06), Stage(4, 8e-4, 0.05), Stage(3, 5e-4, 0.05))
    batch_size: int = 8
    max_seconds: float = 1.5
    patience: int = 3
    torch_threads: int = 2

    def corpus(self) -> CorpusConfig:
        clips = {"train": self.train_clips, "val": self.val_clips, "test": self.test_clips}
        return CorpusConfig(seed=self.seed, clips=clips)

    def train_args(self, stage: Stage, data: Path, source: list[str], out: Path) -> list[str]:
        return [
            "train", "--data", str(data), *source, "--out", str(out),
            "--unfreeze-feature-encoder", "--epochs", str(stage.epochs),
            "--batch-size", str(self.batch_size), "--lr", str(stage.learning_rate),
            "--warmup-ratio", str(stage.warmup_ratio), "--max-seconds", str(self.max_seconds),
            "--patience", str(self.patience), "--seed", str(self.seed), "--device", "cpu",
            "--no-progress",
        ]  # fmt: skip


def model_config(labels: Sequence[str] = CANONICAL_LABELS) -> Wav2Vec2Config:
    """A small wav2vec2 classifier: a 5-layer conv encoder (320x downsampling, 50 frames/s)
    and a 3-layer pre-norm Transformer of width 128; about 0.6 M parameters."""
    return Wav2Vec2Config(  # type: ignore[call-arg]
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=256,
        conv_dim=(32, 64, 96, 128),
        conv_kernel=(10, 8, 8, 4),
        conv_stride=(5, 4, 4, 4),
        feat_extract_norm="group",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        classifier_proj_size=64,
        mask_time_prob=0.05,
        mask_time_length=5,
        layerdrop=0.0,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.1,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


def emostream(args: list[str]) -> None:
    """Run one `emostream` command in this process; a non-zero exit is an error."""
    from server.cli import main as cli_main

    print("$ emostream " + " ".join(args), flush=True)
    code = cli_main(args)
    if code != 0:
        raise SystemExit(f"`emostream {args[0]}` failed with exit code {code}")


def build_corpus(work: Path, recipe: Recipe, reuse: bool) -> Path:
    corpus = work / "corpus"
    split_csv = corpus / "split.csv"
    if reuse and split_csv.is_file():
        print(f"reusing corpus {corpus}", flush=True)
        return split_csv
    shutil.rmtree(corpus, ignore_errors=True)
    return write_corpus(corpus, recipe.corpus())


def train(work: Path, split_csv: Path, recipe: Recipe, reuse: bool) -> tuple[Path, float]:
    """Run (or reuse) every stage; returns the last checkpoint and the total training seconds."""
    config_dir = work / "config"
    model_config().save_pretrained(config_dir)
    source = ["--from-config", str(config_dir / "config.json")]
    total_seconds = 0.0
    checkpoint = work / "stage1"
    for number, stage in enumerate(recipe.stages, start=1):
        checkpoint = work / f"stage{number}"
        total_seconds += train_stage(recipe, stage, split_csv, source, checkpoint, reuse)
        source = ["--init", str(checkpoint)]
    return checkpoint, total_seconds


def train_stage(
    recipe: Recipe, stage: Stage, split_csv: Path, source: list[str], out: Path, reuse: bool
) -> float:
    timing = out / "train_seconds.json"
    if reuse and timing.is_file():
        print(f"reusing checkpoint {out}", flush=True)
        return float(json.loads(timing.read_text(encoding="utf-8"))["seconds"])
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    emostream(recipe.train_args(stage, split_csv, source, out))
    seconds = time.monotonic() - started
    timing.write_text(json.dumps({"seconds": seconds}) + "\n", encoding="utf-8")
    return seconds


def export(checkpoint: Path, split_csv: Path, out: Path) -> dict[str, Any]:
    """`emostream export --precision int8 --eval` (the same function); returns per-class metrics."""
    from training.release import ReleaseOptions, release

    options = ReleaseOptions(precision="int8", eval_data=split_csv, name=MODEL_NAME, force=True)
    print(f"$ emostream export {checkpoint} --out {out} --precision int8 --eval {split_csv}")
    released = release(checkpoint, out, options)
    if released.evaluation is None:
        raise SystemExit("export evaluated nothing: the corpus has no test split")
    return dict(released.evaluation.clean["per_class"])


def evaluate_noisy(model_dir: Path, corpus: Path) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 of the served graph on the corpus's noisy test copies."""
    from training.data import read_split
    from training.evaluate import OnnxPredictor, evaluate

    predictor = OnnxPredictor(model_dir)
    results = {}
    for snr in TEST_SNRS_DB:
        examples = read_split(corpus / f"test_snr{snr}.csv", labels=predictor.labels)
        clean = evaluate(predictor, examples, snr_levels_db=()).clean
        results[str(snr)] = {"accuracy": clean["accuracy"], "macro_f1": clean["macro_f1"]}
    return results


def record(
    model_dir: Path, recipe: Recipe, noisy: dict[str, dict[str, float]], train_seconds: float
) -> Manifest:
    """Add the synthetic-noise results and the recipe to the manifest (the graph is unchanged)."""
    manifest = read_manifest(model_dir)
    metrics = {**manifest.metrics, "synthetic_noise_by_snr_db": noisy}
    provenance = {
        **manifest.provenance,
        "data": "synthetic emotional speech (training/synth.py), see docs/synthetic-corpus.md",
        "recipe": asdict(recipe),
        "architecture": "Wav2Vec2ForSequenceClassification from random init",
        "parameters": parameter_count(),
        "train_seconds": round(train_seconds),
        "command": "python -m training.default_model --out models/default",
        "validated_on_human_speech": False,
    }
    updated = manifest.model_copy(
        update={"metrics": metrics, "provenance": provenance, "demo": True}
    )
    write_manifest(model_dir, updated)
    return updated


def parameter_count() -> int:
    from transformers import Wav2Vec2ForSequenceClassification

    model = Wav2Vec2ForSequenceClassification(model_config())
    return sum(p.numel() for p in model.parameters())


def configure_torch(threads: int) -> None:
    torch.set_num_threads(threads)
    # Randomly initialised models produce denormal floats that make CPU training ~10x slower.
    torch.set_flush_denormal(True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models/default"), help="model directory")
    parser.add_argument("--work", type=Path, default=Path("/tmp/emostream-default"))
    parser.add_argument("--reuse", action="store_true", help="keep a corpus/checkpoint in --work")
    args = parser.parse_args(argv)
    recipe = Recipe()
    configure_torch(recipe.torch_threads)
    args.work.mkdir(parents=True, exist_ok=True)
    split_csv = build_corpus(args.work, recipe, args.reuse)
    checkpoint, train_seconds = train(args.work, split_csv, recipe, args.reuse)
    print(f"trained in {train_seconds / 60:.1f} min: {checkpoint}", flush=True)
    per_class = export(checkpoint, split_csv, args.out)
    noisy = evaluate_noisy(args.out, split_csv.parent)
    manifest = record(args.out, recipe, noisy, train_seconds)
    card = write_card(args.out, manifest, per_class)
    print(f"wrote {args.out} ({manifest.version}); card: {card}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
