"""A manifest's alternative graphs (classifier/model.py): read, checked and written like
``graph``; manifests from before they existed load unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from classifier.inference import OnnxClassifier
from classifier.model import MANIFEST_FILE, ModelError, read_manifest, sha256_file, write_manifest


@pytest.fixture
def alt_copy(tiny_alternatives_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_alternatives_dir, tmp_path / "model"))


def manifest_dict(model_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((model_dir / MANIFEST_FILE).read_text())
    return data


def write_dict(model_dir: Path, data: object) -> None:
    (model_dir / MANIFEST_FILE).write_text(json.dumps(data))


def test_alternatives_are_read_in_manifest_order(tiny_alternatives_dir: Path) -> None:
    manifest = read_manifest(tiny_alternatives_dir)
    assert [(g.variant, g.agreement) for g in manifest.graphs] == [
        ("convmm", 1.0),
        ("convmm-u8u8", 0.995),
        ("convmm-perchannel", 1.0),
        ("convmm-reduce-range", 0.97),
    ]
    for graph in manifest.alternatives:
        assert graph.sha256 == sha256_file(tiny_alternatives_dir / graph.file)
    # Each is a different graph.
    assert len({g.sha256 for g in manifest.graphs}) == 4


def test_write_manifest_round_trips_alternatives(alt_copy: Path) -> None:
    manifest = read_manifest(alt_copy)
    changed = manifest.model_copy(update={"alternatives": manifest.alternatives[:1]})
    write_manifest(alt_copy, changed)
    assert read_manifest(alt_copy) == changed
    assert manifest_dict(alt_copy)["alternatives"][0]["variant"] == "convmm-u8u8"


def test_a_manifest_without_the_new_keys_loads_as_before(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "old"))
    data = manifest_dict(copy)
    data.pop("alternatives", None)
    data["graph"].pop("variant", None)
    data["graph"].pop("agreement", None)
    write_dict(copy, data)
    manifest = read_manifest(copy)
    assert (manifest.alternatives, manifest.graph.variant, manifest.graph.agreement) == (
        (),
        "",
        None,
    )
    assert manifest.format == 1
    assert OnnxClassifier(copy).graph == manifest.graph


@pytest.mark.parametrize("reader", [read_manifest, OnnxClassifier])
def test_a_changed_alternative_fails_its_checksum(alt_copy: Path, reader: Any) -> None:
    graph = alt_copy / "model-convmm-perchannel.onnx"
    expected = read_manifest(alt_copy).alternatives[1].sha256
    content = bytearray(graph.read_bytes())
    content[len(content) // 2] ^= 0x01
    graph.write_bytes(bytes(content))
    # Refused whichever graph would be loaded: the directory is broken.
    with pytest.raises(ModelError, match="checksum mismatch") as info:
        reader(alt_copy)
    assert "model-convmm-perchannel.onnx" in str(info.value)
    assert expected in str(info.value) and sha256_file(graph) in str(info.value)


def test_a_missing_alternative_is_refused(alt_copy: Path) -> None:
    (alt_copy / "model-convmm-u8u8.onnx").unlink()
    with pytest.raises(
        ModelError, match=r"model-convmm-u8u8.onnx' named by the manifest is missing"
    ):
        read_manifest(alt_copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["alternatives"][0].update(file="../x.onnx"), "plain file name"),
        (lambda d: d["alternatives"][0].update(file="model.onnx"), "distinct files"),
        (lambda d: d["alternatives"][0].update(variant="convmm"), "distinct variant"),
        (lambda d: d["alternatives"][0].update(variant=""), "distinct variant"),
        (lambda d: d["graph"].update(variant=""), "distinct variant"),
        (lambda d: d["alternatives"][0].update(variant="auto"), "EMOSTREAM_GRAPH word"),
        (lambda d: d["alternatives"][0].update(variant="Has Space"), "variant must be"),
        (lambda d: d["alternatives"][0].update(agreement=1.5), "agreement"),
        (lambda d: d["alternatives"][0].update(unknown=1), "unknown"),
    ],
)
def test_bad_alternatives_are_refused(alt_copy: Path, change: Any, message: str) -> None:
    data = manifest_dict(alt_copy)
    change(data)
    write_dict(alt_copy, data)
    with pytest.raises(ModelError, match=message) as info:
        read_manifest(alt_copy)
    assert "alternatives" in str(info.value) or "graph" in str(info.value)


def test_the_public_manifest_names_no_alternative_file(alt_copy: Path) -> None:
    public = read_manifest(alt_copy).public()
    assert "alternatives" not in public
    assert ".onnx" not in json.dumps(public)
    assert public["graph"]["variant"] == "convmm"


def test_unset_new_keys_are_not_written(tiny_model_dir: Path) -> None:
    document = read_manifest(tiny_model_dir).document()
    assert "alternatives" not in document
    assert set(document["graph"]) == {"file", "sha256", "precision"}
