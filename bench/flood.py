"""Floods and upload pressure against well-behaved speakers (issue 24's targets).

A real server (``--model``, the bundled model by default) trusts loopback as its proxy
(``EMOSTREAM_TRUSTED_PROXIES=127.0.0.1/32``), so every client below carries its own
address in ``X-Forwarded-For``; every other limit is the server's default. Four speakers
(``--speakers``, addresses 10.0.1.N) stream dense conversations (pauses 0.7-1.5 s) at real
time in 20 ms frames. Rounds alternate (A B A B …, ``--rounds`` of each):

- ``baseline``: the speakers alone;
- ``attacked``: the speakers, and for the middle of the round (``--attack-from`` to
  ``--attack-to`` seconds of audio) a second process flooding from one address
  (bench/flood_attack.py: 2-byte frames, ``flush`` and 60 KB non-JSON text, each
  connection re-opened when the server closes it) and a third posting 3-10 s WAV clips
  from ``--uploaders`` addresses, each within the per-address upload cap. At the end of
  the window the floods reset their connections (what their socket buffers still hold
  is dropped); each round starts once no session is open on the server.

Per round and pooled: the speakers' label latency after each utterance's end (the arrival
of the outcome of its last segment minus the moment its last sample was due), p50/p95 over
the utterances that end inside the attack window (the same audio in both kinds of round),
and over the whole round; skipped segments (overloaded, error), lost utterances (no
outcome) and sessions that did not end with 1000. The target: attacked p95 within
+150 ms of baseline p95, nothing skipped or lost.

Where the event loop's time goes: ``/metrics`` is read every ``--scrape-s``; from it the
event-loop lag (``emostream_event_loop_lag_seconds``, a probe woken every 50 ms) inside
the window, as p50/p99 interpolated within its buckets and the share of probes later than
20/100 ms, and WebSocket messages handled per second by kind; beside it the server's CPU
of the event loop's thread and of its other threads.
The machine's description is recorded before and after (load averages).

    .venv/bin/python -m bench.flood [--quick] [--rounds 2] [--round-s 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench import report, servers
from bench.audio import SAMPLE_RATE_HZ, conversation, speech_of_length, write_wav
from bench.live_capacity import PAUSES_S, client_audio, model_dir
from bench.machine import describe
from bench.streamer import StreamLog, frames, stream
from server.settings import Settings

NAME = "flood"
FRAME_MS = 20
P95_TARGET_S = 0.150
LAG_METRIC = "emostream_event_loop_lag_seconds"
MESSAGES_METRIC = "emostream_ws_messages_total"
OPEN_METRIC = "emostream_open_connections"
QUIET_TIMEOUT_S = 120.0
DEFAULT_LIMITS = (
    "max_connections",
    "max_connections_per_ip",
    "max_uploads",
    "max_uploads_per_ip",
    "max_frames_per_s",
    "max_texts_per_s",
    "message_burst_s",
    "max_bad_messages",
    "bad_message_window_s",
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled", help="bundled, tiny, base-int8 …")
    parser.add_argument("--model-dir", type=Path, help="a model directory instead of --model")
    parser.add_argument("--base-variant", default="int8-matmul")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each kind (A B A B …)")
    parser.add_argument("--round-s", type=float, default=40.0, help="audio per speaker per round")
    parser.add_argument("--attack-from", type=float, default=10.0, help="s into the round")
    parser.add_argument("--attack-to", type=float, default=30.0, help="s into the round")
    parser.add_argument("--speakers", type=int, default=4)
    parser.add_argument("--uploaders", type=int, default=8, help="upload client addresses")
    parser.add_argument("--upload-lanes", type=int, default=1, help="uploads at once per address")
    parser.add_argument("--clips", type=int, default=6, help="upload clips of 3-10 s")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scrape-s", type=float, default=1.0, help="/metrics period")
    parser.add_argument(
        "--gil-switch-interval-ms",
        type=float,
        help="the server's EMOSTREAM_GIL_SWITCH_INTERVAL_MS (default: its default; 5 is Python's)",
    )
    parser.add_argument("--no-floods", action="store_true", help="attacked rounds: uploads only")
    parser.add_argument("--no-uploads", action="store_true", help="attacked rounds: floods only")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.round_s, args.attack_from, args.attack_to = 1, 9.0, 2.5, 6.5
        args.uploaders, args.clips, args.scrape_s = 2, 2, 0.5
    if not 0 <= args.attack_from < args.attack_to <= args.round_s:
        parser.error("need 0 <= --attack-from < --attack-to <= --round-s")
    return args


# --- the server's metrics ----------------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    """The samples of /metrics this benchmark reads, by their full name with labels."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith((LAG_METRIC, MESSAGES_METRIC, OPEN_METRIC)):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def lag_buckets(sample: dict[str, float]) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of the lag histogram, +Inf last."""
    rows = []
    for name, value in sample.items():
        if name.startswith(f"{LAG_METRIC}_bucket"):
            bound = name.split('le="')[1].split('"')[0]
            rows.append((float("inf") if bound == "+Inf" else float(bound), value))
    return sorted(rows)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile: linear within the bucket holding the q-th rank."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bound: report that bound
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def lag_between(first: dict[str, float], last: dict[str, float]) -> dict[str, Any]:
    a, b = dict(lag_buckets(first)), lag_buckets(last)
    delta = [(bound, count - a.get(bound, 0.0)) for bound, count in b]
    total = delta[-1][1] if delta else 0.0

    def later_than(bound: float) -> float | None:
        at = dict(delta).get(bound)
        return None if not total or at is None else 1.0 - at / total

    return {
        "probes": total,
        "p50_s": histogram_quantile(0.5, delta),
        "p99_s": histogram_quantile(0.99, delta),
        "over_20ms": later_than(0.02),
        "over_100ms": later_than(0.1),
        "buckets": [[bound, count] for bound, count in delta if bound != float("inf")],
    }


