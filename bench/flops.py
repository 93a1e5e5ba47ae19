"""Analytic FLOP count of a wav2vec2 sequence classifier for one segment.

Counts multiply-adds of the convolutions and matrix products (2 FLOPs each), from the
config's shapes; norms, activations and softmax are left out (well under 1 % here).
``torch_flops`` cross-checks the count with PyTorch's FlopCounterMode on the real module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Flops:
    feature_encoder: float
    feature_projection: float
    positional_conv: float
    transformer: float
    classifier: float
    frames: int

    @property
    def total(self) -> float:
        return (
            self.feature_encoder
            + self.feature_projection
            + self.positional_conv
            + self.transformer
            + self.classifier
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "feature_encoder": self.feature_encoder,
            "feature_projection": self.feature_projection,
            "positional_conv": self.positional_conv,
            "transformer": self.transformer,
            "classifier": self.classifier,
            "total": self.total,
            "frames": self.frames,
        }


def conv_lengths(samples: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> list[int]:
    lengths = []
    length = samples
    for kernel, stride in zip(kernels, strides, strict=True):
        length = (length - kernel) // stride + 1
        if length < 1:
            raise ValueError(f"{samples} samples are too short for the feature encoder")
        lengths.append(length)
    return lengths


def count(config: Any, samples: int) -> Flops:
    """FLOPs of one forward pass over ``samples`` samples (batch 1) for a Wav2Vec2Config."""
    dims = tuple(config.conv_dim)
    kernels = tuple(config.conv_kernel)
    lengths = conv_lengths(samples, kernels, tuple(config.conv_stride))
    encoder = 0.0
    in_channels = 1
    for out_channels, kernel, length in zip(dims, kernels, lengths, strict=True):
        encoder += 2.0 * length * out_channels * in_channels * kernel
        in_channels = out_channels
    frames = lengths[-1]
    hidden = config.hidden_size
    projection = 2.0 * frames * dims[-1] * hidden
    groups = config.num_conv_pos_embedding_groups
    positional = 2.0 * frames * hidden * (hidden // groups) * config.num_conv_pos_embeddings
    per_layer = (
        2.0 * frames * hidden * hidden * 4  # q, k, v and output projections
        + 2.0 * frames * frames * hidden * 2  # scores and weighted sum over all heads
        + 2.0 * frames * hidden * config.intermediate_size * 2  # feed-forward in and out
    )
    transformer = per_layer * config.num_hidden_layers
    proj = config.classifier_proj_size
    classifier = 2.0 * frames * hidden * proj + 2.0 * proj * config.num_labels
    return Flops(encoder, projection, positional, transformer, classifier, frames)


def torch_flops(model: Any, samples: int) -> float:
    """FLOPs PyTorch's FlopCounterMode records for one forward pass (cross-check)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(input_values=torch.zeros(1, samples))
    return float(counter.get_total_flops())
