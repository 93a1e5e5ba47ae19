"""Benchmark 3: live capacity, K WebSocket clients streaming speech with pauses in real time.

Each client streams a conversation (espeak-ng utterances and pauses, a random lead-in so
utterances do not line up across clients) at real-time pace in 40 ms frames. Two kinds:
``half`` (pauses of 1.5-3.5 s, about half speech) and ``dense`` (pauses of 0.7-1.5 s,
about three quarters speech: someone talking). Latency of an utterance: arrival of the
result (or skip) of its last segment minus the moment its last sample was due to be sent,
i.e. from the end of the utterance in audio time. This includes the segmenter's
trailing-silence hangover (400 ms by default), which any VAD-cut stream must wait.
Segment latency: from each segment's ``end_ms`` instead.

K is searched upwards (1, 2, 4, ... doubling, then bisection between the last pass and the
first failure) with pass = p95 utterance latency < 1 s, no skipped segment (overloaded or
error) and every client finished; each K runs a bounded time, and the search stops by
itself. Server CPU (its process) and peak RSS are sampled during each run. Capacity is
reported as speakers (the largest passing K) and as seconds of speech served per second.

Partial results (``--interim-ms``, default 1000; 0 skips this part): at the capacity K
the streams run again asking for partials, to compare the finals' p95 with partials on
and off and to count the partials computed and dropped (from the server's metrics); and
one speaker runs with partials, for the first label's latency after an utterance starts
(the first ``partial`` or ``result`` that covers it, minus the utterance's first sample).

A layout is WORKERSxINTRA_OP_THREADS, optionally +LONE: the intra-op threads of the
session that runs a lone segment (the adaptive layout; +0 turns it off; without +LONE the
server's default applies).

    .venv/bin/python -m bench.live_capacity [--quick] [--models bundled base-int8]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import report, servers
from bench.audio import SAMPLE_RATE_HZ, conversation, to_pcm16
from bench.models import VARIANTS_BY_NAME, build
from bench.streamer import StreamLog, frames, stream

NAME = "live_capacity"
BUNDLED = Path(__file__).resolve().parent.parent / "models" / "default"
P95_LIMIT_S = 1.0
CONVERSATIONS = 8
PAUSES_S = {"half": (1.5, 3.5), "dense": (0.7, 1.5)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=[
            "bundled@2x1",
            "base:int8-matmul@2x1+0",
            "base:int8-matmul@2x1+2",
            "base:int8-matmul@1x2",
        ],
        help="bundled, tiny, base-int8 or base:<variant>, each optionally @WxT[+L] "
        "(its own layout)",
    )
    parser.add_argument("--audio-seconds", type=float, default=30.0, help="stream length per K")
    parser.add_argument("--start-k", type=int, default=4)
    parser.add_argument("--max-k", type=int, default=128)
    parser.add_argument(
        "--layouts",
        nargs="+",
        default=["2x1"],
        help="WORKERSxINTRA_OP_THREADS[+LONE_THREADS], e.g. 2x1 2x1+0 1x2",
    )
    parser.add_argument(
        "--conversations", nargs="+", choices=sorted(PAUSES_S), default=["half", "dense"]
    )
    parser.add_argument(
        "--interim-ms", type=int, default=1000, help="partials to compare (0: no comparison)"
    )
    parser.add_argument("--base-variant", default="int8-matmul")
    parser.add_argument("--ks", type=int, nargs="+", help="fixed K values instead of a search")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.audio_seconds, args.ks = ["tiny"], 12.0, [1, 2]
    return args


def parse_layout(text: str) -> tuple[int, int, int | None]:
    """Workers, intra-op threads, and the lone session's threads (None: server default)."""
    layout, plus, lone = text.partition("+")
    workers, sep, threads = layout.partition("x")
    valid = sep and workers.isdigit() and threads.isdigit() and int(workers) and int(threads)
    if not valid or (plus and not lone.isdigit()):
        raise ValueError(
            f"layout must look like 2x1 or 2x1+2 (workers x intra-op threads + lone-segment "
            f"threads), got {text!r}"
        )
    return int(workers), int(threads), int(lone) if plus else None


def model_dir(name: str, args: argparse.Namespace) -> tuple[Path, str]:
    if name == "bundled":
        if (BUNDLED / "manifest.json").is_file():
            return BUNDLED, "models/default (bundled)"
        name = "tiny"  # the bundled model has not landed: a tiny wav2vec2 stands in
    if name == "tiny":
        tiny = build("tiny", args.work_dir).model_dir("int8-matmul")
        return tiny, "wav2vec2-tiny int8 (stand-in for the bundled model)"
    size, _, variant = name.partition(":")
    if name == "base-int8" or (size == "base" and variant in VARIANTS_BY_NAME):
        variant = args.base_variant if name == "base-int8" else variant
        return build("base", args.work_dir).model_dir(variant), f"wav2vec2-base {variant}"
    raise ValueError(
        f"model must be 'bundled', 'tiny', 'base-int8' or 'base:<variant>' with a variant of "
        f"{sorted(VARIANTS_BY_NAME)}, got {name!r}"
    )


