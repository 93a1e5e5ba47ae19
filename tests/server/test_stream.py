"""/v1/stream in-process: every message type and field, ordering, errors and close codes."""

from __future__ import annotations

import json
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from starlette.websockets import WebSocketDisconnect

from classifier.inference import OnnxClassifier
from classifier.model import CANONICAL_LABELS
from server.service import Service
from tests.server.conftest import VAD_DETECTORS, ScriptedClassifier, collect, send_audio, types
from tests.server.streams import END, FailingDetector, outcomes, stream_all
from tests.speech import espeak, silence, to_pcm16

FLUSH = json.dumps({"type": "flush"})


@pytest.fixture(params=VAD_DETECTORS)
def vad_detector(request: pytest.FixtureRequest) -> str:
    """The whole protocol suite runs under each voice detector."""
    detector: str = request.param
    return detector


def check_pairs(messages: list[dict[str, Any]]) -> None:
    speech = [m for m in messages if m["type"] in ("speech_start", "speech_end")]
    assert [m["type"] for m in speech] == ["speech_start", "speech_end"] * (len(speech) // 2)
    times = [m["t_ms"] for m in speech]
    assert times == sorted(times)


def test_ready_describes_session_model_and_limits(make_client: Any) -> None:
    client = make_client(max_frame_bytes=4096, idle_timeout_ms=5000)
    with client.websocket_connect("/v1/stream?sample_rate=44100&encoding=pcm_f32le") as ws:
        ready = json.loads(ws.receive_text())
    assert ready["type"] == "ready"
    assert ready["protocol"] == 1
    assert len(ready["session"]) >= 8
    assert ready["sample_rate"] == 44100
    assert ready["encoding"] == "pcm_f32le"
    assert ready["model"]["labels"] == list(CANONICAL_LABELS)
    assert ready["model"]["sample_rate"] == 16000
    assert ready["model"]["name"] == "tiny-test"
    assert ready["model"]["version"]
    assert ready["limits"] == {
        "max_frame_bytes": 4096,
        "max_segment_ms": 3000,
        "max_stream_ms": 3_600_000,
        "idle_timeout_ms": 5000,
    }


def test_full_stream_messages_fields_and_order(
    make_client: Any, three_utterances: np.ndarray
) -> None:
    ready, messages, code = stream_all(make_client(), three_utterances)
    assert code == 1000
    assert messages[-1] == {"type": "end", "segments": 3, "audio_ms": len(three_utterances) // 16}
    check_pairs(messages)
    assert types(messages).count("speech_start") == 3
    found = outcomes(messages)
    assert [o["segment"] for o in found] == list(range(len(found)))
    results = [o for o in found if o["type"] == "result"]
    assert len(results) == 3
    for result in results:
        assert set(result) == {
            "type",
            "segment",
            "start_ms",
            "end_ms",
            "label",
            "confidence",
            "scores",
            "model_version",
            "latency_ms",
        }
        assert list(result["scores"]) == list(CANONICAL_LABELS)
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert result["label"] == max(result["scores"], key=result["scores"].get)
        assert result["confidence"] == result["scores"][result["label"]]
        assert result["model_version"] == ready["model"]["version"]
        assert isinstance(result["latency_ms"], int) and result["latency_ms"] >= 0
        assert 500 <= result["end_ms"] - result["start_ms"] <= 3000
    # Each result follows its utterance's speech_end and lies around it.
    ends = [m["t_ms"] for m in messages if m["type"] == "speech_end"]
    starts = [m["t_ms"] for m in messages if m["type"] == "speech_start"]
    for result, start, end in zip(results, starts, ends, strict=True):
        assert result["start_ms"] <= start < end <= result["end_ms"]


def test_times_are_audio_time_at_the_declared_rate(
    make_client: Any, three_utterances: np.ndarray
) -> None:
    client = make_client()
    _, at16, _ = stream_all(client, three_utterances)
    audio44 = soxr.resample(three_utterances, 16000, 44100).astype(np.float32)
    data = audio44.astype("<f4").tobytes()
    ready, at44, code = stream_all(client, audio44, "?sample_rate=44100&encoding=pcm_f32le", data)
    assert code == 1000
    assert ready["sample_rate"] == 44100
    assert at44[-1]["audio_ms"] == len(audio44) * 1000 // 44100
    starts16 = [m["t_ms"] for m in at16 if m["type"] == "speech_start"]
    starts44 = [m["t_ms"] for m in at44 if m["type"] == "speech_start"]
    assert len(starts16) == len(starts44) == 3
    assert np.allclose(starts16, starts44, atol=40)


def test_flush_ends_the_utterance_now(make_client: Any, one_utterance: np.ndarray) -> None:
    client = make_client()
    speech = one_utterance[: int(16000 * 1.6)]  # cut mid-sentence, no trailing silence
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_text()
        send_audio(ws, to_pcm16(speech))
        ws.send_text(FLUSH)
        flushed = [json.loads(ws.receive_text()) for _ in range(3)]
        assert types(flushed) == ["speech_start", "speech_end", "result"]
        assert flushed[2]["end_ms"] <= 1600
        ws.send_text(FLUSH)  # nothing in progress: nothing happens
        ws.send_text(END)
        rest, code = collect(ws)
    assert rest == [{"type": "end", "segments": 1, "audio_ms": 1600}]
    assert code == 1000


def test_stream_ending_mid_speech_gets_speech_end_before_end(
    make_client: Any, one_utterance: np.ndarray
) -> None:
    _, messages, code = stream_all(make_client(), one_utterance[: int(16000 * 1.6)])
    assert types(messages) == ["speech_start", "speech_end", "result", "end"]
    assert code == 1000


def test_silence_only_stream_has_no_segments(make_client: Any) -> None:
    _, messages, code = stream_all(make_client(), np.zeros(16000 * 2, dtype=np.float32))
    assert messages == [{"type": "end", "segments": 0, "audio_ms": 2000}]
    assert code == 1000


def test_short_blip_is_skipped_too_short(make_client: Any) -> None:
    blip = np.concatenate([silence(0.5), espeak("Hi."), silence(1.0)])
    _, messages, _ = stream_all(make_client(min_segment_ms=1000), blip)
    found = outcomes(messages)
    assert found and all(o["type"] == "skipped" and o["reason"] == "too_short" for o in found)
    assert set(found[0]) == {"type", "segment", "start_ms", "end_ms", "reason"}


def test_long_utterance_is_cut_into_segments_of_at_most_max(make_client: Any) -> None:
    talk = np.concatenate(
        [
            silence(0.3),
            espeak(
                "This is a long sentence that keeps going on and on "
                "without any pause at all for a good while",
                rate_wpm=150,
            ),
            silence(1.0),
        ]
    )
    _, messages, _ = stream_all(make_client(), talk)
    found = outcomes(messages)
    assert len(found) >= 2
    assert all(o["end_ms"] - o["start_ms"] <= 3000 for o in found)
    assert all(a["end_ms"] == b["start_ms"] for a, b in pairwise(found))
    assert types(messages).count("speech_start") == 1


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("?sample_rate=abc", "sample_rate"),
        ("?sample_rate=7999", "sample_rate"),
        ("?sample_rate=48001", "sample_rate"),
        ("?sample_rate=-16000", "sample_rate"),
        ("?encoding=pcm_u8", "encoding"),
        ("?encoding=", "encoding"),
    ],
)
def test_invalid_query_is_refused_with_bad_request(
    make_client: Any, query: str, named: str
) -> None:
    with make_client().websocket_connect(f"/v1/stream{query}") as ws:
        messages, code = collect(ws)
    assert code == 1008
    assert len(messages) == 1
    assert messages[0]["type"] == "error" and messages[0]["code"] == "bad_request"
    assert named in messages[0]["message"]


