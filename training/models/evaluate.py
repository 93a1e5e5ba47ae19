"""Evaluate a served model directory (ONNX, as the server runs it) or a PyTorch checkpoint.

Metrics: accuracy, macro-F1, per-class precision/recall, confusion matrix, and accuracy with
white noise added at 20, 10 and 5 dB SNR (seeded per clip, so every model hears the same noise).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from classifier.inference import OnnxClassifier, ThreadOptions
from classifier.model import MANIFEST_FILE
from training.corpus.data import Audio, Example, load_audio, zero_mean_unit_var
from training.models.scoring import classification_metrics

SNR_LEVELS_DB: tuple[float | None, ...] = (None, 20.0, 10.0, 5.0)
MIN_SAMPLES = 400


class EvaluationError(ValueError):
    """A model or data set that cannot be evaluated; the message names the problem."""


class Predictor(Protocol):
    labels: tuple[str, ...]
    sample_rate_hz: int

    def logits(self, audio: Audio) -> npt.NDArray[np.float32]: ...


class OnnxPredictor:
    """A model directory through classifier.inference.OnnxClassifier: exactly what is served."""

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        self.classifier = OnnxClassifier(model_dir, ThreadOptions(intra_op_threads=threads))
        self.labels = tuple(self.classifier.manifest.labels)
        self.sample_rate_hz = self.classifier.manifest.sample_rate

    def logits(self, audio: Audio) -> npt.NDArray[np.float32]:
        return self.classifier.logits(audio)


class TorchPredictor:
    """A Transformers model fed one clip at a time, the way the server feeds the graph."""

    def __init__(
        self,
        model: Any,
        labels: Sequence[str],
        sample_rate_hz: int,
        normalize: bool,
        device: str = "cpu",
    ) -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.labels = tuple(labels)
        self.sample_rate_hz = sample_rate_hz
        self.normalize = normalize

    @classmethod
    def from_checkpoint(cls, checkpoint: Path | str, device: str = "cpu") -> TorchPredictor:
        from training.models.finetune import load_checkpoint, load_feature_extractor, model_labels

        model = load_checkpoint(checkpoint)
        extractor = load_feature_extractor(checkpoint)
        labels = model_labels(model)
        return cls(
            model, labels, int(extractor.sampling_rate), bool(extractor.do_normalize), device
        )

    def logits(self, audio: Audio) -> npt.NDArray[np.float32]:
        if audio.size < MIN_SAMPLES:
            audio = np.pad(audio, (0, MIN_SAMPLES - audio.size))
        if self.normalize:
            audio = zero_mean_unit_var(audio)
        with self._torch.no_grad():
            values = self._torch.from_numpy(np.ascontiguousarray(audio))[None, :].to(self.device)
            out = self.model(input_values=values).logits[0]
        return np.asarray(out.cpu().numpy(), dtype=np.float32)


def load_predictor(path: Path, device: str = "cpu") -> Predictor:
    if (path / MANIFEST_FILE).is_file():
        return OnnxPredictor(path)
    if (path / "config.json").is_file():
        return TorchPredictor.from_checkpoint(path, device)
    raise EvaluationError(
        f"{str(path)!r} is neither a model directory (manifest.json) nor a checkpoint (config.json)"
    )


def add_noise(audio: Audio, snr_db: float, rng: np.random.Generator) -> Audio:
    """White Gaussian noise at ``snr_db`` below the clip's mean power."""
    power = float(np.mean(audio.astype(np.float64) ** 2))
    if power == 0.0:
        return audio
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), audio.size)
    return (audio + noise).astype(np.float32)


@dataclass
class Evaluation:
    labels: tuple[str, ...]
    clean: dict[str, Any]
    snr: dict[str, dict[str, float]]
    clean_logits: npt.NDArray[np.float32]
    logits_by_snr: dict[str, npt.NDArray[np.float32]]

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            **self.clean,
            "snr": self.snr,
        }

    def brief(self) -> dict[str, Any]:
        """The numbers that go into a manifest's metrics."""
        return {
            "n": self.clean["n"],
            "accuracy": self.clean["accuracy"],
            "macro_f1": self.clean["macro_f1"],
            "accuracy_by_snr_db": {k: v["accuracy"] for k, v in self.snr.items()},
        }


