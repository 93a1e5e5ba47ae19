"""int8 recipes for ONNX Runtime's dynamic quantisation (no torch needed to name or apply them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Quantization:
    """Which operators ``quantize_dynamic`` turns into int8, and whether to spare the first conv.

    ``conv_as_matmul``: the feature encoder's convolutions after the first are exported as
    MatMul (training.models.convmm) before quantising, so they run on int8 kernels too.
    ``weight_type``: the weights' int8 type (activations are always uint8 in dynamic
    quantisation: ``int8`` gives ONNX Runtime's u8s8 kernels, ``uint8`` its u8u8 ones,
    which some CPUs without VNNI run faster). ``reduce_range``: 7-bit weights, which avoid
    the saturation of the u8s8 AVX2 path without VNNI. ``static``: ``quantize_static`` in
    QDQ form instead, the activations' scales fixed in advance from calibration clips.
    """

    name: str
    op_types: tuple[str, ...]
    exclude_first_conv: bool = False
    per_channel: bool = False
    conv_as_matmul: bool = False
    weight_type: Literal["int8", "uint8"] = "int8"
    reduce_range: bool = False
    static: bool = False


QUANTIZATIONS = {
    q.name: q
    for q in (
        Quantization("matmul", ("MatMul",)),
        Quantization("matmul-conv", ("MatMul", "Conv"), exclude_first_conv=True),
        Quantization("matmul-conv-all", ("MatMul", "Conv")),
        Quantization("matmul-perchannel", ("MatMul",), per_channel=True),
        Quantization("convmm", ("MatMul",), conv_as_matmul=True),
        # convmm's variants for other CPUs (a model directory may carry several; the server
        # measures them where it runs: classifier/selection.py).
        Quantization("convmm-u8u8", ("MatMul",), conv_as_matmul=True, weight_type="uint8"),
        Quantization("convmm-reduce-range", ("MatMul",), conv_as_matmul=True, reduce_range=True),
        Quantization("convmm-perchannel", ("MatMul",), conv_as_matmul=True, per_channel=True),
        Quantization("convmm-static", ("MatMul",), conv_as_matmul=True, static=True),
    )
}
# The recipes ``--alternatives all`` writes beside the served graph.
ALTERNATIVE_QUANTIZATIONS = (
    "convmm",
    "convmm-u8u8",
    "convmm-reduce-range",
    "convmm-perchannel",
    "convmm-static",
)
# Calibration clips a static recipe reads at most (each as the graph's input: normalised).
MAX_CALIBRATION_CLIPS = 32
# The fastest recipe measured (BENCHMARKS.md), kept only where it is accurate: a release whose
# int8 graph agrees with fp32 on fewer than MIN_INT8_AGREEMENT of its clips, clean or noisy, or
# whose model has no convolutional encoder to rewrite, falls back to FALLBACK_QUANTIZATION.
DEFAULT_QUANTIZATION = "convmm"
FALLBACK_QUANTIZATION = "matmul"
MIN_INT8_AGREEMENT = 0.99


def recipe(quantization: str | Quantization) -> Quantization:
    """The named recipe; ValueError listing the known names for an unknown one."""
    if isinstance(quantization, Quantization):
        return quantization
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"unknown quantisation {quantization!r}; expected one of {sorted(QUANTIZATIONS)}"
        )
    return QUANTIZATIONS[quantization]


def first_conv_name(graph: Path) -> str:
    """The Conv node that reads the waveform: the feature encoder's first layer."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    for node in model.graph.node:  # nodes are stored in topological order
        if node.op_type == "Conv":
            return str(node.name)
    raise ValueError(f"{str(graph)!r} has no Conv node")


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    quantization: str | Quantization = DEFAULT_QUANTIZATION,
    calibration: Sequence[np.ndarray] = (),
) -> Path:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time), or for a
    ``static`` recipe static QDQ quantisation calibrated on ``calibration``: mono clips as
    the graph takes them (normalised, at its rate; at most MAX_CALIBRATION_CLIPS are read).

    ``fp32_path`` must already be the graph the recipe expects: for a ``conv_as_matmul``
    recipe, the export of training.models.convmm's rewritten model (training.models.export.export_for).
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantization = recipe(quantization)
    if quantization.static:
        return _quantize_static(fp32_path, int8_path, quantization, calibration)
    exclude = [first_conv_name(fp32_path)] if quantization.exclude_first_conv else []
    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QUInt8 if quantization.weight_type == "uint8" else QuantType.QInt8,
        op_types_to_quantize=list(quantization.op_types),
        nodes_to_exclude=exclude,
        per_channel=quantization.per_channel,
        reduce_range=quantization.reduce_range,
        # Where shape inference cannot type a tensor (ONNX Runtime's own fused operators in
        # an offline-optimised graph), it is float: this project exports float graphs only.
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
    return int8_path


def _quantize_static(
    fp32_path: Path, int8_path: Path, quantization: Quantization, clips: Sequence[np.ndarray]
) -> Path:
    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not clips:
        raise ValueError(f"the {quantization.name!r} recipe needs calibration clips")
    model = onnx.load(str(fp32_path), load_external_data=False)
    input_name = model.graph.input[0].name
    feeds = [
        {input_name: np.asarray(clip, dtype=np.float32).reshape(1, -1)}
        for clip in clips[:MAX_CALIBRATION_CLIPS]
    ]

    class Clips(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    exclude = [first_conv_name(fp32_path)] if quantization.exclude_first_conv else []
    quantize_static(
        str(fp32_path),
        str(int8_path),
        Clips(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(quantization.op_types),
        nodes_to_exclude=exclude,
        per_channel=quantization.per_channel,
        reduce_range=quantization.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QUInt8 if quantization.weight_type == "uint8" else QuantType.QInt8,
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )
    return int8_path
