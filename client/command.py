"""``emostream classify`` (offline, with the server's pipeline) and ``emostream stream`` (the
reference client against a running server)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from client.formats import EXTENSIONS, FORMATS, TableWriter, Writer, record, writer
from pcm.format import ENCODINGS, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, PIPELINE_RATE_HZ
from server.command import AddCommand, model_options, settings_from
from server.protocol import CHANNEL_MODES, MAX_INTERIM_MS, MIN_INTERIM_MS

TOKEN_ENV = "EMOSTREAM_TOKEN"
DEFAULT_RATE_HZ = PIPELINE_RATE_HZ
EXIT_OK = 0
EXIT_FAILED = 1  # an input could not be classified, or the stream failed or was refused


class UsageError(Exception):
    """Arguments that cannot work together; exit status 2, like argparse's own errors."""


class Outputs:
    """Where records go: standard output, one file for everything, or a file per input in a
    directory (``-o DIR``: an existing directory, or a path ending in ``/``)."""

    def __init__(self, output: str | None, fmt: str, inputs: int) -> None:
        self.fmt = fmt
        path = None if output is None else Path(output)
        self.directory = path if output is not None and _is_directory(output) else None
        self.file = path if self.directory is None else None
        if fmt == "vtt" and inputs > 1 and self.directory is None:
            raise UsageError("--format vtt of several inputs needs -o DIRECTORY (a file per input)")
        self._shared: TextIO | None = None
        self._used: set[str] = set()

    @property
    def to_stdout(self) -> bool:
        return self.directory is None and self.file is None

    def open(self, name: str) -> tuple[TextIO, bool]:
        """The stream for input ``name``, and whether it is new (needs a CSV header)."""
        if self.directory is not None:
            path = self._path_for(name)
            return path.open("w", encoding="utf-8", newline=""), True
        if self._shared is None:
            if self.file is None:
                self._shared = sys.stdout
            else:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                self._shared = self.file.open("w", encoding="utf-8", newline="")
            return self._shared, True
        return self._shared, False

    def done(self, out: TextIO) -> None:
        if out is not self._shared:
            out.close()

    def close(self) -> None:
        if self._shared is not None and self._shared is not sys.stdout:
            self._shared.close()

    def _path_for(self, name: str) -> Path:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem if name != "-" else "stdin"
        candidate, n = stem, 1
        while candidate in self._used:
            n += 1
            candidate = f"{stem}-{n}"
        self._used.add(candidate)
        return self.directory / f"{candidate}.{EXTENSIONS[self.fmt]}"


def _with_quality(url: str) -> str:
    """``url`` asking for quality=1 (the client keeps query parameters it does not set)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "quality"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("quality", "1")])))


def _is_directory(output: str) -> bool:
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


def classify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from server.recording import classify_recording
    from server.service import Service
    from server.upload import UploadError

    outputs = None if args.json else Outputs(args.output, args.format, len(args.files))
    settings = settings_from(args)
    service = Service(settings)
    service.start()
    model = service.manifest.summary()
    labels = list(model["labels"])
    failures = 0
    reports: list[dict[str, Any]] = []
    shared: Writer | None = None
    quiet = args.json or (outputs is not None and outputs.to_stdout and args.format != "table")
    try:
        for path in tqdm(args.files, disable=len(args.files) < 2 or quiet, unit="file"):
            try:
                recording = asyncio.run(
                    classify_recording(
                        service,
                        asyncio.to_thread(path.read_bytes),
                        channels=args.channels,
                        quality=args.quality,
                    )
                )
            except (OSError, UploadError) as exc:
                failures += 1
                print(f"{path}: error: {exc}", file=sys.stderr)
                continue
            report = {"file": str(path), **recording.body()}
            if outputs is None:
                reports.append(report)
                continue
            out, new = outputs.open(str(path))
            if new or shared is None:
                separate = args.channels == "separate"
                shared = writer(
                    args.format, _ProgressSafe(out), labels, args.quality, channels=separate
                )
            shared.begin(str(path), report["duration_ms"])
            for segment in report["segments"]:
                shared.write(record(segment, str(path)))
            shared.end(report["summary"])
            if isinstance(shared, TableWriter):
                for part in report.get("channels", []):
                    shared.channel_summary(part["channel"], part["summary"])
            outputs.done(out)
    finally:
        service.stop()
        if outputs is not None:
            outputs.close()
    if args.json:
        print(json.dumps({"model": model, "files": reports}, indent=2))
    return EXIT_FAILED if failures else EXIT_OK


class _ProgressSafe:
    """Writes to standard output through tqdm, so lines do not break a progress bar."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._buffer = ""

    def write(self, text: str) -> int:
        if self._out is not sys.stdout:
            return self._out.write(text)
        from tqdm import tqdm

        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            tqdm.write(line, file=sys.stdout)
        return len(text)

    def flush(self) -> None:
        self._out.flush()


