"""Property-based fuzzing of /v1/stream over a real socket, under both voice detectors.

A hypothesis state machine opens connections and sends random interleavings of binary
frames of every size from 0 past ``max_frame_bytes`` (odd sizes included), text
messages (valid, invalid, huge, deeply nested), ``flush`` and ``end``, and drops the
connection at random points. Whatever it does:

- the server never closes with 1011 and logs no traceback;
- on every connection, each segment gets exactly one ``result`` or ``skipped``, in
  segment order, and ``end``, when it comes, comes last and counts them;
- a clean session afterwards is served normally.

The run is sized for CI. For a longer one locally::

    FUZZ_EXAMPLES=500 FUZZ_STEPS=60 .venv/bin/python -m pytest tests/server/test_fuzz_protocol.py
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from server.settings import Settings
from tests.live import LiveServer, live_server
from tests.server.conftest import VAD_DETECTORS
from tests.speech import espeak, silence, to_pcm16

LIMIT = 4096  # max_frame_bytes of the fuzzed server (the WebSocket layer reads LIMIT + 4096)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
STEPS = int(os.environ.get("FUZZ_STEPS", "25"))
FINISH_TIMEOUT_S = 60.0

Message = dict[str, Any]


class LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        """The server's records with a traceback or at ERROR (the test's own client, which
        logs when the test drops a connection under it, is not the server)."""
        return [
            self.format(r)
            for r in self.records
            if not r.name.startswith("websockets.client")
            and (
                r.exc_info is not None
                or r.levelno >= logging.ERROR
                or "Traceback" in r.getMessage()
            )
        ]


@pytest.fixture(scope="module")
def speech() -> bytes:
    talk = espeak("The meeting starts at nine tomorrow morning.", rate_wpm=190)
    return to_pcm16(np.concatenate([silence(0.3), talk, silence(0.8)]))


@pytest.fixture(scope="module", params=VAD_DETECTORS)
def server(request: pytest.FixtureRequest, tiny_model_dir: Path) -> Iterator[LiveServer]:
    configured = Settings(
        model_dir=tiny_model_dir,
        vad_detector=request.param,
        max_frame_bytes=LIMIT,
        max_connections_per_ip=1000,
        log_level="warning",
    )
    with live_server(configured) as live:
        yield live


@pytest.fixture
def log_records() -> Iterator[LogRecords]:
    handler = LogRecords()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def check_connection(messages: list[Message], close_code: int | None) -> None:
    """The invariants of one connection's messages, however it ended."""
    assert close_code != 1011, messages
    assert messages and messages[0]["type"] == "ready"
    outcomes = [m["segment"] for m in messages if m["type"] in ("result", "skipped")]
    assert outcomes == list(range(len(outcomes))), outcomes
    ends = [i for i, m in enumerate(messages) if m["type"] == "end"]
    if ends:
        assert ends == [len(messages) - 1], messages
        assert messages[-1]["segments"] == len(outcomes)
        assert close_code == 1000
    errors = [m for m in messages if m["type"] == "error"]
    assert all(e["code"] in ("bad_frame", "bad_message", "limit") for e in errors), errors
    if close_code == 1008:
        assert errors and errors[-1]["code"] == "limit"


def serve_cleanly(url: str, speech: bytes) -> None:
    with connect(url, open_timeout=30) as ws:
        messages = [json.loads(ws.recv(timeout=30))]
        for offset in range(0, len(speech), 1280):
            ws.send(speech[offset : offset + 1280])
        ws.send(json.dumps({"type": "end"}))
        messages += read_until_closed(ws)
        code = ws.protocol.close_code
    check_connection(messages, code)
    assert [m["type"] for m in messages if m["type"] == "error"] == []
    assert any(m["type"] == "result" for m in messages), messages
    assert code == 1000


def read_until_closed(ws: ClientConnection) -> list[Message]:
    messages = []
    try:
        while True:
            messages.append(json.loads(ws.recv(timeout=FINISH_TIMEOUT_S)))
    except ConnectionClosed:
        return messages


def frame_sizes() -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([0, 1, 2, 3, 640, 1279, 1280, LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2]),
        st.integers(0, LIMIT),
        st.integers(LIMIT + 1, 2 * LIMIT + 4096),  # past the session's limit and the layer's
    )