def messages_between(first: dict[str, float], last: dict[str, float], seconds: float) -> dict:
    counts = {}
    for kind in ("binary", "text"):
        name = f'{MESSAGES_METRIC}{{kind="{kind}"}}'
        counts[kind] = last.get(name, 0.0) - first.get(name, 0.0)
    return {
        "binary": counts["binary"],
        "text": counts["text"],
        "binary_per_s": counts["binary"] / seconds,
        "text_per_s": counts["text"] / seconds,
    }


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the server's event-loop thread (its main thread) and of all its other
    threads together (inference pool, VAD batcher, upload decoding: Python does not name
    them for the OS, so they are told apart only from the main one)."""
    groups: Counter[str] = Counter()
    for thread in psutil.Process(pid).threads():
        group = "event_loop" if thread.id == pid else "other_threads"
        groups[group] += thread.user_time + thread.system_time
    return dict(groups)


class Scraper:
    """Time-stamped /metrics samples and per-thread CPU, every ``period_s``."""

    def __init__(self, server: servers.Server, period_s: float) -> None:
        self.server = server
        self.period_s = period_s
        self.samples: list[tuple[float, dict[str, float], dict[str, float]]] = []
        self.scrape_s: list[float] = []  # how long each /metrics answer took

    async def take(self) -> None:
        started = time.monotonic()
        metrics = await asyncio.to_thread(scrape, self.server.url)
        self.scrape_s.append(time.monotonic() - started)
        self.samples.append((time.monotonic(), metrics, thread_cpu(self.server.process.pid)))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.take()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.period_s)
            except TimeoutError:
                continue
        await self.take()

    def nearest(self, t: float) -> tuple[float, dict[str, float], dict[str, float]]:
        return min(self.samples, key=lambda s: abs(s[0] - t))

    def window(self, start: float, end: float) -> dict[str, Any]:
        first, last = self.nearest(start), self.nearest(end)
        seconds = max(1e-6, last[0] - first[0])
        cpu = {
            group: (last[2].get(group, 0.0) - first[2].get(group, 0.0)) / seconds
            for group in sorted(set(first[2]) | set(last[2]))
        }
        return {
            "seconds": seconds,
            "loop_lag": lag_between(first[1], last[1]),
            "messages": messages_between(first[1], last[1], seconds),
            "cpu_cores": cpu,
        }

    def series(self, t0: float) -> list[dict[str, Any]]:
        """Per scrape interval: the lag's p99 and messages per second (for the plot)."""
        rows = []
        for a, b in zip(self.samples, self.samples[1:], strict=False):
            seconds = max(1e-6, b[0] - a[0])
            rows.append(
                {
                    "t_s": b[0] - t0,
                    "lag_p99_s": lag_between(a[1], b[1])["p99_s"],
                    **messages_between(a[1], b[1], seconds),
                }
            )
        return rows


# --- the speakers --------------------------------------------------------------------------