def test_partial_sample_frame_is_dropped_and_stream_goes_on(
    make_client: Any, one_utterance: np.ndarray
) -> None:
    with make_client().websocket_connect("/v1/stream") as ws:
        ws.receive_text()
        ws.send_bytes(b"\x01\x02\x03")
        error = json.loads(ws.receive_text())
        assert error["type"] == "error" and error["code"] == "bad_frame"
        assert "3" in error["message"]
        send_audio(ws, to_pcm16(one_utterance))
        ws.send_text(END)
        messages, code = collect(ws)
    assert code == 1000
    assert types(messages).count("result") == 1
    assert messages[-1]["audio_ms"] == len(one_utterance) // 16


def test_f32_partial_sample_is_bad_frame(make_client: Any) -> None:
    with make_client().websocket_connect("/v1/stream?encoding=pcm_f32le") as ws:
        ws.receive_text()
        ws.send_bytes(b"\x00" * 6)
        error = json.loads(ws.receive_text())
        ws.send_text(END)
        rest, code = collect(ws)
    assert error["code"] == "bad_frame"
    assert rest[-1]["type"] == "end" and code == 1000


def test_oversized_frame_closes_1009(make_client: Any) -> None:
    with make_client(max_frame_bytes=1024).websocket_connect("/v1/stream") as ws:
        ws.receive_text()
        ws.send_bytes(b"\x00" * 1026)
        messages, code = collect(ws)
    assert code == 1009
    assert messages[0]["code"] == "bad_frame" and "1026" in messages[0]["message"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("hello", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type": "pause"}', "pause"),
        ('{"kind": "end"}', "unknown message type"),
        ('{"type": 5}', "unknown message type"),
        ("\u0000\ud7ff" * 10, "not JSON"),
        ("[" * 60_000, "nested too deeply"),
        ('{"a":' * 20_000, "nested too deeply"),
    ],
)
def test_bad_text_message_keeps_the_stream_open(make_client: Any, text: str, fragment: str) -> None:
    with make_client().websocket_connect("/v1/stream") as ws:
        ws.receive_text()
        ws.send_text(text)
        error = json.loads(ws.receive_text())
        ws.send_text(END)
        rest, code = collect(ws)
    assert error["type"] == "error" and error["code"] == "bad_message"
    assert fragment in error["message"]
    assert rest == [{"type": "end", "segments": 0, "audio_ms": 0}] and code == 1000