TEXTS = st.one_of(
    st.sampled_from(
        [
            '{"type": "flush"}',
            "not json",
            "[]",
            "null",
            '{"type": "shout"}',
            '{"type": 5}',
            '{"kind": "end"}',
            "\u0000\ud7ff",
        ]
    ),
    st.integers(1, 2 * LIMIT + 4096).map(lambda n: "x" * n),  # huge
    st.integers(10, 7000).map(lambda n: "[" * n),  # deeply nested
    st.integers(10, 1500).map(lambda n: '{"a":' * n),
    st.text(max_size=200),
)


def fuzz(server: LiveServer, speech: bytes, log_records: LogRecords) -> None:
    class Protocol(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.ws: ClientConnection | None = None
            self.stack = contextlib.ExitStack()
            self.messages: list[Message] = []

        # No rule has a precondition on the connection: whether the server has closed it
        # depends on timing, and hypothesis must draw the same rules when it replays a run
        # (else FlakyStrategyDefinition). A rule that needs a connection opens one.
        @rule()
        def open(self) -> None:
            self._ensure_open()

        def _ensure_open(self) -> ClientConnection:
            if self.ws is None:
                self.ws = self.stack.enter_context(connect(server.ws_url, open_timeout=30))
                self.messages = [json.loads(self.ws.recv(timeout=30))]
            return self.ws

        def _send(self, data: str | bytes) -> None:
            self._ensure_open()
            assert self.ws is not None
            try:
                self.ws.send(data)
            except ConnectionClosed:  # the server closed it (a limit, a frame too big)
                self._finish()
                return
            self._poll()

        def _poll(self) -> None:
            assert self.ws is not None
            try:
                while True:
                    self.messages.append(json.loads(self.ws.recv(timeout=0)))
            except TimeoutError:
                pass
            except ConnectionClosed:
                self._finish()

        def _finish(self) -> None:
            assert self.ws is not None
            self.messages += read_until_closed(self.ws)
            check_connection(self.messages, self.ws.protocol.close_code)
            self._close()

        def _close(self) -> None:
            self.stack.close()
            self.ws = None

        @rule(size=frame_sizes(), source=st.sampled_from(["speech", "noise", "silence"]))
        def frame(self, size: int, source: str) -> None:
            if source == "speech":
                start = np.random.default_rng(size).integers(0, max(1, len(speech) - size))
                data = speech[start : start + size].ljust(size, b"\0")
            elif source == "noise":
                data = np.random.default_rng(size).bytes(size)
            else:
                data = bytes(size)
            self._send(data)

        @rule(repeat=st.integers(1, 60))
        def speech_run(self, repeat: int) -> None:
            """Several frames of speech in a row, so that segments happen."""
            self._ensure_open()
            for offset in range(0, min(len(speech), repeat * 1280), 1280):
                if self.ws is None:
                    return
                self._send(speech[offset : offset + 1280])

        @rule(text=TEXTS)
        def text(self, text: str) -> None:
            self._send(text)

        @rule()
        def flush(self) -> None:
            self._send(json.dumps({"type": "flush"}))

        @rule(seconds=st.sampled_from([0.05, 0.2, 0.5]))
        def pause(self, seconds: float) -> None:
            """Read for a while, as results come, before whatever comes next."""
            self._ensure_open()
            assert self.ws is not None
            try:
                self.messages.append(json.loads(self.ws.recv(timeout=seconds)))
            except TimeoutError:
                pass
            except ConnectionClosed:
                self._finish()
                return
            self._poll()

        # Ending a connection is drawn less often than the rest, so connections live long
        # enough for segments to happen.
        @rule(now=st.integers(0, 3))
        def end(self, now: int) -> None:
            if now or self.ws is None:
                return
            self._send(json.dumps({"type": "end"}))
            if self.ws is not None:
                self._finish()

        @rule(abrupt=st.booleans(), now=st.integers(0, 3))
        def disconnect(self, abrupt: bool, now: int) -> None:
            if now or self.ws is None:
                return
            self._poll()
            if self.ws is None:
                return
            check_connection(self.messages, None)
            if abrupt:  # no close handshake: the socket just goes
                self._drop()
            self._close()

        def _drop(self) -> None:
            assert self.ws is not None
            # The server may have closed first (a frame too big, a limit) and the client
            # closed its socket after the handshake: then there is nothing left to drop.
            with contextlib.suppress(OSError):
                self.ws.socket.shutdown(socket.SHUT_RDWR)

        def teardown(self) -> None:
            if self.ws is not None:
                self._drop()
                self._close()
            serve_cleanly(server.ws_url, speech)
            assert log_records.tracebacks() == []

    run_state_machine_as_test(
        Protocol,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


def test_protocol_fuzz(server: LiveServer, speech: bytes, log_records: LogRecords) -> None:
    fuzz(server, speech, log_records)
