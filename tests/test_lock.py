"""The Python lock files agree with pyproject.toml (docs/dependencies.md).

requirements/dev.txt locks everything (runtime, [train], [dev] and the build backend);
requirements/serve.txt the runtime alone. Both come from scripts/lock.sh; these tests fail when
pyproject.toml was edited without re-locking, or a lock was edited by hand.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
LOCKS = {"serve": REPO / "requirements" / "serve.txt", "dev": REPO / "requirements" / "dev.txt"}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)")
VIA_PYPROJECT = "emostream (pyproject.toml)"
VIA_BUILD = "-r requirements/build.in"


@dataclass
class Pin:
    version: Version
    hashes: int = 0
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> dict[NormalizedName, Pin]:
    """A pip-compile output as name -> pin, with its hash count and what required it."""
    pins: dict[NormalizedName, Pin] = {}
    current: Pin | None = None
    for raw in text.splitlines():
        line = raw.strip()
        match = PIN.match(raw)
        if match:
            current = Pin(Version(match["version"]))
            pins[canonicalize_name(match["name"])] = current
        elif current is not None and line.startswith("--hash=sha256:"):
            current.hashes += 1
        elif current is not None and line.startswith("# via"):
            rest = line.removeprefix("# via").strip()
            if rest:
                current.via.append(rest)
        elif current is not None and line.startswith("#   "):
            current.via.append(line.removeprefix("#").strip())
        elif not line:
            current = None
    return pins


def requirements(groups: list[str]) -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())
    found = []
    for group in groups:
        if group == "runtime":
            found += project["project"]["dependencies"]
        elif group == "build":
            found += project["build-system"]["requires"]
        else:
            found += project["project"]["optional-dependencies"][group]
    return [Requirement(text) for text in found]


GROUPS = {"serve": ["runtime", "build"], "dev": ["runtime", "train", "dev", "build"]}


@pytest.fixture(scope="module")
def locks() -> dict[str, dict[NormalizedName, Pin]]:
    return {name: parse_lock(path.read_text()) for name, path in LOCKS.items()}


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_requirement_is_locked_within_its_range(
    lock: str, locks: dict[str, dict[NormalizedName, Pin]]
) -> None:
    pins = locks[lock]
    problems = []
    for requirement in requirements(GROUPS[lock]):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} is not in {LOCKS[lock].name}")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} but {LOCKS[lock].name} pins {pin.version}")
    assert not problems, "re-run scripts/lock.sh: " + "; ".join(problems)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_requires_nothing_pyproject_no_longer_names(
    lock: str, locks: dict[str, dict[NormalizedName, Pin]]
) -> None:
    """A dependency removed from pyproject.toml must leave the lock too."""
    named = {canonicalize_name(r.name) for r in requirements(GROUPS[lock])}
    direct = {
        name
        for name, pin in locks[lock].items()
        if VIA_PYPROJECT in pin.via or VIA_BUILD in pin.via
    }
    assert direct == named, (
        f"{LOCKS[lock].name} was resolved from other requirements than pyproject.toml's "
        f"(only in the lock: {sorted(direct - named)}, "
        f"only in pyproject: {sorted(named - direct)}); "
        "re-run scripts/lock.sh"
    )


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_carries_hashes(lock: str, locks: dict[str, dict[NormalizedName, Pin]]) -> None:
    unhashed = sorted(name for name, pin in locks[lock].items() if pin.hashes == 0)
    assert locks[lock], f"{LOCKS[lock].name} pins nothing"
    assert not unhashed, f"{LOCKS[lock].name} pins without --hash: {unhashed}"


def test_serve_and_dev_agree(locks: dict[str, dict[NormalizedName, Pin]]) -> None:
    """The server runs in production with the versions the suite tested."""
    serve, dev = locks["serve"], locks["dev"]
    differ = [
        f"{name} {pin.version} (serve) vs {dev[name].version if name in dev else 'absent'} (dev)"
        for name, pin in serve.items()
        if name not in dev or dev[name].version != pin.version
    ]
    assert not differ, "; ".join(differ)


def test_serve_lock_has_no_training_packages(locks: dict[str, dict[NormalizedName, Pin]]) -> None:
    assert not {"torch", "transformers"} & set(locks["serve"])


def test_torch_is_the_cpu_build(locks: dict[str, dict[NormalizedName, Pin]]) -> None:
    torch = locks["dev"]["torch"]
    assert torch.version.local == "cpu", f"torch {torch.version} is not the CPU build"
    assert not [name for name in locks["dev"] if name.startswith("nvidia-")]


def test_parse_lock_reads_pins_hashes_and_origins() -> None:
    text = (
        "anyio==4.16.0 \\\n"
        "    --hash=sha256:aa \\\n"
        "    --hash=sha256:bb\n"
        "    # via\n"
        "    #   emostream (pyproject.toml)\n"
        "    #   starlette\n"
        "idna==3.21 \\\n"
        "    --hash=sha256:cc\n"
        "    # via anyio\n"
    )
    pins = parse_lock(text)
    assert pins[canonicalize_name("anyio")].hashes == 2
    assert pins[canonicalize_name("anyio")].via == [VIA_PYPROJECT, "starlette"]
    assert pins[canonicalize_name("idna")].via == ["anyio"]
    assert pins[canonicalize_name("idna")].version == Version("3.21")
