"""Fixtures for the browser tests: the real server in a thread, tapped, and headless Chromium."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.app import create_app
from server.runner import DrainingServer, uvicorn_config
from server.settings import Settings
from tests.programs import require

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Records, in the page, every change of the speaking indicator.
SPEAKING_LOG_SCRIPT = """
window.__speaking = [];
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("speaking");
  const options = { attributes: true, attributeOldValue: true, attributeFilter: ["data-speaking"] };
  new MutationObserver((records) => records.forEach((record, i) => window.__speaking.push(
    i + 1 < records.length ? records[i + 1].oldValue : el.dataset.speaking,
  ))).observe(el, options);
});
"""

Float = npt.NDArray[np.float32]


@dataclass
class AudioTap:
    """ASGI wrapper: keeps what the server receives, the binary frames of each WebSocket
    and the body of each upload."""

    app: ASGIApp
    block_websockets: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # added to every HTTP response
    connections: list[bytearray] = field(default_factory=list)
    uploads: list[bytearray] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.headers:
            send = self._with_headers(send)
        if scope["type"] == "http" and scope["path"] == "/v1/classify":
            await self.app(scope, self._tap(receive, "http.request", "body", self.uploads), send)
            return
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        if self.block_websockets:  # what a proxy that refuses upgrades looks like: HTTP 403
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(
            scope, self._tap(receive, "websocket.receive", "bytes", self.connections), send
        )

    def _with_headers(self, send: Send) -> Send:
        extra = [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        names = {name for name, _ in extra}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Replacing the server's own, as Caddy's header directive does.
                kept = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message = {**message, "headers": [*kept, *extra]}
            await send(message)

        return sending

    @staticmethod
    def _tap(receive: Receive, kind: str, key: str, into: list[bytearray]) -> Receive:
        received = bytearray()
        into.append(received)

        async def tapped() -> Message:
            message = await receive()
            if message["type"] == kind and message.get(key):
                received.extend(message[key])
            return message

        return tapped

    def audio(self, index: int = -1) -> Float:
        pcm = np.frombuffer(bytes(self.connections[index]), dtype="<i2")
        return (pcm / 32768.0).astype(np.float32)


class _SignallingServer(DrainingServer):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.up = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.up.set()

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            super().run(sockets)
        finally:
            self.up.set()  # also wakes the waiter when startup failed


@dataclass
class Served:
    url: str
    port: int
    tap: AudioTap
    server: DrainingServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(
    settings: Settings,
    port: int | None = None,
    block_websockets: bool = False,
    headers: dict[str, str] | None = None,
) -> Iterator[Served]:
    """The real app under uvicorn on a loopback port, in a thread."""
    app = create_app(settings)
    tap = AudioTap(app, block_websockets, headers or {})
    port = port or free_port()
    config = uvicorn_config(tap, settings, "127.0.0.1", port)  # type: ignore[arg-type]
    server = _SignallingServer(config, app.state.service)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    server.up.wait(60)
    if not server.started:
        server.should_exit = True
        thread.join(10)
        raise RuntimeError(f"server on port {port} did not start")
    try:
        yield Served(f"http://127.0.0.1:{port}", port, tap, server)
    finally:
        server.should_exit = True
        thread.join(30)


def write_wav(path: Path, audio: Float, rate_hz: int) -> Path:
    sf.write(path, audio, rate_hz, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    require("chromium")
    require("espeak-ng")
    with sync_playwright() as pw:
        yield pw


LaunchFn = Callable[..., AbstractContextManager[Page]]


@pytest.fixture
def launch(playwright: Playwright) -> Iterator[LaunchFn]:
    """launch(audio_file, fake_ui=True, fake_device=True, args=(), **context) -> a fresh page."""
    browsers: list[Browser] = []

    @contextmanager
    def _launch(
        audio: Path | None = None,
        fake_ui: bool = True,
        fake_device: bool = True,
        args: tuple[str, ...] = (),
        **context: Any,
    ) -> Iterator[Page]:
        flags = [*CHROMIUM_ARGS, *args]
        if fake_device:
            flags.append("--use-fake-device-for-media-stream")
        if fake_ui:
            flags.append("--use-fake-ui-for-media-stream")
        if audio is not None:
            flags.append(f"--use-file-for-fake-audio-capture={audio.resolve()}%noloop")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        browsers.append(browser)
        # The server sends the page's CSP itself, which forbids evaluating strings, and the
        # harness waits on string predicates: it bypasses the policy. The page's own
        # compliance is tested in a browser under the policy (tests/deploy/test_proxy.py).
        context.setdefault("bypass_csp", True)
        page = browser.new_context(**context).new_page()
        page.add_init_script(SPEAKING_LOG_SCRIPT)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        assert errors == [], f"uncaught errors in the page: {errors}"

    yield _launch
    for browser in browsers:
        browser.close()


SettingsFn = Callable[..., Settings]


@pytest.fixture(scope="session")
def make_settings(tiny_model_dir: Path) -> SettingsFn:
    """Settings for the tiny model, with overrides (validated like the environment's)."""

    def _make(**overrides: Any) -> Settings:
        return Settings(model_dir=tiny_model_dir, workers=1, log_level="warning", **overrides)

    return _make


@pytest.fixture(scope="module")
def web_settings(make_settings: SettingsFn) -> Settings:
    return make_settings()


@pytest.fixture(scope="module")
def server(web_settings: Settings) -> Iterator[Served]:
    with serve(web_settings) as served:
        yield served


@pytest.fixture
def screenshots() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
