"""Benchmark: peak server memory of the largest upload, alone and several at once.

Starts ``emostream serve``, warms it with one small upload, then for each case resets the
process's peak resident set (``/proc/<pid>/clear_refs``), sends the uploads and reads the
new peak (``VmHWM``): the growth over the resident set before is what the uploads cost.
The file is the largest the default limits accept: 10 minutes (``max_upload_ms``) of
conversation (about half speech) as 16-bit WAV at 20 kHz, 24 MB (``max_upload_bytes`` is
25 MiB). Its decoded audio at 16 kHz float32 is 38.4 MB; the figure to read is the peak
growth of one upload as a multiple of that.

    .venv/bin/python -m bench.upload_memory [--quick] [--concurrent 4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import time
from pathlib import Path
from typing import Any

import httpx
import soundfile as sf
import soxr

from bench import report, servers
from bench.audio import SAMPLE_RATE_HZ, conversation
from bench.live_capacity import model_dir

NAME = "upload_memory"
FILE_RATE_HZ = 20_000
DECODED_BYTES_PER_SECOND = 16_000 * 4


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = report.arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bundled", help="bundled, tiny or base-int8")
    parser.add_argument("--base-variant", default="int8-matmul")
    parser.add_argument("--seconds", type=float, default=599.0, help="length of the upload")
    parser.add_argument("--concurrent", type=int, default=4, help="uploads at once (case 2)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.seconds, args.concurrent = "tiny", 60.0, 2
    return args


def upload_file(seconds: float) -> bytes:
    audio, _ = conversation(seconds, seed=5)
    audio = soxr.resample(audio[: round(seconds * SAMPLE_RATE_HZ)], SAMPLE_RATE_HZ, FILE_RATE_HZ)
    buf = io.BytesIO()
    sf.write(buf, audio, FILE_RATE_HZ, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


async def post_all(url: str, body: bytes, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=600) as http:
        replies = await asyncio.gather(
            *(
                http.post(f"{url}/v1/classify", content=body, headers={"content-type": "audio/wav"})
                for _ in range(count)
            )
        )
    for reply in replies:
        reply.raise_for_status()
    return replies


def peak_growth(server: servers.Server, body: bytes, count: int) -> dict[str, Any]:
    pid = server.process.pid
    time.sleep(1.0)  # let the previous case's memory go back
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
    before_kb = _status_kb(pid, "VmRSS")
    replies = asyncio.run(post_all(server.url, body, count))
    peak_kb = _status_kb(pid, "VmHWM")
    return {
        "uploads": count,
        "segments": len(replies[0].json()["segments"]),
        "rss_before_mb": before_kb / 1024,
        "peak_growth_mb": (peak_kb - before_kb) / 1024,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    path, label = model_dir(args.model, args)
    body = upload_file(args.seconds)
    decoded_mb = args.seconds * DECODED_BYTES_PER_SECOND / 2**20
    argv, port, env = servers.ours(path, workers=args.workers, intra_op_threads=1)
    env["EMOSTREAM_MAX_UPLOADS"] = env["EMOSTREAM_MAX_UPLOADS_PER_IP"] = str(args.concurrent)
    with servers.run_server(argv, port, env) as server:
        peak_growth(server, upload_file(2.0), 1)  # warm-up
        one = peak_growth(server, body, 1)
        several = peak_growth(server, body, args.concurrent)
    return {
        "model": label,
        "upload_seconds": args.seconds,
        "file_mb": len(body) / 2**20,
        "decoded_audio_mb": decoded_mb,
        "one": {**one, "per_decoded_audio": one["peak_growth_mb"] / decoded_mb},
        "concurrent": {
            **several,
            "per_upload_mb": several["peak_growth_mb"] / args.concurrent,
        },
    }


def plot(data: dict[str, Any], out_dir: Path) -> None:
    fig, ax = report.figure(6, 3.6)
    n = data["concurrent"]["uploads"]
    labels = ["file", "decoded audio", "peak, 1 upload", f"peak, {n} at once"]
    values = [
        data["file_mb"],
        data["decoded_audio_mb"],
        data["one"]["peak_growth_mb"],
        data["concurrent"]["peak_growth_mb"],
    ]
    ax.bar(labels, values)
    ax.set_ylabel("MiB")
    ax.set_title(
        f"Upload memory, {data['upload_seconds']:.0f} s file: peak growth "
        f"{data['one']['per_decoded_audio']:.1f}× the decoded audio",
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
