"""Benchmark 5: server memory, idle, per idle connection and per active stream.

Starts ``emostream serve`` and reads its resident set size (RSS): after start-up and one
warm-up upload (idle); with N idle WebSocket connections held open (each got its
``ready``, then sends nothing; the idle timeout is raised so none is closed); and with S
clients streaming speech in real time. Per-connection figures are the RSS differences
divided by the count. Idle connections are opened, measured and closed in two rounds: the
second round shows what is left after the allocator has grown once.

    .venv/bin/python -m bench.memory [--quick] [--idle 200] [--active 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import websockets

from bench import report, servers
from bench.audio import conversation, speech_of_length, to_pcm16, wav_bytes
from bench.live_capacity import model_dir
from bench.streamer import frames, stream

NAME = "memory"
SETTLE_S = 1.0
TARGET_IDLE_BYTES = 100_000


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled", help="bundled, tiny or base-int8")
    parser.add_argument("--base-variant", default="int8-matmul")
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--active", type=int, default=16)
    parser.add_argument("--active-seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--intra-op-threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.idle, args.active, args.active_seconds = "tiny", 10, 2, 4.0
    return args


async def settled_rss(server: servers.Server) -> int:
    await asyncio.sleep(SETTLE_S)  # let the server finish handshakes and free temporaries
    return server.rss_bytes()


async def hold_idle(server: servers.Server, count: int) -> tuple[int, int]:
    """Open ``count`` connections, wait for every ``ready``; RSS then, and how many opened."""
    url = f"{server.ws_url}/v1/stream"
    sockets = []
    try:
        for _ in range(count):
            ws = await websockets.connect(url, open_timeout=30)
            ready = json.loads(await ws.recv())
            if ready.get("type") != "ready":
                raise RuntimeError(f"expected ready, got {ready}")
            sockets.append(ws)
        return await settled_rss(server), len(sockets)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


async def active(server: servers.Server, count: int, seconds: float) -> tuple[int, list[int]]:
    url = f"{server.ws_url}/v1/stream?sample_rate=16000&encoding=pcm_s16le"
    audio, _ = conversation(seconds, seed=3)
    chunks = frames(to_pcm16(audio[: round(seconds * 16000)]))
    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(server.rss_bytes())
            try:
                await asyncio.wait_for(done.wait(), timeout=0.25)
            except TimeoutError:
                continue

    sampler = asyncio.create_task(sample())
    logs = await asyncio.gather(*(stream(url, chunks) for _ in range(count)))
    done.set()
    await sampler
    failures = [log.error for log in logs if log.error]
    if failures:
        raise RuntimeError(f"streams failed: {failures[:3]}")
    return max(samples), samples


async def idle_rounds(server: servers.Server, count: int) -> list[dict[str, float]]:
    rounds = []
    for _ in range(2):
        before = await settled_rss(server)
        held, opened = await hold_idle(server, count)
        after = await settled_rss(server)
        rounds.append({
            "connections": opened,
            "rss_before_mb": before / 2**20,
            "rss_held_mb": held / 2**20,
            "rss_after_close_mb": after / 2**20,
            "per_connection_kb": (held - before) / opened / 1000,
        })  # fmt: skip
    return rounds


async def scenario(server: servers.Server, args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=120) as http:
        body = wav_bytes(speech_of_length(2.0))
        reply = await http.post(
            f"{server.url}/v1/classify", files={"file": ("a.wav", body, "audio/wav")}
        )
        reply.raise_for_status()
    idle = await settled_rss(server)
    rounds = await idle_rounds(server, args.idle)
    before_active = await settled_rss(server)
    peak, _ = await active(server, args.active, args.active_seconds)
    after_active = await settled_rss(server)
    return {
        "rss_idle_mb": idle / 2**20,
        "idle_connection_rounds": rounds,
        "per_idle_connection_kb": rounds[0]["per_connection_kb"],
        "per_idle_connection_kb_second_round": rounds[1]["per_connection_kb"],
        "active_streams": args.active,
        "rss_before_active_mb": before_active / 2**20,
        "rss_peak_active_mb": peak / 2**20,
        "rss_after_active_mb": after_active / 2**20,
        "per_active_stream_kb": (peak - before_active) / args.active / 1000,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    path, label = model_dir(args.model, args)
    argv, port, env = servers.ours(
        path,
        workers=args.workers,
        intra_op_threads=args.intra_op_threads,
        extra_env={"EMOSTREAM_IDLE_TIMEOUT_MS": "3600000"},
    )
    with servers.run_server(argv, port, env) as server:
        rss_start = server.rss_bytes()
        data = asyncio.run(scenario(server, args))
    bare_port = servers.free_port()
    bare_argv = [sys.executable, "-m", "bench.bare_app", "--port", str(bare_port)]
    with servers.run_server(bare_argv, bare_port) as bare:
        data["bare_framework"] = asyncio.run(idle_rounds(bare, args.idle))
    return {
        "model": label,
        "layout": {"workers": args.workers, "intra_op_threads": args.intra_op_threads},
        "rss_after_start_mb": rss_start / 2**20,
        "target_idle_connection_kb": TARGET_IDLE_BYTES / 1000,
        **data,
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, ax = report.figure(7, 3.8)
    first = data["idle_connection_rounds"][0]
    labels = ["after start", "idle (warm)", f"{first['connections']} idle conns",
              f"{data['active_streams']} active (peak)"]  # fmt: skip
    values = [data["rss_after_start_mb"], data["rss_idle_mb"], first["rss_held_mb"],
              data["rss_peak_active_mb"]]  # fmt: skip
    ax.bar(labels, values)
    ax.set_ylabel("server RSS, MiB")
    ax.set_title(
        f"Server memory, {data['model']}: {data['per_idle_connection_kb']:.0f} KB per idle "
        f"connection, {data['per_active_stream_kb']:.0f} KB per active stream",
        fontsize=9,
    )
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
