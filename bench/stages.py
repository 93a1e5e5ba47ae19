"""Where a request's time goes: named stages timed by wrapping the functions that do them.

A ``Tracer`` replaces attributes (module functions or methods) with wrappers that record
a span — stage name, thread, start, end — every time they run, sync or async, on any
thread. ``breakdown`` then sums the spans of a time window per stage. Spans of different
stages may nest (the VAD model inside segmentation) or overlap (two segments on two
workers): each stage is reported as its summed time and as the wall-clock time during
which at least one of its spans ran.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from bench import servers
from server.app import create_app
from server.runner import DrainingServer, uvicorn_config
from server.service import Service
from server.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Span:
    stage: str
    thread: str
    start: float
    end: float


class Tracer:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    def record(self, stage: str, start: float, end: float) -> None:
        with self._lock:
            self.spans.append(Span(stage, threading.current_thread().name, start, end))

    @contextmanager
    def span(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, start, time.perf_counter())

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        """Time every call of ``owner.name`` as ``stage`` until ``restore``; nothing when
        ``owner`` has no such attribute (an older version of the code)."""
        if not hasattr(owner, name):
            return
        original = inspect.getattr_static(owner, name)
        function = getattr(owner, name)
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    self.record(stage, start, time.perf_counter())

            wrapper: Any = timed_async
        else:

            @functools.wraps(function)
            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    self.record(stage, start, time.perf_counter())

            wrapper = timed
        if isinstance(original, staticmethod):
            wrapper = staticmethod(wrapper)
        own = name in vars(owner)
        setattr(owner, name, wrapper)
        if own:
            self._undo.append(lambda: setattr(owner, name, original))
        else:  # an instance's method: the class's comes back once the wrapper is gone
            self._undo.append(lambda: delattr(owner, name))

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()

    def window(self, start: float, end: float) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.start >= start and s.end <= end]


def union_s(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the intervals."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total


def breakdown(spans: list[Span], wall_s: float) -> dict[str, dict[str, float]]:
    """Per stage: calls, summed ms, wall ms (union of its spans), wall share of ``wall_s``."""
    stages: dict[str, list[Span]] = {}
    for span in spans:
        stages.setdefault(span.stage, []).append(span)
    out: dict[str, dict[str, float]] = {}
    for stage, own in stages.items():
        wall = union_s([(s.start, s.end) for s in own])
        out[stage] = {
            "calls": len(own),
            "sum_ms": sum(s.end - s.start for s in own) * 1000,
            "wall_ms": wall * 1000,
            "wall_share": wall / wall_s if wall_s > 0 else 0.0,
            "threads": len({s.thread for s in own}),
        }
    return out


@dataclass
class InProcess:
    """An app served by uvicorn in a thread of this process (see ``in_thread``)."""

    url: str
    service: Service
    loop: asyncio.AbstractEventLoop

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def on_loop(self, fn: Callable[[], T]) -> T:
        """``fn()`` called on the server's event loop; its result."""

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=30)


@contextmanager
def in_thread(settings: Settings) -> Iterator[InProcess]:
    """The app served by uvicorn on a free loopback port in a thread of this process, so
    that a benchmark can wrap its functions or profile its event loop."""
    app = create_app(settings)
    port = servers.free_port()
    uvicorn = DrainingServer(uvicorn_config(app, settings, servers.HOST, port), app.state.service)
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await uvicorn.serve()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + servers.START_TIMEOUT_S
    while not uvicorn.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            uvicorn.should_exit = True
            raise servers.ServerFailed("the in-process server did not start")
        thread.join(0.05)
    try:
        yield InProcess(f"http://{servers.HOST}:{port}", app.state.service, loops[0])
    finally:
        uvicorn.should_exit = True
        thread.join(60)