def test_stream_longer_than_max_is_closed_with_limit(
    make_client: Any, three_utterances: np.ndarray
) -> None:
    with make_client(max_stream_ms=2500).websocket_connect("/v1/stream") as ws:
        ws.receive_text()
        send_audio(ws, to_pcm16(three_utterances))
        messages, code = collect(ws)
    assert code == 1008
    assert messages[-1]["type"] == "error" and messages[-1]["code"] == "limit"
    assert "max_stream_ms" in messages[-1]["message"]
    assert types(messages).count("result") >= 1  # what was heard before the limit is delivered


def test_idle_client_is_closed_with_limit(make_client: Any) -> None:
    with make_client(idle_timeout_ms=300).websocket_connect("/v1/stream") as ws:
        ws.receive_text()
        messages, code = collect(ws)
    assert code == 1008
    assert messages == [
        {"type": "error", "code": "limit", "message": "no audio or message for 300 ms"}
    ]


def test_slow_trickle_cannot_outlast_max_stream_ms_in_wall_time(make_client: Any) -> None:
    client = make_client(max_stream_ms=1000, idle_timeout_ms=400)
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_text()
        for _ in range(25):  # one sample every 0.1 s: never idle, almost no audio
            ws.send_bytes(b"\x00\x00")
            time.sleep(0.1)
        messages, code = collect(ws)
    assert code == 1008
    assert messages[-1]["code"] == "limit"
    assert "wall-clock" in messages[-1]["message"]