def check_labels(examples: Sequence[Example], labels: Sequence[str]) -> None:
    unknown = sorted({ex.label for ex in examples} - set(labels))
    if unknown:
        raise EvaluationError(
            f"the data has label(s) {unknown} the model lacks (it has {list(labels)})"
        )
    if not examples:
        raise EvaluationError("no examples to evaluate (is the split empty?)")


def collect_logits(
    predictor: Predictor,
    examples: Sequence[Example],
    snr_db: float | None = None,
    seed: int = 0,
    progress: bool = False,
) -> npt.NDArray[np.float32]:
    rows = []
    for index, ex in enumerate(tqdm(examples, desc=_desc(snr_db), disable=not progress)):
        audio = load_audio(ex.path, predictor.sample_rate_hz)
        if snr_db is not None:
            rng = np.random.default_rng([seed, index, int(snr_db * 10)])
            audio = add_noise(audio, snr_db, rng)
        rows.append(predictor.logits(audio))
    return np.stack(rows)


def _desc(snr_db: float | None) -> str:
    return "clean" if snr_db is None else f"{snr_db:g} dB SNR"


def evaluate(
    predictor: Predictor,
    examples: Sequence[Example],
    snr_levels_db: Sequence[float | None] = SNR_LEVELS_DB,
    seed: int = 0,
    progress: bool = False,
) -> Evaluation:
    check_labels(examples, predictor.labels)
    ids = {label: i for i, label in enumerate(predictor.labels)}
    y_true = [ids[ex.label] for ex in examples]
    clean_logits = collect_logits(predictor, examples, None, seed, progress)
    clean = classification_metrics(y_true, clean_logits.argmax(axis=1).tolist(), predictor.labels)
    snr: dict[str, dict[str, float]] = {"clean": _short(clean)}
    logits_by_snr = {}
    for level in snr_levels_db:
        if level is None:
            continue
        logits = collect_logits(predictor, examples, level, seed, progress)
        noisy = classification_metrics(y_true, logits.argmax(axis=1).tolist(), predictor.labels)
        snr[f"{level:g}"] = _short(noisy)
        logits_by_snr[f"{level:g}"] = logits
    return Evaluation(predictor.labels, clean, snr, clean_logits, logits_by_snr)


def _short(metrics: dict[str, Any]) -> dict[str, float]:
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def plot_confusion(
    confusion: list[list[int]], labels: Sequence[str], path: Path, title: str
) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(confusion, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    size = 1.2 + 0.8 * len(labels)
    figure = Figure(figsize=(size + 1.5, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="share of true class")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = "white" if share[i, j] > 0.5 else "black"
            axes.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", color=colour)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def write_report(evaluation: Evaluation, out_dir: Path, title: str, extra: dict[str, Any]) -> Path:
    """metrics.json, confusion.png and report.md in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**extra, **evaluation.to_json()}
    (out_dir / "metrics.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    plot_confusion(
        evaluation.clean["confusion"], evaluation.labels, out_dir / "confusion.png", title
    )
    (out_dir / "report.md").write_text(render_report(evaluation, title, extra), encoding="utf-8")
    return out_dir


def render_report(evaluation: Evaluation, title: str, extra: dict[str, Any]) -> str:
    clean = evaluation.clean
    lines = [f"# {title}", ""]
    lines += [f"- {key}: {value}" for key, value in extra.items()]
    lines += [
        f"- clips: {clean['n']}",
        f"- accuracy: {clean['accuracy']:.3f}",
        f"- macro-F1: {clean['macro_f1']:.3f}",
        "",
        "| condition | accuracy | macro-F1 |",
        "|---|---|---|",
    ]
    for name, scores in evaluation.snr.items():
        label = name if name == "clean" else f"{name} dB SNR"
        lines.append(f"| {label} | {scores['accuracy']:.3f} | {scores['macro_f1']:.3f} |")
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, row in clean["per_class"].items():
        cells = " | ".join(f"{row[k]:.3f}" for k in ("precision", "recall", "f1"))
        lines.append(f"| {label} | {cells} | {row['support']} |")
    lines += ["", "![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)
