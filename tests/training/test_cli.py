from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classifier.inference import OnnxClassifier
from classifier.model import read_manifest
from tests.training.conftest import TONES_HZ, write_tone
from training import cli


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="emostream")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _ravdess_tones(root: Path) -> Path:
    """RAVDESS-named clips: happy (03) is a low tone, sad (04) a high one; 10 actors."""
    rng = np.random.default_rng(0)
    codes = {"happy": "03", "sad": "04"}
    for actor in range(1, 11):
        for label, code in codes.items():
            for statement in ("01", "02"):
                for repetition in ("01", "02"):
                    name = f"03-01-{code}-01-{statement}-{repetition}-{actor:02d}.wav"
                    write_tone(root / f"Actor_{actor:02d}" / name, TONES_HZ[label], rng)
    return root


def test_registering_does_not_import_torch() -> None:
    code = (
        "import argparse, sys\n"
        "from training import cli\n"
        "p = argparse.ArgumentParser()\n"
        "cli.register(p.add_subparsers())\n"
        "p.parse_args(['export', 'ckpt', '--out', 'x'])\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(cli.__file__).parents[1])


@pytest.mark.slow
def test_prepare_train_export_evaluate_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.models.tiny import tiny_config

    corpus = _ravdess_tones(tmp_path / "RAVDESS")
    split = tmp_path / "split.csv"
    assert (
        _run(["prepare", "--corpus", f"ravdess={corpus}", "--out", str(split), "--seed", "1"]) == 0
    )
    printed = capsys.readouterr().out
    assert f"wrote {split} (80 clips, split=speaker)" in printed
    summary = json.loads(split.with_suffix(".summary.json").read_text())
    assert summary["shared_speakers"] == []

    tiny_config(("happy", "sad")).to_json_file(tmp_path / "config.json")
    run = tmp_path / "run"
    train = [
        "train",
        "--data",
        str(split),
        "--out",
        str(run),
        "--from-config",
        str(tmp_path / "config.json"),
        "--epochs",
        "2",
        "--lr",
        "2e-3",
        "--unfreeze-feature-encoder",
        "--no-progress",
    ]
    assert _run(train) == 0
    assert "best epoch" in capsys.readouterr().out
    assert (
        _run(
            [
                *train[:3],
                "--out",
                str(tmp_path / "run2"),
                "--init",
                str(run),
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )

    model = tmp_path / "model"
    assert (
        _run(["export", str(run), "--out", str(model), "--eval", str(split), "--no-progress"]) == 0
    )
    manifest = read_manifest(model)
    assert manifest.metrics["int8_vs_fp32"]["n"] == manifest.metrics["n"] > 0
    assert manifest.labels == ("happy", "sad")
    OnnxClassifier(model)
    assert '"top1_agreement"' in capsys.readouterr().out

    report = tmp_path / "report"
    assert (
        _run(["evaluate", str(model), "--data", str(split), "--out", str(report), "--no-progress"])
        == 0
    )
    assert json.loads((report / "metrics.json").read_text())["split"] == "test"

    assert read_manifest(model).calibration is None  # no --calibrate: uncalibrated
    imported = tmp_path / "imported"
    command = ["import", str(run), "--out", str(imported), "--precision", "fp32", "--name", "mine"]
    calibrate = ["--eval", str(split), "--calibrate", "val", "--no-progress"]
    assert _run([*command, *calibrate]) == 0
    manifest = read_manifest(imported)
    assert manifest.name == "mine"
    assert manifest.calibration is not None and manifest.calibration.temperature > 0
    assert "Temperature scaling, T =" in (imported / "MODEL_CARD.md").read_text()


def test_errors_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.wav,happy\n")
    assert _run(["train", "--data", str(bad), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "lacks column(s) ['speaker', 'split']" in capsys.readouterr().err
    assert _run(["train", "--out", str(tmp_path / "o")]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert _run(["train", "--resume", "--out", str(tmp_path / "o")]) == 2
    assert "no training checkpoint" in capsys.readouterr().err
    assert _run(["evaluate", str(tmp_path), "--data", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "lacks column(s)" in capsys.readouterr().err
    assert _run(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]) == 2
    assert "cannot load an audio-classification model" in capsys.readouterr().err
    assert _run(["import", "x", "--out", str(tmp_path / "m"), "--calibrate", "val"]) == 2
    assert "calibrate='val' needs eval data (--eval)" in capsys.readouterr().err
    assert _run(["prepare", "--corpus", f"cremad={tmp_path / 'none'}", "--out", str(bad)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(["prepare", "--corpus", "iemocap=/x", "--out", str(bad)])
    assert "expected LAYOUT=DIR" in capsys.readouterr().err
    assert (
        _run(["prepare", "--corpus", f"cremad={tmp_path}", "--out", str(bad), "--map", "calm"]) == 2
    )
    assert "is not RAW=LABEL" in capsys.readouterr().err
