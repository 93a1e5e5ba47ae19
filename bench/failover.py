"""Benchmark 7: replica failover behind Caddy (counts and durations, not speed).

Caddy with the project's Caddyfile in front of ``--replicas`` ``emostream serve``
processes; ``--streams`` clients stream a five-sentence recording in real time through it
with the reference client's reconnecting mode; after 4 s the busiest replica gets SIGTERM
(drain) or SIGKILL. Per run: how soon the replica stopped being ready, how soon its
streams were closed and were back on another replica, the audio lost per moved stream,
whether every new connection opened meanwhile reached a live replica and how long it
took, and when Caddy marked the replica unhealthy. The scenario is
``bench.failover_scenario``, which tests/deploy/test_failover.py also runs.

    .venv/bin/python -m bench.failover [--quick] [--runs 5] [--model models/default]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bench import failover_scenario as failover
from bench import report

NAME = "failover"
KINDS = ("sigterm", "sigkill")
STOP_AFTER_S = 4.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per kind of stop")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--streams", type=int, default=6)
    parser.add_argument(
        "--model",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "models" / "default",
        help="model directory the replicas serve",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.replicas, args.streams = 1, 2, 2
    if args.runs < 1 or args.replicas < 2 or args.streams < 1:
        parser.error("need --runs >= 1, --replicas >= 2 and --streams >= 1")
    return args


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for run in range(args.runs):
        for kind in KINDS:  # interleaved, so drifting load hits both alike
            with failover.running(args.model, args.replicas) as replicas:
                figures, _, _ = asyncio.run(
                    failover.run_scenario(replicas, kind, args.streams, STOP_AFTER_S)
                )
            row = figures.summary()
            row["run"] = run
            rows.append(row)
            print(
                f"{kind} run {run}: moved {figures.moved_streams}/{figures.streams}, "
                f"reconnect {row['reconnect_gap_s']} s, lost {figures.lost_audio_ms} ms, "
                f"new connections failed {figures.new_connections_failed}"
            )
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]

        def values(key: str, rows: list[dict[str, Any]] = mine) -> list[float]:
            found: list[float] = []
            for r in rows:
                v = r[key]
                found += v if isinstance(v, list) else ([] if v is None else [v])
            return found

        out.append(
            {
                "kind": kind,
                "runs": len(mine),
                "moved_streams": sum(r["moved_streams"] for r in mine),
                "finished_streams": sum(r["finished_streams"] for r in mine),
                "streams": sum(r["streams"] for r in mine),
                "stop_to_not_ready_s": report.percentiles(values("stop_to_not_ready_s")),
                "stop_to_close_s": report.percentiles(values("stop_to_close_s")),
                "reconnect_gap_s": report.percentiles(values("reconnect_gap_s")),
                "lost_audio_ms": report.percentiles(values("lost_audio_ms")),
                "health_check_noticed_s": report.percentiles(values("health_check_noticed_s")),
                "new_connections": sum(r["new_connections"] for r in mine),
                "new_connections_failed": sum(r["new_connections_failed"] for r in mine),
                "new_connection_ms": report.percentiles(values("new_connection_ms")),
            }
        )
    return out


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    fig, (gaps, opens) = report.figure(9.0, 3.6, ncols=2)
    for i, kind in enumerate(KINDS):
        mine = [r for r in rows if r["kind"] == kind]
        gap = [g for r in mine for g in r["reconnect_gap_s"]]
        gaps.scatter([i] * len(gap), gap, alpha=0.6, label=kind)
        opened = [max(r["new_connection_ms"], default=0.0) for r in mine]
        opens.scatter([i] * len(opened), opened, alpha=0.6, label=kind)
    for ax, title, unit in (
        (gaps, "close to ready on another replica", "s"),
        (opens, "slowest new connection per run", "ms"),
    ):
        ax.set_xticks(range(len(KINDS)), KINDS)
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
    report.save_figure(fig, out, NAME)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    rows = run_all(args)
    data = {
        "replicas": args.replicas,
        "streams": args.streams,
        "stop_after_s": STOP_AFTER_S,
        "reconnect_policy": failover.RECONNECT.__dict__,
        "summary": summarise(rows),
        "rows": rows,
    }
    report.write(args.out, NAME, data, args.quick)
    plot(rows, args.out)


if __name__ == "__main__":
    main()
