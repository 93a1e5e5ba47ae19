"""Servers under test as child processes on loopback: ours (uvicorn) and the prototype (Flask)."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

HOST = "127.0.0.1"
# uvicorn binds its socket after the lifespan startup, so "Application startup complete"
# comes before the port listens: wait for its "Uvicorn running on" line (Flask: "Running on").
READY_MARKERS = ("Uvicorn running on", "Running on http")
START_TIMEOUT_S = 180.0
# What ``emostream serve`` runs, without its argument parser (settings come from EMOSTREAM_*).
SERVE_OURS = (
    "import sys\n"
    "from server.runner import build\n"
    "from server.settings import Settings\n"
    "build(Settings(), sys.argv[1], int(sys.argv[2])).run()\n"
)


class ServerFailed(RuntimeError):
    """The child exited or did not report readiness in time; the message has its last output."""


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log: deque[str] = field(default_factory=lambda: deque(maxlen=200))

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def rss_bytes(self) -> int:
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pump(stream: object, log: deque[str], ready: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        log.append(line.rstrip())
        if any(marker in line for marker in READY_MARKERS):
            ready.put(line)
    ready.put("")  # end of output: the child closed its stderr (exited)


@contextmanager
def run_server(argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Start ``argv`` (listening on ``port``), wait for its readiness line, stop it after."""
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    server = Server(process, port)
    ready: queue.Queue[str] = queue.Queue()
    pump = threading.Thread(target=_pump, args=(process.stderr, server.log, ready), daemon=True)
    pump.start()
    try:
        try:
            line = ready.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            line = ""
        if not line:
            raise ServerFailed(f"{argv[:4]} did not start:\n" + "\n".join(server.log))
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        pump.join(timeout=5)


def ours(
    model_dir: Path,
    *,
    workers: int,
    intra_op_threads: int,
    graph_optimization: str = "all",
    extra_env: dict[str, str] | None = None,
) -> tuple[list[str], int, dict[str, str]]:
    """argv, port and environment that serve ``model_dir`` like ``emostream serve``."""
    port = free_port()
    argv = [sys.executable, "-c", SERVE_OURS, HOST, str(port)]
    env = {
        "EMOSTREAM_MODEL_DIR": str(model_dir),
        "EMOSTREAM_WORKERS": str(workers),
        "EMOSTREAM_INTRA_OP_THREADS": str(intra_op_threads),
        "EMOSTREAM_GRAPH_OPTIMIZATION": graph_optimization,
        "EMOSTREAM_MAX_CONNECTIONS": "2000",
        "EMOSTREAM_MAX_CONNECTIONS_PER_IP": "2000",
        # Every benchmark client comes from 127.0.0.1: the per-address upload limit would
        # answer 503 to all but two of them, measuring admission instead of the stack.
        "EMOSTREAM_MAX_UPLOADS": "1000",
        "EMOSTREAM_MAX_UPLOADS_PER_IP": "1000",
        "EMOSTREAM_LOG_LEVEL": "info",
        **(extra_env or {}),
    }
    return argv, port, env


def prototype(hf_dir: Path, threads: int = 2) -> tuple[list[str], int, dict[str, str]]:
    port = free_port()
    argv = [
        sys.executable, "-m", "bench.prototype_app", "--model", str(hf_dir),
        "--port", str(port), "--threads", str(threads),
    ]  # fmt: skip
    return argv, port, {}
