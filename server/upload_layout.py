"""How an upload's segments run when they are all known at once: side by side, one per
worker on the shared session, or one after another on the lone session (more threads).

A live stream's segments come one at a time and the pool decides each alone (the adaptive
layout, server/pool.py). An upload's come together after segmentation, so the whole set
can be planned: on an idle pool, its segments either run in parallel, one per worker, each
on one shared-session thread, or serially, each on the lone session's threads. Which
finishes first depends on how the lengths share out over the workers and on how much
faster the lone session runs one segment than a worker does while every worker is busy
(``LayoutCost.speedup``, measured when the model loads: about 2 on a CPU where two
threads scale well, less where they share a memory bottleneck).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from classifier.inference import Classifier

Layout = Literal["parallel", "serial"]
# The probe a model is timed on at load: seconds of low noise at its own rate.
PROBE_S = 1.0
PROBE_RUNS = 2


@dataclass(frozen=True, slots=True)
class LayoutCost:
    """How many times faster the lone session classifies one segment than one of
    ``workers`` shared-session workers does while all of them run at once."""

    speedup: float
    workers: int


def makespan(lengths: Sequence[int], workers: int) -> int:
    """When the last of ``lengths`` ends if each, in order, goes to the worker that frees
    up first: how the pool runs one upload's segments, at most one per worker at a time."""
    ends = [0] * max(1, workers)
    for length in lengths:
        heapq.heappush(ends, heapq.heappop(ends) + length)
    return max(ends)


def plan(lengths: Sequence[int], cost: LayoutCost | None) -> Layout:
    """``serial`` when running the segments one after another on the lone session ends
    sooner than sharing them out over the workers; ``parallel`` otherwise, and always
    without a lone session or with fewer than two segments (the pool's own rule then
    gives a lone segment the lone session)."""
    if cost is None or len(lengths) < 2:
        return "parallel"
    serial = sum(lengths) / cost.speedup
    return "serial" if serial < makespan(lengths, cost.workers) else "parallel"


def measure_layout(
    shared: Classifier,
    lone: Classifier,
    workers: int,
    clock: Callable[[], float] = time.perf_counter,
) -> LayoutCost:
    """Time the probe on the lone session alone, then on ``workers`` shared-session
    threads at once (the best of PROBE_RUNS each, after one warm-up run)."""
    rate = shared.manifest.sample_rate
    probe = (np.random.default_rng(0).standard_normal(int(PROBE_S * rate)) * 0.01).astype(
        np.float32
    )

    def lone_run() -> float:
        start = clock()
        lone.predict(probe)
        return clock() - start

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="layout-probe") as threads:

        def parallel_run() -> float:
            start = clock()
            runs = [threads.submit(shared.predict, probe) for _ in range(workers)]
            for run in runs:
                run.result()
            return clock() - start

        lone_run()
        parallel_run()
        lone_s = min(lone_run() for _ in range(PROBE_RUNS))
        parallel_s = min(parallel_run() for _ in range(PROBE_RUNS))
    speedup = parallel_s / lone_s if lone_s > 0 else 1.0
    return LayoutCost(speedup=max(speedup, 1e-3), workers=workers)
