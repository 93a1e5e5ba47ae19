"""tests/deploy/docker.py's own logic that needs no engine: where debootstrap fetches from."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.docker import DEFAULT_MIRROR, debian_mirror


def apt_dir(tmp_path: Path, sources_list: str = "", **lists: str) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    if sources_list:
        (tmp_path / "sources.list").write_text(sources_list)
    for name, text in lists.items():
        (tmp_path / "sources.list.d" / name.replace("_", ".")).write_text(text)
    return tmp_path


def test_mirror_from_a_one_line_sources_list(tmp_path: Path) -> None:
    text = (
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
    )
    assert debian_mirror(apt_dir(tmp_path, text)) == "http://mirror.example/debian"


def test_mirror_from_a_deb822_sources_file(tmp_path: Path) -> None:
    debian = (
        "Types: deb\nURIs: http://other.example/node\nSuites: nodistro\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert debian_mirror(apt_dir(tmp_path, debian_sources=debian)) == (
        "http://mirror.example/debian"
    )


def test_mirror_defaults_to_debians_own(tmp_path: Path) -> None:
    other = "deb https://packages.example/apt cloud-sdk-bookworm main\n"
    assert debian_mirror(apt_dir(tmp_path, other)) == DEFAULT_MIRROR
