"""Bridge a call platform's media stream to emostream's ``/v1/stream`` (docs/telephony.md).

Call platforms fork a call's audio to a WebSocket server of yours as JSON text messages,
with the audio as base64 G.711 μ-law at 8 kHz inside. This bridge is that server: for each
call that connects it opens one emostream stream per track (party) with
``encoding=mulaw&sample_rate=8000``, forwards the decoded bytes as they come, and prints
every emostream message as one JSON line tagged with the call and the track.

The messages it reads (the common shape; rename the fields for your platform):

    {"event": "start", "start": {"callSid": "CA12…"}}
    {"event": "media", "media": {"track": "inbound", "payload": "<base64 μ-law>"}}
    {"event": "stop"}

Run it:

    python examples/telephony_bridge.py --listen 0.0.0.0:8765 \\
        --emostream ws://127.0.0.1:8000/v1/stream --token "$EMOSTREAM_TOKEN"

A sketch for a guide, not a product integration: no authentication of the platform, no
reconnects, results only printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection, serve

Emit = Callable[[dict[str, Any]], None]
# Seconds to wait for emostream's last results after a call's stop, and for a send to it.
FINISH_TIMEOUT_S = 30.0
SEND_TIMEOUT_S = 10.0


def stream_url(base: str, token: str | None) -> str:
    query = {"encoding": "mulaw", "sample_rate": "8000"}
    if token:
        query["token"] = token
    return f"{base}?{urlencode(query)}"


class Call:
    """One call: an emostream stream per track, opened when the track's first audio comes."""

    def __init__(self, url: str, emit: Emit) -> None:
        self._url = url
        self._emit = emit
        self.call_id = ""
        self._streams: dict[str, ClientConnection] = {}
        self._readers: list[asyncio.Task[None]] = []

    async def on_message(self, text: str | bytes) -> None:
        try:
            message = json.loads(text)
            event = message["event"]
        except (ValueError, TypeError, KeyError):
            print(
                f"bridge: ignoring a message that is not a media event: {text!r:.80}",
                file=sys.stderr,
            )
            return
        if event == "start":
            self.call_id = str(message.get("start", {}).get("callSid", ""))
        elif event == "media":
            media = message.get("media", {})
            try:
                audio = base64.b64decode(media["payload"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                print("bridge: ignoring a media message without a base64 payload", file=sys.stderr)
                return
            stream = await self._stream(str(media.get("track", "inbound")))
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await stream.send(audio)
        elif event == "stop":
            await self.finish()

    async def finish(self) -> None:
        """No more audio: ask every stream for its last results and wait for them."""
        for stream in self._streams.values():
            with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await stream.send(json.dumps({"type": "end"}))
        if self._readers:
            await asyncio.wait(self._readers, timeout=FINISH_TIMEOUT_S)
        for stream in self._streams.values():
            await stream.close()
        self._streams.clear()
        self._readers.clear()

    async def _stream(self, track: str) -> ClientConnection:
        if track not in self._streams:
            stream = await websockets.connect(self._url, open_timeout=10)
            self._streams[track] = stream
            self._readers.append(asyncio.create_task(self._read(track, stream)))
        return self._streams[track]

    async def _read(self, track: str, stream: ClientConnection) -> None:
        try:
            async for text in stream:
                self._emit({"call": self.call_id, "track": track, **json.loads(text)})
        except websockets.ConnectionClosed:
            pass


async def handle(platform: ServerConnection, url: str, emit: Emit) -> None:
    call = Call(url, emit)
    try:
        async for message in platform:
            await call.on_message(message)
    finally:
        await call.finish()


def print_line(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--listen", default="127.0.0.1:8765", help="HOST:PORT to serve the platform"
    )
    parser.add_argument(
        "--emostream", default="ws://127.0.0.1:8000/v1/stream", help="emostream's stream URL"
    )
    parser.add_argument("--token", help="emostream's access token, if it needs one")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    url = stream_url(args.emostream, args.token)
    async with serve(lambda ws: handle(ws, url, print_line), host, int(port)) as server:
        bound = next(iter(server.sockets)).getsockname()
        print(f"bridge: listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
