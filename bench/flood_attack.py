"""The other side of bench/flood.py, run as its own process: message floods, or uploads.

``floods``: three WebSocket connections from one client address (``--address``, sent as
``X-Forwarded-For`` to a server that trusts loopback as its proxy), each re-opened as soon
as the server closes it:

- ``frames``: 2-byte binary frames (one sample each) as fast as the socket takes them;
- ``flush``: ``{"type": "flush"}`` as fast as the socket takes them;
- ``junk``: 60 KB text frames that are not JSON.

The frames are encoded (and masked) once and written in blocks of about 64 KB: the cost of
making them stays out of the way, so the server, not this process, sets the pace. Each
connection's end is recorded: the close code, the last ``error`` before it (the limit it
names), the messages written before the close arrived and the ``error`` replies.

``uploads``: ``--clients`` upload clients, each with its own address (``X-Forwarded-For``
``10.0.2.N``) and ``--lanes`` uploads at a time (at most the per-address cap), each lane
posting the WAV clips of ``--clips`` in turn; a ``503`` is retried after its
``Retry-After``. Counted: replies by status, audio seconds classified, and each upload's
time. No new upload starts after the deadline; those under way finish.

Both start at ``--start-at`` (a ``time.time()`` instant), stop ``--seconds`` later and
write their JSON to ``--result``.

    .venv/bin/python -m bench.flood_attack floods --url ws://... --start-at T --seconds 20 \
        --result floods.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

KINDS = ("frames", "flush", "junk")
BLOCK_BYTES = 65_536
JUNK_BYTES = 60 * 1024
STEP_TIMEOUT_S = 10.0  # connect, handshake, one block's drain: a stuck step ends the connection
_SETTING = re.compile(r"\b(max_\w+)")


def payload(kind: str) -> Frame:
    if kind == "frames":
        return Frame(Opcode.BINARY, b"\x00\x00")
    if kind == "flush":
        return Frame(Opcode.TEXT, b'{"type": "flush"}')
    if kind == "junk":
        return Frame(Opcode.TEXT, b"x" * JUNK_BYTES)
    raise ValueError(f"flood kind must be one of {KINDS}, got {kind!r}")


def block(kind: str) -> tuple[bytes, int]:
    """Masked frames of ``kind`` making about BLOCK_BYTES, and how many frames that is."""
    frame = payload(kind)
    one = len(frame.serialize(mask=True))
    count = max(1, BLOCK_BYTES // one)
    return b"".join(frame.serialize(mask=True) for _ in range(count)), count


class Connection:
    """One flooding connection, from the handshake to the server's close."""

    def __init__(self, url: str, address: str) -> None:
        self.proto = ClientProtocol(parse_uri(url), max_size=None)
        request = self.proto.connect()
        request.headers["X-Forwarded-For"] = address
        self.proto.send_request(request)
        self.sent = 0
        self.replies: Counter[str] = Counter()  # error codes of the server's messages
        self.last_error: dict[str, Any] | None = None
        self.closed = asyncio.Event()
        self.status: int | None = None
        self.opened = time.monotonic()

    async def open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), STEP_TIMEOUT_S)
        writer.write(b"".join(self.proto.data_to_send()))
        while self.proto.state is State.CONNECTING:
            data = await asyncio.wait_for(reader.read(65_536), STEP_TIMEOUT_S)
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")
            self.proto.receive_data(data)
        self._take(writer)
        return reader, writer

    def _take(self, writer: asyncio.StreamWriter) -> None:
        for event in self.proto.events_received():
            if isinstance(event, Response):
                self.status = event.status_code
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                message = json.loads(event.data)
                if message.get("type") == "error":
                    self.replies[message.get("code", "?")] += 1
                    self.last_error = message
            elif isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                self.closed.set()
        out = self.proto.data_to_send()  # the close reply, pongs
        if out and not writer.is_closing():
            writer.write(b"".join(out))
        if self.proto.state is State.CLOSED or self.proto.handshake_exc is not None:
            self.closed.set()

    async def receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                data = await reader.read(65_536)
            except OSError:
                data = b""
            if not data:
                self.proto.receive_eof()
                self._take(writer)
                self.closed.set()
                return
            self.proto.receive_data(data)
            self._take(writer)

    def outcome(self, kind: str, ended_by_us: bool) -> dict[str, Any]:
        error = self.last_error or {}
        limit = _SETTING.search(error.get("message", ""))
        if self.status is not None and self.status != 101:
            reason = f"http {self.status}"
        elif ended_by_us:
            reason = "reset at the deadline"
        else:
            code = self.proto.close_rcvd.code if self.proto.close_rcvd is not None else None
            reason = f"{code if code is not None else 'no close frame'}"
            if error.get("code"):
                reason += f" {error['code']}" + (f" {limit.group(1)}" if limit else "")
        return {
            "kind": kind,
            "reason": reason,
            "sent": self.sent,
            "replies": dict(self.replies),
            "lasted_s": time.monotonic() - self.opened,
        }