def stream(args: argparse.Namespace) -> int:
    import soundfile as sf
    import websockets

    from client.websocket import (
        Reconnect,
        ServerMessageError,
        load_pcm16,
        stream_chunks,
        stream_pcm16,
    )

    token = args.token or os.environ.get(TOKEN_ENV) or None
    from_stdin = args.file == "-"
    if not from_stdin and (args.sample_rate is not None or args.encoding is not None):
        raise UsageError("--sample-rate and --encoding describe raw audio on standard input (-)")
    if from_stdin and args.reconnect:
        raise UsageError("--reconnect needs a file: audio from standard input cannot be replayed")
    if not from_stdin:
        try:
            pcm, rate = load_pcm16(Path(args.file), args.channels)
        except (OSError, sf.SoundFileError, ValueError) as exc:
            print(f"{args.file}: error: {exc}", file=sys.stderr)
            return EXIT_FAILED

    outputs = None if args.json else Outputs(args.output, args.format, 1)
    sink: dict[str, Any] = {}

    def show(message: dict[str, Any]) -> None:
        kind = message.get("type")
        if args.json:
            print(json.dumps(message), flush=True)
            return
        assert outputs is not None
        if kind == "ready" and "writer" not in sink:
            out, _ = outputs.open(args.file)
            labels = message.get("model", {}).get("labels", [])
            sink["out"] = out
            sink["writer"] = writer(
                args.format, out, labels, args.quality, channels=args.channels == 2
            )
            sink["writer"].begin(args.file, None)
        elif kind in ("result", "skipped", "partial") and "writer" in sink:
            sink["writer"].write(record(message, args.file))
        elif kind == "error":
            print(
                f"emostream: the server said {message.get('code')}: {message.get('message')}",
                file=sys.stderr,
            )

    def retrying(reason: str, delay_s: float) -> None:
        print(f"emostream: {reason}; reconnecting in {delay_s:.1f} s", file=sys.stderr)

    speed = 0.0 if args.fast else args.speed
    url = _with_quality(args.url) if args.quality else args.url
    try:
        if from_stdin:
            report = asyncio.run(
                stream_chunks(
                    url,
                    _stdin_chunks(),
                    args.sample_rate or DEFAULT_RATE_HZ,
                    encoding=args.encoding or "pcm_s16le",
                    channels=args.channels,
                    token=token,
                    interim_ms=args.interim_ms,
                    on_message=show,
                )
            )
        else:
            report = asyncio.run(
                stream_pcm16(
                    url,
                    pcm,
                    rate,
                    speed=speed,
                    token=token,
                    interim_ms=args.interim_ms,
                    on_message=show,
                    reconnect=Reconnect() if args.reconnect else None,
                    on_retry=retrying,
                )
            )
    except (OSError, TimeoutError, ValueError, websockets.WebSocketException) as exc:
        kind = "bad message from" if isinstance(exc, ServerMessageError) else "cannot stream to"
        print(f"emostream: {kind} {args.url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if "writer" in sink:
            sink["writer"].end(None)
        if outputs is not None:
            if "out" in sink:
                outputs.done(sink["out"])
            outputs.close()
    if report.gave_up is not None:
        print(f"emostream: gave up reconnecting: {report.gave_up}", file=sys.stderr)
        return EXIT_FAILED
    if report.close_code != 1000:
        print(f"emostream: the server closed with {report.close_code}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def _stdin_chunks(chunk_bytes: int = 4096) -> AsyncIterator[bytes]:
    """Standard input's bytes as they arrive. A daemon thread does the blocking reads, so a
    stream the server ends early does not wait for the pipe (``arecord`` never ends). It
    reads the file descriptor itself: a daemon thread blocked inside ``sys.stdin.buffer``
    holds that object's lock, and the interpreter aborts at exit when it finds it held."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
    fd = sys.stdin.fileno()

    def pump() -> None:
        while True:
            data = os.read(fd, chunk_bytes)
            try:
                asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
            except RuntimeError:  # the stream is over and its event loop closed
                return
            if not data:
                return

    threading.Thread(target=pump, name="emostream-stdin", daemon=True).start()
    while data := await queue.get():
        yield data


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


def _sample_rate(text: str) -> int:
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else -1
    if not MIN_SAMPLE_RATE_HZ <= value <= MAX_SAMPLE_RATE_HZ:
        raise argparse.ArgumentTypeError(
            f"sample rate must be an integer from {MIN_SAMPLE_RATE_HZ} to {MAX_SAMPLE_RATE_HZ} "
            f"Hz, got {text!r}"
        )
    return value


def _output_options(p: argparse.ArgumentParser, many: bool) -> None:
    p.add_argument(
        "--quality",
        action="store_true",
        help="ask for signal quality (quality=1): each result gains uncertain, warnings and "
        "the measures (JSON lines fields, CSV columns, a WebVTT note; see docs/quality.md)",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="output: a table for people, JSON lines, CSV or WebVTT (one record per segment, "
        "the same fields in each; see docs/cli.md)",
    )
    where = (
        "a file, or a directory (existing, or ending in /) for a file per input"
        if many
        else "a file, or a directory (existing, or ending in /)"
    )
    p.add_argument(
        "-o",
        "--output",
        type=str,  # not Path, which drops the trailing "/" that asks for a directory
        metavar="PATH",
        help=f"write the records to {where} (default: standard output)",
    )


def register(command: AddCommand) -> None:
    p = command("classify", "classify recordings offline, with the server's segmentation and model")
    p.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="audio files (WAV, FLAC, OGG …)"
    )
    model_options(p)
    _output_options(p, many=True)
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document for all files at the end (the upload reply per file) "
        "instead of records",
    )
    p.add_argument(
        "--channels",
        choices=CHANNEL_MODES,
        default="mix",
        help="mix: a stereo file is mixed to mono; separate: each channel of a mono or "
        "two-channel file (the parties of a call) is classified on its own, and every "
        "record names its channel",
    )
    p.set_defaults(func=classify)

    p = command(
        "stream",
        "stream a recording, or raw PCM from standard input, to a server and print results",
    )
    p.add_argument(
        "file",
        metavar="FILE",
        help="audio file, or - for raw audio on standard input (with --sample-rate, --encoding)",
    )
    p.add_argument(
        "--url", default="ws://127.0.0.1:8000/v1/stream", help="the server's stream endpoint"
    )
    p.add_argument(
        "--token",
        help=f"access token, when the server needs one (default: ${TOKEN_ENV}); "
        "prefer the environment: a command line is visible to other users",
    )
    p.add_argument(
        "--speed", type=_speed, default=1.0, help="pace a file as a multiple of real time"
    )
    p.add_argument("--fast", action="store_true", help="send a file as fast as the server reads")
    p.add_argument(
        "--sample-rate",
        type=_sample_rate,
        metavar="HZ",
        help=f"rate of the raw PCM on standard input (default: {DEFAULT_RATE_HZ})",
    )
    p.add_argument(
        "--encoding",
        choices=ENCODINGS,
        help="sample format of the raw audio on standard input, little-endian PCM or "
        "G.711 (mulaw, alaw: one byte a sample, usually at 8000 Hz) (default: pcm_s16le)",
    )
    p.add_argument(
        "--channels",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: a stereo file, or interleaved stereo on standard input, streamed as two "
        "talkers, each classified on its own; every record names its channel",
    )
    p.add_argument(
        "--interim-ms",
        type=_interim_ms,
        default=0,
        metavar="N",
        help=f"ask for partial results every N ms of speech (0 = off, or "
        f"{MIN_INTERIM_MS}-{MAX_INTERIM_MS}); in the table and JSON lines, marked partial",
    )
    _output_options(p, many=False)
    p.add_argument(
        "--json",
        action="store_true",
        help="print every protocol message as the server sent it, instead of records",
    )
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="when the server ends the stream early (busy, a lost connection), reconnect "
        "with backoff and go on from the audio not yet sent (files only)",
    )
    p.set_defaults(func=stream)