def per_utterance(log: StreamLog, spans: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Each utterance's end (audio time), label latency (None: lost) and skip reason."""
    rows = []
    for start_s, end_s in spans:
        answer = log.answer(start_s, end_s)
        if answer is None or not log.t0:
            rows.append({"end_s": end_s, "latency_s": None, "skipped": None})
            continue
        arrival, last = answer
        skipped = last["reason"] if last["type"] == "skipped" else None
        rows.append({"end_s": end_s, "latency_s": arrival - (log.t0 + end_s), "skipped": skipped})
    return rows


def plans(args: argparse.Namespace) -> list[tuple[list[bytes], list[tuple[float, float]]]]:
    """Each speaker's 20 ms frames and utterance spans: the same in every round."""
    conversations = [
        conversation(args.round_s, seed=i, pause_s=PAUSES_S["dense"]) for i in range(args.speakers)
    ]
    out = []
    for i in range(args.speakers):
        chunks, spans = client_audio(i, conversations, args.round_s)
        out.append((frames(b"".join(chunks), SAMPLE_RATE_HZ, FRAME_MS), spans))
    return out


def upload_clips(folder: Path, count: int) -> list[float]:
    rng = np.random.default_rng(7)
    lengths = [float(rng.uniform(3.0, 10.0)) for _ in range(count)]
    for i, seconds in enumerate(lengths):
        write_wav(folder / f"clip{i}.wav", speech_of_length(seconds, seed=20 + i))
    return lengths


def attacker(
    role: str, url: str, start_at: float, seconds: float, **extra: Any
) -> subprocess.Popen[str]:
    """The ``bench.flood_attack`` child for ``role``; it prints its summary as one JSON line."""
    argv = [sys.executable, "-m", "bench.flood_attack", role, "--url", url]
    argv += [
        "--start-at",
        f"{start_at:.3f}",
        "--seconds",
        f"{seconds:.3f}",
    ]
    for key, value in extra.items():
        argv += [f"--{key}", str(value)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], role: str) -> dict[str, Any]:
    try:
        out, err = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    lines = out.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"the {role} process failed ({process.returncode}):\n{err[-3000:]}")
    return dict(json.loads(lines[-1]))


async def quiet(server: servers.Server) -> float:
    """Wait until no session is open (the last round's floods are gone): seconds waited."""
    started = time.monotonic()
    while (await asyncio.to_thread(scrape, server.url)).get(OPEN_METRIC, 0.0) > 0:
        if time.monotonic() - started > QUIET_TIMEOUT_S:
            raise RuntimeError(f"sessions still open {QUIET_TIMEOUT_S:g} s after the round")
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def one_round(
    server: servers.Server,
    kind: str,
    index: int,
    speech: list[tuple[list[bytes], list[tuple[float, float]]]],
    args: argparse.Namespace,
    clip_dir: Path,
) -> dict[str, Any]:
    ws_url = f"{server.ws_url}/v1/stream?sample_rate=16000&encoding=pcm_s16le"
    waited_s = await quiet(server)
    scraper = Scraper(server, args.scrape_s)
    stop = asyncio.Event()
    scraping = asyncio.create_task(scraper.run(stop))
    await asyncio.sleep(args.scrape_s)  # a sample before anything starts
    start_mono, start_wall = time.monotonic() + 0.5, time.time() + 0.5
    attack_s = args.attack_to - args.attack_from
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    if kind == "attacked":
        at = start_wall + args.attack_from
        if not args.no_floods:
            procs.append(("floods", attacker("floods", ws_url, at, attack_s)))
        if not args.no_uploads:
            extra = {"clients": args.uploaders, "lanes": args.upload_lanes, "clips": clip_dir}
            process = attacker("uploads", server.url, at, attack_s, **extra)
            procs.append(("uploads", process))
    await asyncio.sleep(max(0.0, start_mono - time.monotonic()))
    logs = await asyncio.gather(
        *(
            stream(ws_url, chunks, FRAME_MS, {"X-Forwarded-For": f"10.0.1.{i + 1}"})
            for i, (chunks, _) in enumerate(speech)
        )
    )
    attack = {role: await asyncio.to_thread(finish, proc, role) for role, proc in procs}
    stop.set()
    await scraping
    if "floods" in attack:
        attack["floods"]["accepted_by_server"] = flood_accepted(scraper, logs, speech, attack)
    utterances = [
        {**u, "speaker": i, "in_window": args.attack_from <= u["end_s"] <= args.attack_to}
        for i, (log, (_, spans)) in enumerate(zip(logs, speech, strict=True))
        for u in per_utterance(log, spans)
    ]
    return {
        "kind": kind,
        "index": index,
        "speakers": speakers_summary(utterances, logs),
        "utterances": utterances,
        "server_in_window": scraper.window(
            start_mono + args.attack_from, start_mono + args.attack_to
        ),
        "series": scraper.series(start_mono),
        "metrics_scrape_s": report.percentiles(scraper.scrape_s),
        "waited_for_quiet_s": waited_s,
        **attack,
    }


