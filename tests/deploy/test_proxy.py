"""The project's real Caddyfile, run by the real caddy binary, in front of a real server.

Caddy serves https://localhost:<port> with a certificate from its local CA; the tests
trust that CA's root only, and connect to ``localhost`` (the certificate's name).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.processes import CaddyProcess, ServerProcess
from tests.deploy.edge import CADDY_MAX_BODY_BYTES, declared_oversized_upload
from tests.deploy.streams import Stream, full_session, refused, utterance_pcm
from tests.programs import require
from tests.speech import espeak, silence, wav_bytes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.caddy,
]


@pytest.fixture(autouse=True)
def _caddy() -> None:
    require("caddy")


ADMIN_TOKEN = "admin-token-for-the-edge-test"


@dataclass
class Stack:
    server: ServerProcess
    caddy: CaddyProcess

    @property
    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.caddy.root_ca))

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.caddy.https_url, verify=self.tls, timeout=60)

    @property
    def origin(self) -> str:
        return self.caddy.https_url


@pytest.fixture(scope="module")
def make_stack(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def make(settings: dict[str, str], caddy_env: dict[str, str] | None = None) -> Stack:
        server = ServerProcess(tiny_model_dir, settings)
        try:
            caddy = CaddyProcess(
                f"127.0.0.1:{server.port}", tmp_path_factory.mktemp("caddy"), caddy_env
            )
        except RuntimeError:
            server.stop()
            raise
        stacks.append(Stack(server, caddy))
        return stacks[-1]

    yield make
    for stack in stacks:
        stack.caddy.stop()
        stack.server.stop()


@pytest.fixture(scope="module")
def stack(make_stack: Callable[..., Stack]) -> Stack:
    # The server's own upload limit is set above Caddy's so that the proxy's limit is
    # the one under test here; in production Caddy's is the larger (see test_caddyfile).
    return make_stack(
        {
            "trusted_proxies": "127.0.0.1/32",
            "workers": "1",
            "max_upload_bytes": str(64 * 1024 * 1024),
            "admin_token": ADMIN_TOKEN,
        }
    )


# The page


def test_page_is_served_over_https_with_security_headers(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "server" not in response.headers
    headers = response.headers
    assert headers["strict-transport-security"].startswith("max-age=")
    assert int(headers["strict-transport-security"].split("=")[1].split(";")[0]) >= 15_552_000
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "microphone=(self)" in headers["permissions-policy"]
    csp = parse_csp(headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", f"wss://localhost:{stack.caddy.port}"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in source for sources in csp.values() for source in sources)


def parse_csp(header: str) -> dict[str, list[str]]:
    directives = [d.split() for d in header.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


class _PageScan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "style" or "style" in names or any(a.startswith("on") for a in names):
            self.inline.append(tag)
        if tag == "script" and not names.get("src"):
            self.inline.append("script")
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_page_needs_nothing_the_policy_forbids(stack: Stack) -> None:
    # The policy allows only the site itself: the page must carry no inline script or
    # style and load nothing from another host.
    with stack.client() as client:
        page = client.get("/").text
    scan = _PageScan()
    scan.feed(page)
    assert scan.inline == []
    assert [u for u in scan.urls if re.match(r"^[a-z]+:", u) and not u.startswith("#")] == []


def test_static_files_are_compressed(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/app.js", headers={"Accept-Encoding": "gzip"})
        raw = client.get("/app.js", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == raw.content  # httpx decoded the gzip body
    assert "content-encoding" not in raw.headers
    assert len(gzip.compress(raw.content)) < len(raw.content)


def test_metrics_are_not_exposed_at_the_edge(stack: Stack) -> None:
    with stack.client() as client:
        assert client.get("/metrics").status_code == 404
    assert httpx.get(f"{stack.server.http_url}/metrics").status_code == 200


def raw_request(stack: Stack, head: bytes, body: bytes = b"", timeout_s: float = 30) -> bytes:
    """Send a request exactly as written (no client normalises its path); what came back."""
    with (
        socket.create_connection(("localhost", stack.caddy.port), timeout=timeout_s) as plain,
        stack.tls.wrap_socket(plain, server_hostname="localhost") as sock,
    ):
        sock.sendall(head + body)
        reply = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError, ssl.SSLError):
            while chunk := sock.recv(65536):
                reply += chunk
        return reply


@pytest.mark.parametrize(
    "path",
    ["/admin/model", "/admin/model/", "/ADMIN/model", "//admin/model", "/admin%2Fmodel", "/admin"],
)
def test_admin_is_not_routed_through_the_edge(stack: Stack, path: str) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost:{stack.caddy.port}\r\n"
        f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    reply = raw_request(stack, head.encode())
    assert reply.startswith(b"HTTP/1.1 404"), reply[:200]
    assert b"error" not in reply  # Caddy's own empty 404, not the server's JSON


def test_admin_answers_on_the_replica_itself(stack: Stack) -> None:
    # The same request straight to the server, from loopback (docs/deployment.md): served.
    reply = httpx.post(
        f"{stack.server.http_url}/admin/model",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text


# Paths the server would normalise into hidden files (issue 28): refused through the edge.


@pytest.mark.parametrize(
    "path",
    [
        "//package.json",
        "/x/../package.json",
        "/%2Fpackage-lock.json",
        "//node_modules/uplot/package.json",
        "/lib/../node_modules/uplot/package.json",
    ],
)
def test_un_normalised_paths_reach_no_hidden_file_through_the_edge(stack: Stack, path: str) -> None:
    head = f"GET {path} HTTP/1.1\r\nHost: localhost:{stack.caddy.port}\r\nConnection: close\r\n\r\n"
    reply = raw_request(stack, head.encode())
    # The server's own refusal, passed through (Caddy forwards such paths as they are).
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert b'"bad_request"' in reply and b'"name"' not in reply


# Slow upload bodies (issue 28): Caddy streams bodies through, so the server's own
# admission is what keeps a trickle from locking others out.


def trickle_through(stack: Stack, source: str) -> ssl.SSLSocket:
    """An upload through Caddy that declares 1 MB and sends one byte, from ``source``."""
    plain = socket.create_connection(
        ("127.0.0.1", stack.caddy.port), timeout=30, source_address=(source, 0)
    )
    sock = stack.tls.wrap_socket(plain, server_hostname="localhost")
    sock.sendall(
        f"POST /v1/classify HTTP/1.1\r\nHost: localhost:{stack.caddy.port}\r\n"
        "Content-Type: audio/wav\r\nContent-Length: 1000000\r\n\r\nR".encode()
    )
    return sock


def uploads_receiving(stack: Stack) -> float:
    text = httpx.get(f"{stack.server.http_url}/metrics", timeout=10).text
    match = re.search(r'emostream_uploads_in_progress\{stage="receiving"\} ([0-9.]+)', text)
    return float(match.group(1)) if match else 0.0


def test_trickling_uploads_through_the_edge_do_not_lock_out_others(stack: Stack) -> None:
    trickles = [trickle_through(stack, source) for source in ("127.0.0.2", "127.0.0.3") * 2]
    try:
        deadline = time.monotonic() + 20
        while uploads_receiving(stack) < 4:
            assert time.monotonic() < deadline, "the trickles never reached the server"
            time.sleep(0.05)
        transport = httpx.HTTPTransport(local_address="127.0.0.4", verify=stack.tls)
        with httpx.Client(base_url=stack.caddy.https_url, transport=transport, timeout=60) as c:
            normal = c.post(
                "/v1/classify",
                content=wav_bytes(espeak("Good morning to you all.")),
                headers={"Content-Type": "audio/wav", "Origin": stack.origin},
            )
        assert normal.status_code == 200, normal.text
    finally:
        for sock in trickles:
            sock.close()


@pytest.fixture(scope="module")
def slow_rate_stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack({"workers": "1", "min_body_rate_bytes_s": "1000", "body_rate_grace_s": "0.5"})


def test_a_too_slow_body_gets_408_through_the_edge(slow_rate_stack: Stack) -> None:
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: localhost:{slow_rate_stack.caddy.port}\r\n"
        "Content-Type: audio/wav\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n"
    )
    reply = raw_request(slow_rate_stack, head.encode(), b"R", timeout_s=30)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert b"slower than 1000 bytes/s" in reply


@pytest.fixture(scope="module")
def quick_body_stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack({"workers": "1"}, {"CADDY_READ_BODY_TIMEOUT": "2s"})


def test_a_slow_body_is_cut_off_at_the_edge(quick_body_stack: Stack) -> None:
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: localhost:{quick_body_stack.caddy.port}\r\n"
        "Content-Type: audio/wav\r\nContent-Length: 1000000\r\n\r\n"
    )
    started = time.monotonic()
    reply = raw_request(quick_body_stack, head.encode(), b"0123456789", timeout_s=30)
    waited_s = time.monotonic() - started
    assert waited_s < 15, "the edge kept a slow body open"
    assert b"segments" not in reply  # nothing was classified from the ten bytes


def test_the_body_timeout_does_not_cut_websockets(quick_body_stack: Stack) -> None:
    async def scenario() -> Stream:
        stream = await Stream.open(
            quick_body_stack.caddy.wss_url, ssl=quick_body_stack.tls, origin=quick_body_stack.origin
        )
        await stream.wait_for("ready")
        for _ in range(8):  # 4 s, twice the edge's read_body timeout
            await stream.send_audio(bytes(3200))
            await asyncio.sleep(0.5)
        await stream.send_audio(utterance_pcm())
        await stream.ws.send(json.dumps({"type": "end"}))
        await stream.closed_code()
        return stream

    stream = asyncio.run(scenario())
    assert len(stream.of_type("result")) == 1
    assert stream.ws.close_code == 1000


# Streaming over wss://


def test_full_stream_over_wss(stack: Stack) -> None:
    stream = asyncio.run(
        full_session(
            stack.caddy.wss_url,
            utterance_pcm() * 2,
            ssl=stack.tls,
            origin=stack.origin,  # what the browser sends for the page itself
        )
    )
    assert stream.messages[0]["type"] == "ready"
    assert [m["segment"] for m in stream.of_type("result")] == [0, 1]
    assert stream.of_type("end")[0]["segments"] == 2
    assert stream.ws.close_code == 1000


def test_cross_site_websocket_is_refused_through_the_proxy(stack: Stack) -> None:
    messages, code = asyncio.run(
        refused(stack.caddy.wss_url, ssl=stack.tls, origin="https://evil.example")
    )
    assert [m["code"] for m in messages] == ["unauthorized"]
    assert code == 1008


def test_forwarded_for_cannot_be_spoofed_through_the_proxy(
    make_stack: Callable[[dict[str, str]], Stack],
) -> None:
    # Caddy replaces a client's X-Forwarded-For with the address it sees, so a client
    # cannot pose as many others to slip past the per-address limit.
    own = make_stack({"trusted_proxies": "127.0.0.1/32", "max_connections_per_ip": "2"})
    tls = own.tls

    async def scenario() -> tuple[list[dict[str, object]], int | None]:
        held = [
            await Stream.open(
                own.caddy.wss_url, ssl=tls, additional_headers={"X-Forwarded-For": ip}
            )
            for ip in ("203.0.113.1", "203.0.113.2")
        ]
        for stream in held:
            await stream.wait_for("ready")
        result = await refused(
            own.caddy.wss_url, ssl=tls, additional_headers={"X-Forwarded-For": "203.0.113.3"}
        )
        for stream in held:
            await stream.abort()
        return result

    messages, code = asyncio.run(scenario())
    assert [m["code"] for m in messages] == ["busy"]
    assert "client 127.0.0.1 " in str(messages[0]["message"])
    assert code == 1013


# Uploads and the body limit


def test_upload_through_the_proxy(stack: Stack) -> None:
    audio = np.concatenate([silence(0.3), espeak("Good evening everyone."), silence(0.5)])
    with stack.client() as client:
        response = client.post(
            "/v1/classify", files={"file": ("clip.wav", wav_bytes(audio), "audio/wav")}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["segments"]) == 1
    assert body["summary"]["label"] in body["model"]["labels"]


def test_declared_oversized_body_is_refused_before_it_is_sent(stack: Stack) -> None:
    status, body = declared_oversized_upload(stack.caddy.port, stack.tls)
    assert status == 413
    assert body["error"]["code"] == "too_large"


def test_streamed_body_over_the_limit_is_cut_off(stack: Stack) -> None:
    chunk = bytes(1024 * 1024)

    def body() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(CADDY_MAX_BODY_BYTES // len(chunk) + 2):
            yield chunk

    with stack.client() as client:
        response = client.post(
            "/v1/classify", content=body(), headers={"Content-Type": "audio/wav"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert str(CADDY_MAX_BODY_BYTES) in response.json()["error"]["message"]


def test_body_just_under_the_limit_reaches_the_server(stack: Stack) -> None:
    # Not audio at all: the server's decoder, not the proxy, refuses it.
    with stack.client() as client:
        response = client.post(
            "/v1/classify",
            content=bytes(CADDY_MAX_BODY_BYTES - 4096),
            headers={"Content-Type": "audio/wav"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_audio"


# The real page in a real browser, through the proxy


@pytest.mark.browser
def test_page_runs_under_its_security_policy_in_a_browser(stack: Stack) -> None:
    chromium = require("chromium")
    from playwright.sync_api import WebSocket, sync_playwright

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--ignore-certificate-errors",  # Caddy's local CA is not in Chromium's store
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page()
            # Injected by the driver, so the policy under test does not apply to it.
            page.add_init_script(
                "window.__violations = [];"
                "document.addEventListener('securitypolicyviolation', e =>"
                " window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(stack.caddy.https_url + "/", wait_until="load")
            with page.expect_websocket() as opened:
                page.click("#start")  # the microphone is Chromium's fake device
            socket: WebSocket = opened.value
            socket.wait_for_event("framesent", predicate=lambda frame: isinstance(frame, bytes))
            violations = page.evaluate("window.__violations")
        finally:
            browser.close()
    assert socket.url.startswith(f"wss://localhost:{stack.caddy.port}/v1/stream")
    assert violations == []
