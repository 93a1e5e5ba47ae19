"""training/models/calibration.py: ECE on known inputs, temperature fitting, reliability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.models.calibration import (
    ece,
    fit_temperature,
    nll,
    plot_reliability,
    reliability,
    report,
    softmax,
)


def test_ece_of_hand_made_scores() -> None:
    # Four predictions at confidence 0.9 (bin 9), three right: |0.75 - 0.9| = 0.15;
    # two at 0.6 (bin 6), one right: |0.5 - 0.6| = 0.1. Weighted: (4*0.15 + 2*0.1) / 6.
    p = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 1])
    assert ece(p, labels) == pytest.approx((4 * 0.15 + 2 * 0.1) / 6)
    rows = reliability(p, labels)
    assert [(r["lower"], r["count"], r["accuracy"]) for r in rows] == [
        (pytest.approx(0.5), 2, 0.5),
        (pytest.approx(0.8), 4, 0.75),
    ]


def test_ece_is_zero_when_confidence_matches_accuracy_and_bins_are_right_closed() -> None:
    p = np.array([[0.5, 0.5]] * 2)  # confidence 0.5 lies in (0.4, 0.5], argmax class 0
    assert ece(p, np.array([0, 1])) == pytest.approx(0.0)
    assert reliability(p, np.array([0, 1]))[0]["upper"] == pytest.approx(0.5)
    assert ece(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fitting_recovers_the_temperature_that_made_the_labels(true_t: float) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 6))
    calibrated = softmax(logits, true_t)
    labels = np.array([rng.choice(6, p=row) for row in calibrated])
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.05)
    # the scores drawn with the right temperature are calibrated; unscaled ones are not
    assert ece(softmax(logits, fitted), labels) < 0.02
    if true_t != 1.0:
        assert ece(softmax(logits), labels) > 0.05
    assert nll(logits, labels, fitted) <= nll(logits, labels)


def test_bad_inputs_are_refused_naming_the_problem() -> None:
    with pytest.raises(ValueError, match="shape"):
        ece(np.zeros((3, 2)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="class indexes below 2"):
        ece(np.full((1, 2), 0.5), np.array([2]))


def test_report_and_diagram(tmp_path: Path) -> None:
    logits = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
    labels = np.array([0, 1, 1, 0])
    table = report({"clean": logits}, labels, 100.0)
    assert table["clean"]["ece_before"] > 0.4 and table["clean"]["ece_after"] < 0.02
    assert "ece_after" not in report({"clean": logits}, labels, None)["clean"]
    path = plot_reliability({"clean": (softmax(logits), labels)}, tmp_path / "r.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
