from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoModelForAudioClassification

from classifier.inference import OnnxClassifier
from classifier.model import read_manifest
from training.corpus.data import load_audio, read_split, select, zero_mean_unit_var
from training.models.calibration import fit_temperature, label_indices, softmax
from training.models.evaluate import OnnxPredictor, TorchPredictor
from training.models.export import new_version
from training.models.finetune import TrainingError
from training.release.release import (
    ReleaseError,
    ReleaseOptions,
    canonical_labels,
    check_fp32,
    release,
)

pytestmark = pytest.mark.slow


def _torch_logits(checkpoint: Path, audio: np.ndarray) -> np.ndarray:
    model = AutoModelForAudioClassification.from_pretrained(str(checkpoint)).eval()
    with torch.no_grad():
        out = model(input_values=torch.from_numpy(zero_mean_unit_var(audio))[None, :]).logits
    return out[0].numpy()


def test_fp32_onnx_matches_pytorch_at_several_lengths(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path]
) -> None:
    checkpoint, split = tone_checkpoint
    released = release(checkpoint, tmp_path / "fp32", ReleaseOptions(precision="fp32"))
    assert released.manifest.graph.precision == "fp32"
    served = OnnxClassifier(tmp_path / "fp32")
    clips = [load_audio(e.path) for e in read_split(split)[:3]]
    clips.append(np.random.default_rng(1).normal(0, 0.1, 37_123).astype(np.float32))
    lengths = set()
    for audio in clips:
        lengths.add(audio.size)
        expected = _torch_logits(checkpoint, audio)
        np.testing.assert_allclose(served.logits(audio), expected, atol=1e-4, rtol=1e-4)
    assert len(lengths) >= 3
    assert released.manifest.metrics["fp32_vs_pytorch"]["max_abs_logit_error"] < 1e-4
    assert "int8_vs_fp32" not in released.manifest.metrics


def test_int8_export_with_evaluation_records_agreement(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path]
) -> None:
    checkpoint, split = tone_checkpoint
    out = tmp_path / "int8"
    options = ReleaseOptions(eval_data=split, eval_split="test", min_int8_agreement=0.0)
    released = release(checkpoint, out, options)
    manifest = read_manifest(out)
    assert manifest == released.manifest
    assert manifest.graph.precision == "int8"
    assert manifest.labels == ("happy", "sad")
    metrics = manifest.metrics
    agreement = metrics["int8_vs_fp32"]
    assert agreement["n"] == agreement["noisy"]["n"] == 8
    assert agreement["inputs"] == "eval set"
    assert agreement["noisy"]["snr_db"] == 10.0
    for measured in (agreement, agreement["noisy"]):
        assert 0.0 <= measured["top1_agreement"] <= 1.0
        assert 0.0 <= measured["mean_abs_logit_error"] <= measured["max_abs_logit_error"]
    assert metrics["eval_split"] == "test"
    assert set(metrics["accuracy_by_snr_db"]) == {"clean", "20", "10", "5"}
    assert metrics["accuracy"] >= 0.75  # the tone task is easy
    provenance = manifest.provenance
    assert provenance["source"] == checkpoint.name  # a base name, never the local path
    written = json.dumps(manifest.document())
    assert str(checkpoint.parent) not in written and str(split.parent) not in written
    assert manifest.metrics["eval_data"] == split.name
    quantization = provenance["quantization"]
    assert quantization["name"] == "convmm", quantization["rejected"]
    assert quantization["conv_as_matmul"] is True
    assert quantization["rejected"] == []
    assert quantization["rewrite_max_abs_logit_error"] < 1e-4
    # Float Convs left: the first (waveform) encoder layer and the transformer's positional
    # convolution; the six other encoder layers became MatMuls.
    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert ops.count("Conv") == 2
    assert ops.count("MatMulInteger") > 7
    assert provenance["training"]["from_config"].endswith("config.json")
    assert provenance["validation"]["best_epoch"] >= 1
    assert (out / "MODEL_CARD.md").read_text().startswith("# ")
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The server's own classifier loads it, and its outputs agree with the recorded metrics.
    served = OnnxClassifier(out)
    test = select(read_split(split), "test")
    predictions = [
        manifest.labels[int(np.argmax(served.predict(load_audio(e.path))))] for e in test
    ]
    accuracy = np.mean([p == e.label for p, e in zip(predictions, test, strict=True)])
    assert accuracy == pytest.approx(metrics["accuracy"])