def flood_accepted(
    scraper: Scraper,
    logs: list[StreamLog],
    speech: list[tuple[list[bytes], list[tuple[float, float]]]],
    attack: dict[str, Any],
) -> dict[str, Any]:
    """The floods' messages the server handled: its counts over the round less the
    speakers' own (their frames and one ``end`` each); the junk is what it answered with
    ``bad_message``, the rest of the text ``flush``."""
    first, last = scraper.samples[0][1], scraper.samples[-1][1]
    handled = messages_between(first, last, 1.0)
    streamed = [log for log in logs if log.t0]
    frames_sent = sum(len(chunks) for log, (chunks, _) in zip(logs, speech, strict=True) if log.t0)
    by_kind = attack["floods"]["by_kind"]
    junk = by_kind["junk"]["error_replies"].get("bad_message", 0)
    accepted = {
        "frames": handled["binary"] - frames_sent,
        "flush": handled["text"] - len(streamed) - junk,
        "junk": junk,
    }
    return {
        kind: {
            "messages": count,
            "per_connection": count / by_kind[kind]["connections"]
            if by_kind[kind]["connections"]
            else None,
        }
        for kind, count in accepted.items()
    }


def utterance_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    skipped = Counter(u["skipped"] for u in rows if u["skipped"] not in (None, "too_short"))
    return {
        "utterances": len(rows),
        "latency_s": report.percentiles(
            [u["latency_s"] for u in rows if u["latency_s"] is not None]
        ),
        "skipped": sum(skipped.values()),
        "skipped_by_reason": dict(skipped),
        "lost": sum(u["latency_s"] is None for u in rows),
    }


def speakers_summary(utterances: list[dict[str, Any]], logs: list[StreamLog]) -> dict[str, Any]:
    failed = [
        log.error or f"closed {log.close_code}"
        for log in logs
        if log.error or log.close_code != 1000
    ]
    return {
        "window": utterance_summary([u for u in utterances if u["in_window"]]),
        "round": utterance_summary(utterances),
        "failed_sessions": failed,
    }


