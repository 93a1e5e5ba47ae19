"""Shared helpers of the benchmark scripts: timing summaries, result files, plots."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import describe

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny model and few repeats (smoke test)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where JSON and PNG go")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path("artifacts/bench"),
        help="cache of exported benchmark models",
    )
    return parser


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and spread (p10/p90, min/max) of a list of measurements."""
    if not values:
        raise ValueError("no measurements to summarise")
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "median": float(np.median(arr)),
        "mean": float(arr.mean()),
        "p10": float(np.percentile(arr, 10)),
        "p90": float(np.percentile(arr, 90)),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


def interleaved(
    cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time every case once per round, rounds interleaved so drifting load hits all alike."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_spread(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, float]:
    """Per-round ratios of two interleaved series: median and p10/p90 of the ratio."""
    ratios = [n / d for n, d in zip(numerator, denominator, strict=True)]
    return {
        "median": statistics.median(ratios),
        "p10": float(np.percentile(ratios, 10)),
        "p90": float(np.percentile(ratios, 90)),
    }


RESERVED = ("benchmark", "quick", "machine")


def record(name: str, data: dict[str, Any], quick: bool) -> dict[str, Any]:
    """A result file's content: the script's data under the machine description (CPU kind,
    family, model, ISA flags, cores and affinity, load)."""
    clash = sorted(set(RESERVED) & set(data))
    if clash:
        raise ValueError(f"result data must not set {', '.join(clash)}: write() records them")
    return {"benchmark": name, "quick": quick, "machine": describe(), **data}


def write(out_dir: Path, name: str, data: dict[str, Any], quick: bool) -> Path:
    """The one way a bench script writes its JSON result (tests/bench/test_results.py checks)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    record_ = record(name, data, quick)
    path.write_text(json.dumps(record_, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def figure(width_in: float = 7.0, height_in: float = 4.0, ncols: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width_in, height_in), layout="constrained")


def save_figure(fig: Any, out_dir: Path, name: str) -> Path:
    import matplotlib.pyplot as plt

    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path
