"""Soak: N real-time speakers at about 80 % of the measured capacity, for a long time.

Each speaker streams a dense conversation (pauses of 0.7-1.5 s, as the capacity was
measured) in real time with partial results on, sends ``end``, and starts again on a
new connection with another conversation: sessions come and go for the whole run.
Speakers start spread over the first half pass, so their passes do not line up. Reported:

- per minute (``--bucket-s``): p50/p95 latency of the label after an utterance ends
  (the arrival of its last segment's result or skip minus the moment its last sample was
  due), utterances, skips (overloaded, error) and sessions that did not end with 1000;
- every ``--sample-s`` (15 s): the server's RSS, open file descriptors and threads;
- growth of RSS after the warm-up (``--warmup-s``, 2 min) and the spread of fds and
  threads after it. Any growth after the warm-up is a leak. The targets (issue 24):
  RSS growth < 2 %, fds and threads flat, every minute's p95 < 1 s.

The default N is 80 % of the largest passing K of ``--capacity-file`` for the model
(bench/results/quiet/live_dense, the dense-conversation capacity run).

    .venv/bin/python -m bench.soak [--quick] [--minutes 30] [--speakers N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import report, servers
from bench.audio import conversation
from bench.live_capacity import PAUSES_S, client_audio, model_dir
from bench.streamer import StreamLog, stream

NAME = "soak"
LOAD = 0.8
CONVERSATIONS = 8
RESULTS = Path(__file__).resolve().parent / "results"
CAPACITY_FILE = RESULTS / "quiet" / "live_dense" / "live_capacity.json"
FALLBACK_CAPACITY = 104  # bundled model, dense conversations, quiet machine (BENCHMARKS Q.3)
P95_LIMIT_S = 1.0
RSS_GROWTH_LIMIT = 0.02


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled", help="bundled, tiny, base-int8 …")
    parser.add_argument("--model-dir", type=Path, help="a model directory instead of --model")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    parser.add_argument(
        "--speakers", type=int, help=f"default: {LOAD * 100:.0f} %% of the capacity"
    )
    parser.add_argument("--capacity-file", type=Path, default=CAPACITY_FILE)
    parser.add_argument("--pass-s", type=float, default=60.0, help="audio per connection")
    parser.add_argument("--interim-ms", type=int, default=1000, help="partials (0: off)")
    parser.add_argument("--bucket-s", type=float, default=60.0, help="latency buckets")
    parser.add_argument("--sample-s", type=float, default=15.0, help="RSS/fds/threads period")
    parser.add_argument("--warmup-s", type=float, default=120.0, help="before growth counts")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.speakers, args.minutes, args.pass_s = "tiny", 2, 0.35, 12.0
        args.bucket_s, args.sample_s, args.warmup_s = 5.0, 1.0, 5.0
    return args


def capacity(path: Path, label: str) -> int:
    """The largest passing K of ``label`` in a live_capacity result file, if it has one."""
    if path.is_file():
        for entry in json.loads(path.read_text())["models"]:
            if entry["model"] == label and entry.get("max_k_passing"):
                return int(entry["max_k_passing"])
    return FALLBACK_CAPACITY


def utterances(log: StreamLog, spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(when the utterance ended, latency of its label) for each utterance answered."""
    found = []
    for start_s, end_s in spans:
        answer = log.answer(start_s, end_s)
        if answer is not None:
            found.append((log.t0 + end_s, answer[0] - (log.t0 + end_s)))
    return found


class Soak:
    def __init__(self, url: str, conversations: list[Any], args: argparse.Namespace) -> None:
        self.url = url
        self.conversations = conversations
        self.args = args
        self.latencies: list[tuple[float, float]] = []  # (utterance end, latency)
        self.skips: list[tuple[float, str]] = []
        self.sessions: list[tuple[float, int | None, str | None]] = []  # (end, code, error)
        self.samples: list[dict[str, float]] = []

    async def speaker(self, index: int, start: float, until: float) -> None:
        rng = np.random.default_rng(index)
        await asyncio.sleep(float(rng.uniform(0, self.args.pass_s / 2)))
        passes = 0
        while time.monotonic() < until:
            plan = index + passes * self.args.speakers
            chunks, spans = client_audio(plan, self.conversations, self.args.pass_s)
            log = await stream(self.url, chunks)
            passes += 1
            self.sessions.append((time.monotonic() - start, log.close_code, log.error))
            for ended, latency in utterances(log, spans):
                self.latencies.append((ended - start, latency))
            for t, m in log.of_type("skipped"):
                if m["reason"] != "too_short":
                    self.skips.append((t - start, m["reason"]))

    async def sampler(self, server: servers.Server, start: float, stop: asyncio.Event) -> None:
        process = server.ps
        while not stop.is_set():
            self.samples.append(
                {
                    "t_s": time.monotonic() - start,
                    "rss_mb": process.memory_info().rss / 2**20,
                    "fds": process.num_fds(),
                    "threads": process.num_threads(),
                }
            )
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.args.sample_s)
            except TimeoutError:
                continue

    async def run(self, server: servers.Server) -> None:
        start = time.monotonic()
        until = start + self.args.minutes * 60
        stop = asyncio.Event()
        sampler = asyncio.create_task(self.sampler(server, start, stop))
        await asyncio.gather(*(self.speaker(i, start, until) for i in range(self.args.speakers)))
        stop.set()
        await sampler

    def buckets(self) -> list[dict[str, Any]]:
        width = self.args.bucket_s
        count = max(1, int(np.ceil(max([t for t, _ in self.latencies], default=0) / width)))
        rows = []
        for b in range(count):
            inside = [x for t, x in self.latencies if b * width <= t < (b + 1) * width]
            skips = [r for t, r in self.skips if b * width <= t < (b + 1) * width]
            failed = [
                s for s in self.sessions if b * width <= s[0] < (b + 1) * width and s[1] != 1000
            ]
            rows.append(
                {
                    "from_s": b * width,
                    "latency_s": report.percentiles(inside),
                    "overloaded": skips.count("overloaded"),
                    "errors": skips.count("error"),
                    "failed_sessions": len(failed),
                }
            )
        return rows

    def growth(self) -> dict[str, Any]:
        # From the end of warm-up to the end of the load: the last sample comes after the
        # clients have left, when fewer fds are open.
        end_s = self.args.minutes * 60
        after = [s for s in self.samples if self.args.warmup_s <= s["t_s"] <= end_s]
        if len(after) < 2:
            return {"samples_after_warmup": len(after)}
        rss = [s["rss_mb"] for s in after]
        return {
            "samples_after_warmup": len(after),
            "rss_mb_first": rss[0],
            "rss_mb_last": rss[-1],
            "rss_mb_max": max(rss),
            "rss_growth_fraction": (max(rss) - rss[0]) / rss[0],
            "fds_min_max": [min(s["fds"] for s in after), max(s["fds"] for s in after)],
            "threads_min_max": [min(s["threads"] for s in after), max(s["threads"] for s in after)],
        }


