"""Real processes for the deployment tests: the server through its CLI, and Caddy.

Both bind loopback addresses only. The server is started with ``--port 0`` and reports
the port it got; Caddy gets a port picked just before it starts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CADDYFILE = REPO / "caddy" / "Caddyfile"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0

_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")

# Runs the real CLI (`emostream serve ...`); an optional audit hook is installed first.
# The training package is hidden, as it is absent from the runtime image (Dockerfile).
_LAUNCHER = """
import sys
sys.modules["training"] = None
hook = {hook!r}
if hook:
    exec(compile(open(hook).read(), hook, "exec"))
from emostream.cli import main
sys.exit(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OutputCollector:
    """Reads a child's output on a thread; waiters block on an event, not a sleep loop."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._proc = proc
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(
        self, pattern: re.Pattern[str], timeout_s: float, after_line: int = 0
    ) -> re.Match[str]:
        """The first match in lines from ``after_line`` on, waiting for it to appear."""

        def found() -> re.Match[str] | None:
            for line in self.lines[after_line:]:
                if match := pattern.search(line):
                    return match
            return None

        with self._changed:
            self._changed.wait_for(
                lambda: found() is not None or not self._thread.is_alive(), timeout=timeout_s
            )
            match = found()
        if match is None:
            tail = "\n".join(self.lines[-40:])
            raise RuntimeError(f"{pattern.pattern!r} never appeared; output:\n{tail}")
        return match

    def close(self) -> None:
        self._thread.join(timeout=STOP_TIMEOUT_S)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def server_env(
    settings: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in (base or os.environ).items() if not k.startswith("EMOSTREAM_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = str(REPO)
    env.update({f"EMOSTREAM_{key.upper()}": value for key, value in settings.items()})
    return env


class ServerProcess:
    """``emostream serve`` in a child process, settings from EMOSTREAM_* variables."""

    def __init__(
        self,
        model_dir: Path,
        settings: Mapping[str, str] | None = None,
        *,
        cwd: Path = REPO,
        env: Mapping[str, str] | None = None,
        audit_hook: Path | None = None,
        port: int = 0,
    ) -> None:
        launcher = _LAUNCHER.format(hook=str(audit_hook) if audit_hook else "")
        command = [sys.executable, "-c", launcher, "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port)]
        command += ["--model", str(model_dir)]
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=server_env(settings or {}, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = OutputCollector(self.proc)
        try:
            self.port = int(self.output.wait_for(_RUNNING, STARTUP_TIMEOUT_S).group(1))
        except RuntimeError:
            _stop(self.proc)
            self.output.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        code = _stop(self.proc)
        self.output.close()
        return code


class CaddyProcess:
    """The project's Caddyfile, unedited, run by the caddy binary on a loopback port."""

    def __init__(
        self, upstream: str, state_dir: Path, extra_env: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.state_dir = state_dir
        env = dict(os.environ)
        env.update(
            {
                "SITE_ADDRESS": f"https://localhost:{self.port}",
                "UPSTREAM": upstream,
                "CADDY_PROTOCOLS": "h1 h2",
                # debug: the only log line that says the certificate is ready to serve
                "CADDY_GLOBAL_OPTIONS": caddy_test_globals() + "\ndebug",
                "CADDY_SITE_OPTIONS": "bind 127.0.0.1",
                "XDG_DATA_HOME": str(state_dir / "data"),
                "XDG_CONFIG_HOME": str(state_dir / "config"),
                **(extra_env or {}),
            }
        )
        self.proc = subprocess.Popen(
            ["caddy", "run", "--adapter", "caddyfile", "--config", str(CADDYFILE)],
            cwd=state_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output = OutputCollector(self.proc)
        try:
            # A fresh state directory: the local CA issues the localhost certificate
            # after the configuration is served; handshakes fail until it is cached.
            self.output.wait_for(re.compile(r"added certificate to cache"), STARTUP_TIMEOUT_S)
        except RuntimeError:
            _stop(self.proc)
            self.output.close()
            raise

    @property
    def root_ca(self) -> Path:
        return self.state_dir / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def wss_url(self) -> str:
        return f"wss://localhost:{self.port}/v1/stream"

    def stop(self) -> int:
        code = _stop(self.proc)
        self.output.close()
        return code


def caddy_test_globals() -> str:
    """Global options that keep a test Caddy self-contained (no admin port, no trust store)."""
    return "admin off\nskip_install_trust\nauto_https disable_redirects"


def caddy_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "XDG_DATA_HOME": str(state_dir / "data"),
            "XDG_CONFIG_HOME": str(state_dir / "config"),
            "CADDY_GLOBAL_OPTIONS": caddy_test_globals(),
            "UPSTREAM": f"127.0.0.1:{free_port()}",
        }
    )
    env.update(extra)
    return env
