"""A tiny model directory carrying alternative int8 graphs (classifier/selection.py tests)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from classifier.model import MANIFEST_FILE, sha256_file


def build_tiny_alternatives_dir(out: Path, agreements: dict[str, float]) -> Path:
    """The tiny wav2vec2 model as served (``convmm``), plus one real graph per recipe in
    ``agreements`` (``model-<recipe>.onnx``), recorded with that agreement figure."""
    from training.models.export import export_for
    from training.models.quantization import quantize_int8
    from training.models.tiny import build_tiny_model_dir, tiny_model

    build_tiny_model_dir(out, seed=0, name="tiny-alternatives")
    data = json.loads((out / MANIFEST_FILE).read_text())
    data["graph"].update(variant="convmm", agreement=1.0)
    data["alternatives"] = []
    model = tiny_model(seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        for recipe, agreement in agreements.items():
            source = export_for(model, Path(tmp) / f"fp32-{recipe}.onnx", recipe)
            graph = quantize_int8(source, Path(tmp) / f"{recipe}.onnx", recipe)
            target = out / f"model-{recipe}.onnx"
            shutil.copyfile(graph, target)
            data["alternatives"].append(
                {
                    "file": target.name,
                    "sha256": sha256_file(target),
                    "precision": "int8",
                    "variant": recipe,
                    "agreement": agreement,
                }
            )
    (out / MANIFEST_FILE).write_text(json.dumps(data, indent=2))
    return out
