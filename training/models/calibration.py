"""Calibration of a classifier's scores: expected calibration error, temperature scaling,
reliability diagrams (docs/model-format.md#calibration).

A temperature ``T`` divides the logits before the softmax; it keeps every argmax (so
accuracy) and moves the confidence towards what the model's accuracy is at that
confidence. It is fitted by minimising the negative log-likelihood on held-out data
(Guo et al., 2017, "On Calibration of Modern Neural Networks").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

ECE_BINS = 10
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0

Floats = npt.NDArray[np.floating[Any]]
Ints = npt.NDArray[np.integer[Any]]


def softmax(logits: Floats, temperature: float = 1.0) -> npt.NDArray[np.float64]:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    probabilities: npt.NDArray[np.float64] = exp / exp.sum(axis=-1, keepdims=True)
    return probabilities


def _checked(probabilities: Floats, labels: Ints) -> tuple[Floats, Ints]:
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if probabilities.ndim != 2 or labels.shape != (probabilities.shape[0],) or not labels.size:
        raise ValueError(
            f"expected scores of shape (n, classes) and n labels, got {probabilities.shape} "
            f"and {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= probabilities.shape[1]:
        raise ValueError(f"labels must be class indexes below {probabilities.shape[1]}")
    return probabilities, labels


def reliability(
    probabilities: Floats, labels: Ints, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Per equal-width bin of top-label confidence: its count, mean confidence, accuracy.
    Bins are (lower, upper], the first [0, upper]; empty bins are left out."""
    probabilities, labels = _checked(probabilities, labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append(
                {
                    "lower": b / bins,
                    "upper": (b + 1) / bins,
                    "count": int(members.sum()),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                }
            )
    return rows


def ece(probabilities: Floats, labels: Ints, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top label: the count-weighted mean over the bins of
    |accuracy - mean confidence|."""
    rows = reliability(probabilities, labels, bins)
    total = sum(r["count"] for r in rows)
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / total)


def nll(logits: Floats, labels: Ints, temperature: float = 1.0) -> float:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_norm - shifted[np.arange(len(labels)), labels]))


def fit_temperature(logits: Floats, labels: Ints) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels``."""
    logits, labels = _checked(logits, labels)
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))


def report(
    logits_by_condition: dict[str, Floats], labels: Ints, temperature: float | None
) -> dict[str, Any]:
    """ECE (and NLL) before and after scaling by ``temperature`` for each condition."""
    out: dict[str, Any] = {}
    for name, logits in logits_by_condition.items():
        row = {"ece_before": ece(softmax(logits), labels), "nll_before": nll(logits, labels)}
        if temperature is not None:
            row["ece_after"] = ece(softmax(logits, temperature), labels)
            row["nll_after"] = nll(logits, labels, temperature)
        out[name] = {k: round(v, 4) for k, v in row.items()}
    return out


def plot_reliability(
    curves: Mapping[str, tuple[Floats, Ints]], path: Path, title: str, bins: int = ECE_BINS
) -> Path:
    """A reliability diagram: accuracy against confidence per bin, one line per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, (probabilities, labels) in curves.items():
        rows = reliability(probabilities, labels, bins)
        ax.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            marker="o",
            label=f"{name} (ECE {ece(probabilities, labels, bins):.3f})",
        )
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def label_indices(names: Sequence[str], labels: Sequence[str]) -> npt.NDArray[np.int64]:
    """Class indexes of label ``names`` in the model's ``labels``."""
    ids = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(names) - set(ids))
    if unknown:
        raise ValueError(f"label(s) {unknown} are not among the model's {list(labels)}")
    return np.array([ids[name] for name in names], dtype=np.int64)


def metrics(
    logits_by_condition: dict[str, Floats], labels: Ints, temperature: float | None
) -> dict[str, Any]:
    """What a manifest's ``metrics.calibration`` records."""
    return {
        "calibrated": temperature is not None,
        "temperature": None if temperature is None else round(temperature, 4),
        "ece_bins": ECE_BINS,
        "by_condition": report(logits_by_condition, labels, temperature),
    }


def card_lines(record: dict[str, Any] | None, data: str) -> list[str]:
    """The model card's calibration section, from ``metrics.calibration``."""
    lines = ["", "## Calibration", ""]
    if not record or not record.get("calibrated"):
        lines.append(
            "**Uncalibrated**: the scores are the graph's own softmax; no calibration data "
            "was given (`--calibrate SPLIT`). Confidence need not match accuracy."
        )
    else:
        lines.append(
            f"Temperature scaling, T = {record['temperature']} (fitted on {data}). Expected "
            f"calibration error ({record['ece_bins']} bins, top label) on the evaluated clips:"
        )
    rows = (record or {}).get("by_condition", {})
    if rows:
        lines += ["", "| condition | ECE before | ECE after |", "|---|---|---|"]
        for name, row in rows.items():
            after = row.get("ece_after")
            lines.append(
                f"| {name} | {row['ece_before']:.3f} | {'—' if after is None else f'{after:.3f}'} |"
            )
        lines += ["", "![reliability diagram](reliability.png)"]
    return lines


def plot_for_card(
    logits_by_condition: dict[str, Floats],
    labels: Ints,
    temperature: float | None,
    path: Path,
    title: str,
) -> Path:
    curves: dict[str, tuple[Floats, Ints]] = {}
    for name, logits in logits_by_condition.items():
        curves[f"{name}, uncalibrated"] = (softmax(logits), labels)
        if temperature is not None:
            curves[f"{name}, T={temperature:.2f}"] = (softmax(logits, temperature), labels)
    return plot_reliability(curves, path, title)
