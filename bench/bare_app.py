"""A bare Starlette WebSocket endpoint under the same uvicorn settings as the real server.

Baseline for the memory benchmark: what an idle connection costs in the framework alone
(uvicorn, the websockets protocol, Starlette), before any emostream session state.

    .venv/bin/python -m bench.bare_app --port 8100
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.runner import uvicorn_config
from server.settings import Settings


async def hold(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_json({"type": "ready"})
    try:
        while True:
            await ws.receive_bytes()
    except WebSocketDisconnect:
        return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = Starlette(routes=[WebSocketRoute("/v1/stream", hold)])
    config = uvicorn_config(app, Settings(), args.host, args.port)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
