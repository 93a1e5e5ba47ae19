"""The page's chart library: installed from npm into web/node_modules, served at /lib/ only."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from server import app as app_module
from server.weblib import LIBRARY_FILES, library_file, missing_libraries, page_paths

WEB = Path(__file__).resolve().parents[2] / "web"


def test_the_pinned_library_is_installed_as_the_lock_file_says() -> None:
    assert missing_libraries(WEB) == [], "run scripts/setup.sh (npm ci in web/)"
    lock = json.loads((WEB / "package-lock.json").read_text())
    wanted = json.loads((WEB / "package.json").read_text())["dependencies"]["uplot"]
    locked = lock["packages"]["node_modules/uplot"]
    assert locked["version"] == wanted and locked["integrity"].startswith("sha512-")
    installed = json.loads((WEB / "node_modules" / "uplot" / "package.json").read_text())
    assert installed["version"] == wanted


def test_library_files_are_served_with_their_types(make_client: Any) -> None:
    client = make_client()
    script = client.get("/lib/uplot/uPlot.esm.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "export" in script.text and "uPlot" in script.text
    style = client.get("/lib/uplot/uPlot.min.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        "/node_modules/uplot/package.json",
        "/node_modules/uplot/dist/uPlot.esm.js",
        "/node_modules",
        "/package.json",
        "/package-lock.json",
        "/lib/uplot/uPlot.iife.js",
        "/lib/uplot/../../package.json",
        "/lib",
        "/tests",
    ],
)
def test_nothing_else_of_the_package_manager_is_served(make_client: Any, path: str) -> None:
    assert make_client().get(path).status_code == 404


def test_the_page_still_loads_when_the_library_is_missing(
    make_client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: Any
) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>")
    monkeypatch.setattr(app_module, "WEB_DIR", tmp_path)
    with caplog.at_level(logging.WARNING, logger="server.app"):
        client = make_client()
    assert client.get("/lib/uplot/uPlot.esm.js").status_code == 404
    assert client.get("/").status_code == 200
    assert any(
        "node_modules/uplot/dist/uPlot.esm.js is missing" in r.message for r in caplog.records
    )


def test_helpers() -> None:
    assert library_file(WEB, "/lib/uplot/uPlot.esm.js") == (
        WEB / "node_modules" / LIBRARY_FILES["/lib/uplot/uPlot.esm.js"]
    )
    assert library_file(WEB, "/app.js") is None
    page = page_paths(WEB)
    assert {"/", "/index.html", "/app.js", "/style.css", "/favicon.svg"} <= page
    assert not {"/package.json", "/package-lock.json", "/node_modules"} & page
    assert set(missing_libraries(Path("/nonexistent"))) == set(LIBRARY_FILES.values())
