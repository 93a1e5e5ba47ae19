"""A Docker engine for the image tests, and base images for machines without a registry.

`engine()` uses the running engine, or starts `dockerd` and stops that one (by its
process, never another) when done. `base_images()` gives the Dockerfile's base images:
the upstream ones where they are present or can be pulled, otherwise stand-ins built
here from Debian's own packages (a debootstrap root imported as an image, then
tests/deploy/standins/*.Dockerfile on it). The stand-ins trust the CA certificates this
machine trusts beyond Debian's (a TLS-inspecting proxy's), so that pip and npm inside the
image build reach their registries; the image the project publishes is built on the
upstream bases and never gets them. Images stay in the engine between runs, so only the
first run pays for debootstrap and the stand-ins' packages.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.programs import require

STANDINS = Path(__file__).resolve().parent / "standins"
ENGINE_START_TIMEOUT_S = 90.0
EXTRA_CERTS = Path("/usr/local/share/ca-certificates")
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LOCAL = "emostream-local"
BASE = f"{LOCAL}/debian:{DEBIAN_SUITE}"


def docker_env() -> dict[str, str]:
    # The classic builder: it needs no buildx plugin, which a newer CLI than the engine's
    # may lack ("BuildKit is enabled but the buildx component is missing").
    return {**os.environ, "DOCKER_BUILDKIT": "0"}


def docker(
    *args: str, timeout_s: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; with ``check``, a failure fails the test with its output."""
    result = subprocess.run(
        [require("docker"), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=docker_env(),
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def engine_answers() -> bool:
    return docker("info", timeout_s=30, check=False).returncode == 0


@contextlib.contextmanager
def engine(log_dir: Path) -> Iterator[None]:
    """A Docker engine for the duration: the running one, or one started (and stopped) here."""
    if engine_answers():
        yield
        return
    if os.geteuid() != 0:
        pytest.fail("no Docker engine is running and starting one (dockerd) needs root")
    log_path = log_dir / "dockerd.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [require("dockerd")], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
        while not engine_answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                pytest.fail(f"dockerd did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, timeout_s=30, check=False).returncode == 0


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for the suite, as debootstrap takes it."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        # One-line format: deb [options] URI suite components...
        for match in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            if match.group(2) == DEBIAN_SUITE:
                return match.group(1)
        # deb822 format: stanzas with URIs: and Suites: fields.
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = dict(re.findall(r"^([\w-]+):\s*(.*)$", stanza, re.M))
            if (
                DEBIAN_SUITE in fields.get("Suites", "").split()
                and "deb" in fields.get("Types", "").split()
            ):
                return fields["URIs"].split()[0]
    return DEFAULT_MIRROR


def build_debian_base(work: Path) -> None:
    """debootstrap a minimal Debian root and import it as BASE (about a minute)."""
    if os.geteuid() != 0:
        pytest.fail(f"building the local base {BASE} with debootstrap needs root")
    rootfs = work / "rootfs"
    mirror = debian_mirror()
    result = subprocess.run(
        [require("debootstrap"), "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"debootstrap from {mirror} failed:\n{result.stdout[-3000:]}{result.stderr}")
    try:
        tar = subprocess.Popen(
            [require("tar"), "-C", str(rootfs), "--exclude=./var/cache/apt/archives/*.deb",
             "-c", "."],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert tar.stdout is not None
        imported = subprocess.run(
            [require("docker"), "import", "-c", 'CMD ["bash"]', "-", BASE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=300,
            env=docker_env(),
            check=False,
        )
        tar.stdout.close()
        tar.wait(timeout=60)
        if imported.returncode != 0 or tar.returncode != 0:
            pytest.fail(f"docker import of the debootstrap root failed:\n{imported.stderr}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def build_standin(name: str, tag: str, work: Path) -> None:
    """Build tests/deploy/standins/<name>.Dockerfile on BASE, with this machine's extra CAs."""
    context = work / f"{name}-context"
    certs = context / "certs"
    certs.mkdir(parents=True)
    for cert in sorted(EXTRA_CERTS.rglob("*.crt")) if EXTRA_CERTS.is_dir() else []:
        shutil.copy(cert, certs / cert.name)
    shutil.copy(STANDINS / f"{name}.Dockerfile", context / "Dockerfile")
    # Unchanged recipe and certificates: every step comes from the engine's build cache.
    docker("build", "-q", "--build-arg", f"BASE={BASE}", "-t", tag, str(context), timeout_s=900)


@dataclass(frozen=True)
class Upstream:
    """An upstream base image and the local stand-in that replaces it without a registry."""

    image: str
    standin: str
    recipe: str

    @property
    def standin_tag(self) -> str:
        return f"{LOCAL}/{self.standin}"


PYTHON = Upstream("python:3.11-slim-bookworm", "python:3.11-bookworm", "python")
NODE = Upstream("node:20-bookworm-slim", "node:bookworm", "node")
CADDY = Upstream("caddy:2", "caddy:2-bookworm", "caddy")


def available(upstream: Upstream) -> bool:
    """The upstream image is here already, or the registry gives it."""
    if image_exists(upstream.image):
        return True
    return docker("pull", "-q", upstream.image, timeout_s=600, check=False).returncode == 0


def base_images(wanted: list[Upstream]) -> dict[Upstream, str]:
    """For each wanted upstream image, the image to use in its place."""
    chosen = {u: u.image for u in wanted if available(u)}
    missing = [u for u in wanted if u not in chosen]
    if missing:
        with tempfile.TemporaryDirectory(prefix="emostream-bases-") as tmp:
            work = Path(tmp)
            if not image_exists(BASE):
                build_debian_base(work)
            for upstream in missing:
                build_standin(upstream.recipe, upstream.standin_tag, work)
                chosen[upstream] = upstream.standin_tag
    return chosen