def test_every_export_is_a_new_version_and_out_dirs_are_protected(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path]
) -> None:
    checkpoint, _ = tone_checkpoint
    first = release(checkpoint, tmp_path / "a").manifest
    second = release(checkpoint, tmp_path / "b").manifest
    assert first.graph.sha256 == second.graph.sha256
    assert first.version != second.version
    with pytest.raises(ReleaseError, match="is not empty"):
        release(checkpoint, tmp_path / "a")
    third = release(checkpoint, tmp_path / "a", ReleaseOptions(force=True)).manifest
    assert read_manifest(tmp_path / "a").version == third.version != first.version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no staging left behind
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReleaseError, match="not a directory"):
        release(checkpoint, tmp_path / "file")


def test_new_version_shape_and_uniqueness() -> None:
    versions = {new_version("ab" * 32) for _ in range(50)}
    assert len(versions) == 50
    assert all(len(v.split("-")) == 3 and len(v.split("-")[2]) == 8 for v in versions)


@pytest.mark.parametrize("name", ["matmul-conv", "matmul-conv-all"])
def test_conv_quantisation_variants(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path], name: str
) -> None:
    checkpoint, _ = tone_checkpoint
    out = tmp_path / name
    manifest = release(checkpoint, out, ReleaseOptions(quantization=name)).manifest
    graph = onnx.load(str(out / "model.onnx"))
    ops = [n.op_type for n in graph.graph.node]
    excluded = manifest.provenance["quantization"]["nodes_excluded"]
    if name == "matmul-conv":
        assert len(excluded) == 1
        assert ops.count("Conv") >= 1  # the first convolution stays fp32
    else:
        assert excluded == []
    assert ops.count("ConvInteger") >= 1
    assert manifest.metrics["int8_vs_fp32"]["inputs"].startswith("synthetic probe")
    OnnxClassifier(out)


def test_an_inaccurate_recipe_falls_back_and_says_why(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.release import release as release_module

    measure = release_module._int8_agreement
    seen: list[int] = []

    def convmm_disagrees(*args: object, **kwargs: object) -> dict[str, object]:
        result = measure(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(1)
        if len(seen) == 1:  # the first candidate, convmm, on the noisy clips only
            result["noisy"] = {**result["noisy"], "top1_agreement": 0.98}
        return result

    monkeypatch.setattr(release_module, "_int8_agreement", convmm_disagrees)
    checkpoint, _ = tone_checkpoint
    out = tmp_path / "fallback"
    manifest = release(checkpoint, out, ReleaseOptions(min_int8_agreement=0.99)).manifest
    quantization = manifest.provenance["quantization"]
    assert quantization["name"] == "matmul"
    assert quantization["conv_as_matmul"] is False
    [rejected] = quantization["rejected"]
    assert rejected["recipe"] == "convmm"
    assert "0.9800" in rejected["reason"] and "below 0.99" in rejected["reason"]
    ops = [n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node]
    assert ops.count("Conv") == 8  # seven encoder convolutions and the positional one
    assert len(seen) == 2


def test_export_refuses_a_graph_that_does_not_match_pytorch(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path]
) -> None:
    from training.models.tiny import build_tiny_model_dir, tiny_model

    other = tmp_path / "other"
    build_tiny_model_dir(other, labels=("happy", "sad"), seed=5, precision="fp32")
    model = tiny_model(("happy", "sad"), seed=6)
    with pytest.raises(ReleaseError, match="differ from PyTorch"):
        check_fp32(TorchPredictor(model, ("happy", "sad"), 16000, True), OnnxPredictor(other))


def test_bad_release_inputs(tmp_path: Path, tone_checkpoint: tuple[Path, Path]) -> None:
    checkpoint, split = tone_checkpoint
    with pytest.raises(ReleaseError, match="precision must be int8 or fp32, got 'fp16'"):
        release(checkpoint, tmp_path / "x", ReleaseOptions(precision="fp16"))
    with pytest.raises(ReleaseError, match="min_int8_agreement must be between 0 and 1"):
        release(checkpoint, tmp_path / "x", ReleaseOptions(min_int8_agreement=1.5))
    with pytest.raises(ReleaseError, match="unknown quantisation 'everything'"):
        release(checkpoint, tmp_path / "x", ReleaseOptions(quantization="everything"))
    with pytest.raises(ReleaseError, match="cannot load an audio-classification model"):
        release(tmp_path / "missing", tmp_path / "x")
    rows = split.read_text().replace(",sad,", ",angry,")
    (split.parent / "angry.csv").write_text(rows)
    with pytest.raises(ReleaseError, match=r"label\(s\) \['angry'\] the model lacks"):
        release(checkpoint, tmp_path / "x", ReleaseOptions(eval_data=split.parent / "angry.csv"))
    assert not (tmp_path / "x").exists()


def test_import_maps_label_names_from_a_local_checkpoint(tmp_path: Path) -> None:
    from training.models.tiny import tiny_model

    source = tmp_path / "superb-like"
    tiny_model(("neu", "hap", "ang", "sad", "Calm"), seed=2).save_pretrained(source)
    released = release(source, tmp_path / "served", ReleaseOptions(), map_labels=True)
    assert released.manifest.labels == ("neutral", "happy", "angry", "sad", "Calm")
    assert released.manifest.name == "superb-like"
    assert released.manifest.input.normalize == "zero_mean_unit_var"  # wav2vec2 default
    OnnxClassifier(tmp_path / "served")
    kept = release(source, tmp_path / "kept", ReleaseOptions(name="as is"), map_labels=False)
    assert kept.manifest.labels == ("neu", "hap", "ang", "sad", "Calm")
    assert kept.manifest.name == "as is"


def test_import_reads_the_source_feature_extractor(tmp_path: Path) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    from training.models.tiny import tiny_model

    source = tmp_path / "unnormalised"
    tiny_model(("anger", "joy"), seed=2).save_pretrained(source)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=False).save_pretrained(source)
    manifest = release(source, tmp_path / "served", map_labels=True).manifest
    assert manifest.input.normalize == "none"
    assert manifest.labels == ("angry", "happy")


