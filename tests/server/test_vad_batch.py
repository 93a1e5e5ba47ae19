"""Silero frames of all streams batched in the service (vad/batch.py): on by default, the
same results as each stream deciding its own frames, a batch fault handled like a
detector fault, metrics, and the settings that turn it off."""

from __future__ import annotations

import re
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.server.streams import outcomes, stream_all
from vad.silero import SileroModel

Float32 = npt.NDArray[np.float32]


class FailingModel:
    """The real Silero model, failing on the calls a test chooses."""

    def __init__(self, inner: SileroModel, failing: set[int]) -> None:
        self.inner, self.failing, self.calls = inner, failing, 0
        self.lock = threading.Lock()

    def run(self, windows: Float32, state: Float32) -> tuple[Float32, Float32]:
        with self.lock:
            call, self.calls = self.calls, self.calls + 1
        if call in self.failing:
            raise RuntimeError("scripted batch fault")
        return self.inner.run(windows, state)


def counter(text: str, name: str) -> float:
    match = re.search(rf"^{name}_total (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_batched_and_inline_streams_give_the_same_messages(
    make_client: Any, three_utterances: Float32
) -> None:
    batched = make_client()
    inline = make_client(vad_batch=0)
    assert batched.app.state.service.vad_batcher is not None
    assert inline.app.state.service.vad_batcher is None
    _, got, code = stream_all(batched, three_utterances)
    _, want, _ = stream_all(inline, three_utterances)
    assert code == 1000
    assert [m for m in got if m["type"] != "result"] == [m for m in want if m["type"] != "result"]
    assert [(o["start_ms"], o["end_ms"], o["label"]) for o in outcomes(got)] == [
        (o["start_ms"], o["end_ms"], o["label"]) for o in outcomes(want)
    ]
    assert len(outcomes(got)) == 3

    metrics = batched.get("/metrics").text
    frames = counter(metrics, "emostream_vad_frames")
    assert frames == len(three_utterances) // 512  # every whole frame but the last, padded one
    assert 1 <= counter(metrics, "emostream_vad_calls") <= frames


def test_a_batch_fault_reports_internal_and_the_stream_goes_on(
    make_client: Any, three_utterances: Float32
) -> None:
    client = make_client()
    batcher = client.app.state.service.vad_batcher
    _, clean, _ = stream_all(client, three_utterances)
    batcher.model = FailingModel(batcher.model, failing={30, 31})
    _, messages, code = stream_all(client, three_utterances)
    assert code == 1000
    errors = [m for m in messages if m["type"] == "error"]
    assert 1 <= len(errors) <= 2
    assert all(e["code"] == "internal" for e in errors)
    assert "voice detector failed" in errors[0]["message"]
    assert messages[-1]["type"] == "end"
    # The failed frames count as unvoiced: the same utterances, give or take their edges.
    starts = [m["t_ms"] for m in messages if m["type"] == "speech_start"]
    assert np.allclose(starts, [m["t_ms"] for m in clean if m["type"] == "speech_start"], atol=100)
    assert len(outcomes(messages)) == len(outcomes(clean)) == 3


def test_webrtcvad_and_batch_zero_need_no_batcher(make_client: Any) -> None:
    assert make_client(vad_detector="webrtc").app.state.service.vad_batcher is None
    assert make_client(vad_batch=0).app.state.service.vad_batcher is None
