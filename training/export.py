"""Export a Transformers audio classifier to a served model directory (ONNX, optionally int8)."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from server.model import GraphSpec, InputSpec, Manifest, sha256_file, write_manifest

OPSET = 17


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits


def export_fp32(model: torch.nn.Module, path: Path, sample_rate: int = 16000) -> Path:
    """Trace ``model`` to ONNX with dynamic batch and length axes."""
    model = model.eval()
    example = torch.zeros(1, sample_rate)
    with warnings.catch_warnings():
        # The TorchScript exporter handles wav2vec2's data-dependent shapes; it warns it is legacy.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LogitsOnly(model),
            (example,),
            str(path),
            input_names=["input_values"],
            output_names=["logits"],
            dynamic_axes={"input_values": {0: "batch", 1: "samples"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def quantize_int8(fp32_path: Path, int8_path: Path, op_types: list[str] | None = None) -> Path:
    """Dynamic int8 quantisation of the weights of ``op_types`` (default: MatMul only)."""
    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=op_types or ["MatMul"],
    )
    return int8_path


def new_version(graph_sha256: str) -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{graph_sha256[:8]}"


def write_model_dir(
    model: torch.nn.Module,
    out_dir: Path,
    *,
    name: str,
    labels: list[str],
    precision: str = "int8",
    sample_rate: int = 16000,
    normalize: bool = True,
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    op_types: list[str] | None = None,
) -> Manifest:
    """Export ``model`` into ``out_dir`` as the server loads it; returns the manifest written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = out_dir / "model.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_fp32(model, Path(tmp) / "fp32.onnx", sample_rate)
        if precision == "int8":
            quantize_int8(fp32, graph, op_types)
        else:
            shutil.copyfile(fp32, graph)
    digest = sha256_file(graph)
    manifest = Manifest(
        name=name,
        version=new_version(digest),
        labels=tuple(labels),
        sample_rate=sample_rate,
        input=InputSpec(normalize="zero_mean_unit_var" if normalize else "none"),
        graph=GraphSpec(file=graph.name, sha256=digest, precision=precision),  # type: ignore[arg-type]
        metrics=metrics or {},
        provenance=provenance or {},
    )
    write_manifest(out_dir, manifest)
    return manifest
