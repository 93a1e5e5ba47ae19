"""The event-loop lag probe and the per-kind message counter in /metrics.

No timing is asserted beyond what the test itself forces: a loop blocked for 300 ms
must show a probe at least 200 ms late (the probe was due at most 50 ms into it).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram

from server import loop_lag


class Recorder:
    """Stands in for the histogram: keeps each observation, wakes whoever waits for one."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.changed = asyncio.Event()

    def observe(self, value: float) -> None:
        self.values.append(value)
        self.changed.set()

    async def next(self) -> None:
        self.changed.clear()
        await asyncio.wait_for(self.changed.wait(), 10)


def test_a_blocked_loop_shows_as_lag() -> None:
    recorder = Recorder()

    async def scenario() -> None:
        probe = asyncio.create_task(loop_lag.watch(recorder, interval_s=0.05))  # type: ignore[arg-type]
        await recorder.next()  # the probe has run once: the next is due within 50 ms
        time.sleep(0.3)  # noqa: ASYNC251 — the point: nothing else runs meanwhile
        await recorder.next()
        probe.cancel()
        await asyncio.wait({probe})

    asyncio.run(scenario())
    assert recorder.values[-1] >= 0.2  # due at most 50 ms into the 300 ms block
    assert all(value >= 0 for value in recorder.values)


def test_the_probe_needs_a_positive_interval() -> None:
    histogram = Histogram("lag", "probe", registry=CollectorRegistry())
    with pytest.raises(ValueError, match="positive"):
        asyncio.run(loop_lag.watch(histogram, interval_s=0))


def test_metrics_count_messages_by_kind_and_probe_the_loop(make_client: Any) -> None:
    client = make_client()
    with client.websocket_connect("/v1/stream") as ws:
        assert json.loads(ws.receive_text())["type"] == "ready"
        for _ in range(5):
            ws.send_bytes(b"\x00\x00" * 320)
        ws.send_text(json.dumps({"type": "flush"}))
        ws.send_text("not json")
        assert json.loads(ws.receive_text())["code"] == "bad_message"
        ws.send_text(json.dumps({"type": "end"}))
        while json.loads(ws.receive_text())["type"] != "end":
            pass
    text = client.get("/metrics").text
    assert 'emostream_ws_messages_total{kind="binary"} 5.0' in text
    assert 'emostream_ws_messages_total{kind="text"} 3.0' in text
    # the probe runs from the start of the lifespan: it has reported by now
    deadline = time.monotonic() + 30
    while "emostream_event_loop_lag_seconds_count 0.0" in client.get("/metrics").text:
        assert time.monotonic() < deadline, "the loop-lag probe never reported"
        time.sleep(0.05)
