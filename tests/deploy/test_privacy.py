"""Audio stays in memory: a streaming session and an upload write no file and call nowhere.

Three independent witnesses, because no single one sees everything:
- a Python audit hook in the server process reports every open-for-writing, rename,
  removal and directory creation from interpreter start to exit;
- the server runs with an empty working directory, $HOME and $TMPDIR, which must still
  be empty afterwards (native code that writes temporary files honours $TMPDIR);
- while audio flows, the kernel's view of the process (psutil) shows no file open for
  writing and no connection to anything but the test client.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from bench.processes import REPO, ServerProcess
from tests.deploy import dockerfile
from tests.deploy.streams import Stream, utterance_pcm
from tests.speech import espeak, silence, wav_bytes

pytestmark = pytest.mark.slow

AUDIT_HOOK = """
import os
import sys

_WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_CHANGES = {
    "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.link", "os.symlink",
    "os.truncate", "os.chmod", "os.utime", "shutil.copyfile", "shutil.move",
}


def _audit(event, args):
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & _WRITING
        if writing and not isinstance(path, int):
            sys.__stderr__.write(f"AUDIT-WRITE open {path!r} {mode!r}\\n")
    elif event in _CHANGES:
        sys.__stderr__.write(f"AUDIT-WRITE {event} {args[0]!r}\\n")


sys.addaudithook(_audit)
"""


def image_environment() -> dict[str, str]:
    """The runtime image's ENV, less what only makes sense inside the image."""
    env = dockerfile.parse(REPO / "Dockerfile").stage("runtime").env()
    return {k: v for k, v in env.items() if k != "PATH" and not k.startswith("EMOSTREAM_")}


FILENAME_MARKER = "patient-jane-doe-7f3a"
WRITING_MODES = {"w", "a", "r+", "w+", "a+"}


def test_streaming_and_upload_write_nothing_and_call_nowhere(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    hook = tmp_path / "audit_hook.py"
    hook.write_text(AUDIT_HOOK)
    dirs = {name: tmp_path / name for name in ("cwd", "home", "tmp")}
    for path in dirs.values():
        path.mkdir()
    env = {**os.environ, **image_environment()}
    env.update(HOME=str(dirs["home"]), TMPDIR=str(dirs["tmp"]))
    server = start_server({"workers": "1"}, cwd=dirs["cwd"], env=env, audit_hook=hook)
    process = psutil.Process(server.pid)
    log_lines_before = len(server.output.lines)
    observed_files: list[psutil._common.popenfile] = []
    observed_peers: set[str] = set()

    def observe() -> None:
        observed_files.extend(process.open_files())
        for conn in process.net_connections(kind="inet"):
            if conn.raddr:
                observed_peers.add(conn.raddr.ip)

    async def stream() -> Stream:
        session = await Stream.open(server.ws_url)
        for _ in range(4):
            await session.send_audio(utterance_pcm())
            observe()
        await session.finish()
        return session

    session = asyncio.run(stream())
    speech = np.concatenate([silence(0.3), espeak("I will call you tomorrow."), silence(0.5)])
    # Over 1 MiB: the size at which form parsers commonly spill uploads to a temp file.
    long_upload = np.concatenate([speech] * 20)
    with httpx.Client(base_url=server.http_url, timeout=120) as client:
        upload = client.post(
            "/v1/classify",
            files={"file": (f"{FILENAME_MARKER}.wav", wav_bytes(long_upload), "audio/wav")},
        )
        observe()
        raw = client.post(
            "/v1/classify", content=wav_bytes(speech), headers={"Content-Type": "audio/wav"}
        )
        metrics = client.get("/metrics").text
    observe()
    server.stop()

    assert len(session.of_type("result")) == 4
    assert upload.status_code == 200 and raw.status_code == 200
    assert len(wav_bytes(long_upload)) > 1024 * 1024

    writes = [line for line in server.output.lines if line.startswith("AUDIT-WRITE")]
    assert writes == []
    assert {name: sorted(os.listdir(path)) for name, path in dirs.items()} == {
        "cwd": [],
        "home": [],
        "tmp": [],
    }
    assert [f for f in observed_files if f.mode in WRITING_MODES] == []
    assert observed_peers <= {"127.0.0.1"}

    # Logs and metrics say nothing about what was said or sent.
    session_logs = "\n".join(server.output.lines[log_lines_before:])
    assert FILENAME_MARKER not in session_logs
    assert FILENAME_MARKER not in metrics
    assert max(len(line) for line in server.output.lines) < 500
    assert len(session_logs) < 4000  # a few lines per session, never the audio


def test_audit_hook_sees_a_write(tmp_path: Path) -> None:
    # The witness itself must work: a process that writes a file is reported.
    import subprocess
    import sys

    hook = tmp_path / "audit_hook.py"
    hook.write_text(AUDIT_HOOK)
    target = tmp_path / "written.bin"
    code = f"exec(open({str(hook)!r}).read()); open({str(target)!r}, 'wb').write(b'x')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert f"AUDIT-WRITE open {str(target)!r}" in result.stderr


def test_the_cli_alone_keeps_onnx_runtime_telemetry_off(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(tmp_path), TMPDIR=str(tmp_path))
    server = start_server({"workers": "1"}, env=env)
    server.stop()
    assert sorted(os.listdir(tmp_path)) == []
