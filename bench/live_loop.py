"""The live path's event loop: its CPU per second of audio per stream, and where it goes.

The real app runs in this process (uvicorn in a thread, bench/stages.py); K real-time
speakers (the dense conversation of bench/live_capacity.py, 40 ms frames) stream from a
child process, so no client work lands on the server's loop. For each K the loop thread's
own CPU time (``time.thread_time`` read on the loop) is measured over the run, in ms per
second of audio per stream and as a share of one core: the load at which the loop would
become the ceiling. With ``--profile`` (default) a second run of the same K profiles the
loop thread with cProfile and sums its own time by part: the Silero model calls (batched
across streams, on the loop by design: vad/batch.py), the segmenter and framing, the
session and transport code, the WebSocket protocol, asyncio's own machinery, sockets,
JSON. cProfile slows Python code down, so the breakdown is in shares, the CPU figure
comes from the run without it. Inference runs on the pool's worker threads, not here.

    .venv/bin/python -m bench.live_loop [--quick] [--streams 1 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import live_capacity, report
from bench.audio import conversation
from bench.stages import InProcess, in_thread
from bench.streamer import stream
from server.settings import Settings

NAME = "live_loop"
REPO = Path(__file__).resolve().parent.parent
# Own time of profiled functions, grouped by the first rule that matches (file or name).
PARTS = (
    ("Silero model calls (ONNX Runtime)", ("onnxruntime",)),
    ("idle (waiting in epoll)", ("select.epoll",)),
    ("babble gate", ("/vad/gate.py",)),
    ("segmenter, framing, VAD batcher", ("/vad/", "/pcm/")),
    ("session, transport, pool (server/)", ("/server/",)),
    ("WebSocket protocol (uvicorn, websockets)", ("uvicorn", "websockets")),
    ("JSON", ("json",)),
    ("sockets", ("_socket.socket", "socket.socket")),
    ("asyncio machinery", ("asyncio", "selectors", "_contextvars")),
    ("numpy", ("numpy",)),
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 16], help="K values")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream")
    parser.add_argument("--model", default="bundled", help="as bench.live_capacity's --models")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a second, profiled run per K for the breakdown",
    )
    parser.add_argument("--base-variant", default="int8-convmm", help="for base-int8")
    parser.add_argument("--client", nargs=2, metavar=("URL", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.seconds = [1, 2], 6.0
    return args


def conversations(seconds: float) -> list[Any]:
    pauses = live_capacity.PAUSES_S["dense"]
    return [
        conversation(seconds, seed=i, pause_s=pauses) for i in range(live_capacity.CONVERSATIONS)
    ]


def client_main(url: str, k: int, seconds: float) -> None:
    """The child process: K speakers at real-time pace; prints a JSON summary."""
    talks = conversations(seconds)
    plans = [live_capacity.client_audio(i, talks, seconds) for i in range(k)]

    async def run() -> list[Any]:
        return list(await asyncio.gather(*(stream(url, chunks) for chunks, _ in plans)))

    logs = asyncio.run(run())
    print(
        json.dumps(
            {
                "results": sum(len(log.of_type("result")) for log in logs),
                "skipped": sum(len(log.of_type("skipped")) for log in logs),
                "errors": [log.error for log in logs if log.error][:5],
            }
        )
    )


def run_clients(served: InProcess, k: int, args: argparse.Namespace) -> dict[str, Any]:
    url = f"{served.ws_url}/v1/stream?sample_rate=16000&encoding=pcm_s16le"
    argv = [sys.executable, "-m", "bench.live_loop", "--client", url, str(k)]
    argv += ["--seconds", str(args.seconds)]
    done = subprocess.run(
        argv,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=args.seconds + 300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the clients failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def part_of(function: tuple[str, int, str]) -> str:
    where = f"{function[0]} {function[2]}"
    for part, needles in PARTS:
        if any(needle in where for needle in needles):
            return part
    return "other"


def breakdown(profile: cProfile.Profile) -> dict[str, float]:
    """Share of the loop's busy (non-idle) own time per part."""
    own: dict[str, float] = {}
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for function, (_, _, tottime, _, _) in stats.items():
        part = part_of(function)
        own[part] = own.get(part, 0.0) + tottime
    own.pop("idle (waiting in epoll)", None)
    busy = sum(own.values())
    return {p: t / busy for p, t in sorted(own.items(), key=lambda kv: -kv[1])} if busy else {}


def measure_k(served: InProcess, k: int, args: argparse.Namespace) -> dict[str, Any]:
    cpu0 = served.on_loop(time.thread_time)
    wall0 = time.perf_counter()
    clients = run_clients(served, k, args)
    wall = time.perf_counter() - wall0
    cpu = served.on_loop(time.thread_time) - cpu0
    row: dict[str, Any] = {
        "streams": k,
        "audio_s_per_stream": args.seconds,
        "wall_s": wall,
        "loop_cpu_s": cpu,
        "loop_core_share": cpu / wall,
        "loop_ms_per_audio_s_per_stream": 1000 * cpu / (k * args.seconds),
        "clients": clients,
    }
    if args.profile:
        profile = cProfile.Profile()
        served.on_loop(profile.enable)
        run_clients(served, k, args)
        served.on_loop(profile.disable)
        row["profiled_shares"] = breakdown(profile)
    return row


def measure(args: argparse.Namespace) -> dict[str, Any]:
    path, label = live_capacity.model_dir(args.model, args)
    settings = Settings(
        model_dir=path,
        workers=args.workers,
        max_connections=10_000,
        max_connections_per_ip=10_000,
    )
    rows = []
    with in_thread(settings) as served:
        for k in args.streams:
            row = measure_k(served, k, args)
            print(
                f"K={k}: loop {row['loop_ms_per_audio_s_per_stream']:.2f} ms per audio s "
                f"per stream, {100 * row['loop_core_share']:.1f} % of a core; "
                f"{row['clients']}",
                flush=True,
            )
            for part, share in row.get("profiled_shares", {}).items():
                print(f"    {part:45s} {100 * share:5.1f} %")
            rows.append(row)
    return {"model": label, "workers": args.workers, "frame_ms": 40, "rows": rows}


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, (left, right) = report.figure(11, 4.2, ncols=2)
    rows = data["rows"]
    ks = [str(r["streams"]) for r in rows]
    left.bar(ks, [r["loop_ms_per_audio_s_per_stream"] for r in rows])
    left.set_xlabel("concurrent streams K")
    left.set_ylabel("event-loop CPU, ms per second of audio per stream")
    parts = list(dict.fromkeys(p for r in rows for p in r.get("profiled_shares", {})))
    bottom = [0.0] * len(rows)
    for i, part in enumerate(parts):
        shares = [100 * r.get("profiled_shares", {}).get(part, 0.0) for r in rows]
        right.bar(ks, shares, bottom=bottom, label=part, color=f"C{i % 10}")
        bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    right.set_xlabel("concurrent streams K")
    right.set_ylabel("share of the loop's busy time, % (profiled run)")
    right.legend(fontsize=6)
    fig.suptitle(f"Live path event loop, {data['model']}")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.client:
        client_main(args.client[0], int(args.client[1]), args.seconds)
        return
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
