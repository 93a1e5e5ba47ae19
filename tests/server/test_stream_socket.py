"""/v1/stream over a real uvicorn socket with the ``websockets`` client: close codes on the wire,
graceful shutdown, model switch under a live stream, and no leftovers after a disconnect."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import time
import weakref
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from client.websocket import stream_pcm16
from pcm.format import to_int16
from server.settings import Settings
from tests.live import LiveServer, live_server
from tests.speech import to_pcm16

END = json.dumps({"type": "end"})


async def drain(ws: Any) -> tuple[list[dict[str, Any]], int | None]:
    messages = []
    try:
        async for raw in ws:
            messages.append(json.loads(raw))
    except websockets.ConnectionClosed:
        pass
    return messages, ws.close_code


async def send_chunks(ws: Any, data: bytes, size: int = 4096) -> None:
    for offset in range(0, len(data), size):
        await ws.send(data[offset : offset + size])


@pytest.fixture
def server(tiny_model_dir: Path) -> Any:
    with live_server(
        Settings(model_dir=tiny_model_dir, max_frame_bytes=8192, admin_token="admin-secret")
    ) as live:
        yield live


def test_reference_client_full_stream(server: LiveServer, three_utterances: np.ndarray) -> None:
    pcm = to_int16(three_utterances)
    report = asyncio.run(stream_pcm16(server.ws_url, pcm, 16000, speed=0))
    assert report.close_code == 1000
    assert report.messages[0]["type"] == "ready"
    assert len(report.of_type("result")) == 3
    assert report.of_type("end") == [
        {"type": "end", "segments": 3, "audio_ms": len(three_utterances) // 16}
    ]


@pytest.mark.parametrize(
    ("query", "frame", "code", "error"),
    [
        ("?sample_rate=1", None, 1008, "bad_request"),
        ("", b"\x00" * 8194, 1009, "bad_frame"),
        ("", b"\x00" * 200_000, 1009, None),  # beyond what the WebSocket layer reads at all
    ],
)
def test_close_codes_on_the_wire(
    server: LiveServer, query: str, frame: bytes | None, code: int, error: str | None
) -> None:
    async def run() -> tuple[list[dict[str, Any]], int | None]:
        async with websockets.connect(server.ws_url + query) as ws:
            if frame is not None:
                assert json.loads(await ws.recv())["type"] == "ready"
                await ws.send(frame)
            return await drain(ws)

    messages, close_code = asyncio.run(run())
    assert close_code == code
    if error is not None:
        assert messages[-1]["code"] == error


def test_server_stays_up_after_abuse(server: LiveServer, one_utterance: np.ndarray) -> None:
    async def abuse() -> None:
        for _ in range(20):
            async with websockets.connect(server.ws_url) as ws:
                await ws.send(b"\x01")
                await ws.send("{not json")
                await ws.send(b"\x00" * 2 * 10)  # tiny frames
        for _ in range(10):  # abrupt disconnects mid-handshake and mid-stream
            ws = await websockets.connect(server.ws_url)
            await ws.send(to_pcm16(one_utterance[:4000]))
            ws.transport.abort()

    asyncio.run(abuse())
    pcm = to_int16(one_utterance)
    report = asyncio.run(stream_pcm16(server.ws_url, pcm, 16000, speed=0))
    assert report.close_code == 1000 and len(report.of_type("result")) == 1


def _wait_until(condition: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_disconnect_mid_utterance_leaves_nothing_behind(
    server: LiveServer, one_utterance: np.ndarray
) -> None:
    refs: list[weakref.ref[Any]] = []

    async def run() -> None:
        ws = await websockets.connect(server.ws_url)
        await ws.recv()
        await send_chunks(ws, to_pcm16(one_utterance[: 16000 + 8000]))
        await asyncio.sleep(0.2)
        assert _wait_until(lambda: len(server.service.sessions) == 1), server.service.sessions
        refs.extend(weakref.ref(s) for s in server.service.sessions)
        ws.transport.abort()

    asyncio.run(run())
    assert _wait_until(lambda: not server.service.sessions and server.service.limiter.total == 0)
    # Every task of the session holds a reference to it: once it is collected, none is left.
    assert _wait_until(lambda: gc.collect() >= 0 and refs[0]() is None)


def test_graceful_shutdown_delivers_results_then_closes_1013(
    tiny_model_dir: Path, one_utterance: np.ndarray
) -> None:
    async def run(live: LiveServer) -> tuple[list[dict[str, Any]], int | None]:
        async with websockets.connect(live.ws_url) as ws:
            await ws.recv()
            await ws.send(to_pcm16(one_utterance[: int(16000 * 1.6)]))  # mid-utterance
            await asyncio.sleep(0.3)
            live.server.should_exit = True
            return await drain(ws)

    with live_server(Settings(model_dir=tiny_model_dir)) as live:
        messages, code = asyncio.run(run(live))
    assert code == 1013
    assert [m["type"] for m in messages] == ["speech_start", "speech_end", "result", "error"]
    assert messages[-1]["code"] == "busy"


def test_model_switch_under_a_live_stream(
    server: LiveServer, tiny_model_dir_b: Path, one_utterance: np.ndarray, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir_b, broken)
    (broken / "model.onnx").write_bytes(b"tampered")
    auth = {"Authorization": "Bearer admin-secret"}
    new_version = json.loads((tiny_model_dir_b / "manifest.json").read_text())["version"]

    async def run() -> tuple[list[dict[str, Any]], int | None, list[httpx.Response]]:
        replies = []
        async with (
            websockets.connect(server.ws_url) as ws,
            httpx.AsyncClient(base_url=server.http_url) as http,
        ):
            ready = json.loads(await ws.recv())
            await send_chunks(ws, to_pcm16(one_utterance))
            await ws.send(json.dumps({"type": "flush"}))
            first = [json.loads(await ws.recv()) for _ in range(3)]
            replies.append(
                await http.post("/admin/model", json={"model_dir": str(broken)}, headers=auth)
            )
            replies.append(
                await http.post("/admin/model", json={"model_dir": str(tiny_model_dir_b)})
            )
            replies.append(
                await http.post(
                    "/admin/model", json={"model_dir": str(tiny_model_dir_b)}, headers=auth
                )
            )
            await send_chunks(ws, to_pcm16(one_utterance))
            await ws.send(END)
            rest, code = await drain(ws)
        return [ready, *first, *rest], code, replies

    messages, code, replies = asyncio.run(run())
    refused, unauthenticated, switched = replies
    assert refused.status_code == 422 and "checksum" in refused.json()["error"]["message"]
    assert unauthenticated.status_code == 401
    assert switched.status_code == 200 and switched.json()["model"]["version"] == new_version
    assert code == 1000  # the connection was never dropped
    results = [m for m in messages if m["type"] == "result"]
    assert len(results) == 2
    assert results[0]["model_version"] == messages[0]["model"]["version"] != new_version
    assert results[1]["model_version"] == new_version
    assert httpx.get(server.http_url + "/v1/model").json()["version"] == new_version


def test_admin_endpoint_disabled_without_admin_token(tiny_model_dir: Path) -> None:
    with live_server(Settings(model_dir=tiny_model_dir)) as live:
        reply = httpx.post(live.http_url + "/admin/model", headers={"Authorization": "Bearer x"})
    assert reply.status_code == 403


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"model_dir": 5}', b'{"other": "x"}', b"\xff\xfe"]
)
def test_admin_switch_rejects_malformed_bodies(server: LiveServer, body: bytes) -> None:
    reply = httpx.post(
        server.http_url + "/admin/model",
        content=body,
        headers={"Authorization": "Bearer admin-secret"},
    )
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "bad_request"


def test_admin_switch_refuses_an_oversized_body(server: LiveServer) -> None:
    reply = httpx.post(
        server.http_url + "/admin/model",
        content=b"{" + b" " * 70_000 + b"}",
        headers={"Authorization": "Bearer admin-secret"},
    )
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "too_large"
    assert httpx.get(server.http_url + "/healthz").status_code == 200
