"""Benchmark 2: end to end, the prototype's stack against ours, same weights, same 3 s WAV.

Prototype: bench.prototype_app (Flask, save upload, Transformers pipeline, delete).
Ours: ``emostream serve`` with ``POST /v1/classify`` (in-memory decode, VAD, ONNX Runtime).
Both are child processes on loopback, run one at a time; the load is C closed-loop
clients (threads with keep-alive HTTP connections) posting the same file for a fixed
time. Requests per second and latency percentiles per concurrency; repeated with the
servers alternating, so slow drifts of the shared machine hit both.

    .venv/bin/python -m bench.end_to_end [--quick] [--seconds 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench import report, servers
from bench.audio import paused_speech, speech_of_length, wav_bytes
from bench.models import build

NAME = "end_to_end"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per concurrency")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["int8-convmm", "int8-matmul", "fp32"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--intra-op-threads", type=int, default=1)
    parser.add_argument(
        "--clip",
        choices=["continuous", "paused"],
        default="continuous",
        help="continuous: 3 s of speech (one segment); paused: 3 s with one pause (two "
        "segments: how the 3 s clip segmented on a Zen 3 machine, issue 25)",
    )
    parser.add_argument(
        "--lone-threads",
        type=int,
        nargs="+",
        default=[0, 2],
        help="intra-op threads of the session for a lone segment (adaptive layout; 0: off), "
        "one stack of ours per value",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats, args.variants = 2.0, 1, ["int8-matmul"]
    return args


def load(url: str, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    files = {"file": ("speech.wav", body, "audio/wav")}

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                reply = http.post(url, files=files)
                elapsed = time.perf_counter() - start
                with lock:
                    if reply.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors.append(f"{reply.status_code}: {reply.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors[:5],
        "error_count": len(errors),
        "requests_per_s": len(latencies) / wall,
        "latency_ms": report.percentiles([x * 1000 for x in latencies]),
    }


def check_reply(url: str, body: bytes) -> dict[str, Any]:
    reply = httpx.post(url, files={"file": ("speech.wav", body, "audio/wav")}, timeout=120)
    reply.raise_for_status()
    return dict(reply.json())


def run_stack(
    name: str,
    spec: tuple[list[str], int, dict[str, str]],
    path: str,
    body: bytes,
    args: argparse.Namespace,
    repeat: int,
) -> list[dict[str, Any]]:
    argv, port, env = spec
    rows = []
    with servers.run_server(argv, port, env) as server:
        url = server.url + path
        sample = check_reply(url, body)
        for _ in range(2):  # warm up
            check_reply(url, body)
        for clients in args.clients:
            result = load(url, body, clients, args.seconds)
            rows.append({"stack": name, "repeat": repeat, **result})
            print(
                name,
                clients,
                round(result["requests_per_s"], 2),
                result["latency_ms"]["p50"],
                flush=True,
            )
        rows[-1]["sample_reply"] = sample
    return rows


def measure(args: argparse.Namespace) -> dict[str, Any]:
    bench = build("tiny" if args.quick else "base", args.work_dir)
    audio = speech_of_length(3.0) if args.clip == "continuous" else paused_speech(3.0)
    body = wav_bytes(audio)
    stacks: dict[str, tuple[tuple[list[str], int, dict[str, str]], str]] = {}
    stacks["prototype (Flask + pipeline, torch fp32)"] = (
        servers.prototype(bench.hf_dir),
        "/predict",
    )
    for variant in args.variants:
        for lone in args.lone_threads:
            spec = servers.ours(
                bench.model_dir(variant),
                workers=args.workers,
                intra_op_threads=args.intra_op_threads,
                extra_env={"EMOSTREAM_LONE_INTRA_OP_THREADS": str(lone)},
            )
            layout = f"lone segment on {lone} threads" if lone else "fixed layout"
            stacks[f"ours (/v1/classify, onnx {variant}, {layout})"] = (spec, "/v1/classify")
    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        order = list(stacks.items()) if repeat % 2 == 0 else list(reversed(stacks.items()))
        for name, (spec, path) in order:
            rows.extend(run_stack(name, spec, path, body, args, repeat))
    return {
        "model": "wav2vec2-tiny (quick)"
        if args.quick
        else "wav2vec2-base, 6 classes, random weights",
        "wav_seconds": 3.0,
        "clip": args.clip,
        "load_seconds": args.seconds,
        "our_layout": {
            "workers": args.workers,
            "intra_op_threads": args.intra_op_threads,
            "lone_intra_op_threads": args.lone_threads,
        },
        "prototype_layout": "Werkzeug threaded, torch.set_num_threads(2)",
        "rows": rows,
        "summary": summarise(rows),
    }


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for stack in dict.fromkeys(r["stack"] for r in rows):
        for clients in sorted({r["clients"] for r in rows}):
            sel = [r for r in rows if r["stack"] == stack and r["clients"] == clients]
            out.append(
                {
                    "stack": stack,
                    "clients": clients,
                    "requests_per_s": report.summary([r["requests_per_s"] for r in sel]),
                    "latency_p50_ms": report.summary(
                        [r["latency_ms"]["p50"] for r in sel if r["requests"]]
                    ),
                    "latency_p95_ms": report.summary(
                        [r["latency_ms"]["p95"] for r in sel if r["requests"]]
                    ),
                    "errors": sum(r["error_count"] for r in sel),
                }
            )
    return out


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, (left, right) = report.figure(11, 4.2, ncols=2)
    rows = data["summary"]
    stacks = list(dict.fromkeys(r["stack"] for r in rows))
    clients = sorted({r["clients"] for r in rows})
    width = 0.8 / len(stacks)
    for i, stack in enumerate(stacks):
        sel = [next(r for r in rows if r["stack"] == stack and r["clients"] == c) for c in clients]
        xs = [j + i * width for j in range(len(clients))]
        rps = [r["requests_per_s"] for r in sel]
        left.bar(
            xs,
            [r["median"] for r in rps],
            width,
            label=stack,
            yerr=[[r["median"] - r["min"] for r in rps], [r["max"] - r["median"] for r in rps]],
            capsize=3,
        )
        right.bar(xs, [r["latency_p50_ms"]["median"] for r in sel], width, label=stack)
    for ax in (left, right):
        ax.set_xticks([j + width * (len(stacks) - 1) / 2 for j in range(len(clients))])
        ax.set_xticklabels([f"{c} client(s)" for c in clients])
        ax.legend(fontsize=7)
    left.set_ylabel("requests per second (min-max over repeats)")
    right.set_ylabel("median latency, ms")
    fig.suptitle(f"End to end, 3 s WAV, {data['model']}")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
