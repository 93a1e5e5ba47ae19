"""What the benchmarks ran on: CPU model, instruction-set flags, theoretical peak, load."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
LOADAVG = Path("/proc/loadavg")
ONLINE = Path("/sys/devices/system/cpu/online")
FLAGS_OF_INTEREST = (
    "fma",
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


@dataclass(frozen=True)
class Peak:
    """Theoretical peak of all online cores, from the widest vector unit the flags announce.

    fp32: FMA lanes x 2 flops x FMA pipes per core x clock x cores. int8: a VNNI dot-product
    instruction does 4 multiply-adds per 32-bit lane (8 ops), issued on the same pipes.
    """

    clock_ghz: float
    cores: int
    vector_bits: int
    fma_pipes: int
    fp32_gflops: float
    int8_gops: float
    isa: str


def cpu_flags() -> set[str]:
    for line in CPUINFO.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _cpuinfo_value(key: str) -> str:
    """The first processor's value of ``key`` (matched whole: ``model`` is not ``model name``)."""
    for line in CPUINFO.read_text().splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip() == key:
            return value.strip()
    return ""


def clock_ghz() -> float:
    """Nominal clock: the ``cpu MHz`` cpuinfo reports (a VM shows the host's base clock)."""
    mhz = _cpuinfo_value("cpu MHz")
    return round(float(mhz) / 1000, 3) if mhz else 0.0


def fma_pipes(model_name: str, family: int, vector_bits: int) -> int:
    """Full-width FMA issues per cycle per core.

    Two on the cores this targets: Zen 2/3 (256-bit), Zen 5 server cores (family 26, two
    512-bit FMA pipes) and Intel server cores since Skylake-SP. Zen 4 (family 25 with
    AVX-512) executes a 512-bit FMA as two 256-bit halves: one full-width issue per cycle.
    """
    if "AMD" in model_name and family == 25 and vector_bits == 512:
        return 1
    return 2


def peak(cores: int | None = None) -> Peak:
    flags = cpu_flags()
    n = cores or os.cpu_count() or 1
    ghz = clock_ghz()
    family = int(_cpuinfo_value("cpu family") or 0)
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    pipes = fma_pipes(_cpuinfo_value("model name"), family, bits)
    fp32_lanes = bits // 32
    fp32 = fp32_lanes * 2 * pipes * ghz * n
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    # With VNNI: VPDPBUSD = 4 int8 MACs per 32-bit lane; without it, the pmaddubsw/pmaddwd pair
    # reaches about half that.
    int8 = fp32_lanes * 4 * 2 * pipes * ghz * n * (1.0 if vnni else 0.5)
    isa = ("AVX-512" if bits == 512 else "AVX2" if bits == 256 else "SSE") + (
        " + VNNI" if vnni else ""
    )
    return Peak(ghz, n, bits, pipes, round(fp32, 1), round(int8, 1), isa)


def measured_sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GEMM rate numpy's BLAS reaches here: a practical ceiling beside the paper peak."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return round(2 * size**3 / best / 1e9, 1)


def _online_cpus() -> list[int]:
    """The online CPUs from ``/sys/devices/system/cpu/online`` (e.g. ``0-3,6``); [] if absent."""
    try:
        text = ONLINE.read_text().strip()
    except OSError:
        return []
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def lscpu() -> str:
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"lscpu unavailable: {exc}"


def loadavg() -> list[float]:
    return [float(x) for x in LOADAVG.read_text().split()[:3]]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def vector_isa(flags: set[str]) -> str:
    """The widest vector unit and its int8 dot-product and matrix extensions, in words."""
    parts = ["AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"]
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        parts.append("VNNI")
    if "avx512_bf16" in flags:
        parts.append("BF16")
    if "amx_tile" in flags:
        parts.append("AMX")
    return " + ".join(parts)


def cpu_kind(vendor: str, family: int | None, model: int | None, flags: set[str]) -> str:
    """A short name for the CPU kind, e.g. ``AMD family 25 model 17, AVX-512 + VNNI``.

    BENCHMARKS.md keeps one table per kind: the family and model number tell Zen 3 (family 25,
    AVX2 only) from Zen 4/5 (AVX-512 with VNNI) where the model name of a VM is generic.
    """
    maker = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(vendor, vendor or "unknown CPU")
    family_text = "?" if family is None else str(family)
    model_text = "?" if model is None else str(model)
    return f"{maker} family {family_text} model {model_text}, {vector_isa(flags)}"


def affinity() -> list[int]:
    """The CPUs this process may run on (``taskset`` or a cpuset narrows it)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def describe() -> dict[str, Any]:
    """Everything a result file records about the machine and the moment."""
    flags = cpu_flags()
    vendor = _cpuinfo_value("vendor_id")
    family = _int_or_none(_cpuinfo_value("cpu family"))
    model = _int_or_none(_cpuinfo_value("model"))
    stepping = _int_or_none(_cpuinfo_value("stepping"))
    cpus = affinity()
    return {
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": _cpuinfo_value("model name"),
        "cpu_vendor": vendor,
        "cpu_family": _cpuinfo_value("cpu family"),
        "cpu_model": model,
        "cpu_stepping": stepping,
        "cpu_kind": cpu_kind(vendor, family, model, flags),
        "cores": os.cpu_count(),
        "online_cores": len(_online_cpus()) or os.cpu_count(),
        "affinity": cpus,
        "affinity_cores": len(cpus),
        "flags": sorted(flags & set(FLAGS_OF_INTEREST)),
        "isa": {flag: flag in flags for flag in FLAGS_OF_INTEREST},
        "peak": asdict(peak()),
        "loadavg_1_5_15": loadavg(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in ("onnxruntime", "torch", "transformers", "numpy")},
        "nice": os.nice(0),
    }
