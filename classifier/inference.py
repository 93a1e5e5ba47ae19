"""Classifiers: the narrow ``predict(audio) -> probabilities`` interface, ONNX Runtime form.

``predict_batch`` runs segments of exactly equal length in one call (the pool's batching).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from classifier.model import Manifest, ModelError, read_model

Audio = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float32]


class Classifier(Protocol):
    manifest: Manifest

    def predict(self, audio: Audio) -> Scores:
        """Class probabilities (softmax, summing to 1) for mono audio at the model's rate."""
        ...


@runtime_checkable
class BatchClassifier(Classifier, Protocol):
    def predict_batch(self, audios: Sequence[Audio]) -> list[Scores]:
        """``predict`` of each segment, in order; equal-length segments may share one run."""
        ...


def predict_many(classifier: Classifier, audios: Sequence[Audio]) -> list[Scores]:
    """``predict_batch`` where the classifier has it, else one ``predict`` per segment."""
    if isinstance(classifier, BatchClassifier):
        return classifier.predict_batch(audios)
    return [classifier.predict(audio) for audio in audios]


_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
MAX_THREADS = 256

# What ONNX Runtime raises for a graph it cannot load or run (no common base but Exception).
ORT_ERRORS: tuple[type[Exception], ...] = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoSuchFile,
    ort_state.NoModel,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


@dataclass(frozen=True)
class ThreadOptions:
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "all"

    def __post_init__(self) -> None:
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if not 1 <= value <= MAX_THREADS:
                raise ValueError(f"{name} must be from 1 to {MAX_THREADS}, got {value}")
        if self.graph_optimization not in _OPT_LEVELS:
            raise ValueError(
                f"graph_optimization must be one of {sorted(_OPT_LEVELS)}, "
                f"got {self.graph_optimization!r}"
            )


