"""Upload admission and slow clients over a real uvicorn socket: at most N uploads at once
overall and per address (503 ``busy`` with ``Retry-After``), slow bodies and headers time
out, a client leaving mid-upload is no server fault (server/api.py, server/transport.py)."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from classifier.inference import OnnxClassifier
from client.websocket import stream_pcm16
from pcm.format import to_int16
from server.api import UPLOAD_RETRY_AFTER_S
from server.settings import Settings
from tests.live import LiveServer, live_server
from tests.server.conftest import ScriptedClassifier
from tests.speech import wav_bytes


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


class HeldUpload:
    """A raw ``POST /v1/classify`` whose body is sent in two parts, the second on demand."""

    def __init__(self, server: LiveServer, body: bytes, source: str = "127.0.0.1") -> None:
        port = int(server.http_url.rsplit(":", 1)[1])
        self.sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
        self.sock.settimeout(60)
        self.rest = body[len(body) // 2 :]
        head = (
            f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: audio/wav\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body[: len(body) // 2])

    def finish(self) -> tuple[int, dict[str, Any]]:
        self.sock.sendall(self.rest)
        return read_response(self.sock)

    def close(self) -> None:
        self.sock.close()


def read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read())


@pytest.fixture(scope="module")
def speech_wav(one_utterance: npt.NDArray[np.float32]) -> bytes:
    return wav_bytes(one_utterance)


@pytest.fixture
def serve(tiny_model_dir: Path) -> Iterator[Callable[..., LiveServer]]:
    with_servers: list[Any] = []

    def start(loader: Any = None, **settings: Any) -> LiveServer:
        context = live_server(Settings(model_dir=tiny_model_dir, **settings), loader)
        with_servers.append(context)
        return context.__enter__()

    yield start
    for context in reversed(with_servers):
        context.__exit__(None, None, None)


def post(server: LiveServer, wav: bytes, source: str = "127.0.0.1") -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=60) as client:
        return client.post(
            f"{server.http_url}/v1/classify", content=wav, headers={"content-type": "audio/wav"}
        )


def test_uploads_beyond_the_limit_are_busy_while_the_first_succeed_and_streams_go_on(
    serve: Callable[..., LiveServer],
    speech_wav: bytes,
    three_utterances: npt.NDArray[np.float32],
    tiny_model_dir: Path,
) -> None:
    # Classification is held, so the two complete uploads stay in their classify slots.
    gate = threading.Event()
    classifiers: list[ScriptedClassifier] = []

    def loader(path: Path) -> ScriptedClassifier:
        classifiers.append(ScriptedClassifier(OnnxClassifier(path), gate=gate))
        return classifiers[-1]

    server = serve(loader=loader, max_uploads=2, max_uploads_per_ip=5, workers=2)
    with ThreadPoolExecutor(2) as posting:
        first = [posting.submit(post, server, speech_wav) for _ in range(2)]
        try:
            wait_until(lambda: server.service.uploads.classifying == 2)
            refused = post(server, speech_wav)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == str(UPLOAD_RETRY_AFTER_S)
            error = refused.json()["error"]
            assert error["code"] == "busy"
            assert "limit of 2 uploads in progress" in error["message"]
        finally:
            gate.set()
        for upload in first:
            assert upload.result().status_code == 200, upload.result().text
            assert len(upload.result().json()["segments"]) == 1
    # A live stream is not an upload: it keeps its results while uploads are held.
    report = asyncio.run(
        stream_pcm16(
            server.ws_url,
            to_int16(three_utterances),
            16000,
            speed=0,
        )
    )
    assert report.close_code == 1000
    assert len(report.of_type("result")) == 3
    wait_until(lambda: server.service.uploads.total == 0)
    assert post(server, speech_wav).status_code == 200


class Trickle:
    """A raw upload that declares a large body and sends only its first bytes."""

    def __init__(self, server: LiveServer, source: str, declared: int = 1_000_000) -> None:
        port = int(server.http_url.rsplit(":", 1)[1])
        self.sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
        self.sock.settimeout(30)
        self.sock.sendall(
            f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: audio/wav\r\nContent-Length: {declared}\r\n\r\nR".encode()
        )

    def close(self) -> None:
        self.sock.close()


def test_trickling_bodies_do_not_lock_out_other_clients(
    serve: Callable[..., LiveServer], speech_wav: bytes
) -> None:
    # The review's reproduction: four slow bodies from two addresses, at every cap.
    server = serve(max_uploads=4, max_uploads_per_ip=2)
    trickles = [Trickle(server, source) for source in ("127.0.0.2", "127.0.0.3") * 2]
    try:
        wait_until(lambda: server.service.uploads.receiving == 4)
        gauge = 'emostream_uploads_in_progress{stage="receiving"} 4.0'
        assert gauge in server.service.metrics.exposition().decode()
        normal = post(server, speech_wav, source="127.0.0.4")
        assert normal.status_code == 200, normal.text
        # The trickling addresses are still at their own cap.
        same = post(server, speech_wav, source="127.0.0.2")
        assert same.status_code == 503
        assert "client 127.0.0.2 is at its limit of 2" in same.json()["error"]["message"]
    finally:
        for trickle in trickles:
            trickle.close()


def test_bodies_being_received_have_their_own_cap(
    serve: Callable[..., LiveServer], speech_wav: bytes
) -> None:
    server = serve(max_upload_bodies=2, max_uploads_per_ip=4)
    trickles = [Trickle(server, "127.0.0.2") for _ in range(2)]
    try:
        wait_until(lambda: server.service.uploads.receiving == 2)
        refused = post(server, speech_wav, source="127.0.0.4")
        assert refused.status_code == 503
        assert "limit of 2 upload bodies being received" in refused.json()["error"]["message"]
    finally:
        for trickle in trickles:
            trickle.close()
    wait_until(lambda: server.service.uploads.total == 0)
    assert post(server, speech_wav, source="127.0.0.4").status_code == 200


def test_a_body_below_the_minimum_rate_gets_408(serve: Callable[..., LiveServer]) -> None:
    server = serve(min_body_rate_bytes_s=1000, body_rate_grace_s=0.5, body_timeout_s=60)
    trickle = Trickle(server, "127.0.0.2")
    try:
        status, body = read_response(trickle.sock)
    finally:
        trickle.close()
    assert status == 408
    assert body["error"]["code"] == "bad_request"
    assert "slower than 1000 bytes/s (1 bytes came)" in body["error"]["message"]
    wait_until(lambda: server.service.uploads.total == 0)
    metrics = server.service.metrics.exposition().decode()
    assert 'emostream_uploads_total{status="408"} 1.0' in metrics


def test_uploads_are_limited_per_client_address(
    serve: Callable[..., LiveServer], speech_wav: bytes
) -> None:
    server = serve(max_uploads=4, max_uploads_per_ip=1)
    held = HeldUpload(server, speech_wav, source="127.0.0.1")
    try:
        wait_until(lambda: server.service.uploads.total == 1)
        same = post(server, speech_wav, source="127.0.0.1")
        assert same.status_code == 503
        assert same.headers["retry-after"] == str(UPLOAD_RETRY_AFTER_S)
        assert "client 127.0.0.1 is at its limit of 1" in same.json()["error"]["message"]
        other = post(server, speech_wav, source="127.0.0.2")
        assert other.status_code == 200, other.text
        status, _ = held.finish()
        assert status == 200
    finally:
        held.close()


def test_a_slow_body_times_out(serve: Callable[..., LiveServer]) -> None:
    server = serve(body_timeout_s=1.0)
    port = int(server.http_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(15)
        sock.sendall(
            b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            b"Content-Length: 1000000\r\n\r\n0123456789"
        )
        started = time.monotonic()
        status, body = read_response(sock)
        waited_s = time.monotonic() - started
    assert status == 408
    assert body["error"]["code"] == "bad_request"
    assert "not received within 1 s" in body["error"]["message"]
    assert waited_s < 10
    assert server.service.uploads.total == 0


@pytest.mark.parametrize("sent", [b"", b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n"])
def test_slow_headers_time_out(serve: Callable[..., LiveServer], sent: bytes) -> None:
    server = serve(header_timeout_s=1.0)
    port = int(server.http_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(15)
        sock.sendall(sent)
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, nothing sent
        assert time.monotonic() - started < 10


def test_headers_that_arrive_in_time_are_served(serve: Callable[..., LiveServer]) -> None:
    server = serve(header_timeout_s=1.0)
    with httpx.Client(base_url=server.http_url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        time.sleep(1.5)  # longer than the header timeout, between two requests on one connection
        assert client.get("/healthz").status_code == 200


def test_client_leaving_mid_upload_logs_no_traceback(
    serve: Callable[..., LiveServer], speech_wav: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve()
    with caplog.at_level(logging.INFO):
        held = HeldUpload(server, speech_wav)
        wait_until(lambda: server.service.uploads.total == 1)
        held.close()
        wait_until(lambda: server.service.uploads.total == 0)
        time.sleep(0.2)  # let the server log what it logs
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    assert any("went away during its upload" in r.getMessage() for r in caplog.records)


def test_http_work_beyond_the_cap_is_refused(
    serve: Callable[..., LiveServer], speech_wav: bytes
) -> None:
    # uvicorn counts open connections (this one too) against one session slot plus two
    # HTTP requests: with two uploads held, a third connection's request is 503.
    server = serve(max_connections=1, max_http_requests=2, max_uploads=4, max_uploads_per_ip=4)
    held = [HeldUpload(server, speech_wav) for _ in range(2)]
    try:
        wait_until(lambda: server.service.uploads.total == 2)
        assert httpx.get(f"{server.http_url}/v1/model", timeout=30).status_code == 503
        for upload in held:
            assert upload.finish()[0] == 200
    finally:
        for upload in held:
            upload.close()


def test_uploads_are_decoded_on_the_decode_pool(
    serve: Callable[..., LiveServer], speech_wav: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from server import recording

    threads: list[str] = []
    real = recording.decode_audio

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(recording, "decode_audio", spy)
    server = serve()
    assert post(server, speech_wav).status_code == 200
    (name,) = threads
    assert name.startswith("decode")
