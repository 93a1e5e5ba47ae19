"""int8 recipes for ONNX Runtime's dynamic quantisation (no torch needed to name or apply them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Quantization:
    """Which operators ``quantize_dynamic`` turns into int8, and whether to spare the first conv."""

    name: str
    op_types: tuple[str, ...]
    exclude_first_conv: bool = False
    per_channel: bool = False


QUANTIZATIONS = {
    q.name: q
    for q in (
        Quantization("matmul", ("MatMul",)),
        Quantization("matmul-conv", ("MatMul", "Conv"), exclude_first_conv=True),
        Quantization("matmul-conv-all", ("MatMul", "Conv")),
        Quantization("matmul-perchannel", ("MatMul",), per_channel=True),
    )
}
DEFAULT_QUANTIZATION = "matmul"


def first_conv_name(graph: Path) -> str:
    """The Conv node that reads the waveform: the feature encoder's first layer."""
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    for node in model.graph.node:  # nodes are stored in topological order
        if node.op_type == "Conv":
            return str(node.name)
    raise ValueError(f"{str(graph)!r} has no Conv node")


def quantize_int8(
    fp32_path: Path, int8_path: Path, quantization: str | Quantization = DEFAULT_QUANTIZATION
) -> Path:
    """Dynamic int8 quantisation (weights int8, activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if isinstance(quantization, str):
        if quantization not in QUANTIZATIONS:
            raise ValueError(
                f"unknown quantisation {quantization!r}; expected one of {sorted(QUANTIZATIONS)}"
            )
        quantization = QUANTIZATIONS[quantization]
    exclude = [first_conv_name(fp32_path)] if quantization.exclude_first_conv else []
    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(quantization.op_types),
        nodes_to_exclude=exclude,
        per_channel=quantization.per_channel,
    )
    return int8_path