def test_connection_limit_answers_busy_while_first_stream_continues(
    make_client: Any, one_utterance: np.ndarray
) -> None:
    client = make_client(max_connections=1)
    with client.websocket_connect("/v1/stream") as first:
        first.receive_text()
        with client.websocket_connect("/v1/stream") as second:
            refused, code = collect(second)
        assert code == 1013
        assert refused[0]["code"] == "busy" and "1 connections" in refused[0]["message"]
        send_audio(first, to_pcm16(one_utterance))
        first.send_text(END)
        messages, first_code = collect(first)
    assert first_code == 1000 and types(messages).count("result") == 1


def test_per_client_limit_answers_busy(make_client: Any) -> None:
    client = make_client(max_connections_per_ip=2)
    with client.websocket_connect("/v1/stream") as a, client.websocket_connect("/v1/stream") as b:
        a.receive_text()
        b.receive_text()
        with client.websocket_connect("/v1/stream") as c:
            refused, code = collect(c)
        for ws in (a, b):  # end them from the server side before the test client closes
            ws.send_text(END)
            assert collect(ws)[1] == 1000
    assert code == 1013 and refused[0]["code"] == "busy"
    assert "127.0.0.1" in refused[0]["message"]


@pytest.mark.parametrize("presented", [None, "wrong", "secret-token "])
def test_token_required(make_client: Any, presented: str | None) -> None:
    client = make_client(token="secret-token")
    query = f"?token={presented}" if presented else ""
    with client.websocket_connect(f"/v1/stream{query}") as ws:
        messages, code = collect(ws)
    assert code == 1008 and messages[0]["code"] == "unauthorized"


def test_token_accepted_in_query_or_bearer_header(make_client: Any) -> None:
    client = make_client(token="secret-token")
    with client.websocket_connect("/v1/stream?token=secret-token") as ws:
        assert json.loads(ws.receive_text())["type"] == "ready"
    headers = {"Authorization": "Bearer secret-token"}
    with client.websocket_connect("/v1/stream", headers=headers) as ws:
        assert json.loads(ws.receive_text())["type"] == "ready"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://testserver", True),
        ("https://app.example", True),
        ("https://evil.example", False),
        ("http://testserver.evil.example", False),
        ("null", False),
    ],
)
def test_browser_origin_allow_list(make_client: Any, origin: str, allowed: bool) -> None:
    client = make_client(allowed_origins="https://app.example")
    with client.websocket_connect("/v1/stream", headers={"Origin": origin}) as ws:
        if allowed:
            assert json.loads(ws.receive_text())["type"] == "ready"
            return
        messages, code = collect(ws)
    assert code == 1008 and messages[0]["code"] == "unauthorized"
    assert "origin" in messages[0]["message"]


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Host": "evil.example", "Origin": "http://evil.example"}, "host"),  # DNS rebinding
        ({"Host": "evil.example"}, "host"),
        ({"Host": "emo.example.com", "Origin": "http://evil.example"}, "origin"),
        # Behind Caddy (X-Forwarded-Proto: https) the site's own pages are https.
        (
            {
                "Host": "emo.example.com",
                "Origin": "http://emo.example.com",
                "X-Forwarded-Proto": "https",
            },
            "origin",
        ),
        (
            {
                "Host": "emo.example.com",
                "Origin": "https://emo.example.com",
                "X-Forwarded-Proto": "https",
            },
            None,
        ),
        ({"Host": "emo.example.com"}, None),
    ],
)
def test_configured_hosts_refuse_a_rebinding_page(
    make_client: Any, headers: dict[str, str], refused: str | None
) -> None:
    client = make_client(allowed_hosts="emo.example.com")
    with client.websocket_connect("/v1/stream", headers=headers) as ws:
        if refused is None:
            assert json.loads(ws.receive_text())["type"] == "ready"
            return
        messages, code = collect(ws)
    assert code == 1008 and messages[0]["code"] == "unauthorized"
    assert messages[0]["message"].startswith(refused)


