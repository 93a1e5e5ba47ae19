"""Which graph is served (classifier/selection.py): deterministic given the measurements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from classifier.inference import OnnxClassifier, ThreadOptions
from classifier.model import GraphSpec, Manifest, ModelError, read_manifest
from classifier.selection import (
    MIN_AGREEMENT,
    NEAR_TIE,
    candidates,
    pick_fastest,
    probe_timer,
    select_graph,
)


def spec(variant: str, agreement: float | None = 1.0) -> GraphSpec:
    return GraphSpec(
        file=f"model-{variant}.onnx", sha256="0" * 64, variant=variant, agreement=agreement
    )


def manifest(*alternatives: GraphSpec, graph: GraphSpec | None = None) -> Manifest:
    return Manifest(
        name="m",
        version="1",
        labels=("a", "b"),
        sample_rate=16000,
        graph=graph or spec("convmm"),
        alternatives=alternatives,
    )


class StubTimer:
    """Returns the given milliseconds per variant and records what it was asked to time."""

    def __init__(self, ms: dict[str, float]) -> None:
        self.ms = ms
        self.asked: list[str] = []

    def __call__(self, graph: GraphSpec) -> float:
        self.asked.append(graph.variant)
        return self.ms[graph.variant]


def test_the_fastest_candidate_wins() -> None:
    m = manifest(spec("convmm-u8u8"), spec("convmm-perchannel"))
    timer = StubTimer({"convmm": 100.0, "convmm-u8u8": 70.0, "convmm-perchannel": 90.0})
    chosen = select_graph(m, "auto", timer)
    assert chosen.graph.variant == "convmm-u8u8"
    assert chosen.by == "measured"
    assert chosen.reason.startswith("fastest of 3 measured")
    assert dict(chosen.median_ms) == timer.ms
    assert timer.asked == ["convmm", "convmm-u8u8", "convmm-perchannel"]  # manifest order


def test_a_near_tie_goes_to_the_earlier_graph_in_the_manifest() -> None:
    m = manifest(spec("convmm-u8u8"), spec("convmm-perchannel"))
    just_inside = 100.0 * (1 + NEAR_TIE) - 0.01
    timer = StubTimer({"convmm": just_inside, "convmm-u8u8": 100.0, "convmm-perchannel": 100.0})
    chosen = select_graph(m, "auto", timer)
    assert chosen.graph.variant == "convmm"
    assert "within 3% of the fastest, convmm-u8u8 (100.0 ms)" in chosen.reason
    # An exact tie between two alternatives goes to the earlier one, however often it is asked.
    timer = StubTimer({"convmm": 200.0, "convmm-u8u8": 100.0, "convmm-perchannel": 100.0})
    assert {select_graph(m, "auto", timer).graph.variant for _ in range(5)} == {"convmm-u8u8"}
    # Just beyond the margin the faster one wins.
    timer = StubTimer({"convmm": 100.0 * (1 + NEAR_TIE) + 0.5, "convmm-u8u8": 100.0})
    assert select_graph(manifest(spec("convmm-u8u8")), "auto", timer).name == "convmm-u8u8"


def test_the_margin_is_measured_from_the_fastest_not_from_each_neighbour() -> None:
    graphs = [spec("a"), spec("b"), spec("c")]
    # b is within 3 % of c (the fastest), a is not: b wins, though a is within 3 % of b.
    chosen, reason = pick_fastest(graphs, {"a": 100.0, "b": 98.0, "c": 96.5})
    assert chosen.variant == "b"
    assert "the fastest, c (96.5 ms)" in reason
    with pytest.raises(ValueError, match="no measurement for c"):
        pick_fastest(graphs, {"a": 1.0, "b": 1.0})


def test_an_alternative_below_the_agreement_floor_is_never_a_candidate() -> None:
    low = spec("convmm-reduce-range", agreement=MIN_AGREEMENT - 0.001)
    unmeasured = spec("convmm-x", agreement=None)
    m = manifest(spec("convmm-u8u8"), low, unmeasured)
    graphs, left_out = candidates(m)
    assert [g.variant for g in graphs] == ["convmm", "convmm-u8u8"]
    assert left_out == [
        "convmm-reduce-range (agreement 0.9890 < 0.99)",
        "convmm-x (agreement with fp32 not recorded)",
    ]
    timer = StubTimer(
        {"convmm": 100.0, "convmm-u8u8": 90.0, "convmm-reduce-range": 1.0, "convmm-x": 1.0}
    )
    chosen = select_graph(m, "auto", timer)
    assert chosen.name == "convmm-u8u8"
    assert timer.asked == ["convmm", "convmm-u8u8"]
    assert "left out: convmm-reduce-range" in chosen.reason
    with pytest.raises(
        ModelError, match=r"convmm-reduce-range .*the variants: convmm, convmm-u8u8"
    ):
        select_graph(m, "convmm-reduce-range", timer)


def test_the_default_graph_qualifies_whatever_its_agreement() -> None:
    m = manifest(spec("convmm-u8u8"), graph=spec("convmm", agreement=0.5))
    assert [g.variant for g in candidates(m)[0]] == ["convmm", "convmm-u8u8"]


def test_one_candidate_is_not_measured() -> None:
    timer = StubTimer({})
    for m in (manifest(), manifest(spec("convmm-u8u8", agreement=0.9))):
        chosen = select_graph(m, "auto", timer)
        assert (chosen.graph, chosen.by, dict(chosen.median_ms)) == (m.graph, "only", {})
    assert timer.asked == []
    unnamed = Manifest(
        name="m",
        version="1",
        labels=("a", "b"),
        sample_rate=16000,
        graph=GraphSpec(sha256="0" * 64),
    )
    assert select_graph(unnamed, "auto", timer).name == "default"


def test_default_and_a_named_variant_are_not_measured() -> None:
    m = manifest(spec("convmm-u8u8"), spec("convmm-perchannel"))
    timer = StubTimer({})
    default = select_graph(m, "default", timer)
    assert (default.graph.variant, default.by) == ("convmm", "configured")
    assert default.reason == "EMOSTREAM_GRAPH=default"
    named = select_graph(m, "convmm-perchannel", timer)
    assert (named.graph.variant, named.by) == ("convmm-perchannel", "configured")
    assert named.public() == {
        "by": "configured",
        "reason": "EMOSTREAM_GRAPH=convmm-perchannel",
        "median_ms": {},
    }
    assert timer.asked == []


def test_an_unknown_variant_is_an_error_naming_the_known_ones() -> None:
    m = manifest(spec("convmm-u8u8"))
    with pytest.raises(ModelError, match=r"EMOSTREAM_GRAPH=avx512 .*: convmm, convmm-u8u8\)"):
        select_graph(m, "avx512", StubTimer({}))


def test_the_public_form_has_words_and_numbers_only() -> None:
    m = manifest(spec("convmm-u8u8"))
    chosen = select_graph(m, "auto", StubTimer({"convmm": 10.123456, "convmm-u8u8": 20.0}))
    public = chosen.public()
    assert public == {
        "by": "measured",
        "reason": chosen.reason,
        "median_ms": {"convmm": 10.12, "convmm-u8u8": 20.0},
    }
    assert ".onnx" not in json.dumps(public)


def test_the_probe_timer_measures_each_real_graph(tiny_alternatives_dir: Path) -> None:
    m = read_manifest(tiny_alternatives_dir)
    timer = probe_timer(tiny_alternatives_dir, ThreadOptions(), runs=2)
    for graph in m.graphs:
        assert timer(graph) > 0
    chosen = select_graph(m, "auto", timer)
    assert chosen.by == "measured"
    assert set(chosen.median_ms) == {"convmm", "convmm-u8u8", "convmm-perchannel"}


def test_each_alternative_loads_and_classifies(tiny_alternatives_dir: Path) -> None:
    import numpy as np

    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    scores: dict[str, Any] = {}
    for variant in ("convmm", "convmm-u8u8", "convmm-perchannel", "convmm-reduce-range"):
        classifier = OnnxClassifier(tiny_alternatives_dir, variant=variant)
        assert classifier.graph.variant == variant
        assert classifier.graph.file == (
            "model.onnx" if variant == "convmm" else f"model-{variant}.onnx"
        )
        scores[variant] = classifier.predict(audio)
        assert abs(float(scores[variant].sum()) - 1) < 1e-5
    assert OnnxClassifier(tiny_alternatives_dir).graph.variant == "convmm"
    with pytest.raises(ModelError, match=r"no graph variant 'avx512' \(it has: convmm, "):
        OnnxClassifier(tiny_alternatives_dir, variant="avx512")
