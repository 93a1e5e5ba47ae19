"""Export a Transformers audio classifier to a served model directory (ONNX, optionally int8)."""

from __future__ import annotations

import hashlib
import logging
import secrets
import shutil
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classifier.model import Calibration, GraphSpec, InputSpec, Manifest, sha256_file, write_manifest
from training.models.quantization import (
    DEFAULT_QUANTIZATION,
    FALLBACK_QUANTIZATION,
    Quantization,
    quantize_int8,
    recipe,
)

OPSET = 17
log = logging.getLogger(__name__)
__all__ = [
    "DEFAULT_QUANTIZATION",
    "Quantization",
    "export_for",
    "export_fp32",
    "new_version",
    "package_graph",
    "probe_audio",
    "quantize_int8",
    "write_model_dir",
]


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).logits  # type: ignore[no-any-return]


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


def export_for(
    model: torch.nn.Module,
    path: Path,
    quantization: str | Quantization,
    sample_rate: int = 16000,
) -> Path:
    """The float graph ``quantization`` quantises: the model as it is, or, for a
    ``conv_as_matmul`` recipe, with its encoder convolutions rewritten as MatMul (ValueError
    when the model has no such encoder)."""
    if recipe(quantization).conv_as_matmul:
        from training.models.convmm import rewrite_feature_encoder

        model = rewrite_feature_encoder(model)
    return export_fp32(model, path, sample_rate)


def new_version(graph_sha256: str) -> str:
    """``YYYYMMDD-HHMMSS-<sha8>``; the hash covers the graph and the export instant, so
    re-exporting the same graph within a second still gives a new version."""
    now_ns = time.time_ns()
    stamp = datetime.fromtimestamp(now_ns / 1e9, UTC)
    token = hashlib.sha256(f"{graph_sha256}:{now_ns}:{secrets.token_hex(8)}".encode()).hexdigest()
    return f"{stamp:%Y%m%d-%H%M%S}-{token[:8]}"


def package_graph(
    graph: Path,
    out_dir: Path,
    *,
    name: str,
    labels: list[str],
    precision: str,
    sample_rate: int = 16000,
    normalize: bool = True,
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    min_samples: int = 400,
    calibration: Calibration | None = None,
    variant: str = "",
    agreement: float | None = None,
    alternatives: tuple[GraphSpec, ...] = (),
) -> Manifest:
    """Copy an ONNX graph into ``out_dir`` as ``model.onnx`` and write its manifest.

    ``variant`` and ``agreement`` describe that graph; ``alternatives``, other graphs of the
    model already copied into ``out_dir`` (docs/model-format.md)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "model.onnx"
    shutil.copyfile(graph, target)
    digest = sha256_file(target)
    manifest = Manifest(
        name=name,
        version=new_version(digest),
        labels=tuple(labels),
        sample_rate=sample_rate,
        input=InputSpec(
            normalize="zero_mean_unit_var" if normalize else "none", min_samples=min_samples
        ),
        graph=GraphSpec(
            file=target.name,
            sha256=digest,
            precision=precision,  # type: ignore[arg-type]
            variant=variant,
            agreement=agreement,
        ),
        alternatives=alternatives,
        metrics=metrics or {},
        provenance=provenance or {},
        calibration=calibration,
    )
    write_manifest(out_dir, manifest)
    return manifest


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
    quantization: str | Quantization = DEFAULT_QUANTIZATION,
) -> Manifest:
    """Export ``model`` into ``out_dir`` as the server loads it; returns the manifest written."""
    if precision not in ("int8", "fp32"):
        raise ValueError(f"precision must be int8 or fp32, got {precision!r}")
    with tempfile.TemporaryDirectory() as tmp:
        if precision == "int8":
            try:
                source = export_for(model, Path(tmp) / "fp32.onnx", quantization, sample_rate)
            except ValueError as exc:
                log.warning("%s; quantising with %r instead", exc, FALLBACK_QUANTIZATION)
                quantization = FALLBACK_QUANTIZATION
                source = export_for(model, Path(tmp) / "fp32.onnx", quantization, sample_rate)
            graph = quantize_int8(source, Path(tmp) / "int8.onnx", quantization)
        else:
            graph = export_fp32(model, Path(tmp) / "fp32.onnx", sample_rate)
        return package_graph(
            graph,
            out_dir,
            name=name,
            labels=labels,
            precision=precision,
            sample_rate=sample_rate,
            normalize=normalize,
            metrics=metrics,
            provenance=provenance,
        )


def probe_audio(sample_rate: int = 16000, seed: int = 0) -> list[np.ndarray]:
    """Deterministic inputs of several lengths for export checks: noise, tones, a chirp."""
    rng = np.random.default_rng(seed)
    clips = []
    for seconds in (0.03, 0.5, 1.0, 2.7):
        n = round(seconds * sample_rate)
        t = np.arange(n) / sample_rate
        clips.append(rng.normal(0.0, 0.1, n))
        clips.append(0.3 * np.sin(2 * np.pi * (150 + 400 * t) * t) + rng.normal(0.0, 0.01, n))
    return [c.astype(np.float32) for c in clips]
