"""glibc heap settings for a server that lives for weeks (BENCHMARKS §5b, §Z.6).

A live stream allocates audio buffers of 100-400 KB (a segment, a partial's window) from
several threads: the event loop, the model workers and the upload threads. glibc serves an
allocation that large with mmap at first, but each free of such a block raises its mmap
threshold to that size (up to 32 MB). From then on the buffers come from the heap of the
thread's arena, and each arena keeps the high-water mark of its free space.

Fixing the threshold keeps those buffers on mmap, which returns them on free; limiting the
arenas bounds how many heaps keep free space. In the 30-minute soak (§Z.6) the server's
RSS levelled off 7 MB lower and 5 minutes sooner with them; the rise over its first ten
minutes, free space scattered among the event loop's smaller allocations, remains. Both
are glibc's own tunables (``mallopt``), the same as its ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_ARENA_MAX`` environment variables, which win when set. Other C libraries are left
alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping

log = logging.getLogger("emostream")

# mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

# name: (mallopt parameter, the glibc environment variable that wins over it)
TUNABLES = {
    "arena_max": (M_ARENA_MAX, "MALLOC_ARENA_MAX"),
    "mmap_threshold": (M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
}


def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it has ``gnu_get_libc_version``), else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def tune(
    arena_max: int,
    mmap_threshold_kb: int,
    libc: ctypes.CDLL | None = None,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, int]:
    """Apply the settings that are not 0 and not set in the environment; return what was set.

    Call it once, early, before the model sessions start their threads.
    """
    libc = libc if libc is not None else glibc()
    if libc is None:
        log.debug("heap settings skipped: the C library is not glibc")
        return {}
    wanted = {"arena_max": arena_max, "mmap_threshold": mmap_threshold_kb * 1024}
    applied: dict[str, int] = {}
    for name, value in wanted.items():
        parameter, variable = TUNABLES[name]
        if value == 0:
            continue
        if variable in environ:
            log.debug("heap setting %s left to the environment's %s", name, variable)
            continue
        if libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) != 1:
            raise OSError(f"glibc refused mallopt({name}={value})")
        applied[name] = value
    return applied


def describe(applied: Mapping[str, int]) -> str:
    """For the log: what ``tune`` set, or that glibc's own settings hold."""
    return ", ".join(f"{k}={v}" for k, v in applied.items()) or "glibc's own settings"
