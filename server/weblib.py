"""The browser libraries the page loads from this server (docs/web.md).

They are npm packages pinned in ``web/package.json`` and ``web/package-lock.json`` and
installed into ``web/node_modules`` by ``scripts/setup.sh`` (the Docker image's build does
the same); the server serves the few files the page needs at ``/lib/`` and nothing else of
``node_modules``, so the page makes no request to another origin and the CSP holds.
"""

from __future__ import annotations

from pathlib import Path

# URL path -> file inside web/node_modules
LIBRARY_FILES = {
    "/lib/uplot/uPlot.esm.js": "uplot/dist/uPlot.esm.js",
    "/lib/uplot/uPlot.min.css": "uplot/dist/uPlot.min.css",
}
# The page's own files: those directly in web/ with these suffixes. Nothing else of web/
# (node_modules, package.json, package-lock.json, directories) is served.
PAGE_SUFFIXES = frozenset({".html", ".js", ".mjs", ".css", ".svg", ".png", ".ico"})


def library_file(web_dir: Path, url_path: str) -> Path | None:
    """The installed file for a ``/lib/`` URL path, or None when the path is not a library's."""
    relative = LIBRARY_FILES.get(url_path)
    return None if relative is None else web_dir / "node_modules" / relative


def page_paths(web_dir: Path) -> frozenset[str]:
    """URL paths of the page's files (``/`` is ``index.html``): the only ones served."""
    files = {
        f"/{path.name}"
        for path in web_dir.iterdir()
        if path.suffix in PAGE_SUFFIXES and path.is_file() and not path.is_symlink()
    }
    return frozenset(files | {"/"}) if "/index.html" in files else frozenset(files)


def missing_libraries(web_dir: Path) -> list[str]:
    """Library files the page needs that are not installed (``scripts/setup.sh`` installs them)."""
    return [
        relative
        for relative in LIBRARY_FILES.values()
        if not (web_dir / "node_modules" / relative).is_file()
    ]
