"""Fixtures of the command's tests: a real server in a subprocess, two sentences and a blip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.served import Served, start_server, stop_server
from tests.speech import espeak, short_word, silence, wav_bytes


@pytest.fixture(scope="module")
def speech() -> npt.NDArray[np.float32]:
    """Two sentences and 150 ms of a spoken word (real speech, too short), 16 kHz."""
    return np.concatenate(
        [
            silence(0.4),
            espeak("The weather was lovely this morning.", rate_wpm=190),
            silence(1.0),
            espeak("Please close the door.", rate_wpm=190),
            silence(1.0),
            short_word(),
            silence(0.8),
        ]
    )


@pytest.fixture
def speech_wav(speech: npt.NDArray[np.float32], tmp_path: Path) -> Path:
    path = tmp_path / "speech.wav"
    path.write_bytes(wav_bytes(speech))
    return path


@pytest.fixture(scope="module")
def served(tiny_model_dir: Path) -> Iterator[Served]:
    server = start_server(tiny_model_dir)
    yield server
    assert stop_server(server) == 0, "".join(server.log)
