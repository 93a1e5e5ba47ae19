"""Fixtures for the deployment tests (processes are in bench/processes.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bench.processes import ServerProcess


@pytest.fixture
def start_server(tiny_model_dir: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start servers (tiny model) with given settings; all stop after the test."""
    started: list[ServerProcess] = []

    def start(settings: Mapping[str, str] | None = None, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(tiny_model_dir, settings, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
