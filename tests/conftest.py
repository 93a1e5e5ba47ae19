from __future__ import annotations

import logging
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-initialised six-class wav2vec2 classifier, int8 ONNX, as served."""
    from training.tiny import build_tiny_model_dir

    out = tmp_path_factory.mktemp("models") / "tiny-int8"
    logging.getLogger().setLevel(logging.WARNING)
    build_tiny_model_dir(out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model with other weights (a new version), fp32, for model switches."""
    from training.tiny import build_tiny_model_dir

    out = tmp_path_factory.mktemp("models") / "tiny-fp32"
    build_tiny_model_dir(out, seed=1, precision="fp32", name="tiny-test-b")
    return out
