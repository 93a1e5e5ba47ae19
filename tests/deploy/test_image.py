"""The real image: built from the Dockerfile, run, and run as the compose stack behind Caddy.

Needs a Docker engine (one is started and stopped here if none runs, tests/deploy/docker.py).
Without an image registry the Dockerfile's bases are local stand-ins built from Debian's
packages, passed through its own PYTHON_IMAGE and NODE_IMAGE build args; compose.yaml's
caddy service gets a stand-in from Debian's caddy package through CADDY_IMAGE. The first
run builds the stand-ins (about 8 minutes on 2 shared cores, most of it installing
Debian's npm); later runs take them, and unchanged build steps, from the engine's cache.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import numpy as np
import pytest

from bench.processes import REPO, free_port
from tests.deploy import docker as d
from tests.deploy.edge import declared_oversized_upload
from tests.deploy.streams import full_session, utterance_pcm
from tests.programs import require
from tests.speech import espeak, silence, wav_bytes

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(1800)]

IMAGE = "emostream-test/emostream:suite"
PROJECT = "emostream-imagetest"
UID = 10001
READY_TIMEOUT_S = 120.0
SUBNET = "172.30.248.0/24"


def wait_until_ready(
    url: str, verify: ssl.SSLContext | bool = True, timeout_s: float = READY_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=5, verify=verify).status_code
            if last == 200:
                return
        except httpx.HTTPError as error:
            last = error
        time.sleep(0.5)
    pytest.fail(f"{url} not ready within {timeout_s} s (last: {last!r})")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with d.engine(tmp_path_factory.mktemp("dockerd")):
        yield


@pytest.fixture(scope="module")
def bases(engine: None) -> dict[d.Upstream, str]:
    return d.base_images([d.PYTHON, d.NODE, d.CADDY])


def image_id(name: str) -> str | None:
    found = d.docker("image", "inspect", "--format", "{{.Id}}", name, check=False)
    return found.stdout.strip() if found.returncode == 0 else None


@pytest.fixture(scope="module")
def image(bases: dict[d.Upstream, str]) -> str:
    previous = image_id(IMAGE)
    d.docker(
        "build",
        "-q",
        "--build-arg",
        f"PYTHON_IMAGE={bases[d.PYTHON]}",
        "--build-arg",
        f"NODE_IMAGE={bases[d.NODE]}",
        "-t",
        IMAGE,
        str(REPO),
        timeout_s=1200,
    )
    if previous not in (None, image_id(IMAGE)):
        # The last run's image, untagged by this build: its own layers (a copy of the
        # venv among them) would otherwise pile up in the engine run after run.
        d.docker("rmi", previous, check=False)
    return IMAGE


@dataclass
class Container:
    id: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return d.docker("exec", self.id, *argv, check=False, timeout_s=60)


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[Container]:
    # As the Dockerfile's header says to run it: a read-only root and a /tmp tmpfs, no
    # other flag, so what is checked (user, capabilities) is the image's own.
    port = free_port()
    run = d.docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1:{port}:8000", image
    )  # fmt: skip
    started = Container(run.stdout.strip(), port)
    try:
        wait_until_ready(f"{started.url}/readyz")
        yield started
    finally:
        d.docker("rm", "-f", started.id, check=False)


def test_runs_as_the_unprivileged_user(container: Container) -> None:
    ids = container.exec("id", "-u")
    assert ids.stdout.strip() == str(UID), ids
    status = container.exec("cat", "/proc/1/status").stdout
    pid1 = dict(re.findall(r"^(\w+):\s*(.*)$", status, re.M))
    assert pid1["Uid"].split()[:2] == [str(UID), str(UID)]
    assert int(pid1["CapEff"], 16) == 0 and int(pid1["CapPrm"], 16) == 0


def test_root_filesystem_is_read_only(container: Container) -> None:
    config = json.loads(d.docker("inspect", container.id).stdout)[0]
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    mounts = {line.split()[1]: line.split()[3].split(",") for line in
              container.exec("cat", "/proc/mounts").stdout.splitlines()}  # fmt: skip
    assert "ro" in mounts["/"]
    assert "rw" in mounts["/tmp"]  # the one writable place, a tmpfs
    refused = container.exec("python", "-c", "open('/app/written', 'w')")
    assert refused.returncode != 0
    assert container.exec("python", "-c", "open('/tmp/written', 'w')").returncode == 0
    # ... and the server is up and ready on it.
    assert httpx.get(f"{container.url}/readyz", timeout=10).status_code == 200


def test_classifies_an_uploaded_wav(container: Container) -> None:
    audio = np.concatenate([silence(0.3), espeak("Good evening everyone."), silence(0.5)])
    response = httpx.post(
        f"{container.url}/v1/classify",
        files={"file": ("clip.wav", wav_bytes(audio), "audio/wav")},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["segments"]) == 1
    assert body["summary"]["label"] in body["model"]["labels"]


def test_streams_over_a_websocket(container: Container) -> None:
    stream = asyncio.run(
        full_session(f"ws://127.0.0.1:{container.port}/v1/stream", utterance_pcm())
    )
    assert stream.messages[0]["type"] == "ready"
    assert [m["segment"] for m in stream.of_type("result")] == [0]
    assert stream.ws.close_code == 1000


def test_stops_cleanly_on_sigterm(image: str) -> None:
    # Its own container: the others' tests run against theirs. `docker stop` sends
    # SIGTERM and waits its grace period before SIGKILL (exit 137): 0 means the server
    # drained and exited by itself.
    port = free_port()
    run = d.docker(
        "run", "-d", "--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1:{port}:8000", image
    )
    cid = run.stdout.strip()
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz")
        d.docker("stop", "--time", "30", cid, timeout_s=90)
        state = json.loads(d.docker("inspect", cid).stdout)[0]["State"]
        logs = d.docker("logs", cid)
        assert state["ExitCode"] == 0, logs.stdout + logs.stderr
        assert not state["OOMKilled"]
        assert "stopped by SIGTERM" in logs.stdout + logs.stderr
    finally:
        d.docker("rm", "-f", cid, check=False)


# The compose stack: compose.yaml and caddy/Caddyfile as shipped, brought up by
# docker-compose with this run's images and free host ports.


@dataclass
class Stack:
    https_port: int
    http_port: int
    root_ca: Path

    @property
    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root_ca))

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.https_port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.origin, verify=self.tls, timeout=60)


def compose(
    directory: Path, *args: str, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("docker-compose"), "-p", PROJECT, "-f", "compose.yaml", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=d.docker_env(),
        check=False,
    )


def caddy_root_ca(directory: Path, target: Path, timeout_s: float = 60) -> None:
    """Caddy's local CA root, from the caddy container's data volume once it exists."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = compose(
            directory, "exec", "-T", "caddy", "cat", "/data/caddy/pki/authorities/local/root.crt"
        )
        if result.returncode == 0 and "BEGIN CERTIFICATE" in result.stdout:
            target.write_text(result.stdout)
            return
        if time.monotonic() > deadline:
            pytest.fail(f"Caddy's local CA root did not appear:\n{result.stderr}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(
    image: str, bases: dict[d.Upstream, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("compose")
    shutil.copy(REPO / "compose.yaml", directory / "compose.yaml")
    (directory / "caddy").mkdir()
    shutil.copy(REPO / "caddy" / "Caddyfile", directory / "caddy" / "Caddyfile")
    https_port, http_port = free_port(), free_port()
    # .env as the docs make it (from .env.example), with this run's images and ports.
    env = (REPO / ".env.example").read_text() + (
        f"\nSERVER_IMAGE={image}\nCADDY_IMAGE={bases[d.CADDY]}\n"
        f"HTTPS_PORT={https_port}\nHTTP_PORT={http_port}\n"
        # Not the default range, which a real stack on this host may hold.
        f"PROXY_SUBNET={SUBNET}\n"
    )
    (directory / ".env").write_text(env)
    compose(directory, "down", "--volumes", "--remove-orphans")  # an interrupted run's
    try:
        # Caddy starts once the server's health check passes (depends_on).
        up = compose(directory, "up", "-d", "--no-build", timeout_s=600)
        if up.returncode != 0:
            logs = compose(directory, "logs", "--no-color", "--tail", "30")
            pytest.fail(f"docker-compose up failed:\n{up.stderr}\n{logs.stdout}")
        stack = Stack(https_port, http_port, directory / "root.crt")
        caddy_root_ca(directory, stack.root_ca)
        wait_until_ready(f"{stack.origin}/readyz", stack.tls)
        yield stack
    finally:
        logs = compose(directory, "logs", "--no-color", "--tail", "50")
        down = compose(directory, "down", "--volumes", "--remove-orphans")
        assert down.returncode == 0, down.stderr + logs.stdout


def test_stack_limits_are_applied(stack: Stack) -> None:
    ids = d.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}")
    configs = json.loads(d.docker("inspect", *ids.stdout.split()).stdout)
    by_service = {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in configs}
    assert set(by_service) == {"server", "caddy"}
    server = by_service["server"]["HostConfig"]
    assert server["PidsLimit"] == 256
    assert server["Memory"] == 2 * 1024**3
    assert server["NanoCpus"] == 0  # the default: no CPU limit, fits any host
    assert server["ReadonlyRootfs"] is True
    assert by_service["caddy"]["HostConfig"]["NanoCpus"] == 10**9
    environment = dict(e.split("=", 1) for e in by_service["server"]["Config"]["Env"])
    assert environment["EMOSTREAM_TRUSTED_PROXIES"] == SUBNET


def test_standins_trust_this_machines_extra_certificates(bases: dict[d.Upstream, str]) -> None:
    # pip and npm in the build reach their registries through them (a TLS-inspecting
    # proxy's); the upstream images, where used, are left as published.
    extra = sorted(d.EXTRA_CERTS.rglob("*.crt")) if d.EXTRA_CERTS.is_dir() else []
    for upstream, used in bases.items():
        if used == upstream.image:
            continue
        bundle = d.docker("run", "--rm", used, "cat", "/etc/ssl/certs/ca-certificates.crt")
        trusted = "".join(bundle.stdout.split())
        for cert in extra:
            body = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END", cert.read_text(), re.S)
            assert body is not None, cert
            assert "".join(body.group(1).split()) in trusted, f"{used} lacks {cert.name}"


def test_page_over_https_with_security_headers(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    headers = response.headers
    assert "server" not in headers
    assert headers["strict-transport-security"].startswith("max-age=")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert "microphone=(self)" in headers["permissions-policy"]
    assert (
        f"connect-src 'self' wss://localhost:{stack.https_port};"
        in (headers["content-security-policy"])
    )


def test_http_redirects_to_https(stack: Stack) -> None:
    response = httpx.get(f"http://localhost:{stack.http_port}/v1/info", timeout=30)
    assert response.status_code in (301, 308)
    # Caddy listens on 443 inside the container; the test's host port is not it.
    assert response.headers["location"].startswith("https://localhost")
    assert response.headers["location"].endswith("/v1/info")


@pytest.mark.parametrize(("method", "path"), [("GET", "/metrics"), ("POST", "/admin/model")])
def test_metrics_and_admin_are_not_routed(stack: Stack, method: str, path: str) -> None:
    with stack.client() as client:
        response = client.request(method, path)
    assert response.status_code == 404
    assert response.content == b""  # Caddy's own empty 404, not the server's


def test_oversized_upload_is_refused_at_the_edge(stack: Stack) -> None:
    status, body = declared_oversized_upload(stack.https_port, stack.tls)
    assert status == 413
    assert body["error"]["code"] == "too_large"


def test_streams_over_wss_through_caddy(stack: Stack) -> None:
    stream = asyncio.run(
        full_session(
            f"wss://localhost:{stack.https_port}/v1/stream",
            utterance_pcm(),
            ssl=stack.tls,
            origin=stack.origin,  # what the browser sends for the page itself
        )
    )
    assert stream.messages[0]["type"] == "ready"
    assert [m["segment"] for m in stream.of_type("result")] == [0]
    assert stream.ws.close_code == 1000


def test_tls_certificate_names_the_site(stack: Stack) -> None:
    with (
        socket.create_connection(("localhost", stack.https_port), timeout=30) as plain,
        stack.tls.wrap_socket(plain, server_hostname="localhost") as sock,
    ):
        certificate = sock.getpeercert()
    assert certificate is not None
    alt_names = cast("tuple[tuple[str, str], ...]", certificate["subjectAltName"])
    names = [value for kind, value in alt_names if kind == "DNS"]
    assert names == ["localhost"]