def test_configured_hosts_refuse_http_requests_for_other_hosts(make_client: Any) -> None:
    client = make_client(allowed_hosts="emo.example.com")
    for path in ("/", "/v1/model"):
        reply = client.get(path, headers={"Host": "evil.example"})
        assert reply.status_code == 400
        assert reply.json()["error"]["code"] == "bad_request"
        assert "'evil.example' is not served here" in reply.json()["error"]["message"]
        assert client.get(path, headers={"Host": "emo.example.com"}).status_code == 200
    upload = client.post(
        "/v1/classify",
        content=b"RIFF",
        headers={"Host": "evil.example", "content-type": "audio/wav"},
    )
    assert upload.status_code == 400 and "not served here" in upload.text
    # Probes and scrapes come by address.
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path, headers={"Host": "10.1.2.3:8000"}).status_code == 200


def test_inference_failure_reports_internal_and_stream_goes_on(
    make_client: Any, tiny_model_dir: Path, three_utterances: np.ndarray
) -> None:
    def loader(path: Path) -> ScriptedClassifier:
        return ScriptedClassifier(OnnxClassifier(path), fail_calls={1})

    # Without the early endpoint: its own calls would shift the scripted failure, and a
    # failed early job falls back to classifying the final (tests/server/test_early.py).
    client = make_client(loader=loader, early_endpoint=False)
    _, messages, code = stream_all(client, three_utterances)
    assert code == 1000
    found = outcomes(messages)
    assert [o["type"] for o in found] == ["result", "skipped", "result"]
    assert found[1]["reason"] == "error"
    position = messages.index(found[1])
    assert messages[position - 1]["type"] == "error"
    assert messages[position - 1]["code"] == "internal"
    assert "segment 1" in messages[position - 1]["message"]


