from __future__ import annotations

from pathlib import Path

import pytest

from training.corpus.data import read_split, select
from training.models.quantization import quantize_int8
from training.models.quantization_study import main, study, table

pytestmark = pytest.mark.slow


def test_study_compares_every_recipe_with_fp32(tone_checkpoint: tuple[Path, Path]) -> None:
    checkpoint, split = tone_checkpoint
    examples = select(read_split(split), "test")[:4]
    rows = study(checkpoint, examples)
    assert [r["recipe"] for r in rows] == [
        "fp32",
        "matmul",
        "matmul-conv",
        "matmul-conv-all",
        "matmul-perchannel",
        "convmm",
        "convmm-u8u8",
        "convmm-reduce-range",
        "convmm-perchannel",
        "convmm-static",
    ]
    fp32 = rows[0]
    assert fp32["clean"]["top1_agreement"] == 1.0
    assert fp32["clean"]["max_abs_logit_error"] == 0.0
    for row in rows[1:]:
        for condition in ("clean", "noisy"):
            assert row[condition]["n"] == 4
            assert 0.0 <= row[condition]["top1_agreement"] <= 1.0
            assert row[condition]["max_abs_logit_error"] > 0.0
    # Every recipe on the plain graph shrinks it (by how much depends on the model's size).
    # convmm (and its variants) quantises a rewritten graph whose slicing constants outweigh a tiny model's
    # convolution weights, so it is not smaller here (it is on wav2vec2-base: BENCHMARKS.md).
    assert all(
        r["size_bytes"] < fp32["size_bytes"] for r in rows[1:] if not r["recipe"].startswith("convmm")
    )
    rendered = table(rows)
    assert rendered.count("\n") == len(rows) + 1
    assert "| matmul-conv |" in rendered


def test_command_line(tone_checkpoint: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    checkpoint, split = tone_checkpoint
    out = tmp_path / "rows.json"
    assert main([str(checkpoint), "--data", str(split), "--limit", "2", "--json", str(out)]) == 0
    assert "2 clips of" in capsys.readouterr().out
    assert out.read_text().startswith("[")


def test_unknown_recipe(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown quantisation 'all'"):
        quantize_int8(tmp_path / "a.onnx", tmp_path / "b.onnx", "all")
