"""Every system program that tests/ or bench/ runs is listed in scripts/system-packages.txt.

scripts/setup.sh installs the listed programs; one that is run but not listed passes where
somebody installed it by hand and fails on every new machine. Two nets: a static scan of the
code for the ways it starts programs, and tests/conftest.py's record of the programs this
test session actually started (which also sees programs started inside libraries, such as
ffmpeg under Transformers' audio pipeline).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.programs import PACKAGES_FILE, REPO, listed_programs, unlisted_programs

SPAWNERS = {
    "run",
    "Popen",
    "call",
    "check_call",
    "check_output",
    "create_subprocess_exec",
    "which",
}
BINARY_PATH = re.compile(r"^/(?:usr/)?(?:local/)?s?bin/([\w.+-]+)$")
# Programs of the Python environment itself, not of the system.
PYTHON_OWN = {"python", "python3"}


def _called_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _first_string(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.List | ast.Tuple) and node.elts:
        return _first_string(node.elts[0])
    return None


def programs_in_source(source: str) -> set[str]:
    """Programs a Python source starts by name or by path, as far as the text shows."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _called_name(node) in SPAWNERS and node.args:
            first = _first_string(node.args[0])
            if first and "/" not in first and re.fullmatch(r"[\w.+-]+", first):
                found.add(first)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = BINARY_PATH.match(node.value)
            if match:
                found.add(match.group(1))
    return found - PYTHON_OWN


def programs_in_tree() -> dict[str, set[str]]:
    where: dict[str, set[str]] = {}
    for folder in ("tests", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue  # its own examples name programs on purpose
            for program in programs_in_source(path.read_text(encoding="utf-8")):
                where.setdefault(program, set()).add(str(path.relative_to(REPO)))
    return where


def test_every_program_the_code_runs_is_listed() -> None:
    listed = listed_programs()
    unlisted = {p: sorted(files) for p, files in programs_in_tree().items() if p not in listed}
    assert not unlisted, f"run by tests/bench but missing from {PACKAGES_FILE.name}: {unlisted}"


def test_the_scan_sees_each_way_of_starting_a_program() -> None:
    source = """
import shutil, subprocess, asyncio
subprocess.run(["ffmpeg", "-i", x])
subprocess.Popen(("sox", "a.wav"), stdout=None)
shutil.which("caddy")
asyncio.create_subprocess_exec("espeak-ng", "-v", "en")
CHROMIUM = "/usr/bin/chromium"
subprocess.run([sys.executable, "-c", "pass"])
subprocess.run(["python3", "-V"])
"""
    assert programs_in_source(source) == {"ffmpeg", "sox", "caddy", "espeak-ng", "chromium"}


def test_setup_installs_from_the_list() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "scripts/system-packages.txt" in setup
    # setup's own reading of the list gives the same packages as the tests' reading.
    script = (
        'while read -r program package modes; do case "$program" in ""|"#"*) continue ;; esac; '
        'echo "$program $package"; done < scripts/system-packages.txt'
    )
    out = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    pairs = dict(line.split() for line in out.splitlines())
    assert pairs == listed_programs()


def test_serve_mode_needs_only_npm() -> None:
    # `scripts/setup.sh serve` (./serve on a fresh machine) installs npm for the page's library.
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    loop = setup[
        setup.index("while read -r program") : setup.index("done < scripts/system-packages.txt")
    ]
    script = (
        "mode=serve; need_apt=(); command() { return 1; }; "
        + loop
        + 'done < scripts/system-packages.txt; echo "${need_apt[@]}"'
    )
    out = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["npm"]


def test_readme_names_the_listed_packages() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    prefix = "System packages `./check` installs"
    line = next((row for row in readme.splitlines() if row.startswith(prefix)), None)
    assert line is not None, f"README has no line starting {prefix!r}"
    named = {word.strip(" .") for word in line.split(":", 1)[1].split(",")}
    assert named == set(listed_programs().values())


@pytest.mark.parametrize("program", sorted(listed_programs()))
def test_listed_program_is_installed(program: str) -> None:
    from tests.programs import require

    require(program)


def test_started_programs_are_checked_against_the_list() -> None:
    venv_tool = str(Path(sys.prefix) / "bin" / "some-tool")
    started = [
        "/usr/bin/ffmpeg",
        "caddy",
        sys.executable,
        venv_tool,
        "/usr/bin/gnuplot",
        "xdg-open",
    ]
    assert unlisted_programs(started) == ["/usr/bin/gnuplot", "xdg-open"]


def test_this_session_records_the_programs_it_starts() -> None:
    from tests import conftest

    subprocess.run(["bash", "-c", "true"], check=True)
    assert any(Path(p).name == "bash" for p in conftest._started_programs)
