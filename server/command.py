"""``emostream serve``: run the HTTP and WebSocket server."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from server.settings import Settings

log = logging.getLogger("emostream")

AddCommand = Callable[[str, str], argparse.ArgumentParser]


def register(command: AddCommand) -> None:
    p = command("serve", "run the HTTP and WebSocket server")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument(
        "--port", type=_port, default=8000, help="port to listen on; 0 picks a free port"
    )
    model_options(p)
    p.set_defaults(func=serve)


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "model", None) is not None:
        overrides["model_dir"] = args.model
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    return Settings(**overrides)


def serve(args: argparse.Namespace) -> int:
    from server.runner import build

    server = build(settings_from(args), args.host, args.port)
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


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be an integer from 0 to 65535, got {text!r}")
    return int(text)


def model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        type=Path,
        metavar="DIR",
        help="model directory (default: $EMOSTREAM_MODEL_DIR, else the bundled models/default)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="inference worker threads (default: $EMOSTREAM_WORKERS, else the settings' default)",
    )
