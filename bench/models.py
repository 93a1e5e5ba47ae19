"""Benchmark models: wav2vec2 classifiers (base size or tiny) exported to ONNX in several variants.

Random weights: these models time the architecture, they classify nothing. Everything is
cached under a work directory so repeated runs reuse the exports.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import onnx

from classifier.model import CANONICAL_LABELS, GraphSpec, Manifest, sha256_file, write_manifest
from pcm.format import PIPELINE_RATE_HZ
from training.models.quantization import Quantization, quantize_int8

if TYPE_CHECKING:
    from transformers import Wav2Vec2Config

SAMPLE_RATE_HZ = PIPELINE_RATE_HZ
DEFAULT_WORK_DIR = Path("artifacts/bench")


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One int8 quantisation recipe for ``quantize_dynamic``."""

    name: str
    op_types: tuple[str, ...]
    exclude_first_conv: bool = False
    per_channel: bool = False
    source: str = "fp32"  # the float graph it quantises: "fp32" or "fp32-convmm"
    weight_type: Literal["int8", "uint8"] = "int8"
    reduce_range: bool = False
    static: bool = False  # QDQ, calibrated on CALIBRATION_CLIPS of bench.audio.synthetic_set


VARIANTS = (
    Variant("int8-matmul", ("MatMul",)),
    Variant("int8-matmul-conv", ("MatMul", "Conv"), exclude_first_conv=True),
    Variant("int8-matmul-conv-all", ("MatMul", "Conv")),
    Variant("int8-matmul-perchannel", ("MatMul",), per_channel=True),
    # encoder convs 2-7 exported as MatMul (training.models.convmm), then MatMul quantised
    Variant("int8-convmm", ("MatMul",), source="fp32-convmm"),
    # and ONNX Runtime's offline transformer fusions (attention, LayerNorm, GELU) before that
    Variant("int8-convmm-fused", ("MatMul",), source="fp32-convmm-fused"),
    # convmm's recipes for other CPUs (training.models.quantization; bench.graph_variants):
    # uint8 weights (u8u8 kernels), 7-bit weights, per-channel weight scales
    Variant("int8-convmm-u8u8", ("MatMul",), source="fp32-convmm", weight_type="uint8"),
    Variant("int8-convmm-reduce-range", ("MatMul",), source="fp32-convmm", reduce_range=True),
    Variant("int8-convmm-perchannel", ("MatMul",), source="fp32-convmm", per_channel=True),
    Variant("int8-convmm-static", ("MatMul",), source="fp32-convmm", static=True),
)
# Clips a static variant is calibrated on: bench.audio.synthetic_set with another noise seed
# (its espeak speech is the same as the agreement set's, so a static variant's agreement
# here is a little optimistic; a release calibrates on its --calibrate split when it has one).
CALIBRATION_CLIPS = 16
FLOAT_GRAPHS = ("fp32", "fp32-convmm", "fp32-convmm-fused")
VARIANTS_BY_NAME = {v.name: v for v in VARIANTS}


def model_config(size: str) -> Wav2Vec2Config:
    from transformers import Wav2Vec2Config

    from training.models.tiny import tiny_config

    if size == "tiny":
        return tiny_config()
    if size == "base":
        labels: dict[str, Any] = {
            "num_labels": len(CANONICAL_LABELS),
            "id2label": dict(enumerate(CANONICAL_LABELS)),
            "label2id": {label: i for i, label in enumerate(CANONICAL_LABELS)},
        }
        return Wav2Vec2Config(**labels)
    raise ValueError(f"model size must be 'base' or 'tiny', got {size!r}")


