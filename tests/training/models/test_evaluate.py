from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.corpus.data import Example, read_split, select
from training.models.evaluate import (
    EvaluationError,
    OnnxPredictor,
    TorchPredictor,
    add_noise,
    evaluate,
    load_predictor,
    write_report,
)
from training.release.release import ReleaseOptions, release

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("snr_db", [20.0, 10.0, 5.0, 0.0])
def test_add_noise_hits_the_requested_snr(snr_db: float) -> None:
    rng = np.random.default_rng(0)
    audio = (0.3 * np.sin(np.arange(160_000) / 7.0)).astype(np.float32)
    noisy = add_noise(audio, snr_db, rng)
    noise = noisy - audio
    measured = 10 * np.log10(np.mean(audio**2) / np.mean(noise**2))
    assert measured == pytest.approx(snr_db, abs=0.1)
    again = add_noise(audio, snr_db, np.random.default_rng(0))
    np.testing.assert_array_equal(noisy, again)
    assert add_noise(np.zeros(100, np.float32), snr_db, rng).max() == 0.0


def test_checkpoint_and_exported_model_score_the_same(
    tmp_path: Path, tone_checkpoint: tuple[Path, Path]
) -> None:
    checkpoint, split = tone_checkpoint
    release(checkpoint, tmp_path / "model", ReleaseOptions(precision="fp32"))
    examples = select(read_split(split), "test")
    torch_predictor = load_predictor(checkpoint)
    onnx_predictor = load_predictor(tmp_path / "model")
    assert isinstance(torch_predictor, TorchPredictor)
    assert isinstance(onnx_predictor, OnnxPredictor)
    a = evaluate(torch_predictor, examples)
    b = evaluate(onnx_predictor, examples)
    np.testing.assert_allclose(a.clean_logits, b.clean_logits, atol=1e-4)
    assert a.clean["confusion"] == b.clean["confusion"]
    assert a.snr == b.snr
    assert list(a.snr) == ["clean", "20", "10", "5"]
    assert sum(map(sum, a.clean["confusion"])) == len(examples)


def test_report_files(tmp_path: Path, tone_checkpoint: tuple[Path, Path]) -> None:
    checkpoint, split = tone_checkpoint
    examples = select(read_split(split), "val")
    evaluation = evaluate(load_predictor(checkpoint), examples, snr_levels_db=(None, 10.0))
    out = write_report(evaluation, tmp_path / "report", "Tones", {"model": "tiny"})
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "tiny"
    assert metrics["labels"] == ["happy", "sad"]
    assert metrics["n"] == 12
    assert set(metrics["per_class"]) == {"happy", "sad"}
    assert set(metrics["per_class"]["sad"]) == {"precision", "recall", "f1", "support"}
    assert list(metrics["snr"]) == ["clean", "10"]
    assert metrics["accuracy"] == metrics["snr"]["clean"]["accuracy"]
    report = (out / "report.md").read_text()
    assert report.startswith("# Tones")
    assert "| 10 dB SNR |" in report
    assert "| sad |" in report
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluation_errors(tmp_path: Path, tone_checkpoint: tuple[Path, Path]) -> None:
    checkpoint, split = tone_checkpoint
    predictor = load_predictor(checkpoint)
    stranger = [Example(read_split(split)[0].path, "angry", "", "test")]
    with pytest.raises(EvaluationError, match=r"label\(s\) \['angry'\] the model lacks"):
        evaluate(predictor, stranger)
    with pytest.raises(EvaluationError, match="no examples"):
        evaluate(predictor, [])
    with pytest.raises(EvaluationError, match="neither a model directory"):
        load_predictor(tmp_path)