def client_audio(
    index: int, conversations: list[tuple[np.ndarray, list[tuple[float, float]]]], seconds: float
) -> tuple[list[bytes], list[tuple[float, float]]]:
    audio, spans = conversations[index % len(conversations)]
    rng = np.random.default_rng(1000 + index)
    lead_s = float(rng.uniform(0.0, 3.0))
    lead = np.zeros(round(lead_s * SAMPLE_RATE_HZ), dtype=np.float32)
    lead += rng.normal(0.0, 1e-3, lead.size).astype(np.float32)
    total = np.concatenate([lead, audio])[: round(seconds * SAMPLE_RATE_HZ)]
    end_s = total.size / SAMPLE_RATE_HZ
    shifted = [(s + lead_s, e + lead_s) for s, e in spans if e + lead_s + 1.0 <= end_s]
    return frames(to_pcm16(total)), shifted


def utterance_latencies(log: StreamLog, spans: list[tuple[float, float]]) -> dict[str, Any]:
    outcomes = log.of_type("result", "skipped")
    latencies: list[float] = []
    missed = skipped_in_utterance = 0
    for start_s, end_s in spans:
        answer = log.answer(start_s, end_s)
        if answer is None:
            missed += 1
            continue
        arrival, last = answer
        latencies.append(arrival - (log.t0 + end_s))
        skipped_in_utterance += last["type"] == "skipped" and last["reason"] != "too_short"
    ends = log.of_type("speech_end")
    vad_delays = []  # when the segmenter announced the end: the hangover share of the latency
    for _, end_s in spans:
        near = [(t, m) for t, m in ends if abs(m["t_ms"] / 1000 - end_s) < 0.5]
        if near:
            arrival, _ = min(near, key=lambda tm: abs(tm[1]["t_ms"] / 1000 - end_s))
            vad_delays.append(arrival - (log.t0 + end_s))
    segment_latencies = [
        t - (log.t0 + m["end_ms"] / 1000) for t, m in outcomes if m["type"] == "result"
    ]
    server_ms = [m["latency_ms"] for _, m in outcomes if m["type"] == "result"]
    reasons = [m["reason"] for _, m in outcomes if m["type"] == "skipped"]
    return {
        "first_label": first_labels(log, spans),
        "partials": len(log.of_type("partial")),
        "speech_s": sum(e - s for s, e in spans),
        "utterance": latencies,
        "speech_end": vad_delays,
        "segment": segment_latencies,
        "server_ms": server_ms,
        "missed": missed,
        "results": len(segment_latencies),
        "overloaded": reasons.count("overloaded"),
        "errors": reasons.count("error"),
        "too_short": reasons.count("too_short"),
    }


def first_labels(log: StreamLog, spans: list[tuple[float, float]]) -> list[float]:
    """Per utterance: the first label (partial or result) covering it, from its start."""
    found = []
    for start_s, end_s in spans:
        arrivals = [t for t, _ in log.overlapping(("partial", "result"), start_s, end_s)]
        if arrivals:
            found.append(min(arrivals) - (log.t0 + start_s))
    return found


