"""Partial results (``interim_ms``, the ``partial`` message), in-process and over a socket."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from classifier.inference import Audio, OnnxClassifier, Scores
from client.websocket import stream_pcm16
from server.settings import Settings
from tests.live import live_server
from tests.server.conftest import collect, send_audio, types
from tests.speech import espeak, silence, to_pcm16

END = json.dumps({"type": "end"})
FLUSH = json.dumps({"type": "flush"})


@pytest.fixture(scope="module")
def long_talk() -> np.ndarray:
    """One long utterance (cut into several segments) and a short one, 16 kHz."""
    return np.concatenate(
        [
            silence(0.3),
            espeak(
                "This is a long sentence that keeps going on and on "
                "without any pause at all for a good while",
                rate_wpm=150,
            ),
            silence(1.0),
            espeak("Then a short one.", rate_wpm=170),
            silence(1.0),
        ]
    )


def stream(client: Any, audio: np.ndarray, query: str = "") -> tuple[dict[str, Any], list[Any]]:
    with client.websocket_connect(f"/v1/stream{query}") as ws:
        ready = json.loads(ws.receive_text())
        send_audio(ws, to_pcm16(audio))
        ws.send_text(END)
        messages, code = collect(ws)
    assert code == 1000
    return ready, messages


def check_partials(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The protocol's rules for partials; returns them."""
    finals = {m["segment"]: i for i, m in enumerate(messages) if m["type"] in ("result", "skipped")}
    partials = [(i, m) for i, m in enumerate(messages) if m["type"] == "partial"]
    for position, partial in partials:
        segment = partial["segment"]
        assert segment in finals, "every partial's segment gets its final"
        assert position < finals[segment], "a partial never follows its segment's final"
        final = messages[finals[segment]]
        assert final["type"] == "result", "no partial for a segment that ends skipped"
        assert partial["start_ms"] == final["start_ms"]
        assert partial["end_ms"] - partial["start_ms"] >= 500
        assert set(partial) == set(final)
        assert sum(partial["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert partial["label"] == max(partial["scores"], key=partial["scores"].__getitem__)
        assert partial["confidence"] == partial["scores"][partial["label"]]
        assert isinstance(partial["latency_ms"], int) and partial["latency_ms"] >= 0
    by_segment: dict[int, list[int]] = {}
    for _, partial in partials:
        by_segment.setdefault(partial["segment"], []).append(partial["end_ms"])
    for ends in by_segment.values():
        assert all(a < b for a, b in pairwise(ends)), "end_ms increases"
    return [m for _, m in partials]


def test_no_partials_without_the_parameter(make_client: Any, long_talk: np.ndarray) -> None:
    ready, messages = stream(make_client(), long_talk)
    assert ready["interim_ms"] == 0
    assert "partial" not in types(messages)
    assert types(messages).count("result") >= 2
    ready, messages = stream(make_client(), long_talk, "?interim_ms=0")
    assert ready["interim_ms"] == 0
    assert "partial" not in types(messages)


@pytest.mark.parametrize("interim_ms", [250, 1000, 3000])
def test_ready_echoes_interim_ms(make_client: Any, interim_ms: int) -> None:
    with make_client().websocket_connect(f"/v1/stream?interim_ms={interim_ms}") as ws:
        assert json.loads(ws.receive_text())["interim_ms"] == interim_ms


def test_partials_come_before_their_final_with_growing_ends(
    make_client: Any, long_talk: np.ndarray
) -> None:
    client = make_client()
    _, messages = stream(client, long_talk, "?interim_ms=250")
    partials = check_partials(messages)
    segments = {p["segment"] for p in partials}
    assert len(segments) >= 2  # the cut long utterance and the short one
    assert max(len([p for p in partials if p["segment"] == s]) for s in segments) >= 2
    metrics = client.get("/metrics").text
    assert f"emostream_partials_computed_total {float(len(partials))}" in metrics


def test_partials_are_one_per_interim_of_audio(make_client: Any, long_talk: np.ndarray) -> None:
    _, fine = stream(make_client(), long_talk, "?interim_ms=250")
    _, coarse = stream(make_client(), long_talk, "?interim_ms=1000")
    check_partials(coarse)
    assert 0 < types(coarse).count("partial") < types(fine).count("partial")
    # Sent as fast as possible, in-process: every due partial is computed at 1000 ms.
    for segment in {m["segment"] for m in coarse if m["type"] == "result"}:
        final = next(m for m in coarse if m["type"] == "result" and m["segment"] == segment)
        count = sum(m["type"] == "partial" and m["segment"] == segment for m in coarse)
        assert count <= (final["end_ms"] - final["start_ms"] + 1000) // 1000 + 1


def test_no_partial_for_a_segment_that_ends_too_short(make_client: Any) -> None:
    # 0.45 s of speech: with pre-padding and hangover more than 500 ms of audio joins
    # the segment, but the segment itself ends under min_segment_ms.
    blip = np.concatenate([silence(0.5), espeak("Hello there.")[:7200], silence(1.5)])
    _, messages = stream(make_client(min_segment_ms=900), blip, "?interim_ms=250")
    found = [m for m in messages if m["type"] in ("result", "skipped")]
    assert found and all(m["type"] == "skipped" and m["reason"] == "too_short" for m in found)
    assert "partial" not in types(messages)


@pytest.mark.parametrize("value", ["-1", "100", "249", "3001", "99999", "abc", "", "1e3", "٣٠٠"])
def test_invalid_interim_ms_is_refused(make_client: Any, value: str) -> None:
    with make_client().websocket_connect(f"/v1/stream?interim_ms={value}") as ws:
        messages, code = collect(ws)
    assert code == 1008
    assert len(messages) == 1
    assert messages[0]["type"] == "error" and messages[0]["code"] == "bad_request"
    assert "interim_ms" in messages[0]["message"]
    assert "250" in messages[0]["message"] and "3000" in messages[0]["message"]


class HoldFirst:
    """Runs the real model; the first call waits for ``gate`` (it is the first partial)."""

    def __init__(self, inner: OnnxClassifier, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.manifest = inner.manifest
        self.gate = threading.Event()
        self.started = threading.Event()
        self.delay_s = delay_s
        self.calls = 0
        self._lock = threading.Lock()

    def predict(self, audio: Audio) -> Scores:
        with self._lock:
            first, self.calls = self.calls == 0, self.calls + 1
        if first:
            self.started.set()
            assert self.gate.wait(30)
        time.sleep(self.delay_s)
        return self.inner.predict(audio)


@pytest.mark.parametrize("ending", ["flush", "end"])
def test_flush_or_end_with_a_partial_in_flight(
    make_client: Any, one_utterance: np.ndarray, ending: str
) -> None:
    holder: dict[str, HoldFirst] = {}

    def loader(path: Path) -> HoldFirst:
        holder["c"] = HoldFirst(OnnxClassifier(path))
        return holder["c"]

    client = make_client(loader=loader, workers=2)
    classifier = holder["c"]
    pcm = to_pcm16(one_utterance)
    with client.websocket_connect("/v1/stream?interim_ms=250") as ws:
        ws.receive_text()
        send_audio(ws, pcm[: 16000 * 2 * 3 // 2])  # 1.5 s: the utterance is in progress
        assert classifier.started.wait(10), "no partial was started"
        ws.send_text(FLUSH if ending == "flush" else END)
        # The final does not wait for the partial stuck in the model.
        before: list[dict[str, Any]] = []
        while not before or before[-1]["type"] != "result":
            before.append(json.loads(ws.receive_text()))
        classifier.gate.set()
        if ending == "flush":
            ws.send_text(END)
        after, code = collect(ws)
    assert code == 1000
    messages = before + after
    check_partials(messages)
    assert [m["segment"] for m in messages if m["type"] == "result"] == [0]
    assert "partial" not in types(after)
    assert after[-1]["type"] == "end"
    metrics = client.get("/metrics").text
    assert 'emostream_partials_dropped_total{reason="final"} 1.0' in metrics


def test_a_partial_stuck_in_the_model_costs_no_final_its_place(
    make_client: Any, one_utterance: np.ndarray
) -> None:
    holder: dict[str, HoldFirst] = {}

    def loader(path: Path) -> HoldFirst:
        holder["c"] = HoldFirst(OnnxClassifier(path))
        return holder["c"]

    # One worker and one queue place: room for exactly the session's two pending finals.
    client = make_client(loader=loader, workers=1, queue_size=1, max_pending_segments=2)
    classifier = holder["c"]
    pcm = to_pcm16(one_utterance)
    with client.websocket_connect("/v1/stream?interim_ms=250") as ws:
        ws.receive_text()
        send_audio(ws, pcm[: 16000 * 2 * 3 // 2])
        assert classifier.started.wait(10), "no partial was started"
        send_audio(ws, pcm[16000 * 2 * 3 // 2 :] + pcm)  # both utterances end
        ends = 0
        while ends < 2:  # both finals are in the pool, behind the partial in the worker
            ends += json.loads(ws.receive_text())["type"] == "speech_end"
        classifier.gate.set()
        ws.send_text(END)
        messages, code = collect(ws)
    assert code == 1000
    finals = [m for m in messages if m["type"] in ("result", "skipped")]
    assert [(m["segment"], m["type"]) for m in finals] == [(0, "result"), (1, "result")]


def test_saturated_pool_finals_in_order_and_never_skipped_for_partials(
    make_client: Any, tiny_model_dir: Path, long_talk: np.ndarray, three_utterances: np.ndarray
) -> None:
    slow = HoldFirst(OnnxClassifier(tiny_model_dir), delay_s=0.05)
    slow.gate.set()
    # One worker and room for exactly the session's pending finals: a partial that took a
    # place a final needs would show as a skipped final.
    client = make_client(loader=lambda path: slow, workers=1, queue_size=2, max_pending_segments=3)
    audio = np.concatenate([long_talk, three_utterances, long_talk])
    _, messages = stream(client, audio, "?interim_ms=250")
    finals = [m for m in messages if m["type"] in ("result", "skipped")]
    assert [m["segment"] for m in finals] == list(range(len(finals)))
    assert len(finals) >= 8
    overloaded = [m for m in finals if m.get("reason") == "overloaded"]
    assert overloaded == []
    assert all(m["type"] == "result" or m["reason"] == "too_short" for m in finals)
    assert sum(m["type"] == "result" for m in finals) >= 6
    check_partials(messages)
    metrics = client.get("/metrics").text
    dropped = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("emostream_partials_dropped_total")
    )
    assert dropped > 0  # the pool was busy: partials were given up, finals were not


def test_partials_over_a_real_socket_with_the_reference_client(
    tiny_model_dir: Path, long_talk: np.ndarray
) -> None:
    pcm = to_pcm16(long_talk)
    samples = np.frombuffer(pcm, dtype="<i2")
    with live_server(Settings(model_dir=tiny_model_dir)) as server:
        report = asyncio.run(stream_pcm16(server.ws_url, samples, 16000, speed=4, interim_ms=250))
        plain = asyncio.run(stream_pcm16(server.ws_url, samples, 16000, speed=0))
        refused = asyncio.run(stream_pcm16(server.ws_url, samples, 16000, interim_ms=100))
    assert report.close_code == 1000
    assert report.messages[0]["interim_ms"] == 250
    assert report.partials == check_partials(report.messages)
    assert report.partials
    assert [m["segment"] for m in report.finals] == list(range(len(report.finals)))
    assert plain.partials == [] and plain.messages[0]["interim_ms"] == 0
    assert refused.close_code == 1008
    assert refused.of_type("error")[0]["code"] == "bad_request"
    assert "interim_ms" in refused.of_type("error")[0]["message"]
