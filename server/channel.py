"""One talker of a WebSocket session: its own voice detector, segments, partials and endpoint.

A mono session has one channel; with ``channels=2`` each interleaved channel is one of
these, and every message it gives carries its ``channel`` number.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import vad
from server.early import EarlyEnd
from server.interim import Interim
from server.protocol import Partial, ServerMessage, StreamParams
from server.service import Service

Send = Callable[[ServerMessage], Awaitable[None]]
M = TypeVar("M", bound=ServerMessage)


class Channel:
    def __init__(
        self,
        index: int | None,
        service: Service,
        params: StreamParams,
        send: Send,
        *,
        client: str,
        session: str,
    ) -> None:
        self.index = index
        # The pool shares one client's place fairly among that client's streams.
        self.stream = session if index is None else f"{session}/{index}"
        self._send = send
        quality = params.quality == 1
        self.detector = service.new_detector()
        self.segmenter = vad.StreamSegmenter(
            service.segmenter_config, params.sample_rate, params.encoding, detector=self.detector
        )
        self.segments = 0
        self.last: asyncio.Task[None] | None = None  # the newest segment's outcome task
        self.early = (
            EarlyEnd(service.pool, client=client, stream=self.stream, quality=quality)
            if service.settings.early_endpoint
            else None
        )
        self.interim = (
            Interim(
                params.interim_ms,
                service.segmenter_config.sample_rate_hz,
                service.pool,
                service.metrics,
                self._send_partial,
                client=client,
                stream=self.stream,
                quality=quality,
            )
            if params.interim_ms
            else None
        )

    def tag(self, message: M) -> M:
        """``message`` with this channel's number (unchanged on a mono session)."""
        if self.index is None:
            return message
        return dataclasses.replace(message, channel=self.index)  # type: ignore[arg-type]

    def after_audio(self) -> None:
        """Let partials and the early endpoint see the audio segmented so far."""
        if self.interim is not None:
            self.interim.update(self.segments, self.segmenter.in_progress())
        if self.early is not None:
            self.early.update(self.segmenter.tentative_end())

    def close(self) -> list[asyncio.Task[Any]]:
        """Stop partials and early work: the tasks in flight, for the caller to cancel."""
        tasks: list[asyncio.Task[Any]] = []
        partial = self.interim.close() if self.interim is not None else None
        if partial is not None:
            tasks.append(partial)
        early = self.early.close() if self.early is not None else None
        if early is not None:
            tasks.append(early)
        return tasks

    async def _send_partial(self, partial: Partial) -> None:
        await self._send(self.tag(partial))
