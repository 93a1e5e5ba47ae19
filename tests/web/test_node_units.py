"""Runs the JavaScript unit tests (resampler, WAV encoder, protocol, results) under Node."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.programs import require

HERE = Path(__file__).resolve().parent


def test_javascript_unit_tests_pass() -> None:
    node = require("node")
    files = sorted(str(path) for path in HERE.glob("*.test.mjs"))
    assert len(files) >= 5
    run = subprocess.run(
        [node, "--test", *files], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout
