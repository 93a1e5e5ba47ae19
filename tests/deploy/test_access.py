"""Origin allow-list and token authentication: missing, wrong and right, over real sockets."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from bench.processes import ServerProcess
from server.app import create_app
from server.settings import Settings
from tests.deploy.streams import Stream, refused

pytestmark = pytest.mark.slow

TOKEN = "user-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-fedcba9876543210"
ALLOWED_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tiny_model_dir,
        {
            "token": TOKEN,
            "admin_token": ADMIN_TOKEN,
            "allowed_origins": ALLOWED_ORIGIN,
            "workers": "1",
        },
    )
    yield proc
    proc.stop()


def first_message(url: str, **connect: Any) -> tuple[dict[str, Any], int | None]:
    """The first message of a connection, and its close code if the server closed it."""

    async def run() -> tuple[dict[str, Any], int | None]:
        stream = await Stream.open(url, **connect)
        await stream.wait_for("ready")
        if stream.of_type("ready"):
            await stream.abort()
            return stream.messages[0], None
        messages, code = stream.messages, await stream.closed_code()
        return messages[0], code

    return asyncio.run(run())


# WebSocket: token


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", {}),
        ("?token=wrong-token", {}),
        (f"?token={TOKEN}x", {}),
        ("", {"Authorization": "Bearer wrong-token"}),
        ("", {"Authorization": f"Basic {TOKEN}"}),
        ("?token=", {}),
    ],
    ids=["missing", "wrong-query", "longer-query", "wrong-bearer", "not-bearer", "empty"],
)
def test_stream_without_the_right_token_is_refused(
    server: ServerProcess, query: str, headers: dict[str, str]
) -> None:
    message, code = first_message(server.ws_url + query, additional_headers=headers)
    assert (message["type"], message["code"], code) == ("error", "unauthorized", 1008)


@pytest.mark.parametrize(
    ("query", "headers"),
    [(f"?token={TOKEN}", {}), ("", {"Authorization": f"Bearer {TOKEN}"})],
    ids=["query", "bearer"],
)
def test_stream_with_the_right_token_is_accepted(
    server: ServerProcess, query: str, headers: dict[str, str]
) -> None:
    message, code = first_message(server.ws_url + query, additional_headers=headers)
    assert (message["type"], code) == ("ready", None)


def test_admin_token_is_not_a_user_token(server: ServerProcess) -> None:
    message, code = first_message(f"{server.ws_url}?token={ADMIN_TOKEN}")
    assert (message["code"], code) == ("unauthorized", 1008)


# WebSocket: Origin


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "https://app.example.evil.example", "http://app.example", "null"],
)
def test_cross_site_origin_is_refused_even_with_the_token(
    server: ServerProcess, origin: str
) -> None:
    message, code = first_message(f"{server.ws_url}?token={TOKEN}", origin=origin)
    assert (message["code"], code) == ("unauthorized", 1008)
    assert origin in message["message"]


@pytest.mark.parametrize("origin", [None, ALLOWED_ORIGIN, "same"])
def test_missing_listed_or_own_origin_is_accepted(
    server: ServerProcess, origin: str | None
) -> None:
    if origin == "same":
        origin = server.http_url  # the page served by this server itself
    message, code = first_message(f"{server.ws_url}?token={TOKEN}", origin=origin)
    assert (message["type"], code) == ("ready", None)


def test_origin_is_checked_before_the_token(server: ServerProcess) -> None:
    messages, code = asyncio.run(refused(server.ws_url, origin="https://evil.example"))
    assert "origin" in messages[0]["message"]
    assert code == 1008


# HTTP


@pytest.mark.parametrize("path", ["/v1/model"])
@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {}, 401),
        ({"Authorization": "Bearer nope"}, {}, 401),
        ({}, {"token": "nope"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, {}, 200),
        ({}, {"token": TOKEN}, 200),
    ],
    ids=["missing", "wrong-bearer", "wrong-query", "bearer", "query"],
)
def test_v1_http_requires_the_token(
    server: ServerProcess, path: str, headers: dict[str, str], params: dict[str, str], status: int
) -> None:
    response = httpx.get(f"{server.http_url}{path}", headers=headers, params=params)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["code"] == "unauthorized"


def test_upload_requires_the_token(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.http_url}/v1/classify", content=b"RIFF", headers={"Content-Type": "audio/wav"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_stay_open_for_the_orchestrator(server: ServerProcess, path: str) -> None:
    assert httpx.get(f"{server.http_url}{path}").status_code == 200


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, {}, 401),
        ({}, {"token": ADMIN_TOKEN}, 401),
        ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, {}, 200),
    ],
    ids=["missing", "user-token", "query-not-accepted", "admin-bearer"],
)
def test_admin_endpoint_needs_the_admin_bearer_token(
    server: ServerProcess, headers: dict[str, str], params: dict[str, str], status: int
) -> None:
    response = httpx.post(
        f"{server.http_url}/admin/model", headers=headers, params=params, timeout=60
    )
    assert response.status_code == status, response.text


def test_admin_endpoint_is_off_without_an_admin_token(tiny_model_dir: Path) -> None:
    app = create_app(Settings(model_dir=tiny_model_dir))
    with TestClient(app, client=("127.0.0.1", 40000)) as client:  # admin: loopback only
        response = client.post("/admin/model", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403


# Constant-time comparison


def test_tokens_are_compared_in_constant_time(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    settings = Settings(
        model_dir=tiny_model_dir, token=SecretStr(TOKEN), admin_token=SecretStr(ADMIN_TOKEN)
    )
    with TestClient(create_app(settings), client=("127.0.0.1", 40000)) as client:
        assert client.get("/v1/model", params={"token": "guess-1"}).status_code == 401
        assert client.get("/v1/model", headers={"Authorization": f"Bearer {TOKEN}"}).is_success
        with client.websocket_connect("/v1/stream?token=guess-2") as ws:
            assert ws.receive_json()["code"] == "unauthorized"
        response = client.post("/admin/model", headers={"Authorization": "Bearer guess-3"})
        assert response.status_code == 401

    assert compared == [
        (TOKEN.encode(), b"guess-1"),
        (TOKEN.encode(), TOKEN.encode()),
        (TOKEN.encode(), b"guess-2"),
        (ADMIN_TOKEN.encode(), b"guess-3"),
    ]


def test_token_never_reaches_the_logs(server: ServerProcess) -> None:
    first_message(f"{server.ws_url}?token={TOKEN}")
    httpx.get(f"{server.http_url}/v1/model", params={"token": TOKEN})
    first_message(f"{server.ws_url}?token=guess-{TOKEN[:6]}")
    assert TOKEN not in server.output.text
    assert f"guess-{TOKEN[:6]}" not in server.output.text


def test_a_percent_encoded_token_name_is_redacted_too(server: ServerProcess) -> None:
    # ``%74oken`` decodes to ``token``: the server authenticates with it, so the log must
    # hide it just the same.
    message, code = first_message(f"{server.ws_url}?%74oken={TOKEN}")
    assert message["type"] == "ready" and code is None
    refused, _ = first_message(f"{server.ws_url}?%74OKEN=wrong-{TOKEN[:5]}&sample_rate=16000")
    assert refused["code"] == "unauthorized"
    assert TOKEN not in server.output.text
    assert f"wrong-{TOKEN[:5]}" not in server.output.text
    assert "%74oken=[redacted]" in server.output.text