def partial_counts(server: servers.Server) -> dict[str, float]:
    """The server's partial-result counters (computed, and dropped by reason)."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    counts: dict[str, float] = {"computed": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == "emostream_partials_computed_total":
            counts["computed"] = float(value)
        elif name.startswith("emostream_partials_dropped_total{reason="):
            counts[name.split('"')[1]] = float(value)
    return counts


async def sample_server(server: servers.Server, stop: asyncio.Event, rss: list[int]) -> None:
    while not stop.is_set():
        rss.append(server.rss_bytes())
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.5)
        except TimeoutError:
            continue


async def run_k(
    server: servers.Server,
    k: int,
    conversations: list[Any],
    seconds: float,
    interim_ms: int = 0,
) -> dict[str, Any]:
    url = f"{server.ws_url}/v1/stream?sample_rate=16000&encoding=pcm_s16le"
    if interim_ms:
        url += f"&interim_ms={interim_ms}"
    partials0 = await asyncio.to_thread(partial_counts, server)
    plans = [client_audio(i, conversations, seconds) for i in range(k)]
    rss: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_server(server, stop, rss))
    me = psutil.Process()
    cpu0, my_cpu0, wall0 = server.cpu_seconds(), sum(me.cpu_times()[:2]), time.monotonic()
    psutil.cpu_percent()
    logs = await asyncio.wait_for(
        asyncio.gather(*(stream(url, chunks) for chunks, _ in plans)), timeout=seconds + 120
    )
    wall = time.monotonic() - wall0
    system_cpu = psutil.cpu_percent() / 100
    server_cpu = (server.cpu_seconds() - cpu0) / wall
    client_cpu = (sum(me.cpu_times()[:2]) - my_cpu0) / wall
    stop.set()
    await sampler
    partials1 = await asyncio.to_thread(partial_counts, server)
    partials = {
        reason: partials1[reason] - partials0.get(reason, 0.0)
        for reason in partials1
        if partials1[reason] - partials0.get(reason, 0.0)
    }
    per_client = [
        utterance_latencies(log, spans) for log, (_, spans) in zip(logs, plans, strict=True)
    ]
    utt = [x for c in per_client for x in c["utterance"]]
    seg = [x for c in per_client for x in c["segment"]]
    srv = [x for c in per_client for x in c["server_ms"]]
    failed = [
        log.error or f"closed {log.close_code}"
        for log in logs
        if log.error or log.close_code != 1000
    ]
    speech_s = sum(c["speech_s"] for c in per_client)
    result = {
        "k": k,
        "interim_ms": interim_ms,
        "utterances": len(utt),
        "first_label_s": report.percentiles([x for c in per_client for x in c["first_label"]]),
        "partials_received": sum(c["partials"] for c in per_client),
        "partials_computed": partials.pop("computed", 0.0),
        "partials_dropped": partials,
        "speech_s_per_s": speech_s / seconds,
        "utterance_latency_s": report.percentiles(utt),
        "segment_latency_s": report.percentiles(seg),
        "speech_end_latency_s": report.percentiles(
            [x for c in per_client for x in c["speech_end"]]
        ),
        "server_latency_ms": report.percentiles(srv),
        "results": sum(c["results"] for c in per_client),
        "overloaded": sum(c["overloaded"] for c in per_client),
        "errors": sum(c["errors"] for c in per_client),
        "too_short": sum(c["too_short"] for c in per_client),
        "missed_utterances": sum(c["missed"] for c in per_client),
        "failed_clients": failed[:5],
        "server_cpu_cores": server_cpu,
        "client_cpu_cores": client_cpu,
        "system_cpu_fraction": system_cpu,
        "loadavg_after": list(psutil.getloadavg()),
        "server_rss_mb_peak": max(rss) / 2**20 if rss else None,
    }
    p95 = result["utterance_latency_s"]["p95"]
    result["passed"] = bool(
        p95 is not None and p95 < P95_LIMIT_S and not result["overloaded"]
        and not result["errors"] and not failed
    )  # fmt: skip
    return result


def next_k(tried: dict[int, bool], start_k: int, max_k: int) -> int | None:
    """Double from ``start_k`` until a K fails (or ``max_k`` passes), then bisect."""
    passed = [k for k, ok in tried.items() if ok]
    failed = [k for k, ok in tried.items() if not ok]
    best = max(passed, default=0)
    if not failed:
        if best >= max_k:
            return None
        return min(max_k, best * 2) if best else start_k
    worst = min(failed)
    if worst <= start_k and best == 0:  # the first K failed: walk down to 1
        return None if worst == 1 else max(1, worst // 2)
    if worst - best <= max(1, best // 8):  # resolution: about 12 %
        return None
    return (best + worst) // 2


async def search(
    server: servers.Server, args: argparse.Namespace, conversations: list[Any]
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    tried: dict[int, bool] = {}
    queue = list(args.ks) if args.ks else None
    while True:
        k = (
            (queue.pop(0) if queue else None)
            if queue is not None
            else next_k(tried, args.start_k, args.max_k)
        )
        if k is None:
            return runs
        result = await run_k(server, k, conversations, args.audio_seconds)
        tried[k] = result["passed"]
        runs.append(result)
        show(result)


def show(result: dict[str, Any]) -> None:
    u = result["utterance_latency_s"]
    print(
        f"K={result['k']} interim_ms={result['interim_ms']}: p95={u['p95']} "
        f"overloaded={result['overloaded']} cpu={result['server_cpu_cores']:.2f} "
        f"partials={result['partials_computed']:.0f} computed, "
        f"{sum(result['partials_dropped'].values()):.0f} dropped; passed={result['passed']}",
        flush=True,
    )


async def with_partials(
    server: servers.Server,
    args: argparse.Namespace,
    conversations: list[Any],
    runs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The capacity K again with partials on, and one speaker with partials."""
    passing = [r for r in runs if r["passed"]]
    off = max(passing, key=lambda r: r["k"]) if passing else min(runs, key=lambda r: r["k"])
    on = await run_k(server, off["k"], conversations, args.audio_seconds, args.interim_ms)
    show(on)
    alone = await run_k(server, 1, conversations, args.audio_seconds, args.interim_ms)
    show(alone)
    off_p95, on_p95 = off["utterance_latency_s"]["p95"], on["utterance_latency_s"]["p95"]
    return {
        "interim_ms": args.interim_ms,
        "k": off["k"],
        "finals_p95_off_s": off_p95,
        "finals_p95_on_s": on_p95,
        "finals_p95_change_s": None if off_p95 is None or on_p95 is None else on_p95 - off_p95,
        "skipped_on": on["overloaded"] + on["errors"],
        "partials_computed": on["partials_computed"],
        "partials_dropped": on["partials_dropped"],
        "one_speaker_first_label_s": alone["first_label_s"],
        "run": on,
        "one_speaker_run": alone,
    }


