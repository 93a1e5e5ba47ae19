"""The security review's findings (issue 28), each tried over a real socket as the review
did: metrics only to scrapers, paths in normal form only, long multipart boundaries,
the Origin's port, the public model manifest, IPv6 clients counted by their /64, and the
security headers the server sets itself (server/paths.py, server/headers.py, ...)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from server.access import client_key
from server.settings import Settings
from tests.live import LiveServer, live_server
from tests.speech import wav_bytes


@pytest.fixture
def serve(tiny_model_dir: Path) -> Iterator[Callable[..., LiveServer]]:
    contexts: list[Any] = []

    def start(**settings: Any) -> LiveServer:
        context = live_server(Settings(model_dir=tiny_model_dir, **settings))
        contexts.append(context)
        return context.__enter__()

    yield start
    for context in reversed(contexts):
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[LiveServer]:
    with live_server(Settings(model_dir=tiny_model_dir)) as live:
        yield live


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def port_of(server: LiveServer) -> int:
    return int(server.http_url.rsplit(":", 1)[1])


def raw_get(
    server: LiveServer, path: str, headers: dict[str, str] | None = None, source: str = "127.0.0.1"
) -> tuple[int, bytes, http.client.HTTPMessage]:
    """GET with the path exactly as given (http.client does not normalise it)."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", port_of(server), timeout=30, source_address=(source, 0)
    )
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response.headers
    finally:
        conn.close()


# 2. /metrics only to configured networks, never through a proxy


def test_metrics_are_served_to_loopback_by_default(server: LiveServer) -> None:
    status, body, _ = raw_get(server, "/metrics")
    assert status == 200 and b"emostream_open_connections" in body


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_metrics_are_refused_to_a_proxied_request(server: LiveServer, header: str) -> None:
    status, body, _ = raw_get(server, "/metrics", {header: "203.0.113.9"})
    assert status == 404 and b"emostream" not in body


def test_metrics_are_refused_outside_the_configured_networks(
    serve: Callable[..., LiveServer],
) -> None:
    server = serve(metrics_networks="127.0.0.2/32")
    assert raw_get(server, "/metrics", source="127.0.0.1")[0] == 404
    assert raw_get(server, "/metrics", source="127.0.0.2")[0] == 200
    assert raw_get(server, "/healthz", source="127.0.0.1")[0] == 200


# 3. Paths in normal form only

HIDDEN_PATHS = [
    "//package.json",
    "/x/../package.json",
    "/%2Fpackage-lock.json",
    "/%2fpackage-lock.json",
    "//node_modules/uplot/package.json",
    "/lib/../node_modules/uplot/package.json",
    "/./package.json",
    "/%2E%2E/web/package.json",
    "/lib%2F..%2F..%2Fpackage.json",
    "/lib%5C..%5Cpackage.json",
]


@pytest.mark.parametrize("path", HIDDEN_PATHS)
def test_un_normalised_paths_do_not_reach_the_files(server: LiveServer, path: str) -> None:
    status, body, _ = raw_get(server, path)
    assert status == 400, body[:200]
    assert json.loads(body)["error"]["code"] == "bad_request"
    assert b"dependencies" not in body and b"lockfileVersion" not in body


@pytest.mark.parametrize(
    "path", ["/package.json", "/package-lock.json", "/node_modules/uplot/package.json"]
)
def test_the_package_files_are_not_served_by_their_plain_paths(
    server: LiveServer, path: str
) -> None:
    assert raw_get(server, path)[0] == 404


def test_the_page_and_its_files_are_still_served(server: LiveServer) -> None:
    for path in ("/", "/index.html", "/app.js", "/style.css", "/lib/uplot/uPlot.esm.js"):
        assert raw_get(server, path)[0] == 200, path


def test_the_host_check_is_not_bypassed_by_dot_segments(serve: Callable[..., LiveServer]) -> None:
    server = serve(allowed_hosts="emo.example.com")
    foreign = {"Host": "evil.example"}
    for path in ("/healthz/../index.html", "/healthz/..%2Findex.html", "/metrics/../app.js"):
        status, body, _ = raw_get(server, path, foreign)
        assert status == 400 and b"<html" not in body.lower(), path
    assert raw_get(server, "/index.html", foreign)[0] == 400
    assert raw_get(server, "/healthz", foreign)[0] == 200
    assert raw_get(server, "/index.html", {"Host": "emo.example.com"})[0] == 200


def test_a_websocket_on_an_un_normalised_path_is_refused(server: LiveServer) -> None:
    url = f"ws://127.0.0.1:{port_of(server)}//v1/stream"
    with pytest.raises(InvalidStatus), connect(url, open_timeout=10):
        pass


# 4. Multipart boundaries over RFC 2046's 70 characters


