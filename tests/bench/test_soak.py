"""bench/soak.py runs end to end on tiny settings and records what BENCHMARKS.md reads.

No timings are asserted: the soak itself runs for 30 minutes on a quiet machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_soak_quick(tmp_path: Path, tiny_model_dir: Path) -> None:
    argv = [sys.executable, "-m", "bench.soak", "--quick", "--out", str(tmp_path)]
    argv += ["--model-dir", str(tiny_model_dir)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    data = json.loads((tmp_path / "soak.json").read_text())
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["benchmark"] == "soak" and data["quick"] is True
    assert data["machine"]["cpu"] and data["machine"]["cores"] >= 1
    assert data["speakers"] == 2
    # sessions came and went: each speaker made several connections, all ended with 1000
    assert data["sessions"] >= 4
    assert data["failed_sessions"] == []
    answered = sum(row["latency_s"]["n"] for row in data["per_bucket"])
    assert answered >= 2
    samples = data["samples"]
    assert len(samples) >= 5
    assert all(s["rss_mb"] > 0 and s["fds"] > 0 and s["threads"] > 0 for s in samples)
    assert data["growth_after_warmup"]["samples_after_warmup"] >= 2
    assert set(data["targets_met"]) >= {"every_minute_p95_below_1s", "rss_growth_below_2_percent"}
