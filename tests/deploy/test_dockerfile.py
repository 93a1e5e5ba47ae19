"""The Dockerfile, read without a Docker engine: stages, user, health check, contents.

What can be run here is run: the HEALTHCHECK command against a live server, the
.dockerignore rules against the paths the build copies, and the runtime dependency
closure of the package (what `pip install` puts in the image) from installed metadata.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bench.processes import REPO, ServerProcess, free_port
from tests.deploy import dockerfile
from tests.imports import import_graph, reachable

DOCKERFILE = REPO / "Dockerfile"
# The packages the `emostream` command imports (training is optional and not in the image);
# test_runtime_packages_are_what_the_command_imports keeps this list true.
RUNTIME_PACKAGES = ("classifier", "client", "emostream", "pcm", "server", "vad")
TRAINING_ONLY = {"torch", "transformers", "onnx", "onnxscript", "audiomentations", "scikit-learn"}


@pytest.fixture(scope="module")
def parsed() -> dockerfile.Dockerfile:
    return dockerfile.parse(DOCKERFILE)


def test_python_stages_on_a_slim_python_and_a_node_stage_for_the_page(
    parsed: dockerfile.Dockerfile,
) -> None:
    assert [s.name for s in parsed.stages] == ["web", "builder", "runtime"]
    for stage in parsed.stages[1:]:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", stage.base), stage.base
    web = parsed.stage("web")
    assert re.fullmatch(r"node:\d+-\w+-slim", web.base), web.base
    # the lock file pins the library and its integrity hash; npm ci refuses anything else
    (install,) = web.all("RUN")
    assert install.value.startswith("npm ci ") and "--ignore-scripts" in install.value
    assert {i.value for i in web.all("COPY")} == {"web/package.json web/package-lock.json ./"}
    copies = {i.value for i in parsed.stage("runtime").all("COPY")}
    assert "--from=web /web/node_modules/ web/node_modules/" in copies


def test_runtime_runs_as_a_non_root_user(parsed: dockerfile.Dockerfile) -> None:
    runtime = parsed.stage("runtime")
    users = runtime.all("USER")
    assert users, "no USER: the container would run as root"
    uid, _, gid = users[-1].value.partition(":")
    assert uid.isdigit() and int(uid) >= 1000  # numeric, so runAsNonRoot can check it
    assert gid.isdigit() and int(gid) >= 1000
    # Nothing runs as root after the switch.
    after = runtime.instructions[runtime.instructions.index(users[-1]) :]
    assert [i for i in after if i.keyword in ("RUN", "USER") and i is not users[-1]] == []


def pip_installs(parsed: dockerfile.Dockerfile) -> list[str]:
    """Each `pip install` command of the Dockerfile (the part of its RUN up to `&&`)."""
    runs = [i.value for s in parsed.stages for i in s.all("RUN") if "pip install" in i.value]
    return [run[run.index("pip install") :].split("&&")[0].strip() for run in runs]


def test_installs_exactly_the_runtime_lock_then_the_project(
    parsed: dockerfile.Dockerfile,
) -> None:
    # As scripts/setup.sh does: every package from the hashed lock and nothing else
    # (--no-deps: pip resolves nothing itself), then the project alone with the locked
    # build backend.
    lock, project = pip_installs(parsed)
    assert lock.split() == ["pip", "install", "--require-hashes", "--no-deps", "-r",
                            "requirements/serve.txt"]  # fmt: skip
    assert project.split() == ["pip", "install", "--no-deps", "--no-build-isolation",
                               "--editable", "."]  # fmt: skip
    builder = parsed.stage("builder")
    copies = [i.value for i in builder.all("COPY")]
    assert copies[0] == "requirements/serve.txt requirements/serve.txt"
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert (
        '--require-hashes --no-deps -r "$lock"' in setup
        and 'lock="requirements/$mode.txt"' in setup
    )


def test_no_training_stack_is_installed(parsed: dockerfile.Dockerfile) -> None:
    for command in pip_installs(parsed):
        assert "[" not in command, f"an extra is installed: {command}"
        assert not {w for w in re.split(r"[\s=<>\[\],]+", command)} & TRAINING_ONLY
    locked = {
        Requirement(line.split(";")[0].rstrip(" \\")).name.lower()
        for line in (REPO / "requirements" / "serve.txt").read_text().splitlines()
        if line and not line.startswith((" ", "#"))
    }
    assert "onnxruntime" in locked and "uvicorn" in locked
    assert locked & TRAINING_ONLY == set()
    assert parsed.stage("runtime").all("RUN") == [
        i for i in parsed.stage("runtime").all("RUN") if "pip" not in i.value
    ]


def test_runtime_dependency_closure_has_no_training_packages() -> None:
    # What `pip install .` brings: the default dependencies and theirs, extras not taken.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    seen: set[str] = set()
    todo = [Requirement(r) for r in project["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(r) for r in metadata.requires(requirement.name) or []]
    assert "onnxruntime" in seen and "starlette" in seen
    assert seen & TRAINING_ONLY == set()


def test_runtime_has_code_web_and_model_at_the_builder_paths(
    parsed: dockerfile.Dockerfile,
) -> None:
    builder, runtime = parsed.stage("builder"), parsed.stage("runtime")
    assert builder.all("WORKDIR")[-1].value == runtime.all("WORKDIR")[-1].value == "/app"
    copies = {i.value for i in runtime.all("COPY")}
    assert "--from=builder /opt/venv /opt/venv" in copies
    targets = {c.split()[-1].rstrip("/") for c in copies}
    assert {
        "classifier",
        "client",
        "emostream",
        "server",
        "vad",
        "web",
        "models/default",
    } <= targets
    # The editable install maps imports to /app/<package>: same paths in both.
    builder_targets = {c.value.split()[-1].rstrip("/") for c in builder.all("COPY")}
    assert set(RUNTIME_PACKAGES) <= builder_targets


def test_runtime_packages_are_what_the_command_imports() -> None:
    optional = "training"  # emostream registers its commands only if it can import it
    graph = {
        module: {t for t in targets if t.split(".")[0] != optional}
        for module, targets in import_graph().items()
    }
    imported = {m.split(".")[0] for m in reachable(graph, "emostream.__main__")}
    assert imported == set(RUNTIME_PACKAGES)


def test_environment(parsed: dockerfile.Dockerfile) -> None:
    env = parsed.stage("runtime").env()
    assert env["EMOSTREAM_MODEL_DIR"] == "/app/models/default"
    assert env["ORT_DISABLE_TELEMETRY"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_command_and_port(parsed: dockerfile.Dockerfile) -> None:
    runtime = parsed.stage("runtime")
    assert runtime.all("CMD")[-1].exec_form() == [
        "emostream", "serve", "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip
    assert [e.value for e in runtime.all("EXPOSE")] == ["8000"]


def healthcheck_command(parsed: dockerfile.Dockerfile) -> list[str]:
    (check,) = parsed.stage("runtime").all("HEALTHCHECK")
    command = dockerfile.Instruction("CMD", check.value.split("CMD", 1)[1].strip(), check.line)
    argv = command.exec_form()
    assert argv is not None, "HEALTHCHECK should use the exec form (no shell needed)"
    return argv


def test_healthcheck_needs_no_curl(parsed: dockerfile.Dockerfile) -> None:
    argv = healthcheck_command(parsed)
    assert argv[0] == "python"
    assert "http://127.0.0.1:8000/healthz" in argv[-1]
    assert "curl" not in DOCKERFILE.read_text() and "wget" not in DOCKERFILE.read_text()


@pytest.mark.slow
def test_healthcheck_command_really_checks_the_server(
    parsed: dockerfile.Dockerfile, start_server: Callable[..., ServerProcess]
) -> None:
    server = start_server({"workers": "1"})
    script = healthcheck_command(parsed)[-1]

    def run_against(port: int) -> int:
        code = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        return subprocess.run([sys.executable, "-c", code], timeout=30, check=False).returncode

    assert run_against(server.port) == 0
    assert run_against(free_port()) != 0  # nothing listening: unhealthy


# .dockerignore, with Docker's rules: patterns in order, the last match wins, a pattern
# that matches a directory applies to everything under it, `!` re-includes.


def _pattern(text: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\*\*/|\*\*|\*|\?)", text.strip("/")):
        out += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part) or re.escape(part)
    return re.compile(out)


def excluded(path: str, rules: list[str]) -> bool:
    prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
    result = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = _pattern(rule[1:] if negated else rule)
        if any(pattern.fullmatch(p) for p in prefixes):
            result = not negated
    return result


@pytest.fixture(scope="module")
def ignore_rules() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "requirements/serve.txt",
        "classifier/model.py",
        "server/app.py",
        "vad/segmenter.py",
        "web/index.html",
        "models/default/model.onnx",
        "models/default/manifest.json",
    ],
)
def test_build_context_admits_what_the_image_needs(path: str, ignore_rules: list[str]) -> None:
    assert not excluded(path, ignore_rules)


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        "models/experiment/model.onnx",
        "runs/2026/checkpoint.pt",
        "server/__pycache__/app.cpython-311.pyc",
        "caddy/Caddyfile",
        "requirements/dev.txt",
    ],
)
def test_build_context_keeps_out_secrets_and_bulk(path: str, ignore_rules: list[str]) -> None:
    assert excluded(path, ignore_rules)


def test_every_copied_source_is_in_the_context(
    parsed: dockerfile.Dockerfile, ignore_rules: list[str]
) -> None:
    for stage in parsed.stages:
        for copy in stage.all("COPY"):
            if copy.value.startswith("--from="):
                continue
            for source in copy.value.split()[:-1]:
                assert not excluded(source.rstrip("/"), ignore_rules), source
                if source.rstrip("/") != "models/default":  # built by `emostream export`
                    assert (REPO / source).exists(), source


def test_parser_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUNN echo typo\n")
    with pytest.raises(ValueError, match="RUNN"):
        dockerfile.parse(bad)
    bad.write_text("FROM python:3.11-slim\nRUN echo \\\n")
    with pytest.raises(ValueError, match="continuation"):
        dockerfile.parse(bad)
