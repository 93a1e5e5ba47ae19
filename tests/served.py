"""`python -m emostream serve` in a subprocess on a free port, for the command's tests."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 60.0
RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int
    log: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"


def start_server(model_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Served:
    """``python -m emostream serve`` on a free port; returns once uvicorn says it is listening."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emostream",
            "serve",
            "--model",
            str(model_dir),
            "--port",
            "0",
            *extra,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    served = Served(process, 0)

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            served.log.append(line)
            lines.put(line)
        lines.put(None)

    served.reader = threading.Thread(target=pump, daemon=True)
    served.reader.start()
    while True:
        try:
            line = lines.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            stop_server(served, signal.SIGKILL)
            raise AssertionError("server did not start:\n" + "".join(served.log)) from None
        if line is None:
            stop_server(served)
            raise AssertionError("server exited on startup:\n" + "".join(served.log))
        if match := RUNNING.search(line):
            served.port = int(match.group(1))
            return served


def stop_server(served: Served, sig: signal.Signals = signal.SIGTERM) -> int:
    if served.process.poll() is None:
        served.process.send_signal(sig)
    try:
        return served.process.wait(timeout=60)
    finally:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()
        if served.reader is not None:
            served.reader.join(timeout=30)
        if served.process.stderr is not None:
            served.process.stderr.close()
