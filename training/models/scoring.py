"""Classification metrics (scikit-learn) in the JSON shape written to metrics.json and manifests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 over ``labels``, per-class precision/recall/F1/support, confusion."""
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on zero examples")
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    present = [i for i in ids if support[i] > 0]
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # Macro-F1 over the classes present in the reference, so a split lacking a class
        # is not penalised for it.
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        ),
        "per_class": {
            labels[i]: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in ids
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def agreement(logits_a: np.ndarray, logits_b: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and logit error between two models' outputs on the same clips."""
    if logits_a.shape != logits_b.shape or logits_a.size == 0:
        raise ValueError(
            f"logit arrays differ in shape or are empty: {logits_a.shape} vs {logits_b.shape}"
        )
    error = np.abs(logits_a.astype(np.float64) - logits_b.astype(np.float64))
    return {
        "n": int(logits_a.shape[0]),
        "top1_agreement": float(np.mean(logits_a.argmax(axis=1) == logits_b.argmax(axis=1))),
        "max_abs_logit_error": float(error.max()),
        "mean_abs_logit_error": float(error.mean()),
    }