@dataclass(frozen=True)
class BenchModel:
    """Paths of one architecture's exports: a Transformers directory and ONNX graphs."""

    size: str
    root: Path

    @property
    def hf_dir(self) -> Path:
        return self.root / "hf"

    @property
    def fp32_graph(self) -> Path:
        return self.root / "fp32.onnx"

    def graph(self, variant: str) -> Path:
        return self.root / f"{variant}.onnx"

    def model_dir(self, variant: str) -> Path:
        """A served model directory (graph + manifest) for ``variant``, built on first use."""
        out = self.root / "served" / variant
        if not (out / "manifest.json").is_file():
            graph = (
                self.float_graph(variant) if variant in FLOAT_GRAPHS else self.quantized(variant)
            )
            write_served_dir(graph, out, name=f"wav2vec2-{self.size}-{variant}", variant=variant)
        return out

    def float_graph(self, name: str) -> Path:
        path = self.graph(name)
        if name == "fp32-convmm" and not path.is_file():
            export_convmm(self, path)
        if name == "fp32-convmm-fused" and not path.is_file():
            fuse_transformer(self.float_graph("fp32-convmm"), path, model_config(self.size))
        return path

    def quantized(self, variant: str) -> Path:
        path = self.graph(variant)
        if not path.is_file():
            spec = VARIANTS_BY_NAME[variant]
            quantize(self.float_graph(spec.source), path, spec)
        return path


def build(size: str, work_dir: Path = DEFAULT_WORK_DIR, seed: int = 0) -> BenchModel:
    """A random-initialised classifier: saved for Transformers, exported to fp32 ONNX."""
    bench = BenchModel(size, work_dir / f"wav2vec2-{size}-seed{seed}")
    if bench.fp32_graph.is_file() and (bench.hf_dir / "config.json").is_file():
        return bench
    import torch
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

    from training.models.export import export_fp32

    bench.root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Wav2Vec2ForSequenceClassification(model_config(size))
    model.eval()  # type: ignore[no-untyped-call]
    model.save_pretrained(bench.hf_dir)
    Wav2Vec2FeatureExtractor(  # type: ignore[no-untyped-call]
        feature_size=1, sampling_rate=SAMPLE_RATE_HZ, do_normalize=True, return_attention_mask=False
    ).save_pretrained(bench.hf_dir)
    export_fp32(model, bench.fp32_graph, SAMPLE_RATE_HZ)
    return bench


def export_convmm(bench: BenchModel, path: Path) -> Path:
    from transformers import Wav2Vec2ForSequenceClassification

    from training.models.convmm import rewrite_feature_encoder
    from training.models.export import export_fp32

    model = Wav2Vec2ForSequenceClassification.from_pretrained(str(bench.hf_dir))
    model.eval()  # type: ignore[no-untyped-call]
    return export_fp32(rewrite_feature_encoder(model), path, SAMPLE_RATE_HZ)


def fuse_transformer(graph: Path, out: Path, config: Wav2Vec2Config) -> Path:
    """ONNX Runtime's transformer optimiser (the BERT fusions) applied offline to ``graph``."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(graph),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=0,  # the fusions only; the session applies its own graph optimisations
    )
    log.info("transformer fusions in %s: %s", graph.name, optimized.get_fused_operator_statistics())
    optimized.save_model_to_file(str(out))
    return out


def quantize(fp32_graph: Path, out: Path, variant: Variant) -> Path:
    recipe = Quantization(
        variant.name,
        variant.op_types,
        exclude_first_conv=variant.exclude_first_conv,
        per_channel=variant.per_channel,
        weight_type=variant.weight_type,
        reduce_range=variant.reduce_range,
        static=variant.static,
    )
    calibration = []
    if variant.static:
        from bench.audio import synthetic_set
        from training.corpus.data import zero_mean_unit_var

        calibration = [zero_mean_unit_var(c) for c in synthetic_set(CALIBRATION_CLIPS, seed=1)]
    return quantize_int8(fp32_graph, out, recipe, calibration)


def write_served_dir(graph: Path, out: Path, *, name: str, variant: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(graph, out / "model.onnx")
    digest = sha256_file(out / "model.onnx")
    manifest = Manifest(
        name=name,
        version=f"bench-{digest[:8]}",
        labels=CANONICAL_LABELS,
        sample_rate=SAMPLE_RATE_HZ,
        graph=GraphSpec(sha256=digest, precision="fp32" if variant in FLOAT_GRAPHS else "int8"),
        provenance={"base": "random init (benchmark)", "variant": variant},
    )
    write_manifest(out, manifest)
    return out


def describe_graph(graph: Path) -> dict[str, object]:
    model = onnx.load(str(graph), load_external_data=False)
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"file_mb": round(graph.stat().st_size / 1e6, 1), "ops": dict(sorted(ops.items()))}
