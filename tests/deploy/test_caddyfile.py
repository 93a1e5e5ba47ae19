"""caddy/Caddyfile: formatting, validation, and what the adapted JSON config says.

`caddy adapt` turns the file into Caddy's native JSON config, exactly what `caddy run`
would load; the assertions read that JSON instead of pattern-matching the text.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.processes import CADDYFILE, caddy_env
from server.settings import Settings
from tests.programs import require

pytestmark = pytest.mark.caddy


@pytest.fixture(autouse=True)
def _caddy() -> None:
    require("caddy")


MULTIPART_MARGIN_BYTES = 1024 * 1024


def caddy(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["caddy", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def adapt(tmp_path: Path, **variables: str) -> dict[str, Any]:
    result = caddy(
        "adapt",
        "--adapter",
        "caddyfile",
        "--config",
        str(CADDYFILE),
        env=caddy_env(tmp_path, **variables),
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def handlers(node: object) -> Iterator[dict[str, Any]]:
    """Every handler object anywhere in the config."""
    if isinstance(node, dict):
        if "handler" in node:
            yield node
        for value in node.values():
            yield from handlers(value)
    elif isinstance(node, list):
        for item in node:
            yield from handlers(item)


def only(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The one handler called ``name`` on the request path (error routes excluded)."""
    found = [h for h in handlers(server(config)["routes"]) if h["handler"] == name]
    assert len(found) == 1, f"{len(found)} {name} handlers"
    return found[0]


def server(config: dict[str, Any]) -> dict[str, Any]:
    servers = config["apps"]["http"]["servers"]
    assert len(servers) == 1
    result: dict[str, Any] = next(iter(servers.values()))
    return result


def test_caddyfile_is_formatted() -> None:
    result = subprocess.run(
        ["caddy", "fmt", str(CADDYFILE)], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == CADDYFILE.read_text()


@pytest.mark.parametrize(
    "variables",
    [
        {},  # compose defaults: localhost, server:8000
        {"SITE_ADDRESS": "emostream.example.org", "UPSTREAM": "s1:8000 s2:8000 s3:8000"},
        {"SITE_ADDRESS": "https://localhost:8443", "CADDY_SITE_OPTIONS": "bind 127.0.0.1"},
    ],
    ids=["defaults", "public-domain-3-replicas", "test-options"],
)
def test_caddyfile_validates(tmp_path: Path, variables: dict[str, str]) -> None:
    env = caddy_env(tmp_path, **variables)
    if not variables:
        for name in ("UPSTREAM", "CADDY_GLOBAL_OPTIONS"):
            env.pop(name)
    result = caddy("validate", "--adapter", "caddyfile", "--config", str(CADDYFILE), env=env)
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


def test_site_address_and_upstreams_come_from_the_environment(tmp_path: Path) -> None:
    config = adapt(tmp_path, SITE_ADDRESS="emostream.example.org", UPSTREAM="s1:8000 s2:8000")
    routes = server(config)["routes"]
    assert routes[0]["match"] == [{"host": ["emostream.example.org"]}]
    proxy = only(config, "reverse_proxy")
    assert [u["dial"] for u in proxy["upstreams"]] == ["s1:8000", "s2:8000"]
    assert server(config)["listen"] == [":443"]


def test_defaults_are_localhost_and_the_compose_service(tmp_path: Path) -> None:
    env = caddy_env(tmp_path)
    env.pop("UPSTREAM")
    result = caddy("adapt", "--adapter", "caddyfile", "--config", str(CADDYFILE), env=env)
    config = json.loads(result.stdout)
    assert server(config)["routes"][0]["match"] == [{"host": ["localhost"]}]
    assert [u["dial"] for u in only(config, "reverse_proxy")["upstreams"]] == ["server:8000"]
    assert server(config)["protocols"] == ["h1", "h2", "h3"]


def test_load_balancing_and_health_checks(tmp_path: Path) -> None:
    proxy = only(adapt(tmp_path), "reverse_proxy")
    assert proxy["load_balancing"]["selection_policy"] == {"policy": "least_conn"}
    active = proxy["health_checks"]["active"]
    assert active["uri"] == "/readyz"
    assert active["expect_status"] == 200
    # a stopping or dead replica is out of rotation within 2 s, or at its first refusal
    assert active["interval"] <= 2 * 10**9 and active["timeout"] <= active["interval"]
    # passive checks would let a client's aborted requests take replicas out
    assert "passive" not in proxy["health_checks"]
    # a new connection is retried until the active check has noticed a dead replica
    retries = proxy["load_balancing"]
    assert retries["try_interval"] <= 250 * 10**6
    assert retries["try_duration"] > active["interval"] + active["timeout"]


def test_security_headers_apply_to_every_response(tmp_path: Path) -> None:
    headers = only(adapt(tmp_path), "headers")["response"]
    assert headers["deferred"] is True  # set after the upstream answered: cannot be undone
    assert headers["delete"] == ["Server"]
    names = set(headers["set"])
    assert {
        "Strict-Transport-Security",
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "Permissions-Policy",
    } <= names
    csp = headers["set"]["Content-Security-Policy"][0]
    assert "connect-src 'self' wss://{http.request.hostport}" in csp
    assert "unsafe" not in csp


def test_oversized_bodies_get_a_json_error(tmp_path: Path) -> None:
    errors = server(adapt(tmp_path))["errors"]["routes"]
    responses = [h for h in handlers(errors) if h["handler"] == "static_response"]
    assert [json.loads(r["body"])["error"]["code"] for r in responses] == ["too_large"]
    assert [r["status_code"] for r in responses] == [413]


def test_compression(tmp_path: Path) -> None:
    assert set(only(adapt(tmp_path), "encode")["encodings"]) == {"zstd", "gzip"}


def test_slow_header_senders_are_cut_off(tmp_path: Path) -> None:
    srv = server(adapt(tmp_path))
    assert 0 < srv["read_header_timeout"] <= 30 * 10**9
    assert srv["max_header_bytes"] <= 64 * 1024


def test_body_limit_matches_the_server_upload_limit(tmp_path: Path) -> None:
    config = adapt(tmp_path)
    limit = only(config, "request_body")["max_size"]
    upload_default = Settings.model_fields["max_upload_bytes"].default
    assert upload_default < limit <= upload_default + 2 * MULTIPART_MARGIN_BYTES
    # The early refusal by Content-Length and the JSON error name the same number.
    text = CADDYFILE.read_text()
    assert re.search(rf"Content-Length\}}\) > {limit}`", text)
    assert f"request body over {limit} bytes" in text


def test_metrics_are_not_proxied(tmp_path: Path) -> None:
    config = adapt(tmp_path)
    responses = [h for h in handlers(server(config)["routes"]) if h["handler"] == "static_response"]
    assert any(h.get("status_code") == 404 for h in responses)
    assert '{"path": ["/metrics"]}' in json.dumps(config).replace("'", '"')
