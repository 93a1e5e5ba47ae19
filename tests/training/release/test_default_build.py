"""The default model's one-command build, end to end on a tiny corpus."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from classifier.inference import OnnxClassifier
from classifier.model import CANONICAL_LABELS, read_manifest
from tests.programs import require
from training.models.melcnn import MelCnnConfig, TrainConfig
from training.release.default_model import Recipe, main

TINY = Recipe(
    train_clips=24,
    val_clips=6,
    test_clips=6,
    independent_clips=6,
    telephone_share=0.3,
    model=MelCnnConfig(channels=8, embedding=8, hidden=8),
    training=TrainConfig(epochs=1, batch_size=8, crop_frames=(20, 40), threads=1),
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    require("espeak-ng")
    import training.release.default_model as default_model

    root = tmp_path_factory.mktemp("default-build")
    original = default_model.Recipe
    default_model.Recipe = lambda: TINY  # type: ignore[assignment,misc]
    try:
        assert main(["--work", str(root / "work"), "--out", str(root / "model")]) == 0
    finally:
        default_model.Recipe = original  # type: ignore[misc]
    return root / "work", root / "model"


def test_build_writes_a_served_model_with_every_figure(built: tuple[Path, Path]) -> None:
    _, model_dir = built
    manifest = read_manifest(model_dir)
    classifier = OnnxClassifier(model_dir)
    assert classifier.manifest.labels == CANONICAL_LABELS
    assert manifest.input.min_samples == TINY.model.min_samples
    metrics = manifest.metrics
    assert set(metrics["synthetic_noise_by_snr_db"]) == {"20", "10", "5"}
    assert set(metrics["accuracy_by_snr_db"]) == {"clean", "20", "10", "5"}
    assert metrics["independent"]["n"] == 6
    assert set(metrics["independent"]["per_class"]) == set(CANONICAL_LABELS)
    assert metrics["fp32_vs_pytorch"]["max_abs_logit_error"] < 1e-3
    candidate = metrics["int8_candidate_vs_fp32"]["top1_agreement"]
    if manifest.graph.precision == "int8":
        assert candidate >= 0.99 and metrics["int8_vs_fp32"]["top1_agreement"] >= 0.99
    else:
        assert candidate < 0.99
    assert manifest.provenance["recipe"]["training"]["epochs"] == 1
    assert manifest.provenance["validated_on_human_speech"] is False
    assert manifest.demo is True
    json.dumps(manifest.public())  # plain JSON all the way down
    card = (model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    for needle in (
        "not been validated on human speech",
        "Results on the independent generator",
        "| independent generator | ≥ 60.0 % |",
        "antonjaragon/emotions_6_classes_small",
        "superb/wav2vec2-base-superb-er",
        "This build ran every step from scratch.",
    ):
        assert needle in card
    assert manifest.provenance["reused"] == {
        "corpus": False,
        "independent": False,
        "network": False,
    }
    assert (model_dir / "confusion.png").is_file()
    assert (model_dir / "confusion_independent.png").is_file()
    # Calibrated on the validation split; ECE before and after on both test sets.
    assert manifest.calibration is not None
    assert manifest.calibration.temperature == metrics["calibration"]["temperature"]
    assert "validation split" in manifest.calibration.fitted_on
    for name in ("own", "independent"):
        rows = metrics["calibration"][name]["by_condition"]
        assert set(rows) == {"clean", "10 dB"}
        assert {"ece_before", "ece_after"} <= set(rows["clean"])
    assert "## Calibration" in card and f"T = {manifest.calibration.temperature}" in card
    # Telephone band (issue #27): both test sets, both laws, beside the wideband figures.
    phone = metrics["telephone"]
    assert "300-3400 Hz" in phone["channel"]
    for name, figures in (("own", metrics), ("independent", metrics["independent"])):
        row = phone[name]
        assert row["n"] == 6 and row["wideband"] == figures["accuracy"]
        for law in ("mulaw", "alaw"):
            assert 0.0 <= row[law] <= 1.0
            assert row[f"drop_points_{law}"] == round(100 * (row["wideband"] - row[law]), 1)
    assert "## Telephone-band audio" in card
    assert f"| own generator, held-out | 6 | {100 * metrics['accuracy']:.1f} % |" in card
    assert "30.0 % of the training clips, drawn per clip, pass through a telephone" in card
    assert manifest.provenance["recipe"]["telephone_share"] == 0.3
    assert (model_dir / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_reuse_keeps_corpora_and_network(built: tuple[Path, Path], tmp_path: Path) -> None:
    import training.release.default_model as default_model

    work, model_dir = built
    weights = (work / "melcnn" / "model.pt").read_bytes()
    corpus_csv = (work / "corpus" / "split.csv").read_bytes()
    original = default_model.Recipe
    default_model.Recipe = lambda: TINY  # type: ignore[assignment,misc]
    try:
        out = tmp_path / "again"
        assert main(["--work", str(work), "--out", str(out), "--reuse"]) == 0
    finally:
        default_model.Recipe = original  # type: ignore[misc]
    assert (work / "melcnn" / "model.pt").read_bytes() == weights
    assert (work / "corpus" / "split.csv").read_bytes() == corpus_csv
    # Same network, same graph (export is deterministic); a new version all the same.
    assert read_manifest(out).graph.sha256 == read_manifest(model_dir).graph.sha256
    assert read_manifest(out).version != read_manifest(model_dir).version
    reused = read_manifest(out).provenance["reused"]
    assert reused == {"corpus": True, "independent": True, "network": True}
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "took the training corpus, the independent test set, the trained network" in card


def test_reuse_trains_again_when_the_recipe_changed(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    import training.release.default_model as default_model

    work, _ = built
    # A copy of the work directory, so the other tests keep the original network.
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    weights = (copy / "melcnn" / "model.pt").read_bytes()
    other = dataclasses.replace(TINY, training=dataclasses.replace(TINY.training, seed=1))
    original = default_model.Recipe
    default_model.Recipe = lambda: other  # type: ignore[assignment,misc]
    try:
        assert main(["--work", str(copy), "--out", str(tmp_path / "m"), "--reuse"]) == 0
    finally:
        default_model.Recipe = original  # type: ignore[misc]
    reused = read_manifest(tmp_path / "m").provenance["reused"]
    assert reused == {"corpus": True, "independent": True, "network": False}
    assert (copy / "melcnn" / "model.pt").read_bytes() != weights
    assert read_manifest(tmp_path / "m").provenance["recipe"]["training"]["seed"] == 1


def test_reuse_renders_and_trains_again_when_the_telephone_share_changed(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    import training.release.default_model as default_model

    work, _ = built
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    other = dataclasses.replace(TINY, telephone_share=0.0)
    original = default_model.Recipe
    default_model.Recipe = lambda: other  # type: ignore[assignment,misc]
    try:
        assert main(["--work", str(copy), "--out", str(tmp_path / "m"), "--reuse"]) == 0
    finally:
        default_model.Recipe = original  # type: ignore[misc]
    manifest = read_manifest(tmp_path / "m")
    assert manifest.provenance["reused"] == {
        "corpus": False,
        "independent": True,
        "network": False,
    }
    recorded = json.loads((copy / "corpus" / "corpus_config.json").read_text(encoding="utf-8"))
    assert recorded["telephone_probability"] == 0.0
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "pass through a telephone" not in card
    assert "## Telephone-band audio" in card  # measured all the same