@pytest.mark.parametrize("failing", [[40], [40, 41, 42], ["last"]])
def test_detector_fault_reports_internal_and_stream_goes_on(
    make_client: Any,
    three_utterances: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    failing: list[int | str],
) -> None:
    client = make_client()
    audio = three_utterances[: len(three_utterances) // 2 + 100]
    frame = client.app.state.service.segmenter_config.frame_samples
    assert len(audio) % frame  # the last frame is a partial one, pushed at the end
    faults = {len(audio) // frame if f == "last" else int(f) for f in failing}
    _, clean, _ = stream_all(client, audio)
    real = Service.new_detector
    monkeypatch.setattr(Service, "new_detector", lambda self: FailingDetector(real(self), faults))
    _, messages, code = stream_all(client, audio)
    assert code == 1000
    errors = [m for m in messages if m["type"] == "error"]
    # One error per audio message (or the end) whose frames hit a fault.
    assert 1 <= len(errors) <= len(faults)
    assert all(e["code"] == "internal" for e in errors)
    assert "voice detector failed" in errors[0]["message"]
    assert messages[-1]["type"] == "end"

    # The faulty frames count as unvoiced and the stream goes on: the same utterances,
    # and the same segments, give or take those frames at an utterance's end.
    def starts(found: list[dict[str, Any]]) -> list[int]:
        return [m["t_ms"] for m in found if m["type"] == "speech_start"]

    def ends(found: list[dict[str, Any]]) -> list[int]:
        return [m["t_ms"] for m in found if m["type"] == "speech_end"]

    assert starts(messages) == starts(clean)
    assert np.allclose(ends(messages), ends(clean), atol=100)
    got, want = outcomes(messages), outcomes(clean)
    assert [(o["type"], o["start_ms"]) for o in got] == [(o["type"], o["start_ms"]) for o in want]
    assert np.allclose([o["end_ms"] for o in got], [o["end_ms"] for o in want], atol=100)


def test_saturated_pool_skips_overloaded_and_stream_goes_on(
    make_client: Any, tiny_model_dir: Path, three_utterances: np.ndarray
) -> None:
    gate = threading.Event()
    holder: dict[str, ScriptedClassifier] = {}

    def loader(path: Path) -> ScriptedClassifier:
        holder["c"] = ScriptedClassifier(OnnxClassifier(path), gate=gate)
        return holder["c"]

    client = make_client(loader=loader, workers=1, queue_size=0, early_endpoint=False)
    holder["c"].gate = gate
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_text()
        send_audio(ws, to_pcm16(three_utterances))
        ws.send_text(END)
        # The first segment holds the only worker until the gate opens. Each later segment
        # is submitted right after its speech_end is queued: once the last speech_end is
        # here, the second utterance's segment has met the full pool.
        messages = []
        while types(messages).count("speech_end") < 3:
            messages.append(json.loads(ws.receive_text()))
        gate.set()
        rest, code = collect(ws)
    found = outcomes(messages + rest)
    assert code == 1000
    assert found[0]["type"] == "result"
    assert any(o["type"] == "skipped" and o["reason"] == "overloaded" for o in found[1:])
    assert [o["segment"] for o in found] == list(range(len(found)))
    skipped = sum(o["type"] == "skipped" and o["reason"] == "overloaded" for o in found)
    metrics = client.get("/metrics").text
    assert f'emostream_skipped_total{{reason="overloaded"}} {float(skipped)}' in metrics


def test_queue_deadline_skips_overloaded(
    make_client: Any, tiny_model_dir: Path, one_utterance: np.ndarray
) -> None:
    gate = threading.Event()
    holder: dict[str, ScriptedClassifier] = {}

    def loader(path: Path) -> ScriptedClassifier:
        holder["c"] = ScriptedClassifier(OnnxClassifier(path))
        return holder["c"]

    client = make_client(
        loader=loader, workers=1, queue_size=4, queue_timeout_ms=200, early_endpoint=False
    )
    holder["c"].gate = gate
    timer = threading.Timer(1.0, gate.set)
    timer.start()
    try:
        _, messages, _ = stream_all(client, np.concatenate([one_utterance, one_utterance]))
    finally:
        timer.cancel()
        gate.set()
    found = outcomes(messages)
    assert found[0]["type"] == "result"
    assert found[1] == {**found[1], "type": "skipped", "reason": "overloaded"}


def test_two_sessions_get_their_own_results(
    make_client: Any, three_utterances: np.ndarray, one_utterance: np.ndarray
) -> None:
    client = make_client()
    with client.websocket_connect("/v1/stream") as a, client.websocket_connect("/v1/stream") as b:
        ready_a, ready_b = json.loads(a.receive_text()), json.loads(b.receive_text())
        data_a, data_b = to_pcm16(three_utterances), to_pcm16(one_utterance)
        step = 1280
        for offset in range(0, max(len(data_a), len(data_b)), step):  # interleaved frames
            if offset < len(data_a):
                a.send_bytes(data_a[offset : offset + step])
            if offset < len(data_b):
                b.send_bytes(data_b[offset : offset + step])
        a.send_text(END)
        b.send_text(END)
        messages_a, _ = collect(a)
        messages_b, _ = collect(b)
    assert ready_a["session"] != ready_b["session"]
    assert messages_a[-1] == {"type": "end", "segments": 3, "audio_ms": len(three_utterances) // 16}
    assert messages_b[-1] == {"type": "end", "segments": 1, "audio_ms": len(one_utterance) // 16}
    # Same audio alone gives the same scores: nothing of the other session leaked in.
    _, alone, _ = stream_all(client, one_utterance)
    assert outcomes(alone)[0]["scores"] == outcomes(messages_b)[0]["scores"]


def test_client_disconnect_mid_utterance_releases_the_session(
    make_client: Any, one_utterance: np.ndarray
) -> None:
    client = make_client(max_connections=1)
    service = client.app.state.service
    with client.websocket_connect("/v1/stream") as ws:
        ws.receive_text()
        send_audio(ws, to_pcm16(one_utterance[:16000]))
    # The slot is free again: a new connection is accepted although the limit is 1.
    with client.websocket_connect("/v1/stream") as ws:
        assert json.loads(ws.receive_text())["type"] == "ready"
    assert service.limiter.total == 0
    assert not service.sessions


def test_metrics_count_connections_segments_and_inference(
    make_client: Any, three_utterances: np.ndarray
) -> None:
    client = make_client(early_endpoint=False)  # early work would add inferences
    stream_all(client, three_utterances)
    text = client.get("/metrics").text
    assert 'emostream_connections_total{outcome="accepted"} 1.0' in text
    assert 'emostream_segments_total{source="stream"} 3.0' in text
    assert "emostream_inference_seconds_count 3.0" in text
    assert "emostream_queue_depth 0.0" in text
    assert "emostream_open_connections 0.0" in text
    assert 'emostream_model_info{name="tiny-test"' in text


def test_health_and_readiness(make_client: Any) -> None:
    client = make_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    client.app.state.service.draining = True
    assert client.get("/readyz").status_code == 503
    with client.websocket_connect("/v1/stream") as ws:
        messages, code = collect(ws)
    assert code == 1013 and messages[0]["code"] == "busy"


def test_model_endpoint_serves_the_manifest(make_client: Any, tiny_model_dir: Path) -> None:
    reply = make_client().get("/v1/model").json()
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    # The public fields, as written; provenance and the graph's file name stay on disk.
    assert {k: reply[k] for k in ("name", "version", "labels", "sample_rate", "demo")} == {
        k: manifest[k] for k in ("name", "version", "labels", "sample_rate", "demo")
    }
    assert reply["graph"] == {
        **{k: manifest["graph"][k] for k in ("precision", "sha256")},
        "variant": "",  # unnamed: the manifest has no alternatives
        "agreement": None,
        # One graph: nothing to choose (classifier/selection.py).
        "selection": {"by": "only", "reason": "the only candidate graph", "median_ms": {}},
    }
    assert "provenance" not in reply


def test_disconnect_before_reading_ready_is_harmless(make_client: Any) -> None:
    client = make_client()
    for _ in range(5):
        with client.websocket_connect("/v1/stream"):
            pass
    assert not client.app.state.service.sessions
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/v1/nope"):
        pass


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/v1/classify"), ("POST", "/v1/model"), ("GET", "/admin/model")]
)
def test_api_path_with_the_wrong_method_is_405(make_client: Any, method: str, path: str) -> None:
    reply = make_client().request(method, path)
    assert reply.status_code == 405
    assert reply.headers["allow"]


def test_the_browser_app_is_served_at_the_root(make_client: Any) -> None:
    reply = make_client().get("/")
    assert reply.status_code == 200 and "text/html" in reply.headers["content-type"]
    assert make_client().get("/no-such-file.js").status_code == 404


def test_early_endpoint_gives_the_same_results_and_is_used(
    make_client: Any, three_utterances: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.early import EarlyEnd

    client = make_client()
    monkeypatch.setattr(EarlyEnd, "update", lambda self, tentative: None)
    _, without, _ = stream_all(client, three_utterances)
    monkeypatch.undo()
    used: list[bool] = []
    take = EarlyEnd.take

    def counting_take(self: EarlyEnd, segment: Any) -> Any:
        task = take(self, segment)
        used.append(task is not None)
        return task

    monkeypatch.setattr(EarlyEnd, "take", counting_take)
    _, with_early, _ = stream_all(client, three_utterances)

    def results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in m.items() if k != "latency_ms"} for m in outcomes(messages)]

    assert results(with_early) == results(without)  # the same audio, so the same scores
    assert any(used)  # at least one utterance's last segment was classified early
    assert len(used) == len(outcomes(with_early))


def test_early_work_is_discarded_when_voice_comes_back(make_client: Any) -> None:
    # A 300 ms pause inside the utterance: the early end appears in it (after the 100 ms
    # post-padding) and is withdrawn when the voice resumes before the 400 ms hangover.
    first, second = espeak("Well then"), espeak("we shall see.")
    talk = np.concatenate([silence(0.5), first, silence(0.3), second, silence(1.2)])
    _, messages, _ = stream_all(make_client(), talk)
    found = outcomes(messages)
    starts = [m for m in messages if m["type"] == "speech_start"]
    assert len(starts) == 1
    assert found[-1]["end_ms"] >= 500 + (first.size + second.size) * 1000 // 16000 + 300 - 100
