from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import vad

ROOT = Path(__file__).resolve().parents[2]


def test_public_names_resolve() -> None:
    assert sorted(vad.__all__) == sorted(set(vad.__all__))
    for name in vad.__all__:
        assert getattr(vad, name) is not None, name


def test_import_pulls_in_no_model_or_server_code() -> None:
    script = (
        "import sys, vad; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'torch', 'transformers', 'onnxruntime', 'server'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
