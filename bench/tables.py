"""Markdown tables for BENCHMARKS.md, rendered from the result files in bench/results/.

.venv/bin/python -m bench.tables [--results bench/results]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def optional(value: float | None, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def spread(stats: dict[str, float], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(stats['median'])} ({fmt.format(stats['p10'])}–{fmt.format(stats['p90'])})"


def machine(data: dict[str, Any]) -> str:
    m = data["machine"]
    peak = m["peak"]
    # Result files from before the CPU kind was recorded name only the family and peak ISA.
    kind = m.get("cpu_kind") or f"family {m['cpu_family']}, {peak['isa']}"
    cores = f"{m['cores']} cores"
    if "affinity" in m and len(m["affinity"]) != m["cores"]:
        cores += f", pinned to {len(m['affinity'])} ({','.join(map(str, m['affinity']))})"
    return (
        f"**{kind}**: {m['cpu']}, {cores}, "
        f"{peak['clock_ghz']} GHz; load average at the end {m['loadavg_1_5_15']}; "
        f"run at {m['time_utc']}, nice {m['nice']}"
    )


def model_cost(data: dict[str, Any]) -> str:
    rows = []
    for r in data["rows"]:
        rows.append([
            f"{r['seconds']:g} s", r["path"], spread(r["ms"]),
            f"{r['speedup_vs_prototype']['median']:.2f}× "
            f"({r['speedup_vs_prototype']['p10']:.2f}–{r['speedup_vs_prototype']['p90']:.2f})",
            f"{r['gflop']:.1f}", f"{r['achieved_gflops']:.0f}",
            f"{100 * r['fraction_of_fp32_peak']:.0f} %",
        ])  # fmt: skip
    head = ["segment", "path", "ms median (p10–p90)", "speed-up vs prototype (p10–p90)",
            "GFLOP", "GFLOP/s", "of fp32 peak"]  # fmt: skip
    return table(head, rows)


def quantization(data: dict[str, Any]) -> str:
    levels = ["disable", "basic", "extended", "all"]
    rows = []
    for r in data["rows"]:
        a = r["agreement_vs_fp32"]
        rows.append([
            r["variant"], f"{r['graph']['file_mb']:.0f}",
            *[spread(r["ms_by_level"][lv]) for lv in levels],
            f"{100 * a['top1_agreement']:.0f} %", f"{a['max_abs_logit_error']:.2g}",
            f"{a['relative_error']:.2g}",
        ])  # fmt: skip
    head = ["variant", "MB", *[f"ms, opt {lv}" for lv in levels], "top-1 agree",
            "max abs Δlogit", "mean abs Δ / logit spread"]  # fmt: skip
    return table(head, rows)


def layout(data: dict[str, Any]) -> str:
    rows = [
        [r["variant"], f"{r['workers']} × {r['intra_op_threads']}",
         f"{r['segments_per_s']['median']:.2f} ({r['segments_per_s']['min']:.2f}–"
         f"{r['segments_per_s']['max']:.2f})",
         f"{r['latency_ms_median']['median']:.0f}"]
        for r in data["summary"]
    ]  # fmt: skip
    head = ["variant", "workers × threads", "segments/s (min–max)", "latency per segment, ms"]
    return table(head, rows)


def end_to_end(data: dict[str, Any]) -> str:
    rows = [
        [r["stack"], str(r["clients"]),
         f"{r['requests_per_s']['median']:.2f} ({r['requests_per_s']['min']:.2f}–"
         f"{r['requests_per_s']['max']:.2f})",
         f"{r['latency_p50_ms']['median']:.0f}", f"{r['latency_p95_ms']['median']:.0f}",
         str(r["errors"])]
        for r in data["summary"]
    ]  # fmt: skip
    head = ["stack", "clients", "requests/s (min–max)", "p50 ms", "p95 ms", "errors"]
    return table(head, rows)


LIVE_HEADER = ["K", "utterances", "p50 s", "p95 s", "p99 s", "speech_end p50 s",
               "server p95 ms", "skipped", "server CPU (cores)", "RSS MB", "pass"]  # fmt: skip


def live_capacity(data: dict[str, Any]) -> str:
    parts = []
    for model in data["models"]:
        rows = []
        for r in model["runs"]:
            u = r["utterance_latency_s"]
            rows.append([
                str(r["k"]), str(r["utterances"]),
                *[f"{u[q]:.2f}" if u[q] is not None else "–" for q in ("p50", "p95", "p99")],
                optional(r["speech_end_latency_s"]["p50"], "{:.2f}"),
                optional(r["server_latency_ms"]["p95"], "{:.0f}"),
                str(r["overloaded"] + r["errors"]), f"{r['server_cpu_cores']:.2f}",
                f"{r['server_rss_mb_peak']:.0f}", "yes" if r["passed"] else "no",
            ])  # fmt: skip
        layout = model["layout"]
        lone = layout.get("lone_intra_op_threads")
        lone_text = "" if lone is None else f", lone segment on {lone} thread(s)"
        kind = model.get("conversation", "half")
        speech = data["speech_fraction"]
        fraction = speech.get(kind) if isinstance(speech, dict) else speech
        parts.append(
            f"**{model['model']}**, {kind} conversation ({fraction:.0%} speech), "
            f"{layout['workers']} workers × {layout['intra_op_threads']} intra-op thread(s)"
            f"{lone_text}: largest passing K = **{model['max_k_passing']}** speakers"
            + (
                f", {model['speech_s_per_s_at_capacity']:.1f} s of speech served per s"
                if "speech_s_per_s_at_capacity" in model
                else ""
            )
            + "\n\n"
            + table(LIVE_HEADER, rows)
            + partials_note(model.get("partials"))
        )
    return "\n\n".join(parts)


def partials_note(partials: dict[str, Any] | None) -> str:
    if not partials:
        return ""
    dropped = sum(partials["partials_dropped"].values())
    change = partials["finals_p95_change_s"]
    first = partials["one_speaker_first_label_s"]
    return (
        f"\n\nWith partials (interim_ms={partials['interim_ms']}) at K={partials['k']}: finals' "
        f"p95 {optional(partials['finals_p95_on_s'], '{:.2f}')} s vs "
        f"{optional(partials['finals_p95_off_s'], '{:.2f}')} s without "
        f"({optional(None if change is None else change * 1000, '{:+.0f}')} ms), "
        f"{partials['skipped_on']} skipped; partials {partials['partials_computed']:.0f} "
        f"computed, {dropped:.0f} dropped. One speaker: first label after an utterance "
        f"starts p50 {optional(first['p50'], '{:.2f}')} s, "
        f"p95 {optional(first['p95'], '{:.2f}')} s."
    )


def vad_cost(data: dict[str, Any]) -> str:
    rows = [
        [r.get("detector", "webrtc"), str(r.get("streams", 1)), f"{r['input_rate_hz']} Hz",
         f"{r['cpu_ms_per_audio_s']['median']:.2f} ({r['cpu_ms_per_audio_s']['min']:.2f}–"
         f"{r['cpu_ms_per_audio_s']['max']:.2f})",
         f"{r['streams_per_core']:.0f}", str(r["segments"])]
        for r in data["rows"]
    ]  # fmt: skip
    head = [
        "detector",
        "streams at once",
        "client rate",
        "CPU ms per audio s per stream (min–max)",
        "streams per core",
        "segments",
    ]
    return table(head, rows)


def memory(data: dict[str, Any]) -> str:
    first, second = data["idle_connection_rounds"]
    rows = [
        ["RSS after start", f"{data['rss_after_start_mb']:.1f} MiB"],
        ["RSS idle (after one upload)", f"{data['rss_idle_mb']:.1f} MiB"],
        [f"{first['connections']} idle connections, first round",
         f"+{first['rss_held_mb'] - first['rss_before_mb']:.1f} MiB → "
         f"**{first['per_connection_kb']:.0f} KB each**"],
        [f"{second['connections']} idle connections, second round",
         f"+{second['rss_held_mb'] - second['rss_before_mb']:.1f} MiB → "
         f"{second['per_connection_kb']:.0f} KB each"],
        [f"{data['active_streams']} active streams (peak)",
         f"+{data['rss_peak_active_mb'] - data['rss_before_active_mb']:.1f} MiB → "
         f"**{data['per_active_stream_kb']:.0f} KB each**"],
    ]  # fmt: skip
    if "bare_framework" in data:
        bare_first, bare_second = data["bare_framework"]
        rows.append([
            f"baseline: bare Starlette WebSocket app, {bare_first['connections']} idle",
            f"{bare_first['per_connection_kb']:.0f} KB each (second round "
            f"{bare_second['per_connection_kb']:.0f} KB)",
        ])  # fmt: skip
    return table(["state", "server RSS"], rows)


def op_profile(data: dict[str, Any]) -> str:
    ops: list[str] = []
    for row in data["rows"]:
        ops += [op for op in list(row["kernel_ms_by_op"])[:6] if op not in ops]
    rows = [
        [r["variant"], f"{r['kernel_ms_total']:.0f}",
         *[f"{r['kernel_ms_by_op'].get(op, 0.0):.0f}" for op in ops]]
        for r in data["rows"]
    ]  # fmt: skip
    return table(["variant", "total kernel ms", *ops], rows)


def batching(data: dict[str, Any]) -> str:
    rows = []
    for model in data["models"]:
        for r in model["vs_pool_layout"]:
            s = r["speedup_vs_2_workers_separate"]
            rows.append([
                model["label"], str(r["segments"]), r["layout"],
                f"{s['median']:.2f}× ({s['p10']:.2f}–{s['p90']:.2f})",
            ])  # fmt: skip
    head = ["model", "equal segments", "layout", "speed-up vs 2 workers × 1 thread (p10–p90)"]
    return table(head, rows)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "model_cost": model_cost,
    "quantization": quantization,
    "op_profile": op_profile,
    "layout": layout,
    "batching": batching,
    "end_to_end": end_to_end,
    "live_capacity": live_capacity,
    "vad_cost": vad_cost,
    "memory": memory,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    for name, render in RENDERERS.items():
        path = args.results / f"{name}.json"
        if not path.is_file():
            print(f"## {name}\n\n(no {path})\n")
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        print(f"## {name}\n\n{machine(data)}\n\n{render(data)}\n")


if __name__ == "__main__":
    main()
