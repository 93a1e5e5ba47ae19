"""Replica failover with real processes: Caddy (the project's Caddyfile) in front of
several ``emostream serve`` replicas, clients streaming through it with the reference
client's reconnecting mode, and one replica stopped (SIGTERM) or killed (SIGKILL).

Used by tests/deploy/test_failover.py, which asserts what must hold, and by
``python -m bench.failover``, which repeats the runs and writes the figures (counts and
durations of failover behaviour) that docs/deployment.md quotes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import signal
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import websockets

from bench.audio import silence, speak, to_pcm16
from bench.processes import CADDYFILE, CaddyProcess, ServerProcess
from client.websocket import Reconnect, StreamReport, stream_pcm16
from pcm.format import PIPELINE_RATE_HZ

RATE_HZ = PIPELINE_RATE_HZ
SENTENCES = (
    "The weather was lovely this morning.",
    "Please close the door behind you when you leave.",
    "I never expected the train to be this late again.",
    "We should meet for lunch sometime next week.",
    "That was the best concert I have heard in years.",
)
GAP_S = 1.0
# The client's policy in these runs: quick first retries, as the page's (0.5 s) halved.
RECONNECT = Reconnect(initial_s=0.25, max_s=2.0, max_attempts=6, max_reconnects=6)


def _caddy_seconds(directive: str) -> float:
    found = re.search(rf"^\s*{directive} (\d+)s$", CADDYFILE.read_text(), re.MULTILINE)
    assert found, f"caddy/Caddyfile has no {directive} in whole seconds"
    return float(found.group(1))


HEALTH_INTERVAL_S = _caddy_seconds("health_interval")
HEALTH_TIMEOUT_S = _caddy_seconds("health_timeout")
OPEN_CONNECTIONS = re.compile(r"^emostream_open_connections (\d+(?:\.\d+)?)$", re.MULTILINE)


@dataclass(frozen=True)
class Recording:
    pcm: npt.NDArray[np.int16]
    utterances_ms: list[tuple[int, int]]  # where each sentence is, in the recording

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) * 1000 // RATE_HZ


@functools.cache
def recording(repeats: int = 1) -> Recording:
    """The sentences ``repeats`` times over, each followed by a pause of GAP_S."""
    parts = [silence(0.5)]
    spans: list[tuple[int, int]] = []
    at = len(parts[0])
    for text in SENTENCES * repeats:
        speech = speak(text, rate_wpm=170)
        spans.append((at * 1000 // RATE_HZ, (at + len(speech)) * 1000 // RATE_HZ))
        parts += [speech, silence(GAP_S)]
        at += len(speech) + round(GAP_S * RATE_HZ)
    pcm = np.frombuffer(to_pcm16(np.concatenate(parts)), dtype="<i2")
    return Recording(pcm, spans)


REPLICA_SETTINGS = {
    "workers": "1",
    "trusted_proxies": "127.0.0.1/32",
    "max_connections_per_ip": "100",
}


class Replicas:
    """N servers on loopback ports and one Caddy in front, all stopped on exit."""

    def __init__(
        self, model_dir: Path, count: int, state_dir: Path, spare_ports: Sequence[int] = ()
    ) -> None:
        """``spare_ports``: upstreams Caddy lists from the start, for replicas started later."""
        self.servers: list[ServerProcess] = []
        self.caddy: CaddyProcess | None = None
        try:
            for _ in range(count):
                self.servers.append(ServerProcess(model_dir, REPLICA_SETTINGS))
            ports = [s.port for s in self.servers] + list(spare_ports)
            self.caddy = CaddyProcess(" ".join(f"127.0.0.1:{p}" for p in ports), state_dir)
        except BaseException:
            self.close()
            raise

    def start(self, model_dir: Path, port: int) -> ServerProcess:
        """One more replica, on a port Caddy already lists (it joins once /readyz passes)."""
        server = ServerProcess(model_dir, REPLICA_SETTINGS, port=port)
        self.servers.append(server)
        return server

    @property
    def url(self) -> str:
        assert self.caddy is not None
        return self.caddy.wss_url

    @property
    def tls(self) -> ssl.SSLContext:
        assert self.caddy is not None
        return ssl.create_default_context(cafile=str(self.caddy.root_ca))

    def close(self) -> None:
        if self.caddy is not None:
            self.caddy.stop()
        for server in self.servers:
            if server.alive():
                server.stop()
            else:
                server.proc.wait()
                server.output.close()


def open_connections(server: ServerProcess) -> int:
    """The replica's emostream_open_connections gauge, read from /metrics (-1: no answer)."""
    try:
        with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return -1
    match = OPEN_CONNECTIONS.search(text)
    return int(float(match.group(1))) if match else -1


