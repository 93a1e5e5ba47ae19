"""Feature-encoder convolutions rewritten as matrix products, so int8 MatMul kernels run them.

ONNX Runtime's ConvInteger (what ``quantize_dynamic`` makes of a Conv) is much slower here
than its float Conv, and a float Conv is not quantised at all. wav2vec2's encoder layers 2-7
have small kernels (3 or 2) with stride 2, so each is exactly: gather the k strided shifts
of the input, concatenate them on the channel axis, multiply by the (k * C_in, C_out)
weight. Exported that way they become MatMul nodes, which dynamic quantisation turns into
the fast MatMulInteger path. The first layer (kernel 10 over the raw waveform, one input
channel) is left as it is: it sees the waveform itself, where int8 costs the most accuracy.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


class ConvAsMatMul(torch.nn.Module):
    """``activation(norm(conv1d(x)))`` for x of shape (batch, channels, time), as a MatMul.

    ``norm`` is an optional LayerNorm over channels (wav2vec2's ``feat_extract_norm="layer"``
    layers); it runs in the (batch, time, channels) layout the product leaves anyway.
    """

    def __init__(
        self,
        conv: torch.nn.Conv1d,
        activation: torch.nn.Module,
        norm: torch.nn.LayerNorm | None = None,
    ) -> None:
        super().__init__()
        if conv.groups != 1 or conv.padding != (0,) or conv.dilation != (1,):
            raise ValueError(f"only plain unpadded convolutions can be rewritten, got {conv}")
        self.kernel = int(conv.kernel_size[0])
        self.stride = int(conv.stride[0])
        out_channels, in_channels, kernel = conv.weight.shape
        # rows ordered (shift, input channel) to match the concatenation in forward
        weight = conv.weight.detach().permute(2, 1, 0).reshape(kernel * in_channels, out_channels)
        self.weight = torch.nn.Parameter(weight.contiguous())
        self.bias = None if conv.bias is None else torch.nn.Parameter(conv.bias.detach().clone())
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.transpose(1, 2)  # (batch, time, channels)
        length = (frames.shape[1] - self.kernel) // self.stride + 1
        span = self.stride * (length - 1) + 1
        shifts = [frames[:, i : i + span : self.stride, :] for i in range(self.kernel)]
        y = torch.cat(shifts, dim=-1) @ self.weight
        if self.bias is not None:
            y = y + self.bias
        if self.norm is not None:
            y = self.norm(y)
        activated: torch.Tensor = self.activation(y)
        return activated.transpose(1, 2)


def conv_layers(model: Any) -> Any:
    """The feature encoder's conv layers, or ValueError naming why the model has none."""
    try:
        return model.wav2vec2.feature_extractor.conv_layers
    except AttributeError:
        base = getattr(model, "base_model", None)
        layers = getattr(getattr(base, "feature_extractor", None), "conv_layers", None)
        if layers is None:
            raise ValueError(
                f"{type(model).__name__} has no wav2vec2-style convolutional feature encoder"
            ) from None
        return layers


def _rewrite_layer(index: int, layer: Any) -> ConvAsMatMul:
    norm = getattr(layer, "layer_norm", None)
    if norm is not None and not isinstance(norm, torch.nn.LayerNorm):
        raise ValueError(f"conv layer {index} has a {type(norm).__name__}, not a LayerNorm")
    return ConvAsMatMul(layer.conv, layer.activation, norm)


def rewrite_feature_encoder(model: Any) -> Any:
    """A copy of ``model`` whose conv layers after the first are MatMuls; ``model`` is untouched."""
    rewritten = copy.deepcopy(model)
    layers = conv_layers(rewritten)
    for index in range(1, len(layers)):
        layers[index] = _rewrite_layer(index, layers[index])
    return rewritten