def test_import_refuses_spectrogram_models(tmp_path: Path) -> None:
    from transformers import WhisperFeatureExtractor

    from training.models.tiny import tiny_model

    source = tmp_path / "spectrogram"
    tiny_model(("a", "b"), seed=2).save_pretrained(source)
    WhisperFeatureExtractor().save_pretrained(source)
    with pytest.raises(TrainingError, match="only raw-waveform models"):
        release(source, tmp_path / "served")


def test_canonical_labels() -> None:
    assert canonical_labels(["ANG", "hap ", "neu", "sad", "fear", "disgusted", "bored"]) == [
        "angry",
        "happy",
        "neutral",
        "sad",
        "fearful",
        "disgust",
        "bored",
    ]
    # Two names that would collide are left alone.
    assert canonical_labels(["ang", "angry"]) == ["ang", "angry"]


def test_manifest_metrics_are_plain_json(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path]
) -> None:
    checkpoint, split = tone_checkpoint
    release(checkpoint, tmp_path / "m", ReleaseOptions(eval_data=split, eval_split="val"))
    raw = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert raw["metrics"]["eval_split"] == "val"
    assert raw["metrics"]["n"] == 12


# The two published checkpoints the docs name, as their configs label them: the prototype's
# (folder names of the Kaggle compilation, sorted, as the Trainer's ClassLabel made them) and
# SUPERB's emotion recognition model (IEMOCAP's four codes, in its order).
PROTOTYPE_LABELS = ("Angry", "Disgusted", "Fearful", "Happy", "Neutral", "Sad")
SUPERB_LABELS = ("neu", "hap", "ang", "sad")


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        (PROTOTYPE_LABELS, ("angry", "disgust", "fearful", "happy", "neutral", "sad")),
        (SUPERB_LABELS, ("neutral", "happy", "angry", "sad")),
    ],
)
def test_import_maps_the_published_checkpoints_label_layouts(
    tmp_path: Path, layout: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    """A stand-in directory with the checkpoint's label layout imports to canonical names in
    the graph's own output order, and the served scores follow that order."""
    from training.models.tiny import tiny_model

    source = tmp_path / "stand-in"
    model = tiny_model(layout, seed=3)
    model.save_pretrained(source)
    released = release(
        source, tmp_path / "served", ReleaseOptions(precision="fp32"), map_labels=True
    )
    assert released.manifest.labels == expected
    assert set(expected) <= {"neutral", "happy", "sad", "angry", "fearful", "disgust"}
    classifier = OnnxClassifier(tmp_path / "served")
    clip = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    with torch.no_grad():
        reference = model(input_values=torch.from_numpy(zero_mean_unit_var(clip))[None]).logits[0]
    np.testing.assert_allclose(classifier.logits(clip), reference.numpy(), atol=1e-3)
    # Each served label is the checkpoint's label at the same index.
    config = json.loads((source / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(layout))] == list(layout)


def test_import_through_the_cli_keeps_the_hub_loading_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`emostream import HUB_ID` hands the id to Transformers' from_pretrained unchanged (here
    answered from a local stand-in, since no hub is reachable)."""
    import transformers
    from transformers import Wav2Vec2FeatureExtractor

    from emostream.cli import main as cli_main
    from training.models.tiny import tiny_model

    stand_in = tmp_path / "hub-copy"
    tiny_model(PROTOTYPE_LABELS, seed=4).save_pretrained(stand_in)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(stand_in)
    asked: list[str] = []

    def answer_from(cls: type) -> None:
        real = cls.from_pretrained

        def from_hub(name: str, *args: object, **kwargs: object) -> object:
            asked.append(name)
            hub_id = "antonjaragon/emotions_6_classes_small"
            return real(str(stand_in) if name == hub_id else name, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", from_hub)

    answer_from(transformers.AutoModelForAudioClassification)
    answer_from(transformers.AutoFeatureExtractor)
    out = tmp_path / "emotions-6"
    code = cli_main(
        ["import", "antonjaragon/emotions_6_classes_small", "--out", str(out), "--no-progress"]
    )
    assert code == 0
    assert asked and set(asked) == {"antonjaragon/emotions_6_classes_small"}
    manifest = read_manifest(out)
    assert manifest.labels == ("angry", "disgust", "fearful", "happy", "neutral", "sad")
    assert manifest.provenance["source"] == "antonjaragon/emotions_6_classes_small"


def test_calibrate_fits_the_temperature_on_its_split_and_the_card_reports_ece(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path]
) -> None:
    checkpoint, split = tone_checkpoint
    out = tmp_path / "calibrated"
    options = ReleaseOptions(eval_data=split, eval_split="test", calibrate="val", precision="fp32")
    release(checkpoint, out, options)
    manifest = read_manifest(out)
    assert manifest.calibration is not None
    served = OnnxClassifier(out)
    val = select(read_split(split), "val")
    logits = np.stack([served.logits(load_audio(e.path)) for e in val])
    y = label_indices([e.label for e in val], manifest.labels)
    temperature = manifest.calibration.temperature
    assert temperature == pytest.approx(fit_temperature(logits, y), rel=1e-3)
    assert "val split" in manifest.calibration.fitted_on
    np.testing.assert_allclose(  # the server's scores are the scaled ones
        served.predict(load_audio(val[0].path)), softmax(logits[0], temperature), rtol=1e-4
    )
    record = manifest.metrics["calibration"]
    assert record["calibrated"] is True and record["temperature"] == temperature
    assert set(record["by_condition"]) == {"clean", "10 dB"}
    assert {"ece_before", "ece_after"} <= set(record["by_condition"]["clean"])
    card = (out / "MODEL_CARD.md").read_text()
    assert f"Temperature scaling, T = {temperature}" in card and "| 10 dB |" in card
    assert (out / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_calibration_data_the_manifest_and_card_say_uncalibrated(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path]
) -> None:
    checkpoint, split = tone_checkpoint
    out = tmp_path / "plain"
    release(checkpoint, out, ReleaseOptions(eval_data=split, eval_split="test", precision="fp32"))
    manifest = read_manifest(out)
    assert manifest.calibration is None
    assert json.loads((out / "manifest.json").read_text())["calibration"] is None
    assert manifest.metrics["calibration"]["calibrated"] is False
    assert "**Uncalibrated**" in (out / "MODEL_CARD.md").read_text()
    with pytest.raises(ReleaseError, match="calibrate='val' needs eval data"):
        release(checkpoint, tmp_path / "x", ReleaseOptions(calibrate="val"))
    with pytest.raises(ReleaseError, match="calibrate='test' is the evaluated split"):
        release(checkpoint, tmp_path / "x", ReleaseOptions(eval_data=split, calibrate="test"))
