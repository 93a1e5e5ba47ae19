"""The model directory: an ONNX graph plus ``manifest.json`` (see docs/model-format.md)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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


# A graph's variant: the name of the recipe that made it (``convmm``, ``convmm-u8u8`` …).
# Short and plain, since ``GET /v1/model`` serves it; ``auto`` and ``default`` are the
# EMOSTREAM_GRAPH setting's own words, so no variant may take them.
VARIANT_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,39}$"
RESERVED_VARIANTS = ("auto", "default")


class GraphSpec(_Strict):
    file: str = "model.onnx"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    precision: Literal["fp32", "int8"] = "int8"
    # Empty: unnamed (a manifest without alternatives may leave it so).
    variant: str = ""
    # The worst top-1 agreement with the fp32 graph, clean or noisy, as the release measured
    # it; None: not measured (an alternative without it is never chosen).
    agreement: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)

    @field_validator("variant")
    @classmethod
    def _variant_name(cls, variant: str) -> str:
        if variant and not re.fullmatch(VARIANT_PATTERN, variant):
            raise ValueError(
                f"variant must be 1-40 of a-z 0-9 . _ - (starting with a letter or digit), "
                f"got {variant!r}"
            )
        if variant in RESERVED_VARIANTS:
            raise ValueError(f"variant may not be {variant!r} (an EMOSTREAM_GRAPH word)")
        return variant


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
    # Other graphs of the same model in the same directory (same input, output and labels),
    # each made by another recipe; the server picks one per EMOSTREAM_GRAPH (docs/deployment.md).
    alternatives: tuple[GraphSpec, ...] = ()
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

    @field_validator("alternatives")
    @classmethod
    def _alternatives_in_directory(cls, graphs: tuple[GraphSpec, ...]) -> tuple[GraphSpec, ...]:
        for graph in graphs:
            if Path(graph.file).name != graph.file:
                raise ValueError(
                    f"alternatives' file must be a plain file name, got {graph.file!r}"
                )
        return graphs

    @model_validator(mode="after")
    def _graphs_distinct(self) -> Manifest:
        if not self.alternatives:
            return self
        graphs = self.graphs
        files = [g.file for g in graphs]
        if len(set(files)) != len(files):
            raise ValueError(f"graph and alternatives must name distinct files, got {files}")
        variants = [g.variant for g in graphs]
        if not all(variants) or len(set(variants)) != len(variants):
            raise ValueError(
                "with alternatives, graph and each alternative need a distinct variant name, "
                f"got {variants}"
            )
        return self

    @property
    def graphs(self) -> tuple[GraphSpec, ...]:
        """The default graph, then the alternatives, in manifest order."""
        return (self.graph, *self.alternatives)

    def public(
        self, running: GraphSpec | None = None, selection: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """What ``GET /v1/model`` serves: an allow-list of fields, and of the metrics only
        their numbers. Provenance (command lines, file names, where data lives) and any
        text in the metrics or the calibration stay in the model directory and its card.

        ``running``: the graph being served (default ``graph``); ``selection``: why it was
        chosen (classifier.selection.Selection.public(): its words and numbers only)."""
        graph = self.graph if running is None else running
        return {
            "format": self.format,
            "name": self.name,
            "version": self.version,
            "labels": list(self.labels),
            "sample_rate": self.sample_rate,
            "graph": {
                "precision": graph.precision,
                "sha256": graph.sha256,
                "variant": graph.variant,
                "agreement": graph.agreement,
                "selection": selection,
            },
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
        """The whole manifest, as written to ``manifest.json``. The keys added for alternative
        graphs are left out while unset, so such a manifest is what servers from before
        them read too."""
        data: dict[str, Any] = self.model_dump(mode="json")
        if not self.alternatives:
            del data["alternatives"]
        for graph in (data["graph"], *data.get("alternatives", ())):
            if graph["variant"] == "":
                del graph["variant"]
            if graph["agreement"] is None:
                del graph["agreement"]
        return data

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
    """Read and check a model directory's manifest and the checksum of every graph it names."""
    manifest = _checked_manifest(model_dir)
    for graph in manifest.graphs:
        path = model_dir / graph.file
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        _check_digest(graph, path, actual)
    return manifest


def read_model(model_dir: Path, variant: str | None = None) -> tuple[Manifest, GraphSpec, bytes]:
    """The manifest, the graph to load (``variant``, default the manifest's ``graph``) and
    its bytes, checked against its checksum: the caller loads exactly the bytes that were
    verified (a file replaced in between cannot slip in). The other graphs' checksums are
    checked too, so a directory with any broken graph is refused whichever one is asked."""
    manifest = _checked_manifest(model_dir)
    chosen = manifest.graph if variant is None else graph_named(manifest, variant)
    data = b""
    for graph in manifest.graphs:
        path = model_dir / graph.file
        try:
            if graph is chosen:
                data = path.read_bytes()
                actual = hashlib.sha256(data).hexdigest()
            else:
                actual = sha256_file(path)
        except OSError as exc:
            raise _unreadable(path, exc) from exc
        _check_digest(graph, path, actual)
    return manifest, chosen, data


def graph_named(manifest: Manifest, variant: str) -> GraphSpec:
    """The graph whose variant is ``variant``; ModelError naming the known ones otherwise."""
    for graph in manifest.graphs:
        if graph.variant == variant:
            return graph
    known = ", ".join(g.variant for g in manifest.graphs if g.variant) or "none"
    raise ModelError(f"the model has no graph variant {variant!r} (it has: {known})")


def _unreadable(path: Path, exc: OSError) -> ModelError:
    return ModelError(f"graph file {str(path)!r} cannot be read: {exc}", "its graph cannot be read")


def _checked_manifest(model_dir: Path) -> Manifest:
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
    for graph in manifest.graphs:
        graph_path = model_dir / graph.file
        if not graph_path.is_file():
            raise ModelError(
                f"graph file {str(graph_path)!r} named by the manifest is missing",
                "the graph file its manifest names is missing",
            )
    return manifest


def _check_digest(graph: GraphSpec, graph_path: Path, actual: str) -> None:
    if actual != graph.sha256:
        raise ModelError(
            f"checksum mismatch for {str(graph_path)!r}: manifest says "
            f"{graph.sha256}, file has {actual}",
            f"checksum mismatch: the manifest says {graph.sha256}, the graph has {actual}",
        )


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    path = model_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest.document(), indent=2) + "\n", encoding="utf-8")
    return path
