from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus.data import Example, write_split

TONES_HZ = {"happy": 300.0, "sad": 1500.0}


def write_tone(path: Path, freq_hz: float, rng: np.random.Generator, seconds: float = 0.5) -> Path:
    t = np.arange(round(seconds * 16000)) / 16000
    audio = rng.uniform(0.1, 0.5) * np.sin(
        2 * np.pi * freq_hz * rng.uniform(0.95, 1.05) * t + rng.uniform(0, 2 * np.pi)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), 16000)
    return path


def write_tone_corpus(root: Path) -> Path:
    """An easy two-class task: low tone = happy, high tone = sad; 18 train + 6 val + 4 test each."""
    rng = np.random.default_rng(0)
    examples = []
    for label, freq in TONES_HZ.items():
        for i in range(28):
            split = "train" if i < 18 else "val" if i < 24 else "test"
            seconds = 0.5 if i % 3 else 1.3  # two lengths, so the dynamic length axis is used
            path = write_tone(root / "audio" / f"{label}{i}.wav", freq, rng, seconds)
            examples.append(Example(path, label, f"spk{i % 7}", split))
    return write_split(root / "split.csv", examples)


@pytest.fixture
def tone_split(tmp_path: Path) -> Path:
    return write_tone_corpus(tmp_path)


@pytest.fixture
def tiny_config_file(tmp_path: Path) -> Path:
    from training.models.tiny import tiny_config

    path = tmp_path / "tiny-config.json"
    tiny_config(("happy", "sad")).to_json_file(path)
    return path


@pytest.fixture(scope="session")
def tone_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint directory, split manifest): a tiny model trained on the tone task."""
    from training.models.finetune import TrainOptions, train
    from training.models.tiny import tiny_config

    root = tmp_path_factory.mktemp("tone-run")
    split = write_tone_corpus(root)
    tiny_config(("happy", "sad")).to_json_file(root / "config.json")
    options = TrainOptions(
        data=split,
        out_dir=root / "checkpoint",
        base=None,
        from_config=root / "config.json",
        epochs=3,
        learning_rate=2e-3,
        freeze_feature_encoder=False,
        progress=False,
    )
    train(options)
    return root / "checkpoint", split
