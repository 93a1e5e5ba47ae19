"""Tiny random-initialised wav2vec2 classifiers, for tests and smoke benchmarks."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

from classifier.model import CANONICAL_LABELS, Manifest
from training.models.export import write_model_dir


def tiny_config(labels: tuple[str, ...] = CANONICAL_LABELS) -> Wav2Vec2Config:
    return Wav2Vec2Config(  # type: ignore[call-arg]
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        classifier_proj_size=16,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        mask_time_prob=0.0,
    )


def tiny_model(
    labels: tuple[str, ...] = CANONICAL_LABELS, seed: int = 0
) -> Wav2Vec2ForSequenceClassification:
    torch.manual_seed(seed)
    model = Wav2Vec2ForSequenceClassification(tiny_config(labels))
    model.eval()  # type: ignore[no-untyped-call]
    return model


def build_tiny_model_dir(
    out_dir: Path,
    labels: tuple[str, ...] = CANONICAL_LABELS,
    seed: int = 0,
    precision: str = "int8",
    name: str = "tiny-test",
) -> Manifest:
    return write_model_dir(
        tiny_model(labels, seed),
        out_dir,
        name=name,
        labels=list(labels),
        precision=precision,
        provenance={"base": "random init (tests)", "seed": seed},
    )
