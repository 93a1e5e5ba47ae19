"""Core scaling: live capacity with the server pinned to 1, 2, ... N cores, and what it costs.

For each core count n the server runs pinned to the first n CPUs this process may use
(``taskset -c``) with ``--workers`` = n (one intra-op thread each, and the lone session on
n threads: the adaptive layout scaled to the cores); with ``--processes S`` (S dividing n)
instead S servers of n/S cores and n/S workers each, pinned to their own share, behind
Caddy (the project's Caddyfile, plain HTTP on loopback, ``reverse_proxy`` to all S, Caddy
pinned to the same n cores). The live capacity search of bench/live_capacity.py runs
against it (the dense conversation by default: K real-time speakers, pass = p95 latency
from utterance end < 1 s, nothing skipped, every client closed normally).

Clients run in this process. ``--client-cores rest`` (the default) pins them to the CPUs
the server does not have when there are any, and lets them share the server's otherwise
(on a 2-core machine at n = 2 they must); ``shared`` always lets them share. Each result
records the CPUs of the server, Caddy and the clients.

In the same run, on the same n CPUs, the model's offline throughput: n threads sharing one
ONNX Runtime session (one intra-op thread each, as the server's workers) classify the
conversations' utterances (cut at 3 s, the segmenter's longest segment) back to back, as
seconds of speech per second. The serving efficiency (issue 25) is the speech served per
second at capacity divided by that: what serving costs beyond the model (the VAD, the
event loop, the protocol, the padding around each segment, the headroom the p95 needs).

    .venv/bin/python -m bench.core_scaling [--quick] [--cores 1 2] [--processes 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import live_capacity, report, servers
from bench.audio import SAMPLE_RATE_HZ, conversation
from bench.processes import CADDYFILE, caddy_test_globals
from classifier.inference import OnnxClassifier, ThreadOptions

NAME = "core_scaling"
MAX_SEGMENT_S = 3.0
CADDY_START_TIMEOUT_S = 60.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["base:int8-convmm", "bundled"],
        help="as bench.live_capacity: bundled, tiny, base-int8 or base:<variant>",
    )
    cpus = len(os.sched_getaffinity(0))
    parser.add_argument(
        "--cores", type=int, nargs="+", help="core counts (default: 1 to all; --quick: 1)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="server processes per core count (more than 1: behind Caddy; only where it "
        "divides the core count)",
    )
    parser.add_argument(
        "--client-cores",
        choices=["rest", "shared"],
        default="rest",
        help="rest: clients on the CPUs the server does not have, if any; shared: anywhere",
    )
    parser.add_argument("--conversation", choices=sorted(live_capacity.PAUSES_S), default="dense")
    parser.add_argument("--audio-seconds", type=float, default=30.0, help="stream length per K")
    parser.add_argument("--start-k", type=int, default=4, help="first K of the search")
    parser.add_argument("--max-k", type=int, default=256)
    parser.add_argument("--ks", type=int, nargs="+", help="fixed K values instead of a search")
    parser.add_argument(
        "--offline-seconds", type=float, default=15.0, help="length of the offline measure"
    )
    parser.add_argument("--base-variant", default="int8-convmm", help="for base-int8")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.audio_seconds = ["tiny"], 10.0
        args.ks, args.offline_seconds = [1, 2], 2.0
    if args.cores is None:
        args.cores = [1] if args.quick else list(range(1, cpus + 1))
    for n in args.cores:
        if not 1 <= n <= cpus:
            parser.error(f"--cores must be from 1 to {cpus} (the CPUs this process may use)")
    return args


def cpu_list(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus)


@contextmanager
def pinned(cpus: list[int]) -> Iterator[None]:
    """This thread (and the threads it starts meanwhile) on ``cpus`` only."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Group:
    """One server, or several behind Caddy, looked at as one (bench.live_capacity.run_k)."""

    members: list[servers.Server]
    ws_url: str
    caddy: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """A member's own address, for its /metrics (Caddy answers those 404)."""
        return self.members[0].url

    def _processes(self) -> list[psutil.Process]:
        extra = [psutil.Process(self.caddy.pid)] if self.caddy is not None else []
        return [m.ps for m in self.members] + extra

    def cpu_seconds(self) -> float:
        return sum(float(p.cpu_times().user + p.cpu_times().system) for p in self._processes())

    def rss_bytes(self) -> int:
        return sum(int(p.memory_info().rss) for p in self._processes())


