"""Which of a model directory's graphs to serve: the ``EMOSTREAM_GRAPH`` rule.

A model directory may carry several graphs of one model, each made by another int8 recipe
(``Manifest.graph`` and ``Manifest.alternatives``). Which runs fastest depends on the CPU
(VNNI or not, AVX-512 or AVX2), so the server may measure them where it runs:

- ``auto`` (the default): the candidates are the manifest's ``graph`` and every
  alternative whose agreement with fp32 is at least ``MIN_AGREEMENT``. With one
  candidate nothing is measured. Otherwise each is timed (``probe_timer``: the median of
  ``PROBE_RUNS`` runs of a ``PROBE_SECONDS`` probe, through the pool's session options)
  and the fastest is kept; one within ``NEAR_TIE`` of the fastest that comes earlier in
  the manifest wins over it, so near-equal timings give the same choice on every start.
- ``default``: the manifest's ``graph``, nothing measured.
- a variant name: that graph, which must be a candidate.

``select_graph`` is deterministic given what its timer returns; tests stub the timer.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from classifier.inference import OnnxClassifier, ThreadOptions
from classifier.model import GraphSpec, Manifest, ModelError

MIN_AGREEMENT = 0.99
NEAR_TIE = 0.03
PROBE_SECONDS = 3.0
PROBE_RUNS = 5
AUTO = "auto"
DEFAULT = "default"

# A graph's median milliseconds for one probe.
Timer = Callable[[GraphSpec], float]


@dataclass(frozen=True)
class Selection:
    graph: GraphSpec
    by: Literal["measured", "configured", "only"]
    reason: str
    median_ms: Mapping[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return name_of(self.graph)

    def public(self) -> dict[str, Any]:
        """For ``GET /v1/model``: the server's own words and numbers, no file names."""
        return {
            "by": self.by,
            "reason": self.reason,
            "median_ms": {name: round(ms, 2) for name, ms in self.median_ms.items()},
        }


def name_of(graph: GraphSpec) -> str:
    """A graph's variant, or ``default`` for an unnamed one (a manifest without alternatives)."""
    return graph.variant or DEFAULT


def candidates(manifest: Manifest) -> tuple[list[GraphSpec], list[str]]:
    """The graphs that qualify (``graph`` always; alternatives with agreement at least
    MIN_AGREEMENT), in manifest order, and a note for each alternative left out."""
    chosen, left_out = [manifest.graph], []
    for graph in manifest.alternatives:
        if graph.agreement is None:
            left_out.append(f"{graph.variant} (agreement with fp32 not recorded)")
        elif graph.agreement < MIN_AGREEMENT:
            left_out.append(f"{graph.variant} (agreement {graph.agreement:.4f} < {MIN_AGREEMENT})")
        else:
            chosen.append(graph)
    return chosen, left_out


def pick_fastest(
    graphs: Sequence[GraphSpec], median_ms: Mapping[str, float]
) -> tuple[GraphSpec, str]:
    """The first graph, in the given order, within NEAR_TIE of the fastest median, and why."""
    if not graphs:
        raise ValueError("no graphs to pick from")
    missing = [name_of(g) for g in graphs if name_of(g) not in median_ms]
    if missing:
        raise ValueError(f"no measurement for {', '.join(missing)}")
    fastest = min(graphs, key=lambda g: median_ms[name_of(g)])
    best_ms = median_ms[name_of(fastest)]
    chosen = next(g for g in graphs if median_ms[name_of(g)] <= best_ms * (1 + NEAR_TIE))
    runs = f"median of {PROBE_RUNS} runs of a {PROBE_SECONDS:g} s probe"
    if chosen is fastest:
        return chosen, f"fastest of {len(graphs)} measured ({runs})"
    return chosen, (
        f"within {NEAR_TIE:.0%} of the fastest, {name_of(fastest)} ({best_ms:.1f} ms), "
        f"and earlier in the manifest ({runs})"
    )


def select_graph(manifest: Manifest, setting: str, timer: Timer) -> Selection:
    """The graph to serve under ``setting`` (EMOSTREAM_GRAPH). ModelError when the setting
    names a variant the manifest does not offer, or one that does not qualify."""
    graphs, left_out = candidates(manifest)
    note = f"; left out: {', '.join(left_out)}" if left_out else ""
    if setting == DEFAULT:
        return Selection(manifest.graph, "configured", f"EMOSTREAM_GRAPH=default{note}")
    if setting != AUTO:
        for graph in graphs:
            if graph.variant == setting:
                return Selection(graph, "configured", f"EMOSTREAM_GRAPH={setting}{note}")
        known = ", ".join(name_of(g) for g in graphs)
        raise ModelError(
            f"EMOSTREAM_GRAPH={setting} names no graph variant of this model that qualifies "
            f"(the variants: {known}{note})"
        )
    if len(graphs) == 1:
        return Selection(manifest.graph, "only", f"the only candidate graph{note}")
    median_ms = {name_of(g): float(timer(g)) for g in graphs}
    chosen, reason = pick_fastest(graphs, median_ms)
    return Selection(chosen, "measured", reason + note, median_ms)


def probe_audio(sample_rate: int, seconds: float = PROBE_SECONDS) -> np.ndarray:
    """A fixed probe: speech-like noise with a syllable-rate envelope (the graph's cost does
    not depend on what is said, only on the length)."""
    rng = np.random.default_rng(0)
    n = int(sample_rate * seconds)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * np.arange(n) / sample_rate)
    return (0.1 * envelope * rng.standard_normal(n)).astype(np.float32)


def probe_timer(model_dir: Path, threads: ThreadOptions, runs: int = PROBE_RUNS) -> Timer:
    """A timer that loads each graph with ``threads`` (the pool's session options), runs the
    probe once to warm it, then returns the median of ``runs`` timed runs in milliseconds.
    The session is released before the next graph is measured."""

    def measure(graph: GraphSpec) -> float:
        classifier = OnnxClassifier(model_dir, threads, graph.variant or None)
        if classifier.graph.sha256 != graph.sha256:
            raise ModelError(f"graph variant {name_of(graph)!r} changed while it was measured")
        audio = probe_audio(classifier.manifest.sample_rate)
        classifier.predict(audio)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            classifier.predict(audio)
            times.append((time.perf_counter() - start) * 1000)
        del classifier
        return statistics.median(times)

    return measure
