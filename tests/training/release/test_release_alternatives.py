"""``release(..., alternatives=...)`` / ``emostream export --alternatives``: other int8 graphs
written beside the served one with their agreement, the inaccurate ones left out and why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import onnx
import pytest

from classifier.inference import OnnxClassifier
from classifier.model import read_manifest
from training import cli
from training.models.quantization import ALTERNATIVE_QUANTIZATIONS
from training.release import release as release_module
from training.release.release import ReleaseError, ReleaseOptions, release

pytestmark = pytest.mark.slow


def test_alternatives_are_written_with_their_agreement(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint, _ = tone_checkpoint
    real = release_module._int8_agreement

    def reduce_range_disagrees(fp32: Any, served: Any, *args: Any) -> dict[str, Any]:
        result = real(fp32, served, *args)
        if served.classifier.model_dir.name == "alt-convmm-reduce-range":
            result["noisy"] = {**result["noisy"], "top1_agreement": 0.25}
        return result

    monkeypatch.setattr(release_module, "_int8_agreement", reduce_range_disagrees)
    out = tmp_path / "m"
    options = ReleaseOptions(
        alternatives=(
            "convmm-u8u8",
            "convmm-perchannel",
            "convmm-reduce-range",
            "convmm",
            "convmm-static",
        ),
        min_int8_agreement=0.5,
    )
    released = release(checkpoint, out, options)
    manifest = read_manifest(out)
    assert manifest == released.manifest
    assert manifest.graph.variant == "convmm"
    assert manifest.graph.agreement is not None and manifest.graph.agreement >= 0.5
    # The served recipe is not repeated; the one below the floor is left out, with why.
    assert [g.variant for g in manifest.alternatives] == [
        "convmm-u8u8",
        "convmm-perchannel",
        "convmm-static",
    ]
    for graph in manifest.alternatives:
        assert graph.file == f"model-{graph.variant}.onnx"
        assert graph.agreement is not None and 0.5 <= graph.agreement <= 1.0
        assert (out / graph.file).is_file()
    quantization = manifest.provenance["quantization"]
    assert quantization["static_calibration_inputs"] == "synthetic probe clips (no --eval data)"
    left_out = quantization["alternatives_left_out"]
    assert left_out == [
        {
            "recipe": "convmm-reduce-range",
            "agreement": 0.25,
            "reason": "int8 agrees with fp32 on 0.2500 of clips (clean or 10 dB), below 0.5",
        }
    ]
    assert not (out / "model-convmm-reduce-range.onnx").exists()

    # Real, different graphs: u8u8 quantises its weights as uint8.
    def weight_types(name: str) -> set[int]:
        graph = onnx.load(str(out / name)).graph
        return {t.data_type for t in graph.initializer if t.name.endswith("_quantized")}

    assert onnx.TensorProto.UINT8 in weight_types("model-convmm-u8u8.onnx")
    assert onnx.TensorProto.INT8 in weight_types("model-convmm-perchannel.onnx")
    static_ops = {n.op_type for n in onnx.load(str(out / "model-convmm-static.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= static_ops
    for graph in manifest.graphs:
        OnnxClassifier(out, variant=graph.variant)


def test_a_default_release_writes_no_alternatives(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path]
) -> None:
    checkpoint, _ = tone_checkpoint
    released = release(checkpoint, tmp_path / "m", ReleaseOptions(min_int8_agreement=0.0))
    assert released.manifest.alternatives == ()
    # Written as before the alternatives existed: older servers read it.
    written = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert "alternatives" not in written
    assert set(written["graph"]) == {"file", "sha256", "precision"}
    assert sorted(p.name for p in (tmp_path / "m").glob("*.onnx")) == ["model.onnx"]


def test_bad_alternative_options_are_refused() -> None:
    with pytest.raises(ReleaseError, match=r"unknown alternative recipe\(s\) \['avx'\]"):
        ReleaseOptions(alternatives=("avx",)).check()
    with pytest.raises(ReleaseError, match="need precision int8"):
        ReleaseOptions(precision="fp32", alternatives=("convmm-u8u8",)).check()


def test_the_cli_reads_alternatives() -> None:
    parser = argparse.ArgumentParser()
    cli._release_arguments(parser)
    args = parser.parse_args(["--out", "x", "--alternatives", "convmm-u8u8, convmm-perchannel"])
    assert args.alternatives == ("convmm-u8u8", "convmm-perchannel")
    assert parser.parse_args(["--out", "x", "--alternatives", "all"]).alternatives == (
        ALTERNATIVE_QUANTIZATIONS
    )
    assert parser.parse_args(["--out", "x"]).alternatives == ()
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--alternatives", "convmm,avx"])


def test_a_static_recipe_needs_calibration_clips(tmp_path: Path) -> None:
    from training.models.quantization import quantize_int8

    with pytest.raises(ValueError, match="'convmm-static' recipe needs calibration clips"):
        quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", "convmm-static")