def verdict(minutes: list[dict[str, Any]], growth: dict[str, Any]) -> dict[str, Any]:
    p95s = [m["latency_s"]["p95"] for m in minutes if m["latency_s"]["n"]]  # those with any
    every_p95 = bool(p95s) and all(p < P95_LIMIT_S for p in p95s)
    nothing_lost = not any(m["overloaded"] or m["errors"] or m["failed_sessions"] for m in minutes)
    if "rss_growth_fraction" not in growth:
        return {"every_minute_p95_below_1s": every_p95, "nothing_lost": nothing_lost}
    return {
        "every_minute_p95_below_1s": every_p95,
        "nothing_lost": nothing_lost,
        "rss_growth_below_2_percent": growth["rss_growth_fraction"] < RSS_GROWTH_LIMIT,
        "fds_flat": growth["fds_min_max"][0] == growth["fds_min_max"][1],
        "threads_flat": growth["threads_min_max"][0] == growth["threads_min_max"][1],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    path, label = (
        (args.model_dir, str(args.model_dir)) if args.model_dir else model_dir(args.model, args)
    )
    measured = capacity(args.capacity_file, label)
    if args.speakers is None:
        args.speakers = max(1, round(LOAD * measured))
    conversations = [
        conversation(args.pass_s, seed=i, pause_s=PAUSES_S["dense"])
        for i in range(2 if args.quick else CONVERSATIONS)
    ]
    argv, port, env = servers.ours(path, workers=args.workers, intra_op_threads=1)
    url = f"ws://{servers.HOST}:{port}/v1/stream?sample_rate=16000&encoding=pcm_s16le"
    if args.interim_ms:
        url += f"&interim_ms={args.interim_ms}"
    soak = Soak(url, conversations, args)
    print(f"{label}: {args.speakers} speakers for {args.minutes:g} min", flush=True)
    with servers.run_server(argv, port, env) as server:
        asyncio.run(soak.run(server))
    minutes = soak.buckets()
    growth = soak.growth()
    return {
        "model": label,
        "capacity_k": measured,
        "speakers": args.speakers,
        "minutes": args.minutes,
        "pass_s": args.pass_s,
        "interim_ms": args.interim_ms,
        "workers": args.workers,
        "bucket_s": args.bucket_s,
        "warmup_s": args.warmup_s,
        "sessions": len(soak.sessions),
        "failed_sessions": [
            {"t_s": t, "code": code, "error": error}
            for t, code, error in soak.sessions
            if code != 1000
        ][:20],
        "per_bucket": minutes,
        "samples": soak.samples,
        "growth_after_warmup": growth,
        "targets_met": verdict(minutes, growth),
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, (left, right) = report.figure(11, 4.2, ncols=2)
    rows = data["per_bucket"]
    starts = [r["from_s"] / 60 for r in rows]
    for q, style in (("p50", ":"), ("p95", "-")):
        left.plot(starts, [r["latency_s"][q] for r in rows], style, marker="o", label=q)
    left.axhline(P95_LIMIT_S, color="red", linewidth=1)
    left.set_xlabel(f"minutes into the run (buckets of {data['bucket_s']:g} s)")
    left.set_ylabel("label latency after utterance end, s")
    left.legend()
    samples = data["samples"]
    t = [s["t_s"] / 60 for s in samples]
    right.plot(t, [s["rss_mb"] for s in samples], color="C0", label="RSS, MB")
    right.set_xlabel("minutes into the run")
    right.set_ylabel("server RSS, MB")
    counts = right.twinx()
    counts.plot(t, [s["fds"] for s in samples], color="C1", label="open fds")
    counts.plot(t, [s["threads"] for s in samples], color="C2", label="threads")
    counts.set_ylabel("open fds, threads")
    counts.legend(loc="lower right", fontsize=7)
    right.axvline(data["warmup_s"] / 60, color="grey", linewidth=1)
    fig.suptitle(
        f"Soak: {data['speakers']} real-time speakers ({data['model']}), "
        f"{data['minutes']:g} min, partials every {data['interim_ms']} ms"
    )
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