@pytest.mark.parametrize("length", [71, 257, 5000])
def test_a_long_multipart_boundary_is_a_bad_request(server: LiveServer, length: int) -> None:
    boundary = "b" * length
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\nRIFF\r\n--{boundary}--\r\n"
    ).encode()
    before = uploads_counted(server, "400")
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=30)
    try:
        conn.request(
            "POST",
            "/v1/classify",
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        response = conn.getresponse()
        reply = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 400
    assert reply["error"]["code"] == "bad_request"
    assert f"boundary of {length} characters is longer than 70" in reply["error"]["message"]
    assert uploads_counted(server, "400") == before + 1


def uploads_counted(server: LiveServer, status: str) -> float:
    value = server.service.metrics.registry.get_sample_value(
        "emostream_uploads_total", {"status": status}
    )
    return value or 0.0


# 5. The Origin's port counts with EMOSTREAM_ALLOWED_HOSTS


def first_message(url: str, origin: str | None, **headers: str) -> dict[str, Any]:
    with connect(url, origin=origin, additional_headers=headers, open_timeout=10) as ws:  # type: ignore[arg-type]
        message: dict[str, Any] = json.loads(ws.recv(timeout=10))
        return message


def test_an_origin_on_another_port_is_not_the_own_origin(
    serve: Callable[..., LiveServer],
) -> None:
    server = serve(allowed_hosts="localhost")
    port = port_of(server)
    url = f"ws://localhost:{port}/v1/stream"
    assert first_message(url, f"http://localhost:{port}")["type"] == "ready"
    for origin in ("http://localhost:9999", "https://localhost:8443", "http://localhost"):
        refused = first_message(url, origin)
        assert refused["type"] == "error" and refused["code"] == "unauthorized", origin


# 6. GET /v1/model serves public fields only


def test_the_model_endpoint_serves_no_provenance(server: LiveServer) -> None:
    status, body, _ = raw_get(server, "/v1/model")
    assert status == 200
    served = json.loads(body)
    assert "provenance" not in served and "input" not in served
    assert served["name"] == server.service.manifest.name
    assert served["labels"] == list(server.service.manifest.labels)


# 7. IPv6 clients are counted by their /64


def test_client_keys() -> None:
    assert client_key("2001:db8:1:2:aaaa::1", 64) == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2:ffff:ffff:ffff:ffff", 64) == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2::1", 56) == "2001:db8:1::/56"
    assert client_key("2001:db8::1", 128) == "2001:db8::1/128"
    assert client_key("::ffff:198.51.100.7", 64) == "198.51.100.7"
    assert client_key("198.51.100.7", 64) == "198.51.100.7"
    assert client_key("unknown", 64) == "unknown"


def test_ipv6_prefix_setting_is_bounded() -> None:
    with pytest.raises(ValueError, match="ipv6_client_prefix"):
        Settings(ipv6_client_prefix=0)
    with pytest.raises(ValueError, match="ipv6_client_prefix"):
        Settings(ipv6_client_prefix=129)


PROXIED = {"trusted_proxies": "127.0.0.1/32"}


def test_sessions_of_one_ipv6_64_share_its_cap(serve: Callable[..., LiveServer]) -> None:
    server = serve(max_connections_per_ip=2, **PROXIED)
    url = server.ws_url
    with contextlib.ExitStack() as held:
        for n in ("a", "b"):
            ws = held.enter_context(
                connect(url, additional_headers={"X-Forwarded-For": f"2001:db8:1:2::{n}"})
            )
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        refused = first_message(url, None, **{"X-Forwarded-For": "2001:db8:1:2:ffff::c"})
        assert refused["code"] == "busy"
        assert "client 2001:db8:1:2::/64 is at its limit of 2" in refused["message"]
        other = first_message(url, None, **{"X-Forwarded-For": "2001:db8:1:3::c"})
        assert other["type"] == "ready"


def test_uploads_of_one_ipv6_64_share_its_cap(serve: Callable[..., LiveServer]) -> None:
    server = serve(max_uploads_per_ip=1, **PROXIED)
    sock = socket.create_connection(("127.0.0.1", port_of(server)))
    try:
        sock.sendall(
            b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 2001:db8:5:6::1\r\n"
            b"Content-Type: audio/wav\r\nContent-Length: 100000\r\n\r\nR"
        )
        wait_until(lambda: server.service.uploads.total == 1)
        conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=30)
        conn.request(
            "POST",
            "/v1/classify",
            body=b"RIFF",
            headers={"Content-Type": "audio/wav", "X-Forwarded-For": "2001:db8:5:6::2"},
        )
        response = conn.getresponse()
        reply = json.loads(response.read())
        conn.close()
        assert response.status == 503
        assert "client 2001:db8:5:6::/64 is at its limit of 1" in reply["error"]["message"]
    finally:
        sock.close()


def test_the_pool_sees_ipv6_clients_by_their_64(
    serve: Callable[..., LiveServer], one_utterance: npt.NDArray[np.float32]
) -> None:
    server = serve(early_endpoint=False, **PROXIED)
    pool = server.service.pool
    seen: list[str] = []
    real = pool.classify

    async def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("client", ""))
        return await real(*args, **kwargs)

    pool.classify = spy  # type: ignore[method-assign]
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=60)
    conn.request(
        "POST",
        "/v1/classify",
        body=wav_bytes(one_utterance),
        headers={"Content-Type": "audio/wav", "X-Forwarded-For": "2001:db8:7:8::99"},
    )
    assert conn.getresponse().status == 200
    conn.close()
    pcm = (np.clip(one_utterance, -1, 1) * 32767).astype("<i2").tobytes()
    with connect(server.ws_url, additional_headers={"X-Forwarded-For": "2001:db8:7:8::1"}) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        for offset in range(0, len(pcm), 3200):
            ws.send(pcm[offset : offset + 3200])
        ws.send(json.dumps({"type": "end"}))
        while json.loads(ws.recv(timeout=30))["type"] != "end":
            pass
    assert len(seen) >= 2
    assert set(seen) == {"2001:db8:7:8::/64"}


# The security headers (Kubernetes has no Caddy to add them)


def test_responses_carry_the_security_headers(server: LiveServer) -> None:
    port = port_of(server)
    for path in ("/", "/v1/model", "/nonexistent"):
        _, _, headers = raw_get(server, path)
        assert headers["Referrer-Policy"] == "no-referrer", path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        policy = headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert f"connect-src 'self' ws://127.0.0.1:{port} wss://127.0.0.1:{port};" in policy
    _, _, headers = raw_get(server, "/", {"Host": 'evil"; script-src *'})
    assert "script-src *" not in headers["Content-Security-Policy"]
