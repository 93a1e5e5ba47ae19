"""The import graph of the project's packages (tests/imports.py): no cycles, and only the
arrows docs/architecture.md draws."""

from __future__ import annotations

import pytest

from tests.imports import PACKAGES, REPO, cycles, import_graph, imports_of, package_graph

# What each package may import of the project; anything else is an error. The same arrows
# are drawn in docs/architecture.md (test_the_docs_draw_these_arrows).
ALLOWED: dict[str, set[str]] = {
    "emostream": {"server", "client", "training", "classifier", "vad"},
    "bench": {"server", "client", "training", "classifier", "vad", "pcm"},
    "client": {"server", "pcm"},
    "server": {"classifier", "vad", "pcm"},
    "training": {"classifier", "pcm"},
    "vad": {"pcm"},
    "classifier": set(),
    "pcm": set(),
}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_the_imports(graph: dict[str, set[str]]) -> None:
    assert "classifier.model" in graph["classifier.inference"]
    assert "emostream.cli" in graph["emostream.__main__"]
    assert "training.cli" in graph["emostream.cli"]  # imported inside a function


def test_no_cycle_between_packages(graph: dict[str, set[str]]) -> None:
    assert cycles(package_graph(graph)) == []


def test_no_cycle_between_modules_of_a_package(graph: dict[str, set[str]]) -> None:
    inside = {
        module: {t for t in targets if t.split(".")[0] == module.split(".")[0]}
        for module, targets in graph.items()
    }
    assert cycles(inside) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str, graph: dict[str, set[str]]) -> None:
    assert package_graph(graph)[package] <= ALLOWED[package]


def test_the_docs_draw_these_arrows() -> None:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = {}
    for line in text.splitlines():
        source, arrow, targets = line.partition(" ──> ")
        if arrow and source.strip().isalpha():  # package lines, not the audio path
            names = targets.split("(")[0].replace("nothing of the project", "")
            drawn[source.strip()] = {n.strip() for n in names.split(",") if n.strip()}
    assert drawn == ALLOWED


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in conftest.py or helper modules, not in test_*.py files."""
    wrong = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for name in imports_of(path):
            if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_"):
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert wrong == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