async def flood_once(
    kind: str, url: str, address: str, data: bytes, count: int, until: float
) -> dict[str, Any]:
    uri = parse_uri(url)
    conn = Connection(url, address)
    try:
        reader, writer = await conn.open(uri.host, uri.port)
    except (OSError, TimeoutError, ConnectionError) as exc:
        return {"kind": kind, "reason": f"connect failed: {type(exc).__name__}", "sent": 0}
    receiver = asyncio.create_task(conn.receive(reader, writer))
    ended_by_us = False
    try:
        while not conn.closed.is_set() and conn.proto.state is State.OPEN:
            if time.time() >= until:
                # Reset, not closed: what is still in the socket buffers would otherwise
                # reach the server after the attack window (and into the next round).
                ended_by_us = True
                writer.transport.abort()
                break
            writer.write(data)
            conn.sent += count
            await asyncio.wait_for(writer.drain(), STEP_TIMEOUT_S)
        if not ended_by_us:
            await asyncio.wait_for(conn.closed.wait(), STEP_TIMEOUT_S)
    except (OSError, TimeoutError):
        pass  # reset by the server, or it stopped reading: the connection is over either way
    finally:
        writer.close()
        receiver.cancel()
        await asyncio.wait({receiver})
    return conn.outcome(kind, ended_by_us)


async def flooder(kind: str, url: str, address: str, until: float) -> list[dict[str, Any]]:
    data, count = block(kind)
    ends = []
    while time.time() < until:
        ends.append(await flood_once(kind, url, address, data, count, until))
    return ends


def summarise_floods(ends: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    by_kind: dict[str, Any] = {}
    for kind in KINDS:
        mine = [e for e in ends if e["kind"] == kind]
        replies: Counter[str] = Counter()
        for e in mine:
            replies.update(e.get("replies", {}))
        closes = Counter(e["reason"] for e in mine)
        lasted = [e["lasted_s"] for e in mine if "lasted_s" in e]
        by_kind[kind] = {
            "connections": len(mine),
            "reconnects": max(0, len(mine) - 1),
            "messages_sent": sum(e["sent"] for e in mine),
            "messages_sent_per_s": sum(e["sent"] for e in mine) / seconds,
            "closes": dict(closes.most_common()),
            "error_replies": dict(replies),
            "connection_s": {
                "median": float(np.median(lasted)) if lasted else None,
                "max": max(lasted, default=None),
            },
        }
    return {"seconds": seconds, "by_kind": by_kind}


async def run_floods(args: argparse.Namespace) -> dict[str, Any]:
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    until = args.start_at + args.seconds
    started = time.time()
    results = await asyncio.gather(*(flooder(k, args.url, args.address, until) for k in KINDS))
    return summarise_floods([e for r in results for e in r], time.time() - started)


async def upload_lane(
    http: httpx.AsyncClient,
    url: str,
    address: str,
    clips: list[tuple[bytes, float]],
    lane: int,
    until: float,
    log: list[dict[str, Any]],
) -> None:
    turn = lane
    while time.time() < until:
        body, seconds = clips[turn % len(clips)]
        turn += 1
        headers = {"content-type": "audio/wav", "x-forwarded-for": address}
        started = time.monotonic()
        try:
            reply = await http.post(f"{url}/v1/classify", content=body, headers=headers)
            status = str(reply.status_code)
        except httpx.HTTPError as exc:
            log.append({"status": type(exc).__name__, "s": time.monotonic() - started})
            continue
        log.append({"status": status, "s": time.monotonic() - started, "audio_s": seconds})
        if reply.status_code == 503:
            retry = float(reply.headers.get("retry-after", "1"))
            await asyncio.sleep(min(retry, max(0.0, until - time.time())))


def read_clips(folder: Path) -> list[tuple[bytes, float]]:
    clips = []
    for path in sorted(folder.glob("*.wav")):
        clips.append((path.read_bytes(), float(sf.info(path).duration)))
    if not clips:
        raise ValueError(f"no .wav clips in {folder}")
    return clips


async def run_uploads(args: argparse.Namespace) -> dict[str, Any]:
    clips = read_clips(args.clips)
    log: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
        until = args.start_at + args.seconds
        started = time.time()
        await asyncio.gather(
            *(
                upload_lane(
                    http, args.url, f"10.0.2.{c + 1}", clips, c * args.lanes + lane, until, log
                )
                for c in range(args.clients)
                for lane in range(args.lanes)
            )
        )
    done = [e for e in log if e["status"] == "200"]
    return {
        "seconds": time.time() - started,
        "clients": args.clients,
        "lanes_per_client": args.lanes,
        "clip_s": sorted(round(s, 2) for _, s in clips),
        "by_status": dict(Counter(e["status"] for e in log).most_common()),
        "done": len(done),
        "refused": len(log) - len(done),
        "audio_s_classified": sum(e["audio_s"] for e in done),
        "upload_s": [round(e["s"], 3) for e in done],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["floods", "uploads"])
    parser.add_argument(
        "--url", required=True, help="ws://host:port/v1/stream?... or http://host:port"
    )
    parser.add_argument("--start-at", type=float, required=True, help="time.time() to begin")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--address", default="10.66.0.1", help="floods: the client address")
    parser.add_argument("--clients", type=int, default=8, help="uploads: client addresses")
    parser.add_argument("--lanes", type=int, default=1, help="uploads at a time per client")
    parser.add_argument("--clips", type=Path, help="uploads: a folder of WAV clips")
    args = parser.parse_args(argv)
    if args.role == "uploads" and args.clips is None:
        parser.error("uploads need --clips")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    run = run_floods if args.role == "floods" else run_uploads
    # The summary goes to the parent (bench.flood) as the last line on stdout.
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