def pooled(rounds: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    mine = [r for r in rounds if r["kind"] == kind]
    window = [u for r in mine for u in r["utterances"] if u["in_window"]]
    every = [u for r in mine for u in r["utterances"]]
    lags = [r["server_in_window"]["loop_lag"] for r in mine]
    return {
        "rounds": len(mine),
        "window": utterance_summary(window),
        "round": utterance_summary(every),
        "failed_sessions": sum(len(r["speakers"]["failed_sessions"]) for r in mine),
        # per round: the histogram's quantiles do not pool by averaging
        "loop_lag_p50_s": [lag["p50_s"] for lag in lags],
        "loop_lag_p99_s": [lag["p99_s"] for lag in lags],
    }


def verdict(base: dict[str, Any], attacked: dict[str, Any]) -> dict[str, Any]:
    b, a = base["window"]["latency_s"]["p95"], attacked["window"]["latency_s"]["p95"]
    difference = None if a is None or b is None else a - b
    clean = all(
        part["skipped"] == 0 and part["lost"] == 0
        for pool in (base, attacked)
        for part in (pool["window"], pool["round"])
    ) and not (base["failed_sessions"] or attacked["failed_sessions"])
    return {
        "p95_baseline_s": b,
        "p95_attacked_s": a,
        "p95_difference_s": difference,
        "target_difference_s": P95_TARGET_S,
        "within_target": difference is not None and difference <= P95_TARGET_S,
        "nothing_skipped_or_lost": clean,
        "met": difference is not None and difference <= P95_TARGET_S and clean,
    }


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """The defaults of every limit the attack meets, loopback trusted as the proxy."""
    fields = Settings.model_fields
    env = {f"EMOSTREAM_{name.upper()}": str(fields[name].default) for name in DEFAULT_LIMITS}
    env["EMOSTREAM_TRUSTED_PROXIES"] = "127.0.0.1/32"
    interval = args.gil_switch_interval_ms
    if interval is None:
        interval = fields["gil_switch_interval_ms"].default
    env["EMOSTREAM_GIL_SWITCH_INTERVAL_MS"] = str(interval)
    return env


async def all_rounds(
    server: servers.Server, args: argparse.Namespace, clip_dir: Path
) -> list[dict[str, Any]]:
    speech = plans(args)
    rounds = []
    for index in range(args.rounds):
        for kind in ("baseline", "attacked"):
            result = await one_round(server, kind, index, speech, args, clip_dir)
            show(result)
            rounds.append(result)
    return rounds


def show(result: dict[str, Any]) -> None:
    w = result["speakers"]["window"]
    lag = result["server_in_window"]["loop_lag"]
    line = (
        f"{result['kind']} {result['index']}: window p50={fmt(w['latency_s']['p50'])} "
        f"p95={fmt(w['latency_s']['p95'])} over {w['utterances']} utterances, "
        f"skipped={w['skipped']} lost={w['lost']} "
        f"failed={len(result['speakers']['failed_sessions'])}; "
        f"loop lag p50={fmt(lag['p50_s'])} p99={fmt(lag['p99_s'])}"
    )
    if "floods" in result:
        for kind, f in result["floods"]["by_kind"].items():
            line += (
                f"\n  {kind}: sent {f['messages_sent']}, {f['connections']} connections, "
                f"closes {f['closes']}, accepted by the server "
                f"{result['floods']['accepted_by_server'][kind]['messages']:.0f}"
            )
    if "uploads" in result:
        u = result["uploads"]
        line += f"\n  uploads: {u['done']} done, by status {u['by_status']}"
    print(line, flush=True)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    before = describe()
    path, label = (
        (args.model_dir, str(args.model_dir)) if args.model_dir else model_dir(args.model, args)
    )
    env = server_env(args)
    argv, port, base_env = servers.ours(
        path, workers=args.workers, intra_op_threads=1, extra_env=env
    )
    with tempfile.TemporaryDirectory() as clip_dir:
        clip_s = upload_clips(Path(clip_dir), args.clips)
        print(f"{label}: {args.speakers} speakers, {args.rounds} rounds of each kind", flush=True)
        with servers.run_server(argv, port, base_env) as server:
            rounds = asyncio.run(all_rounds(server, args, Path(clip_dir)))
    base, attacked = pooled(rounds, "baseline"), pooled(rounds, "attacked")
    return {
        "model": label,
        "machine_before": before,
        "speakers": args.speakers,
        "frame_ms": FRAME_MS,
        "round_s": args.round_s,
        "attack_window_s": [args.attack_from, args.attack_to],
        "workers": args.workers,
        "uploaders": args.uploaders,
        "upload_lanes": args.upload_lanes,
        "upload_clip_s": clip_s,
        "floods": not args.no_floods,
        "uploads": not args.no_uploads,
        "server_settings": {k: v for k, v in base_env.items() if k.startswith("EMOSTREAM_")},
        "order": [f"{r['kind']} {r['index']}" for r in rounds],
        "rounds": rounds,
        "baseline": base,
        "attacked": attacked,
        "target": verdict(base, attacked),
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, (left, right) = report.figure(11, 4.2, ncols=2)
    lo, hi = data["attack_window_s"]
    for r in data["rounds"]:
        color = "C0" if r["kind"] == "baseline" else "C3"
        points = sorted(
            (u["end_s"], u["latency_s"]) for u in r["utterances"] if u["latency_s"] is not None
        )
        left.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            "o",
            color=color,
            markersize=3,
            alpha=0.7,
            label=f"{r['kind']} {r['index']}",
        )
        series = r["series"]
        right.plot(
            [s["t_s"] for s in series],
            [1000 * (s["lag_p99_s"] or 0.0) for s in series],
            color=color,
            label=f"{r['kind']} {r['index']}",
        )
    for axis in (left, right):
        axis.axvspan(lo, hi, color="grey", alpha=0.15)
        axis.set_xlabel("seconds into the round (grey: the attack)")
    left.set_ylabel("label latency after utterance end, s")
    left.legend(fontsize=7)
    right.set_ylabel("event-loop lag p99 per scrape interval, ms")
    right.set_yscale("symlog", linthresh=10)
    right.legend(fontsize=7)
    t = data["target"]
    fig.suptitle(
        f"Floods + uploads vs {data['speakers']} real-time speakers ({data['model']}): "
        f"window p95 {fmt(t['p95_baseline_s'])} s -> {fmt(t['p95_attacked_s'])} s"
    )
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = measure(args)
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)
    print(
        json.dumps(
            {"baseline": data["baseline"], "attacked": data["attacked"], "target": data["target"]},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