@contextmanager
def caddy_in_front(upstreams: list[servers.Server], cpus: list[int]) -> Iterator[Group]:
    """The project's Caddyfile on a loopback port, plain HTTP, proxying to ``upstreams``."""
    port = servers.free_port()
    with tempfile.TemporaryDirectory(prefix="core-scaling-caddy-") as state:
        env = {
            **os.environ,
            "SITE_ADDRESS": f"http://{servers.HOST}:{port}",
            "UPSTREAM": " ".join(f"{servers.HOST}:{s.port}" for s in upstreams),
            "CADDY_PROTOCOLS": "h1",
            "CADDY_GLOBAL_OPTIONS": caddy_test_globals(),
            "CADDY_SITE_OPTIONS": f"bind {servers.HOST}",
            "XDG_DATA_HOME": str(Path(state) / "data"),
            "XDG_CONFIG_HOME": str(Path(state) / "config"),
        }
        argv = ["taskset", "-c", cpu_list(cpus), "caddy", "run", "--adapter", "caddyfile"]
        caddy = subprocess.Popen(
            [*argv, "--config", str(CADDYFILE)],
            cwd=state,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            wait_ready(f"http://{servers.HOST}:{port}/readyz", caddy)
            yield Group(upstreams, f"ws://{servers.HOST}:{port}", caddy)
        finally:
            caddy.terminate()
            try:
                caddy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                caddy.kill()
                caddy.wait()


def wait_ready(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + CADDY_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise servers.ServerFailed(f"caddy exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise servers.ServerFailed(f"{url} not ready within {CADDY_START_TIMEOUT_S} s")


@contextmanager
def serving(model_dir: Path, cpus: list[int], processes: int) -> Iterator[Group]:
    """``processes`` servers sharing ``cpus`` evenly, each pinned to its share, with
    workers = its cores and the lone session on all of them (none on one core)."""
    share = len(cpus) // processes
    with ExitStack() as stack:
        members = []
        for i in range(processes):
            own = cpus[i * share : (i + 1) * share]
            argv, port, env = servers.ours(
                model_dir,
                workers=share,
                intra_op_threads=1,
                extra_env={"EMOSTREAM_LONE_INTRA_OP_THREADS": str(share if share > 1 else 0)},
            )
            argv = ["taskset", "-c", cpu_list(own), *argv]
            members.append(stack.enter_context(servers.run_server(argv, port, env)))
        if processes == 1:
            yield Group(members, members[0].ws_url)
        else:
            yield stack.enter_context(caddy_in_front(members, cpus))


def utterance_segments(conversations: list[Any]) -> tuple[list[np.ndarray], float]:
    """The conversations' utterances cut at MAX_SEGMENT_S, and their seconds in all."""
    limit = round(MAX_SEGMENT_S * SAMPLE_RATE_HZ)
    pieces = []
    for audio, spans in conversations:
        for start_s, end_s in spans:
            utterance = audio[round(start_s * SAMPLE_RATE_HZ) : round(end_s * SAMPLE_RATE_HZ)]
            pieces += [utterance[i : i + limit] for i in range(0, utterance.size, limit)]
    pieces = [p for p in pieces if p.size >= SAMPLE_RATE_HZ // 2]
    return pieces, sum(p.size for p in pieces) / SAMPLE_RATE_HZ


def offline_throughput(
    model_dir: Path, cpus: list[int], segments: list[np.ndarray], seconds: float
) -> dict[str, float]:
    """Speech seconds per second: len(cpus) threads on one session, pinned to ``cpus``."""
    with pinned(cpus):
        classifier = OnnxClassifier(model_dir, ThreadOptions(intra_op_threads=1))
        classifier.predict(segments[0])  # warm-up
        lock = threading.Lock()
        done = {"speech_s": 0.0, "segments": 0}
        deadline = time.perf_counter() + seconds

        def worker(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                segment = segments[i % len(segments)]
                classifier.predict(segment)
                with lock:
                    done["speech_s"] += segment.size / SAMPLE_RATE_HZ
                    done["segments"] += 1
                i += 1

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(cpus)) as threads:
            for future in [threads.submit(worker, k * 7) for k in range(len(cpus))]:
                future.result()
        wall = time.perf_counter() - started
    return {
        "speech_s_per_s": done["speech_s"] / wall,
        "segments": done["segments"],
        "wall_s": wall,
    }


def client_cpus(server_cpus: list[int], allowed: list[int], policy: str) -> list[int]:
    rest = [c for c in allowed if c not in server_cpus]
    return rest if policy == "rest" and rest else allowed


def measure(args: argparse.Namespace) -> dict[str, Any]:
    allowed = sorted(os.sched_getaffinity(0))
    pauses = live_capacity.PAUSES_S[args.conversation]
    conversations = [
        conversation(args.audio_seconds, seed=i, pause_s=pauses)
        for i in range(live_capacity.CONVERSATIONS)
    ]
    segments, segment_s = utterance_segments(conversations)
    rows = []
    for entry in args.models:
        path, label = live_capacity.model_dir(entry, args)
        for n in args.cores:
            cpus = allowed[:n]
            offline = offline_throughput(path, cpus, segments, args.offline_seconds)
            print(f"{label}, {n} core(s): offline {offline['speech_s_per_s']:.2f} s/s", flush=True)
            for processes in args.processes:
                if n % processes:
                    continue
                clients = client_cpus(cpus, allowed, args.client_cores)
                with serving(path, cpus, processes) as group, pinned(clients):
                    search = live_capacity.search(group, args, conversations)  # type: ignore[arg-type]
                    runs = asyncio.run(search)
                passing = [r for r in runs if r["passed"]]
                best = max(passing, key=lambda r: r["k"]) if passing else None
                served = best["speech_s_per_s"] if best else 0.0
                rows.append(
                    {
                        "model": label,
                        "cores": n,
                        "processes": processes,
                        "workers_per_process": n // processes,
                        "server_cpus": cpus,
                        "client_cpus": clients,
                        "clients_share_server_cpus": bool(set(clients) & set(cpus)),
                        "caddy": processes > 1,
                        "max_k_passing": best["k"] if best else 0,
                        "speakers_per_core": (best["k"] if best else 0) / n,
                        "speech_s_per_s_at_capacity": served,
                        "offline": offline,
                        "serving_efficiency": served / offline["speech_s_per_s"]
                        if offline["speech_s_per_s"]
                        else None,
                        "runs": sorted(runs, key=lambda r: r["k"]),
                    }
                )
                row = rows[-1]
                print(
                    f"  {processes} process(es): K={row['max_k_passing']} "
                    f"({row['speakers_per_core']:.1f}/core), served {served:.2f} s/s, "
                    f"efficiency {row['serving_efficiency']}",
                    flush=True,
                )
    return {
        "conversation": args.conversation,
        "pauses_s": pauses,
        "audio_seconds_per_client": args.audio_seconds,
        "pass_rule": (
            f"p95 utterance latency < {live_capacity.P95_LIMIT_S} s, no overloaded/error "
            "skip, every client closed with 1000"
        ),
        "client_cores": args.client_cores,
        "layout": "workers = cores per process, 1 intra-op thread each, lone session on "
        "the process's cores (off with one core)",
        "offline_method": (
            "one ONNX Runtime session, one intra-op thread, as many threads as cores, pinned "
            f"to the server's CPUs; the conversations' utterances cut at {MAX_SEGMENT_S:g} s "
            f"({len(segments)} segments, {segment_s:.0f} s of speech) back to back"
        ),
        "rows": rows,
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, (left, right) = report.figure(11, 4.2, ncols=2)
    kinds = dict.fromkeys((r["model"], r["processes"]) for r in data["rows"])
    for i, (model, processes) in enumerate(kinds):
        rows = [r for r in data["rows"] if r["model"] == model and r["processes"] == processes]
        cores = [r["cores"] for r in rows]
        name = f"{model}, {processes} process(es)"
        left.plot(cores, [r["max_k_passing"] for r in rows], marker="o", color=f"C{i}", label=name)
        right.plot(
            cores,
            [100 * (r["serving_efficiency"] or 0) for r in rows],
            marker="o",
            color=f"C{i}",
            label=name,
        )
    left.set_xlabel("server cores")
    left.set_ylabel("speakers at p95 < 1 s, nothing skipped")
    right.set_xlabel("server cores")
    right.set_ylabel("serving efficiency, % of offline throughput")
    for ax in (left, right):
        ax.legend(fontsize=7)
    fig.suptitle(f"Live capacity by server cores ({data['conversation']} conversation)")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