def ready_status(server: ServerProcess) -> int | None:
    """HTTP status of the replica's /readyz; None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{server.http_url}/readyz", timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


@dataclass
class StreamOutcome:
    report: StreamReport
    started_at: float

    @property
    def moved(self) -> bool:
        return len(self.report.connections) > 1


@dataclass
class Figures:
    """What one failover run measured (loop-time seconds, audio milliseconds)."""

    kind: str
    replicas: int
    streams: int
    streams_on_stopped: int = 0
    moved_streams: int = 0
    finished_streams: int = 0
    stop_to_not_ready_s: float | None = None
    stop_to_close_s: list[float] = field(default_factory=list)
    reconnect_gap_s: list[float] = field(default_factory=list)
    lost_audio_ms: list[int] = field(default_factory=list)
    open_utterance_at_close: list[bool] = field(default_factory=list)
    results_per_stream: list[int] = field(default_factory=list)
    results_reference: int = 0
    new_connections: int = 0
    new_connections_failed: int = 0
    new_connection_ms: list[float] = field(default_factory=list)
    health_check_noticed_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("stop_to_close_s", "reconnect_gap_s", "new_connection_ms"):
            values = data[key]
            data[key] = [round(v, 3) for v in values]
        return data


async def stream_through(url: str, rec: Recording, tls: ssl.SSLContext) -> StreamOutcome:
    started = asyncio.get_running_loop().time()
    report = await stream_pcm16(url, rec.pcm, RATE_HZ, speed=1.0, reconnect=RECONNECT, tls=tls)
    return StreamOutcome(report, started)


def outcomes_on(report: StreamReport, index: int) -> list[dict[str, Any]]:
    """result/skipped messages that arrived over connection ``index``."""
    sessions = [c.session for c in report.connections]
    current: str | None = None
    found: list[dict[str, Any]] = []
    for message in report.messages:
        if message["type"] == "ready":
            current = message.get("session")
        elif message["type"] in ("result", "skipped") and current == sessions[index]:
            found.append(message)
    return found


def measure_moved(figures: Figures, outcome: StreamOutcome, rec: Recording) -> None:
    report = outcome.report
    first, second = report.connections[0], report.connections[1]
    assert first.closed_at is not None
    if second.ready_at is not None:
        figures.reconnect_gap_s.append(second.ready_at - first.closed_at)
    sent_ms = first.sent_samples * 1000 // RATE_HZ
    open_at_close = any(start - 250 <= sent_ms <= end + 700 for start, end in rec.utterances_ms)
    figures.open_utterance_at_close.append(open_at_close)
    heard = [o["end_ms"] for o in outcomes_on(report, 0)]
    if open_at_close and heard:
        # Audio the client had sent but the server never read (in flight at the close).
        figures.lost_audio_ms.append(max(0, sent_ms - max(heard)))


async def run_scenario(
    replicas: Replicas, kind: str, streams: int, stop_after_s: float
) -> tuple[Figures, list[StreamOutcome], int]:
    """Start ``streams`` streams, stop the busiest replica with ``kind``; the figures."""
    rec = recording()
    figures = Figures(kind=kind, replicas=len(replicas.servers), streams=streams)
    loop = asyncio.get_running_loop()
    tasks = []
    for _ in range(streams):
        tasks.append(asyncio.ensure_future(stream_through(replicas.url, rec, replicas.tls)))
        await asyncio.sleep(0.05)  # least_conn sees each new stream before the next
    await asyncio.sleep(stop_after_s)
    counts = [await asyncio.to_thread(open_connections, s) for s in replicas.servers]
    victim = max(range(len(counts)), key=lambda i: counts[i])
    server = replicas.servers[victim]
    figures.streams_on_stopped = counts[victim]
    figures.notes.append(f"open connections per replica before the stop: {counts}")
    stopped_at = loop.time()
    server.proc.send_signal(signal.SIGTERM if kind == "sigterm" else signal.SIGKILL)
    if kind == "sigterm":
        while loop.time() - stopped_at < 5:
            if await asyncio.to_thread(ready_status, server) != 200:
                figures.stop_to_not_ready_s = loop.time() - stopped_at
                break
            await asyncio.sleep(0.01)
    probe = asyncio.ensure_future(new_connections_until(replicas, loop.time() + 8.0, figures))
    outcomes = list(await asyncio.gather(*tasks))
    await probe
    figures.health_check_noticed_s = await health_check_noticed(replicas, server, stopped_at)
    reference = [o for o in outcomes if not o.moved]
    figures.results_reference = len(reference[0].report.of_type("result")) if reference else 0
    for outcome in outcomes:
        report = outcome.report
        figures.results_per_stream.append(len(report.of_type("result")))
        figures.finished_streams += report.finished
        if outcome.moved:
            figures.moved_streams += 1
            closed = report.connections[0].closed_at
            assert closed is not None
            figures.stop_to_close_s.append(closed - stopped_at)
            measure_moved(figures, outcome, rec)
    return figures, outcomes, victim


async def new_connections_until(replicas: Replicas, until: float, figures: Figures) -> None:
    """Open a fresh stream through Caddy every 100 ms: does each reach a live replica?"""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        figures.new_connections += 1
        started = loop.time()
        try:
            async with websockets.connect(
                replicas.url + "?sample_rate=16000&encoding=pcm_s16le",
                ssl=replicas.tls,
                open_timeout=10,
            ) as ws:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] != "ready":
                    figures.new_connections_failed += 1
                else:
                    figures.new_connection_ms.append((loop.time() - started) * 1000)
                    await ws.send(json.dumps({"type": "end"}))
                    await asyncio.wait_for(ws.wait_closed(), 10)
        except (OSError, TimeoutError, websockets.WebSocketException):
            figures.new_connections_failed += 1
        await asyncio.sleep(0.1)


async def health_check_noticed(
    replicas: Replicas, victim: ServerProcess, stopped_at: float
) -> float | None:
    """Seconds from the stop to Caddy's event marking the victim's address unhealthy."""
    assert replicas.caddy is not None
    host = f'"host":"127.0.0.1:{victim.port}"'
    wall_at_stop = time.time() - (asyncio.get_running_loop().time() - stopped_at)
    for line in replicas.caddy.output.lines:
        if '"name":"unhealthy"' in line and host in line:
            stamp = re.search(r'"ts":([0-9.]+)', line)
            if stamp and float(stamp.group(1)) >= wall_at_stop:
                return float(stamp.group(1)) - wall_at_stop
    return None


@dataclass
class Rollout:
    """What a rolling update behind Caddy did to the streams running through it."""

    outcomes: list[StreamOutcome]
    steps: list[dict[str, float]] = field(default_factory=list)


async def rolling_update(
    replicas: Replicas, new_model: Path, new_ports: Sequence[int], streams: int, rec: Recording
) -> Rollout:
    """Replace every running replica, one at a time, by one serving ``new_model``.

    As a Deployment does with maxSurge 1, maxUnavailable 0: start a new replica, wait
    until Caddy's health check has it in rotation, then stop (SIGTERM) an old one.
    """
    loop = asyncio.get_running_loop()
    old = list(replicas.servers)
    tasks = []
    for _ in range(streams):
        tasks.append(asyncio.ensure_future(stream_through(replicas.url, rec, replicas.tls)))
        await asyncio.sleep(0.05)
    rollout = Rollout([])
    await asyncio.sleep(2.0)
    for server, port in zip(old, new_ports, strict=True):
        began = loop.time()
        fresh = await asyncio.to_thread(replicas.start, new_model, port)
        # uvicorn reports running only after the model loaded: ready at once
        assert await asyncio.to_thread(ready_status, fresh) == 200
        ready_at = loop.time()
        await asyncio.sleep(HEALTH_INTERVAL_S + 0.5)  # Caddy's next check puts it in rotation
        server.proc.send_signal(signal.SIGTERM)
        stopped_at = loop.time()
        await asyncio.to_thread(server.proc.wait, 30)
        rollout.steps.append(
            {
                "start_to_ready_s": ready_at - began,
                "stop_to_exit_s": loop.time() - stopped_at,
                "exit_code": float(server.proc.returncode),
            }
        )
    rollout.outcomes = list(await asyncio.gather(*tasks))
    return rollout


@contextmanager
def running(model_dir: Path, count: int, spare_ports: Sequence[int] = ()) -> Iterator[Replicas]:
    with ExitStack() as stack:
        state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="failover-")))
        replicas = Replicas(model_dir, count, state, spare_ports)
        stack.callback(replicas.close)
        yield replicas
