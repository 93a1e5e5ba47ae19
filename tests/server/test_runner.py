"""Running under uvicorn (server/runner.py): log redaction, the stop budget, the GIL."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from starlette.applications import Starlette

from server.runner import FINAL_GRACE_S, RedactSecrets, uvicorn_config
from server.settings import Settings
from tests.live import live_server


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        ("/v1/stream?token=abc", "/v1/stream?token=[redacted]"),
        ("/v1/stream?%74oken=abc&x=1", "/v1/stream?%74oken=[redacted]&x=1"),
        (
            "/v1/stream?sample_rate=8000&TOK%45N=abc",
            "/v1/stream?sample_rate=8000&TOK%45N=[redacted]",
        ),
        ("/v1/stream?access_%74oken=abc", "/v1/stream?access_%74oken=[redacted]"),
        ("/v1/stream?tokens=abc&notoken=x", "/v1/stream?tokens=abc&notoken=x"),
    ],
)
def test_log_redaction_decodes_parameter_names(line: str, redacted: str) -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '"WebSocket %s"', (line,), None
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == f'"WebSocket {redacted}"'


def test_uvicorn_grace_follows_the_drain_not_adds_to_it() -> None:
    config = uvicorn_config(Starlette(), Settings(shutdown_timeout_s=10), "127.0.0.1", 0)
    assert config.timeout_graceful_shutdown == FINAL_GRACE_S


def test_the_server_sets_the_gil_switch_interval(tiny_model_dir: Path) -> None:
    before = sys.getswitchinterval()
    settings = Settings(model_dir=tiny_model_dir, gil_switch_interval_ms=0.25)
    try:
        with live_server(settings):
            assert sys.getswitchinterval() == pytest.approx(0.00025)
    finally:
        sys.setswitchinterval(before)