def softmax(logits: npt.NDArray[np.floating]) -> Scores:
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probabilities: Scores = (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
    return probabilities


def calibrated_softmax(logits: npt.NDArray[np.floating], manifest: Manifest) -> Scores:
    """The softmax of the logits, divided first by the manifest's temperature if it has one."""
    if manifest.calibration is None:
        return softmax(logits)
    return softmax(logits.astype(np.float64) / manifest.calibration.temperature)


def normalize(audio: Audio, manifest: Manifest) -> Audio:
    if manifest.input.normalize == "none":
        return audio
    centred = audio - audio.mean()
    scaled: Audio = (centred / np.sqrt(centred.var() + 1e-7)).astype(np.float32)
    return scaled


def session_options(threads: ThreadOptions) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads.intra_op_threads
    options.inter_op_num_threads = threads.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = _OPT_LEVELS[threads.graph_optimization]
    # Threads spin-wait by default; on a shared CPU that burns the cores other workers need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # The memory pattern is planned and cached per distinct input shape, and the cache is
    # never evicted: every new segment length (finals, partials, uploads) added ~2 KB of
    # native memory for good, so a long-running server grew without bound (BENCHMARKS.md
    # section 5b). Without it each run allocates from the arena, which stays bounded by the
    # longest segment.
    options.enable_mem_pattern = False
    return options


class OnnxClassifier:
    """One ONNX Runtime session; ``predict`` is safe to call from several threads."""

    def __init__(
        self,
        model_dir: Path,
        threads: ThreadOptions = ThreadOptions(),
        variant: str | None = None,
    ) -> None:
        """``variant``: which of the manifest's graphs to load (default its ``graph``)."""
        self.model_dir = model_dir
        self.manifest, self.graph, graph_bytes = read_model(model_dir, variant)
        graph = model_dir / self.graph.file
        try:
            self._session = ort.InferenceSession(
                graph_bytes,
                sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except ORT_ERRORS as exc:
            raise ModelError(
                f"ONNX Runtime cannot load {str(graph)!r}: {exc}",
                "ONNX Runtime cannot load its graph",
            ) from exc
        self._check_io()
        self.batching = self._takes_batches()

    def _takes_batches(self) -> bool:
        """Whether the graph runs several segments in one call: its batch axis is not fixed at
        1 and a probe of two segments gives two rows (a graph may reshape to batch 1 inside)."""
        inputs = self._session.get_inputs()
        shape = next(i.shape for i in inputs if i.name == self.manifest.input.name)
        if not shape or shape[0] == 1:
            return False
        probe = np.zeros((2, self.manifest.sample_rate), dtype=np.float32)
        try:
            rows = self._logits_rows(probe)
        except ORT_ERRORS:
            return False
        return rows.shape == (2, len(self.manifest.labels))

    def _check_io(self) -> None:
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if self.manifest.input.name not in inputs:
            raise ModelError(f"graph has no input {self.manifest.input.name!r} (it has {inputs})")
        if self.manifest.output.name not in outputs:
            raise ModelError(
                f"graph has no output {self.manifest.output.name!r} (it has {outputs})"
            )
        probe = np.zeros(self.manifest.sample_rate, dtype=np.float32)
        try:
            logits = self._logits(probe)
        except ORT_ERRORS as exc:
            raise ModelError(
                f"graph cannot run on one second of mono float32 audio: {exc}"
            ) from exc
        if logits.shape != (len(self.manifest.labels),):
            raise ModelError(
                f"graph output {self.manifest.output.name!r} has {logits.shape[-1]} classes "
                f"but the manifest lists {len(self.manifest.labels)} labels"
            )

    def _logits(self, audio: Audio) -> npt.NDArray[np.float32]:
        return self._logits_rows(audio[np.newaxis, :]).reshape(-1)

    def _logits_rows(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        feed = {self.manifest.input.name: batch}
        (out,) = self._session.run([self.manifest.output.name], feed)
        return np.asarray(out, dtype=np.float32).reshape(batch.shape[0], -1)

    def _prepare(self, audio: Audio) -> Audio:
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"expected non-empty mono audio, got shape {audio.shape}")
        if audio.size < self.manifest.input.min_samples:
            audio = np.pad(audio, (0, self.manifest.input.min_samples - audio.size))
        return normalize(audio.astype(np.float32, copy=False), self.manifest)

    def logits(self, audio: Audio) -> npt.NDArray[np.float32]:
        """Raw output for one segment (used by evaluation and export checks)."""
        return self._logits(self._prepare(audio))

    def logits_batch(self, audios: Sequence[Audio]) -> list[npt.NDArray[np.float32]]:
        """``logits`` of each segment, in order. Segments of exactly equal length (after the
        ``min_samples`` padding) run as one call when the graph takes batches; others run
        alone. Unequal lengths are never padded to share a call: wav2vec2-base has no
        attention mask, so padding would change its output."""
        prepared = [self._prepare(audio) for audio in audios]
        out: list[npt.NDArray[np.float32]] = [np.empty(0, np.float32)] * len(prepared)
        groups: dict[int, list[int]] = {}
        for index, audio in enumerate(prepared):
            groups.setdefault(audio.size if self.batching else -1 - index, []).append(index)
        for indices in groups.values():
            if len(indices) == 1:
                out[indices[0]] = self._logits(prepared[indices[0]])
                continue
            rows = self._logits_rows(np.stack([prepared[i] for i in indices]))
            for row, index in zip(rows, indices, strict=True):
                out[index] = row
        return out

    def predict(self, audio: Audio) -> Scores:
        """Calibrated probabilities when the manifest has a calibration."""
        return calibrated_softmax(self.logits(audio), self.manifest)

    def predict_batch(self, audios: Sequence[Audio]) -> list[Scores]:
        """``predict`` of each segment; equal lengths share one ONNX Runtime call."""
        return [calibrated_softmax(row, self.manifest) for row in self.logits_batch(audios)]
