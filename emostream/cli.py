"""The ``emostream`` command: serve, classify files offline, stream audio to a server."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import ValidationError

from classifier.model import ModelError
from client import command as client_command
from client.command import EXIT_FAILED, EXIT_OK, UsageError
from server import command as server_command
from vad.silero import VadModelError

EXIT_USAGE = 2  # bad arguments or settings, an unusable model, an output that cannot be written
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_CODES_HELP = (
    "exit status: 0 done; 1 an input could not be classified, or the stream failed, was "
    "refused or closed abnormally; 2 bad arguments or settings, an unusable model, or an "
    "output that cannot be written; 130 interrupted"
)
__all__ = ["EXIT_CODES_HELP", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default; options without one say what happens instead."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "default:" in text or "%(default)" in text:
            return text
        return super()._get_help_string(action) or text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emostream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emostream",
        description=__doc__,
        formatter_class=_HelpFormatter,
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"emostream {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help_text, description=help_text, formatter_class=_HelpFormatter,
            epilog=EXIT_CODES_HELP,
        )  # fmt: skip

    server_command.register(command)
    client_command.register(command)

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
    except UsageError as exc:
        print(f"emostream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as exc:
        print(f"emostream: invalid setting: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModelError as exc:
        print(f"emostream: cannot use the model: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VadModelError as exc:
        print(f"emostream: cannot use the voice detector: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the output could not be written
        print(f"emostream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
