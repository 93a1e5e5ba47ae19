"""glibc heap settings (server/heap.py): large buffers stay on mmap, the environment wins."""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from server import heap
from server.settings import Settings

pytestmark = pytest.mark.skipif(heap.glibc() is None, reason="glibc's mallopt")

# In a fresh interpreter: free one 256 KB block, allocate another of the same size, and
# report whether glibc served it by mmap (mallinfo2's hblks counts the mmapped blocks).
PROBE = """
import ctypes, json, sys
from server import heap
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]
libc.mallinfo2.restype = Info
applied = heap.tune(*map(int, sys.argv[1:3])) if len(sys.argv) > 1 else {}
size = 256 * 1024
libc.free(libc.malloc(size))
before = libc.mallinfo2().hblks
block = libc.malloc(size)
mmapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"applied": applied, "mmapped": mmapped}))
"""


def probe(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_without_the_settings_a_freed_buffer_pulls_the_next_one_onto_the_heap() -> None:
    assert probe() == {"applied": {}, "mmapped": 0}


def test_the_settings_keep_large_buffers_on_mmap() -> None:
    result = probe("2", "128")
    assert result == {"applied": {"arena_max": 2, "mmap_threshold": 131072}, "mmapped": 1}


def test_zero_leaves_glibc_alone() -> None:
    assert probe("0", "0") == {"applied": {}, "mmapped": 0}


def test_the_environment_wins() -> None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576"}
    result = probe("2", "128", env=env)
    assert result == {"applied": {"arena_max": 2}, "mmapped": 0}


class FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, parameter: ctypes.c_int, value: ctypes.c_int) -> int:
        self.calls.append((parameter.value, value.value))
        return self.answer


def test_mallopt_gets_glibcs_parameters() -> None:
    libc = FakeLibc()
    applied = heap.tune(4, 256, libc=libc, environ={})  # type: ignore[arg-type]
    assert libc.calls == [(heap.M_ARENA_MAX, 4), (heap.M_MMAP_THRESHOLD, 256 * 1024)]
    assert applied == {"arena_max": 4, "mmap_threshold": 262144}


def test_a_refused_setting_is_an_error_that_names_it() -> None:
    with pytest.raises(OSError, match="arena_max=2"):
        heap.tune(2, 0, libc=FakeLibc(answer=0), environ={})  # type: ignore[arg-type]


def test_not_glibc_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "glibc", lambda: None)
    assert heap.tune(2, 128) == {}


def test_defaults_and_bounds() -> None:
    settings = Settings()
    assert (settings.malloc_arena_max, settings.malloc_mmap_threshold_kb) == (2, 128)
    for bad in ({"malloc_arena_max": -1}, {"malloc_mmap_threshold_kb": 65536}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Settings(**bad)  # type: ignore[arg-type]


def test_serve_tunes_the_heap_before_it_builds_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from server import command, runner

    order: list[str] = []

    def tune(*values: int) -> dict[str, int]:
        order.append(f"tune{values}")
        return {}

    def create_app(settings: Settings) -> Any:
        order.append("create_app")
        raise SystemExit(0)

    monkeypatch.setattr(heap, "tune", tune)
    monkeypatch.setattr(runner, "create_app", create_app)
    args = argparse.Namespace(host="127.0.0.1", port=0, model=None, workers=None)
    with pytest.raises(SystemExit):
        command.serve(args)
    assert order == ["tune(2, 128)", "create_app"]


def test_the_log_says_what_was_set() -> None:
    assert heap.describe({"arena_max": 2, "mmap_threshold": 131072}) == (
        "arena_max=2, mmap_threshold=131072"
    )
    assert heap.describe({}) == "glibc's own settings"