async def serve_kind(
    server: servers.Server, args: argparse.Namespace, conversations: list[Any]
) -> dict[str, Any]:
    runs = await search(server, args, conversations)
    passing = [r for r in runs if r["passed"]]
    best = max(passing, key=lambda r: r["k"]) if passing else None
    return {
        "max_k_passing": best["k"] if best else 0,
        "speech_s_per_s_at_capacity": best["speech_s_per_s"] if best else 0.0,
        "runs": sorted(runs, key=lambda r: r["k"]),
        "partials": await with_partials(server, args, conversations, runs)
        if args.interim_ms
        else None,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    kinds = {
        kind: [
            conversation(args.audio_seconds, seed=i, pause_s=PAUSES_S[kind])
            for i in range(CONVERSATIONS)
        ]
        for kind in args.conversations
    }
    speech = {
        kind: float(
            np.mean([sum(e - s for s, e in spans) / (a.size / SAMPLE_RATE_HZ) for a, spans in c])
        )
        for kind, c in kinds.items()
    }
    models = []
    for entry in args.models:
        name, _, fixed_layout = entry.partition("@")
        path, label = model_dir(name, args)
        for layout in [fixed_layout] if fixed_layout else args.layouts:
            workers, intra, lone = parse_layout(layout)
            extra = {} if lone is None else {"EMOSTREAM_LONE_INTRA_OP_THREADS": str(lone)}
            argv, port, env = servers.ours(
                path, workers=workers, intra_op_threads=intra, extra_env=extra
            )
            with servers.run_server(argv, port, env) as server:
                for kind, conversations in kinds.items():
                    print(f"{label} {layout}, {kind} conversation", flush=True)
                    served = asyncio.run(serve_kind(server, args, conversations))
                    models.append(
                        {
                            "model": label,
                            "conversation": kind,
                            "layout": {
                                "workers": workers,
                                "intra_op_threads": intra,
                                "lone_intra_op_threads": lone,
                            },
                            **served,
                        }
                    )
    return {
        "audio_seconds_per_client": args.audio_seconds,
        "speech_fraction": speech,
        "pauses_s": {kind: PAUSES_S[kind] for kind in kinds},
        "pass_rule": (
            f"p95 utterance latency < {P95_LIMIT_S} s, no overloaded/error skip, "
            "every client closed with 1000"
        ),
        "frame_ms": 40,
        "models": models,
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, (left, right) = report.figure(11, 4.2, ncols=2)
    for i, entry in enumerate(data["models"]):
        runs = entry["runs"]
        layout = entry["layout"]
        lone = layout.get("lone_intra_op_threads")
        name = (
            f"{entry['model']} {layout['workers']}x{layout['intra_op_threads']}"
            f"{'' if lone is None else f'+{lone}'} {entry.get('conversation', 'half')}"
        )
        ks = [r["k"] for r in runs]
        color = f"C{i}"
        for q, style in (("p50", ":"), ("p95", "-")):
            values = [r["utterance_latency_s"][q] for r in runs]
            left.plot(ks, values, style, color=color, marker="o", label=f"{name} {q}")
        right.plot(ks, [r["server_cpu_cores"] for r in runs], color=color, marker="o", label=name)
    left.axhline(P95_LIMIT_S, color="red", linewidth=1)
    left.set_xlabel("concurrent streams K")
    left.set_ylabel("latency from utterance end, s (dotted p50, solid p95)")
    left.legend(fontsize=6)
    right.set_xlabel("concurrent streams K")
    right.set_ylabel("server CPU, cores")
    right.legend(fontsize=7)
    fig.suptitle("Live capacity, real-time WebSocket streams (half and dense conversations)")
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
