"""The log-mel network: front end, ONNX graph as the server runs it, training and quantisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from classifier.inference import OnnxClassifier
from tests.training.conftest import write_tone_corpus
from training.corpus.data import read_split, select
from training.models.export import package_graph
from training.models.melcnn import (
    LogMel,
    MelCnn,
    MelCnnConfig,
    TrainConfig,
    export_onnx,
    front_end_nodes,
    log_mel_numpy,
    mel_filterbank,
    train_melcnn,
)

SMALL = MelCnnConfig(channels=16, embedding=16, hidden=16, labels=("happy", "sad"))


def test_mel_filterbank_covers_the_band_with_rising_centres() -> None:
    bank = mel_filterbank(MelCnnConfig())
    assert bank.shape == (257, 64)
    assert np.all(bank >= 0)
    centres = bank.argmax(axis=0)
    assert np.all(np.diff(centres) >= 0)
    freqs = np.linspace(0, 8000, 257)
    assert freqs[centres[0]] < 120 and freqs[centres[-1]] > 7000


def test_numpy_front_end_equals_the_graph_front_end() -> None:
    rng = np.random.default_rng(0)
    for samples in (512, 5000, 16000, 33333):
        clip = rng.standard_normal(samples).astype(np.float32)
        with torch.no_grad():
            graph = LogMel(MelCnnConfig())(torch.from_numpy(clip)[None])[0].numpy()
        fast = log_mel_numpy(clip, MelCnnConfig())
        assert graph.shape == fast.shape == (64, 1 + (samples - 512) // 320)
        np.testing.assert_allclose(graph, fast, atol=2e-3)


def test_front_end_sees_a_tone_in_the_right_band() -> None:
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    mel = log_mel_numpy(tone, MelCnnConfig())
    band = int(mel.mean(axis=1).argmax())
    centre = np.linspace(0, 8000, 257)[mel_filterbank(MelCnnConfig())[:, band].argmax()]
    assert abs(centre - 1000) < 120


def test_onnx_graph_matches_pytorch_and_loads_in_the_server(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MelCnn(SMALL).eval()
    graph = export_onnx(model, tmp_path / "model.onnx")
    package_graph(
        graph,
        tmp_path / "dir",
        name="melcnn-test",
        labels=list(SMALL.labels),
        precision="fp32",
        min_samples=SMALL.min_samples,
    )
    classifier = OnnxClassifier(tmp_path / "dir")
    assert classifier.manifest.input.min_samples == SMALL.min_samples
    rng = np.random.default_rng(1)
    for samples in (10, SMALL.min_samples, 16000, 50000):  # shorter ones are zero-padded
        clip = rng.standard_normal(samples).astype(np.float32)
        logits = classifier.logits(clip)
        padded = np.pad(clip, (0, max(0, SMALL.min_samples - samples)))
        normalised = (padded - padded.mean()) / np.sqrt(padded.var() + 1e-7)
        with torch.no_grad():
            expected = model(torch.from_numpy(normalised.astype(np.float32))[None])[0].numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-3)
    names = front_end_nodes(graph)
    assert any(n.startswith("/front/") for n in names)
    assert not any(n.startswith(("/body/", "/head/")) for n in names)


def test_front_end_nodes_refuses_a_graph_without_a_log(tmp_path: Path) -> None:
    from training.models.tiny import build_tiny_model_dir

    build_tiny_model_dir(tmp_path / "w2v", precision="fp32")
    with pytest.raises(ValueError, match="no Log node"):
        front_end_nodes(tmp_path / "w2v" / "model.onnx")


def test_training_learns_an_easy_task_and_is_deterministic(tmp_path: Path) -> None:
    split = write_tone_corpus(tmp_path)
    rows = read_split(split)
    config = TrainConfig(
        epochs=8, batch_size=8, crop_frames=(10, 20), threads=1, learning_rate=1e-2
    )
    first = train_melcnn(select(rows, "train"), select(rows, "val"), SMALL, config, progress=False)
    second = train_melcnn(select(rows, "train"), select(rows, "val"), SMALL, config, progress=False)
    assert first.best_val["accuracy"] >= 0.9
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    for a, b in zip(
        first.model.state_dict().values(), second.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_training_refuses_unknown_labels_and_empty_splits(tmp_path: Path) -> None:
    rows = read_split(write_tone_corpus(tmp_path))
    other = MelCnnConfig(labels=("neutral", "angry"))
    with pytest.raises(ValueError, match="not among the model's"):
        train_melcnn(select(rows, "train"), select(rows, "val"), other, TrainConfig())
    with pytest.raises(ValueError, match="needs train and val"):
        train_melcnn(select(rows, "train"), [], SMALL, TrainConfig())


def test_model_cost_times_model_directories_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.models.cost import main as cost_main
    from training.models.cost import measure
    from training.models.tiny import build_tiny_model_dir

    build_tiny_model_dir(tmp_path / "a", precision="fp32")
    build_tiny_model_dir(tmp_path / "b")
    results = measure([tmp_path / "a", tmp_path / "b"], seconds=0.5, rounds=2, warmup=1)
    assert results[str(tmp_path / "a")]["vs_first"] == 1.0
    assert all(r["median_ms"] > 0 for r in results.values())
    out = tmp_path / "cost.json"
    assert cost_main([str(tmp_path / "a"), "--quick", "--seconds", "0.5", "--json", str(out)]) == 0
    assert "one thread, 0.5 s segment" in capsys.readouterr().out
    assert out.is_file()
    with pytest.raises(SystemExit):
        cost_main([str(tmp_path / "missing"), "--quick"])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="rounds"):
        measure([tmp_path / "a"], seconds=1.0, rounds=0)
