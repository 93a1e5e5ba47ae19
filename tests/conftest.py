from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from tests.programs import PACKAGES_FILE, unlisted_programs

# Every program this session starts (including those started inside libraries), checked
# against scripts/system-packages.txt when the session ends; see tests/test_system_packages.py.
_started_programs: set[str] = set()


def _record_started_program(event: str, args: tuple[object, ...]) -> None:
    if event == "subprocess.Popen":
        _started_programs.add(os.fsdecode(args[0]))  # type: ignore[arg-type]


sys.addaudithook(_record_started_program)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    unlisted = unlisted_programs(_started_programs)
    if unlisted:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (
            f"the tests started programs that {PACKAGES_FILE.name} does not list "
            f"(a new machine will not have them): {', '.join(unlisted)}"
        )
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-initialised six-class wav2vec2 classifier, int8 ONNX, as served."""
    from training.models.tiny import build_tiny_model_dir

    out = tmp_path_factory.mktemp("models") / "tiny-int8"
    logging.getLogger().setLevel(logging.WARNING)
    build_tiny_model_dir(out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny model with other weights (a new version), fp32, for model switches."""
    from training.models.tiny import build_tiny_model_dir

    out = tmp_path_factory.mktemp("models") / "tiny-fp32"
    build_tiny_model_dir(out, seed=1, precision="fp32", name="tiny-test-b")
    return out


@pytest.fixture(scope="session")
def tiny_alternatives_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (``convmm``) with two real alternative graphs, ``convmm-u8u8`` and
    ``convmm-perchannel``, and one, ``convmm-reduce-range``, recorded below 0.99 agreement."""
    from tests.alternatives import build_tiny_alternatives_dir

    out = tmp_path_factory.mktemp("models") / "tiny-alternatives"
    return build_tiny_alternatives_dir(
        out, {"convmm-u8u8": 0.995, "convmm-perchannel": 1.0, "convmm-reduce-range": 0.97}
    )
