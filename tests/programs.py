"""The system programs the suite and the benchmarks run, as listed in scripts/system-packages.txt.

A test that needs a program fails without it, naming the fix: a skipped test on a machine that
lacks the program would hide exactly the missing install step a new machine has.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES_FILE = REPO / "scripts" / "system-packages.txt"


def listed_programs() -> dict[str, str]:
    """Program name -> the Debian package that provides it."""
    programs: dict[str, str] = {}
    for raw in PACKAGES_FILE.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        program, package, *_modes = line.split()
        programs[program] = package
    return programs


def require(program: str) -> str:
    """The path of `program`; the calling test fails if it is not installed."""
    if program not in listed_programs():
        pytest.fail(f"{program} is not listed in {PACKAGES_FILE.relative_to(REPO)}: add it there")
    path = shutil.which(program)
    if path is None:
        pytest.fail(
            f"{program} is not installed: run ./check (or scripts/setup.sh dev), which installs "
            f"every program in {PACKAGES_FILE.relative_to(REPO)}"
        )
    return path


def unlisted_programs(started: Iterable[str]) -> list[str]:
    """Those of the `started` executables that are neither listed nor Python's own."""
    own = (Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())
    python = Path(sys.executable).resolve()
    listed = listed_programs()
    unlisted = set()
    for started_path in started:
        path = Path(started_path)
        if path.is_absolute():
            resolved = path.resolve()
            if resolved == python or any(resolved.is_relative_to(root) for root in own):
                continue
        if path.name not in listed and not path.name.startswith("python"):
            unlisted.add(started_path)
    return sorted(unlisted)
