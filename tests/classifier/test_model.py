"""The model directory's manifest and checksum checks (classifier/model.py), on a tiny export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from classifier.model import (
    CANONICAL_LABELS,
    MANIFEST_FILE,
    Manifest,
    ModelError,
    read_manifest,
    sha256_file,
    write_manifest,
)


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def manifest_dict(model_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((model_dir / MANIFEST_FILE).read_text())
    return data


def write_dict(model_dir: Path, data: object) -> None:
    (model_dir / MANIFEST_FILE).write_text(json.dumps(data))


def test_reads_a_valid_directory(tiny_model_dir: Path) -> None:
    manifest = read_manifest(tiny_model_dir)
    assert manifest.name == "tiny-test"
    assert manifest.labels == CANONICAL_LABELS
    assert manifest.sample_rate == 16000
    assert manifest.graph.precision == "int8"
    assert manifest.graph.sha256 == sha256_file(tiny_model_dir / manifest.graph.file)
    assert manifest.summary() == {
        "name": "tiny-test",
        "version": manifest.version,
        "labels": list(CANONICAL_LABELS),
        "sample_rate": 16000,
    }
    public = manifest.public()
    assert public["graph"]["sha256"] == manifest.graph.sha256
    assert manifest.document()["provenance"]["seed"] == 0


def test_the_public_manifest_is_an_allow_list(model_copy: Path) -> None:
    data = manifest_dict(model_copy)
    data["provenance"] = {"command": ["/home/alice/venv/bin/python", "-m", "training.cli"]}
    data["metrics"] = {
        "accuracy": 0.8,
        "eval_data": "/home/alice/private/eval.csv",
        "per_class": {"sad": {"f1": 0.7, "note": "/srv/data"}},
        "history": [{"loss": 1.5, "path": "/tmp/x"}],
    }
    data["input"]["name"] = "secret_input_name"
    write_dict(model_copy, data)
    public = read_manifest(model_copy).public()
    assert set(public) == {
        "format", "name", "version", "labels", "sample_rate", "graph", "metrics", "demo",
        "calibration",
    }  # fmt: skip
    assert public["graph"] == {
        "precision": data["graph"]["precision"],
        "sha256": data["graph"]["sha256"],
        "variant": "",
        "agreement": None,
        "selection": None,  # the server fills it in (classifier/selection.py)
    }
    assert public["metrics"] == {
        "accuracy": 0.8,
        "per_class": {"sad": {"f1": 0.7}},
        "history": [{"loss": 1.5}],
    }
    assert "/home" not in json.dumps(public) and "/srv" not in json.dumps(public)
    assert read_manifest(model_copy).document()["provenance"] == data["provenance"]


def test_demo_is_an_optional_flag_off_by_default(model_copy: Path) -> None:
    data = manifest_dict(model_copy)
    assert data["demo"] is False
    del data["demo"]
    write_dict(model_copy, data)  # a manifest from before the key existed still loads
    assert read_manifest(model_copy).demo is False
    assert read_manifest(model_copy).public()["demo"] is False
    write_dict(model_copy, {**data, "demo": True})
    assert read_manifest(model_copy).demo is True
    write_dict(model_copy, {**data, "demo": "yes please"})
    with pytest.raises(ModelError, match="demo"):
        read_manifest(model_copy)


def test_the_bundled_model_says_it_is_a_demo() -> None:
    bundled = Path(__file__).resolve().parents[2] / "models" / "default"
    assert read_manifest(bundled).demo is True


def test_write_manifest_round_trips(model_copy: Path) -> None:
    manifest = read_manifest(model_copy)
    changed = manifest.model_copy(update={"metrics": {"accuracy": 0.5}})
    write_manifest(model_copy, changed)
    assert read_manifest(model_copy) == changed
    assert read_manifest(model_copy).metrics == {"accuracy": 0.5}


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelError, match="does not exist") as info:
        read_manifest(missing)
    assert str(missing) in str(info.value)


def test_a_file_is_not_a_directory(model_copy: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        read_manifest(model_copy / MANIFEST_FILE)


def test_missing_manifest(model_copy: Path) -> None:
    (model_copy / MANIFEST_FILE).unlink()
    with pytest.raises(ModelError, match=r"manifest\.json' is missing"):
        read_manifest(model_copy)


@pytest.mark.parametrize("content", [b"{not json", b"", b'{"name": "x",}', b"\xff\xfe\x00garbage"])
def test_manifest_not_json(model_copy: Path, content: bytes) -> None:
    (model_copy / MANIFEST_FILE).write_bytes(content)
    with pytest.raises(ModelError, match="is not valid JSON"):
        read_manifest(model_copy)


@pytest.mark.parametrize("data", [[1, 2, 3], "manifest", 42, None])
def test_manifest_not_an_object(model_copy: Path, data: object) -> None:
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match="<root>"):
        read_manifest(model_copy)


@pytest.mark.parametrize("key", ["name", "version", "labels", "sample_rate", "graph"])
def test_missing_key_is_named(model_copy: Path, key: str) -> None:
    data = manifest_dict(model_copy)
    del data[key]
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match=rf"{key}: Field required"):
        read_manifest(model_copy)


def test_missing_nested_key_is_named(model_copy: Path) -> None:
    data = manifest_dict(model_copy)
    del data["graph"]["sha256"]
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match=r"graph\.sha256: Field required"):
        read_manifest(model_copy)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("sample_rate",), "fast"),
        (("sample_rate",), 16000.5),
        (("labels",), "neutral"),
        (("labels",), [1, 2, 3]),
        (("name",), 7),
        (("name",), ""),
        (("format",), 2),
        (("input", "normalize"), "minmax"),
        (("input", "min_samples"), 0),
        (("graph", "sha256"), "not-a-digest"),
        (("graph", "sha256"), "A" * 64),
        (("graph", "precision"), "fp16"),
        (("metrics",), [1, 2]),
    ],
)
def test_wrong_type_or_value_is_named(
    model_copy: Path, path: tuple[str, ...], value: object
) -> None:
    data = manifest_dict(model_copy)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match="is not a valid manifest") as info:
        read_manifest(model_copy)
    assert ".".join(path) + ":" in str(info.value)


@pytest.mark.parametrize("where", [(), ("input",), ("graph",)])
def test_unknown_key_is_refused(model_copy: Path, where: tuple[str, ...]) -> None:
    data = manifest_dict(model_copy)
    target = data
    for key in where:
        target = target[key]
    target["lables"] = ["typo"]
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match="Extra inputs are not permitted") as info:
        read_manifest(model_copy)
    assert ".".join((*where, "lables")) + ":" in str(info.value)


@pytest.mark.parametrize(
    "labels",
    [
        ["neutral", "happy", "neutral", "sad"],
        ["neutral", "", "sad"],
        ["neutral"],
    ],
)
def test_bad_labels(model_copy: Path, labels: list[str]) -> None:
    data = manifest_dict(model_copy)
    data["labels"] = labels
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match="labels:"):
        read_manifest(model_copy)


def test_duplicated_labels_are_listed(model_copy: Path) -> None:
    data = manifest_dict(model_copy)
    data["labels"] = ["neutral", "happy", "happy"]
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match="distinct") as info:
        read_manifest(model_copy)
    assert "'happy', 'happy'" in str(info.value)


@pytest.mark.parametrize("rate", [0, 7999, 48001, 96000, -16000])
def test_sample_rate_out_of_range(model_copy: Path, rate: int) -> None:
    data = manifest_dict(model_copy)
    data["sample_rate"] = rate
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match="sample_rate:"):
        read_manifest(model_copy)


@pytest.mark.parametrize("rate", [8000, 48000])
def test_sample_rate_limits_are_inclusive(model_copy: Path, rate: int) -> None:
    data = manifest_dict(model_copy)
    data["sample_rate"] = rate
    write_dict(model_copy, data)
    assert read_manifest(model_copy).sample_rate == rate


@pytest.mark.parametrize("name", ["../model.onnx", "sub/model.onnx", "/etc/passwd", "."])
def test_graph_file_must_be_a_plain_name(model_copy: Path, name: str) -> None:
    data = manifest_dict(model_copy)
    data["graph"]["file"] = name
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match="graph"):
        read_manifest(model_copy)


def test_graph_file_missing(model_copy: Path) -> None:
    (model_copy / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"graph file .*model\.onnx' named by the manifest"):
        read_manifest(model_copy)


def test_graph_named_elsewhere_is_missing(model_copy: Path) -> None:
    data = manifest_dict(model_copy)
    data["graph"]["file"] = "other.onnx"
    write_dict(model_copy, data)
    with pytest.raises(ModelError, match=r"other\.onnx' named by the manifest is missing"):
        read_manifest(model_copy)


@pytest.mark.parametrize("target", ["manifest", "graph"])
def test_unreadable_files(model_copy: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    # Running as root makes chmod useless here, so the read itself is made to fail.
    name = MANIFEST_FILE if target == "manifest" else "model.onnx"
    real_open = Path.open

    def refusing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing_open)
    with pytest.raises(ModelError, match=r"cannot be read: .*Permission denied") as info:
        read_manifest(model_copy)
    assert name in str(info.value)


def test_checksum_mismatch_after_one_flipped_byte(model_copy: Path) -> None:
    graph = model_copy / "model.onnx"
    expected = read_manifest(model_copy).graph.sha256
    content = bytearray(graph.read_bytes())
    content[len(content) // 2] ^= 0x01
    graph.write_bytes(bytes(content))
    with pytest.raises(ModelError, match="checksum mismatch") as info:
        read_manifest(model_copy)
    message = str(info.value)
    assert expected in message
    assert sha256_file(graph) in message


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    data = bytes(range(256)) * 10_000  # several read blocks
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_manifest_defaults() -> None:
    manifest = Manifest.model_validate(
        {
            "name": "m",
            "version": "1",
            "labels": ["a", "b"],
            "sample_rate": 16000,
            "graph": {"sha256": "0" * 64},
        }
    )
    assert manifest.input.name == "input_values"
    assert manifest.input.normalize == "zero_mean_unit_var"
    assert manifest.input.min_samples == 400
    assert manifest.output.name == "logits"
    assert manifest.graph.file == "model.onnx"


def test_calibration_is_optional_and_absent_means_uncalibrated(model_copy: Path) -> None:
    data = manifest_dict(model_copy)
    assert data["calibration"] is None  # written explicitly: the model is uncalibrated
    del data["calibration"]
    write_dict(model_copy, data)
    assert read_manifest(model_copy).calibration is None
    write_dict(model_copy, {**data, "calibration": {"temperature": 1.7, "fitted_on": "val"}})
    calibration = read_manifest(model_copy).calibration
    assert calibration is not None and calibration.temperature == 1.7
    assert calibration.method == "temperature"
    # /v1/model says how the scores are calibrated, not the fitted_on text; the file keeps it
    assert read_manifest(model_copy).public()["calibration"] == {
        "method": "temperature",
        "temperature": 1.7,
    }
    assert read_manifest(model_copy).document()["calibration"]["fitted_on"] == "val"
    write_dict(model_copy, data)
    assert read_manifest(model_copy).public()["calibration"] is None


@pytest.mark.parametrize(
    ("calibration", "named"),
    [
        ({"temperature": 0}, "calibration.temperature"),
        ({"temperature": -1.5}, "calibration.temperature"),
        ({"temperature": "warm"}, "calibration.temperature"),
        ({"temperature": 1e9}, "calibration.temperature"),
        ({}, "calibration.temperature: Field required"),
        ({"temperature": 1.0, "method": "vector"}, "calibration.method"),
        ({"temperature": 1.0, "bias": [0.1]}, "calibration.bias"),
        ("1.5", "calibration"),
    ],
)
def test_a_bad_calibration_is_refused_naming_the_field(
    model_copy: Path, calibration: object, named: str
) -> None:
    write_dict(model_copy, {**manifest_dict(model_copy), "calibration": calibration})
    with pytest.raises(ModelError, match="is not a valid manifest") as info:
        read_manifest(model_copy)
    assert named in str(info.value)
