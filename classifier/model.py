"""The model directory: an ONNX graph plus ``manifest.json`` (see docs/model-format.md)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
CANONICAL_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgust")


class ModelError(ValueError):
    """A model directory that cannot be served; the message says what is wrong.

    ``public`` says it without naming any path, for answers to clients: whether a path
    exists, is a directory or holds a manifest is not theirs to learn.
    """

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = message if public is None else public


NOT_A_MODEL = "there is no readable model directory at that path"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    name: str = "input_values"
    normalize: Literal["zero_mean_unit_var", "none"] = "zero_mean_unit_var"
    min_samples: int = Field(default=400, ge=1)


class OutputSpec(_Strict):
    name: str = "logits"


class GraphSpec(_Strict):
    file: str = "model.onnx"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    precision: Literal["fp32", "int8"] = "int8"


class Calibration(_Strict):
    """Temperature scaling: the served scores are softmax(logits / temperature)."""

    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0, le=100, allow_inf_nan=False)
    fitted_on: str = Field(default="", max_length=500)  # the data it was fitted on, in words


class Manifest(_Strict):
    format: Literal[1] = 1
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=100)
    labels: tuple[str, ...] = Field(min_length=2)
    sample_rate: int = Field(ge=8000, le=48000)
    input: InputSpec = InputSpec()
    output: OutputSpec = OutputSpec()
    graph: GraphSpec
    metrics: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    # True for a model trained only to show the service working (the bundled one, on synthetic
    # speech): the browser app then says its labels mean little. Absent means False.
    demo: bool = False
    # None: the scores are the graph's own softmax, not calibrated (docs/model-format.md).
    calibration: Calibration | None = None

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(labels)) != len(labels) or not all(labels):
            raise ValueError(f"labels must be distinct non-empty strings, got {list(labels)}")
        return labels

    @field_validator("graph")
    @classmethod
    def _graph_in_directory(cls, graph: GraphSpec) -> GraphSpec:
        if Path(graph.file).name != graph.file:
            raise ValueError(f"graph.file must be a plain file name, got {graph.file!r}")
        return graph

    def public(self) -> dict[str, Any]:
        """What ``GET /v1/model`` serves: an allow-list of fields, and of the metrics only
        their numbers. Provenance (command lines, file names, where data lives) and any
        text in the metrics or the calibration stay in the model directory and its card."""
        return {
            "format": self.format,
            "name": self.name,
            "version": self.version,
            "labels": list(self.labels),
            "sample_rate": self.sample_rate,
            "graph": {"precision": self.graph.precision, "sha256": self.graph.sha256},
            "metrics": _numbers_only(self.metrics),
            "demo": self.demo,
            # Whether the scores are calibrated, and how; ``fitted_on`` is text, kept back.
            "calibration": None
            if self.calibration is None
            else {
                "method": self.calibration.method,
                "temperature": self.calibration.temperature,
            },
        }

    def document(self) -> dict[str, Any]:
        """The whole manifest, as written to ``manifest.json``."""
        return self.model_dump(mode="json")

    def summary(self) -> dict[str, Any]:
        """The short form carried in ``ready`` messages and upload replies."""
        return {
            "name": self.name,
            "version": self.version,
            "labels": list(self.labels),
            "sample_rate": self.sample_rate,
        }


def _numbers_only(value: Any) -> Any:
    """``value`` with every string (and anything else that is not a number) left out."""
    if isinstance(value, dict):
        kept = {str(k): _numbers_only(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None}
    if isinstance(value, list):
        return [item for item in (_numbers_only(v) for v in value) if item is not None]
    if isinstance(value, bool | int | float):
        return value
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(model_dir: Path) -> Manifest:
    """Read and check a model directory's manifest and graph checksum."""
    manifest, graph_path = _checked_manifest(model_dir)
    try:
        actual = sha256_file(graph_path)
    except OSError as exc:
        raise ModelError(
            f"graph file {str(graph_path)!r} cannot be read: {exc}", "its graph cannot be read"
        ) from exc
    _check_digest(manifest, graph_path, actual)
    return manifest


def read_model(model_dir: Path) -> tuple[Manifest, bytes]:
    """The manifest and the graph's bytes, checked against its checksum: the caller loads
    exactly the bytes that were verified (a file replaced in between cannot slip in)."""
    manifest, graph_path = _checked_manifest(model_dir)
    try:
        graph = graph_path.read_bytes()
    except OSError as exc:
        raise ModelError(
            f"graph file {str(graph_path)!r} cannot be read: {exc}", "its graph cannot be read"
        ) from exc
    _check_digest(manifest, graph_path, hashlib.sha256(graph).hexdigest())
    return manifest, graph


def _checked_manifest(model_dir: Path) -> tuple[Manifest, Path]:
    if not model_dir.is_dir():
        raise ModelError(f"model directory {str(model_dir)!r} does not exist", NOT_A_MODEL)
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelError(f"{str(manifest_path)!r} is missing", NOT_A_MODEL)
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{str(manifest_path)!r} cannot be read: {exc}", NOT_A_MODEL) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{str(manifest_path)!r} is not valid JSON: {exc}", NOT_A_MODEL) from exc
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ModelError(
            f"{str(manifest_path)!r} is not a valid manifest: {problems}",
            f"its manifest is not valid: {problems}",
        ) from exc
    graph_path = model_dir / manifest.graph.file
    if not graph_path.is_file():
        raise ModelError(
            f"graph file {str(graph_path)!r} named by the manifest is missing",
            "the graph file its manifest names is missing",
        )
    return manifest, graph_path


def _check_digest(manifest: Manifest, graph_path: Path, actual: str) -> None:
    if actual != manifest.graph.sha256:
        raise ModelError(
            f"checksum mismatch for {str(graph_path)!r}: manifest says "
            f"{manifest.graph.sha256}, file has {actual}",
            f"checksum mismatch: the manifest says {manifest.graph.sha256}, the graph has {actual}",
        )


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    path = model_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest.document(), indent=2) + "\n", encoding="utf-8")
    return path
