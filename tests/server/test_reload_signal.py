"""SIGHUP makes a running ``emostream serve`` re-read its model directory, keeping the old
model when the new one is refused."""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.request
from pathlib import Path

from tests.served import start_server, stop_server


def served_version(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model", timeout=10) as reply:
        version: str = json.load(reply)["version"]
        return version


def wait_for_version(port: int, version: str, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served_version(port) == version:
            return True
        time.sleep(0.1)
    return False


def test_sighup_switches_to_the_replaced_model_directory(
    tiny_model_dir: Path, tiny_model_dir_b: Path, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    shutil.copytree(tiny_model_dir, live)
    old = json.loads((tiny_model_dir / "manifest.json").read_text())["version"]
    new = json.loads((tiny_model_dir_b / "manifest.json").read_text())["version"]
    served = start_server(live)
    try:
        assert served_version(served.port) == old
        # A broken replacement is refused and the old model keeps serving.
        (live / "manifest.json").write_text("{broken")
        served.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not any("model reload refused" in line for line in served.log):
            assert time.monotonic() < deadline, "".join(served.log)
            time.sleep(0.1)
        assert served_version(served.port) == old
        # A valid replacement is served after the next SIGHUP.
        shutil.rmtree(live)
        shutil.copytree(tiny_model_dir_b, live)
        served.process.send_signal(signal.SIGHUP)
        assert wait_for_version(served.port, new), "".join(served.log)
    finally:
        assert stop_server(served) == 0, "".join(served.log)
