"""``POST /admin/model`` (server/admin.py): reachable from an internal address only, and its
errors name no path, so it cannot be used to learn what exists on the server's disk."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings

AUTH = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
def admin_client(tiny_model_dir: Path) -> Iterator[Any]:
    opened: list[TestClient] = []

    def make(peer: str, **settings: Any) -> TestClient:
        app = create_app(Settings(model_dir=tiny_model_dir, admin_token="admin-secret", **settings))
        client = TestClient(app, client=(peer, 40000))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_peers_may_switch_models(admin_client: Any, peer: str) -> None:
    reply = admin_client(peer).post("/admin/model", headers=AUTH)
    assert reply.status_code == 200
    assert reply.json()["model"]["name"] == "tiny-test"


@pytest.mark.parametrize("peer", ["172.18.0.3", "203.0.113.5", "testclient"])
def test_other_peers_find_no_such_endpoint(admin_client: Any, peer: str) -> None:
    reply = admin_client(peer).post("/admin/model", headers=AUTH)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"


def test_a_forwarded_loopback_address_does_not_count(admin_client: Any) -> None:
    # The edge proxy is trusted for X-Forwarded-For, but admin access is by the direct peer.
    client = admin_client("172.18.0.3", trusted_proxies="172.18.0.0/16")
    reply = client.post("/admin/model", headers={**AUTH, "X-Forwarded-For": "127.0.0.1"})
    assert reply.status_code == 404


def test_the_internal_networks_are_configurable(admin_client: Any) -> None:
    client = admin_client("10.1.2.3", admin_networks="10.0.0.0/8")
    assert client.post("/admin/model", headers=AUTH).status_code == 200
    assert (
        admin_client("127.0.0.1", admin_networks="10.0.0.0/8")
        .post("/admin/model", headers=AUTH)
        .status_code
        == 404
    )


def test_refusals_name_no_path_and_do_not_tell_what_exists(
    admin_client: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    client = admin_client("127.0.0.1")
    empty = tmp_path / "empty-directory"
    empty.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    not_json = tmp_path / "not-json"
    not_json.mkdir()
    (not_json / "manifest.json").write_text("{")
    messages = []
    for target in (tmp_path / "does-not-exist", empty, a_file, not_json):
        reply = client.post("/admin/model", json={"model_dir": str(target)}, headers=AUTH)
        assert reply.status_code == 422
        assert reply.json()["error"]["code"] == "bad_model"
        messages.append(reply.json()["error"]["message"])
        assert str(tmp_path) not in reply.text
    assert len(set(messages)) == 1, messages
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_model_dir, tampered)
    (tampered / "model.onnx").write_bytes(b"not the graph")
    reply = client.post("/admin/model", json={"model_dir": str(tampered)}, headers=AUTH)
    assert reply.status_code == 422
    assert "checksum mismatch" in reply.json()["error"]["message"]
    assert str(tmp_path) not in reply.text
