"""The ``emostream`` command: serve, classify files offline, stream a file to a server."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from server.model import ModelError
from server.protocol import MAX_INTERIM_MS, MIN_INTERIM_MS
from server.settings import Settings
from vad.silero import VadModelError

log = logging.getLogger("emostream")


def _settings(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "model", None) is not None:
        overrides["model_dir"] = args.model
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    return Settings(**overrides)


def serve(args: argparse.Namespace) -> int:
    from server.app import create_app
    from server.runner import DrainingServer, uvicorn_config

    settings = _settings(args)
    app = create_app(settings)
    config = uvicorn_config(app, settings, args.host, args.port)
    server = DrainingServer(config, app.state.service)
    # uvicorn re-raises SIGINT/SIGTERM once it has shut down gracefully; with these handlers
    # in place that ends here with status 0 instead of killing the process by the signal.
    previous = {sig: signal.signal(sig, _shut_down) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def _shut_down(signum: int, frame: FrameType | None) -> None:
    log.info("stopped by %s", signal.Signals(signum).name)


def classify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from server.recording import classify_recording
    from server.service import Service
    from server.upload import UploadError

    settings = _settings(args)
    service = Service(settings)
    service.start()
    model = service.manifest.summary()
    failures = 0
    reports: list[dict[str, Any]] = []
    try:
        for path in tqdm(args.files, disable=len(args.files) < 2 or args.json, unit="file"):
            try:
                recording = asyncio.run(
                    classify_recording(service, asyncio.to_thread(path.read_bytes))
                )
            except (OSError, UploadError) as exc:
                failures += 1
                print(f"{path}: error: {exc}", file=sys.stderr)
                continue
            report = {"file": str(path), **recording.body()}
            reports.append(report)
            if not args.json:
                tqdm.write(_table(report))
    finally:
        service.stop()
    if args.json:
        print(json.dumps({"model": model, "files": reports}, indent=2))
    return 1 if failures else 0


def _table(report: dict[str, Any]) -> str:
    lines = [f"{report['file']}  ({report['duration_ms'] / 1000:.1f} s)"]
    for seg in report["segments"]:
        span = f"{seg['start_ms'] / 1000:7.2f}–{seg['end_ms'] / 1000:6.2f} s"
        if "label" in seg:
            lines.append(
                f"  #{seg['segment']:<3} {span}  {seg['label']:<8} {seg['confidence']:.2f}"
            )
        else:
            lines.append(f"  #{seg['segment']:<3} {span}  (skipped: {seg['reason']})")
    summary = report["summary"]
    overall = f"{summary['label']} {summary['confidence']:.2f}" if summary["label"] else "—"
    lines.append(f"  overall: {overall}")
    return "\n".join(lines)


def stream(args: argparse.Namespace) -> int:
    import soundfile as sf
    import websockets

    from server.client import Reconnect, load_pcm16, stream_pcm16

    try:
        pcm, rate = load_pcm16(args.file)
    except (OSError, sf.SoundFileError) as exc:
        print(f"{args.file}: error: {exc}", file=sys.stderr)
        return 1

    def show(message: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(message), flush=True)
        elif message["type"] == "result":
            print(
                f"#{message['segment']:<3} {message['start_ms'] / 1000:7.2f}–"
                f"{message['end_ms'] / 1000:6.2f} s  {message['label']:<8} "
                f"{message['confidence']:.2f}  ({message['latency_ms']} ms)",
                flush=True,
            )
        elif message["type"] == "partial":
            print(
                f"#{message['segment']:<3} {message['start_ms'] / 1000:7.2f}–"
                f"{message['end_ms'] / 1000:6.2f} s  {message['label']:<8} "
                f"{message['confidence']:.2f}  (partial, {message['latency_ms']} ms)",
                flush=True,
            )
        elif message["type"] in ("skipped", "error", "end"):
            print(json.dumps(message), flush=True)

    def retrying(reason: str, delay_s: float) -> None:
        print(f"emostream: {reason}; reconnecting in {delay_s:.1f} s", file=sys.stderr)

    speed = 0.0 if args.fast else args.speed
    try:
        report = asyncio.run(
            stream_pcm16(
                args.url,
                pcm,
                rate,
                speed=speed,
                token=args.token,
                interim_ms=args.interim_ms,
                on_message=show,
                reconnect=Reconnect() if args.reconnect else None,
                on_retry=retrying,
            )
        )
    except (OSError, TimeoutError, ValueError, websockets.WebSocketException) as exc:
        print(f"emostream: cannot stream to {args.url}: {exc}", file=sys.stderr)
        return 1
    if report.gave_up is not None:
        print(f"emostream: gave up reconnecting: {report.gave_up}", file=sys.stderr)
        return 1
    if report.close_code != 1000:
        print(f"emostream: the server closed with {report.close_code}", file=sys.stderr)
        return 1
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer from 0 to 65535, got {text!r}")
    return int(text)


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"speed must be a positive number, got {text!r}")
    return value


def _interim_ms(text: str) -> int:
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else -1
    if value != 0 and not MIN_INTERIM_MS <= value <= MAX_INTERIM_MS:
        raise argparse.ArgumentTypeError(
            f"interim-ms must be 0 or an integer from {MIN_INTERIM_MS} to {MAX_INTERIM_MS}, "
            f"got {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emostream", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="run the HTTP and WebSocket server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000, help="0 picks a free port")
    p.add_argument("--model", type=Path, help="model directory (default: the bundled model)")
    p.add_argument("--workers", type=int, help="inference worker threads")
    p.set_defaults(func=serve)

    p = commands.add_parser("classify", help="classify recordings offline")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--model", type=Path)
    p.add_argument("--workers", type=int)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=classify)

    p = commands.add_parser("stream", help="stream a recording to a server and print results")
    p.add_argument("file", type=Path)
    p.add_argument("--url", default="ws://127.0.0.1:8000/v1/stream")
    p.add_argument("--speed", type=_speed, default=1.0, help="pace as a multiple of real time")
    p.add_argument("--fast", action="store_true", help="send as fast as the server reads")
    p.add_argument("--token")
    p.add_argument(
        "--interim-ms",
        type=_interim_ms,
        default=0,
        metavar="N",
        help=f"ask for partial results every N ms of speech (0 = off, or "
        f"{MIN_INTERIM_MS}-{MAX_INTERIM_MS}); printed marked 'partial'",
    )
    p.add_argument("--json", action="store_true", help="print every message as JSON")
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="when the server ends the stream early (busy, a lost connection), reconnect "
        "with backoff and go on from the audio not yet sent",
    )
    p.set_defaults(func=stream)

    try:
        from training.cli import register
    except ImportError:  # the training extra is not installed
        pass
    else:
        register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # ONNX Runtime keeps a device id and usage database under $HOME unless told not to;
    # this must be set before onnxruntime is imported (the commands import it lazily).
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except ValidationError as exc:
        print(f"emostream: invalid setting: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:
        print(f"emostream: cannot use the model: {exc}", file=sys.stderr)
        return 2
    except VadModelError as exc:
        print(f"emostream: cannot use the voice detector: {exc}", file=sys.stderr)
        return 2
