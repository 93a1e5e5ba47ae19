"""Could pool batching trigger? Equal-length segments ready together in the live benchmark.

Offline, no timings: ``bench.live_capacity``'s clients (the same conversations, lead-ins
and 40 ms frames) run through the server's segmenter at its default settings. Each
segment is ready when the frame that completes it arrives (stream time). For K speakers
it counts the segments that have another segment of exactly the same number of samples
ready within a window of W seconds (the time one might wait in the queue) — the only
segments ``EMOSTREAM_BATCH_MAX`` can batch — and, separately, only partners from another
conversation: the benchmark reuses 8 conversations across its clients, and the
conversations are made of the same 6 espeak-ng utterances (``bench.audio.SENTENCES`` with
``VOICES``), so even other conversations' segments repeat lengths far more than different
people's speech would.

    .venv/bin/python -m bench.equal_lengths [--quick] [--audio-seconds 30]
"""

from __future__ import annotations

import argparse
import bisect
import collections
from pathlib import Path
from typing import Any

import vad
from bench import report
from bench.audio import SAMPLE_RATE_HZ, conversation
from bench.live_capacity import CONVERSATIONS, PAUSES_S, client_audio
from server.settings import Settings

NAME = "equal_lengths"
WINDOWS_S = (0.25, 0.5, 1.0, 2.0)

# (ready time in stream seconds, samples, client index)
Ready = tuple[float, int, int]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--audio-seconds", type=float, default=30.0, help="stream per client")
    parser.add_argument("--ks", type=int, nargs="+", default=[8, 16, 32, 40])
    parser.add_argument(
        "--conversations", nargs="+", choices=sorted(PAUSES_S), default=["dense", "half"]
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.audio_seconds, args.ks, args.conversations = 8.0, [2, 4], ["dense"]
    if min(args.ks) < 1:
        parser.error("every K must be at least 1")
    return args


def ready_segments(frames: list[bytes], config: vad.SegmenterConfig) -> list[tuple[float, int]]:
    """(ready time, samples) of each segment the server would classify, in stream order."""
    segmenter = vad.StreamSegmenter(
        config, SAMPLE_RATE_HZ, "pcm_s16le", detector=vad.make_detector(config, None)
    )
    out: list[tuple[float, int]] = []
    received = 0
    for frame in frames:
        received += len(frame) // 2
        for event in segmenter.feed_bytes(frame):
            if isinstance(event, vad.Segment) and not event.too_short:
                out.append((received / SAMPLE_RATE_HZ, event.end_sample - event.start_sample))
    return out


def with_partner(ready: list[Ready], window_s: float, other_conversation: bool) -> int:
    """Segments with an equal-length segment (of another client) ready within ``window_s``."""
    by_length: dict[int, list[Ready]] = collections.defaultdict(list)
    for item in ready:
        by_length[item[1]].append(item)
    count = 0
    for items in by_length.values():
        items.sort()
        times = [t for t, _, _ in items]
        for t, _, client in items:
            lo = bisect.bisect_left(times, t - window_s)
            hi = bisect.bisect_right(times, t + window_s)
            count += any(
                c != client
                and (not other_conversation or c % CONVERSATIONS != client % CONVERSATIONS)
                for _, _, c in items[lo:hi]
            )
    return count


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    config = Settings().segmenter_config()
    rows = []
    for kind in args.conversations:
        conversations = [
            conversation(args.audio_seconds, seed=i, pause_s=PAUSES_S[kind])
            for i in range(CONVERSATIONS)
        ]
        clients = [
            ready_segments(client_audio(i, conversations, args.audio_seconds)[0], config)
            for i in range(max(args.ks))
        ]
        for k in args.ks:
            ready = [(t, n, c) for c in range(k) for t, n in clients[c]]
            lengths = [n for _, n, _ in ready]
            rows.append(
                {
                    "conversation": kind,
                    "k": k,
                    "segments": len(ready),
                    "distinct_lengths": len(set(lengths)),
                    "with_equal_partner": {
                        str(w): with_partner(ready, w, other_conversation=False) for w in WINDOWS_S
                    },
                    "with_equal_partner_other_conversation": {
                        str(w): with_partner(ready, w, other_conversation=True) for w in WINDOWS_S
                    },
                }
            )
            print(kind, k, rows[-1], flush=True)
    return rows


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, ax = report.figure(7, 3.8)
    for row in data["rows"]:
        for key, style in (
            ("with_equal_partner", "-"),
            ("with_equal_partner_other_conversation", ":"),
        ):
            share = [row[key][str(w)] / max(1, row["segments"]) for w in WINDOWS_S]
            label = f"{row['conversation']} K={row['k']}" + (
                " (other conv.)" if ":" in style else ""
            )
            ax.plot(WINDOWS_S, share, style, marker="o", label=label)
    ax.set_xlabel("window, s (segments ready within it of each other)")
    ax.set_ylabel("share of segments with an equal-length partner")
    ax.legend(fontsize=6, ncols=2)
    fig.suptitle("Equal-length segments ready together (live benchmark's clients)", fontsize=9)
    report.save_figure(fig, out_dir, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    data = {
        "audio_seconds": args.audio_seconds,
        "windows_s": list(WINDOWS_S),
        "segmenter": "server defaults (Settings().segmenter_config())",
        "rows": measure(args),
    }
    report.write(args.out, NAME, data, args.quick)
    plot(data, args.out)


if __name__ == "__main__":
    main()
