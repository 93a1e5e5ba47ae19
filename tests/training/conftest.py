from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.data import Example, write_split

TONES_HZ = {"happy": 300.0, "sad": 1500.0}


def write_tone(path: Path, freq_hz: float, rng: np.random.Generator, seconds: float = 0.5) -> Path:
    t = np.arange(round(seconds * 16000)) / 16000
    audio = rng.uniform(0.1, 0.5) * np.sin(
        2 * np.pi * freq_hz * rng.uniform(0.95, 1.05) * t + rng.uniform(0, 2 * np.pi)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), 16000)
    return path


@pytest.fixture
def tone_split(tmp_path: Path) -> Path:
    """An easy two-class task: low tone = happy, high tone = sad; 18 train + 6 val + 4 test each."""
    rng = np.random.default_rng(0)
    examples = []
    for label, freq in TONES_HZ.items():
        for i in range(28):
            split = "train" if i < 18 else "val" if i < 24 else "test"
            path = write_tone(tmp_path / "audio" / f"{label}{i}.wav", freq, rng)
            examples.append(Example(path, label, f"spk{i % 7}", split))
    return write_split(tmp_path / "split.csv", examples)


@pytest.fixture
def tiny_config_file(tmp_path: Path) -> Path:
    from training.tiny import tiny_config

    path = tmp_path / "tiny-config.json"
    tiny_config(("happy", "sad")).to_json_file(path)
    return path
