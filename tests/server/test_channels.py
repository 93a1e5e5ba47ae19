"""/v1/stream with G.711 audio and with two channels (the two parties of a call)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import soxr

from server.protocol import Result, Skipped, SpeechStart, outcome_body, parse_stream_params
from server.protocol import to_dict as wire
from tests.server.conftest import VAD_DETECTORS, collect, send_audio, types
from tests.speech import espeak, silence, to_pcm16
from tests.telephony import g711, interleave

END = json.dumps({"type": "end"})
FLUSH = json.dumps({"type": "flush"})
CHANNEL_TYPES = {"speech_start", "speech_end", "partial", "result", "skipped"}


@pytest.fixture(params=VAD_DETECTORS)
def vad_detector(request: pytest.FixtureRequest) -> str:
    """Under each voice detector (Silero decides two channels' frames in one batch)."""
    detector: str = request.param
    return detector


def by_kind(messages: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The speech events in order, and the outcomes in order. Results come from the pool
    whenever it finishes, so where they fall among the speech events is timing, not
    behaviour: only each kind's own order is fixed."""
    speech = [m["type"] for m in messages if m["type"] in ("speech_start", "speech_end")]
    outcomes = [m["type"] for m in messages if m["type"] in ("result", "skipped")]
    return speech, outcomes


def stream(
    client: Any, data: bytes, query: str, frame_bytes: int = 1280
) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    with client.websocket_connect(f"/v1/stream{query}") as ws:
        ready = json.loads(ws.receive_text())
        send_audio(ws, data, frame_bytes)
        ws.send_text(END)
        messages, code = collect(ws)
    return ready, messages, code


def of_channel(messages: list[dict[str, Any]], channel: int) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("channel") == channel]


def bounds(messages: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    return [(m["start_ms"], m["end_ms"], m["label"]) for m in messages if m["type"] == "result"]


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_g711_at_8000_hz_is_segmented_like_pcm(
    make_client: Any, one_utterance: np.ndarray, law: str
) -> None:
    client = make_client()
    audio8k = soxr.resample(one_utterance, 16000, 8000).astype(np.float32)
    _, pcm, _ = stream(client, to_pcm16(audio8k), "?sample_rate=8000")
    ready, coded, code = stream(client, g711(audio8k, law), f"?sample_rate=8000&encoding={law}")
    assert code == 1000
    assert ready["encoding"] == law and ready["sample_rate"] == 8000
    assert "channels" not in ready  # echoed only when the client sent it
    assert coded[-1] == {"type": "end", "segments": 1, "audio_ms": len(audio8k) // 8}
    (coded_result,) = [m for m in coded if m["type"] == "result"]
    (pcm_result,) = [m for m in pcm if m["type"] == "result"]
    assert "channel" not in coded_result
    assert abs(coded_result["start_ms"] - pcm_result["start_ms"]) <= 40
    assert abs(coded_result["end_ms"] - pcm_result["end_ms"]) <= 40


@pytest.mark.parametrize("value", ["3", "0", "abc", "", "-1", "2.0"])
def test_bad_channels_is_refused_with_bad_request(make_client: Any, value: str) -> None:
    with make_client().websocket_connect(f"/v1/stream?channels={value}") as ws:
        messages, code = collect(ws)
    assert code == 1008
    assert len(messages) == 1 and messages[0]["code"] == "bad_request"
    assert "channels must be 1 or 2" in messages[0]["message"]


@pytest.mark.parametrize(
    ("query", "size"),
    [("", 2), ("", 6), ("&encoding=mulaw", 3), ("&encoding=pcm_f32le", 4)],
)
def test_partial_sample_frame_of_two_channels_is_bad_frame(
    make_client: Any, query: str, size: int
) -> None:
    with make_client().websocket_connect(f"/v1/stream?channels=2{query}") as ws:
        ready = json.loads(ws.receive_text())
        ws.send_bytes(b"\x00" * size)
        error = json.loads(ws.receive_text())
        ws.send_bytes(b"\x00" * size * 2)  # whole frames: accepted
        ws.send_text(END)
        rest, code = collect(ws)
    assert ready["channels"] == 2
    assert error["type"] == "error" and error["code"] == "bad_frame"
    assert f"{size} bytes" in error["message"] and "2-channel" in error["message"]
    assert rest[-1]["type"] == "end" and code == 1000


def test_speech_on_one_channel_never_gives_results_on_the_other(
    make_client: Any, three_utterances: np.ndarray
) -> None:
    client = make_client()
    _, mono, _ = stream(client, to_pcm16(three_utterances), "")
    quiet = silence(len(three_utterances) / 16000)
    for talker in (0, 1):
        pair = (three_utterances, quiet) if talker == 0 else (quiet, three_utterances)
        ready, messages, code = stream(client, to_pcm16(interleave(*pair)), "?channels=2", 2560)
        assert code == 1000 and ready["channels"] == 2
        tagged = [m for m in messages if m["type"] in CHANNEL_TYPES]
        assert {m["channel"] for m in tagged} == {talker}
        assert by_kind(tagged) == by_kind(mono)
        assert bounds(tagged) == bounds(mono)  # the same segments as the mono stream
        assert [m["segment"] for m in tagged if m["type"] == "result"] == [0, 1, 2]
        assert messages[-1] == {
            "type": "end",
            "segments": 3,
            "audio_ms": len(three_utterances) // 16,
        }


def test_two_talkers_each_get_their_own_segments_in_order(
    make_client: Any, three_utterances: np.ndarray, one_utterance: np.ndarray
) -> None:
    other = np.concatenate([silence(1.3), one_utterance])
    data = to_pcm16(interleave(three_utterances, other))
    _, messages, code = stream(make_client(), data, "?channels=2", 2560)
    assert code == 1000
    for channel, count in ((0, 3), (1, 1)):
        mine = of_channel(messages, channel)
        assert [m["segment"] for m in mine if m["type"] == "result"] == list(range(count))
        speech = [m["type"] for m in mine if m["type"].startswith("speech")]
        assert speech == ["speech_start", "speech_end"] * count
    assert messages[-1]["segments"] == 4


def test_a_talking_channel_does_not_hold_back_the_other(
    make_client: Any, one_utterance: np.ndarray
) -> None:
    """Channel 1 talks on without a pause while channel 0's utterance ends: channel 0's
    result arrives while channel 1 is still in speech, before any audio after it is sent."""
    talk = np.concatenate(
        [espeak(text, rate_wpm=190) for text in ("One two three four five.",) * 4]
    )
    length = len(one_utterance)
    assert len(talk) > length
    with make_client().websocket_connect("/v1/stream?channels=2") as ws:
        json.loads(ws.receive_text())
        send_audio(ws, to_pcm16(interleave(one_utterance, talk[:length])), 2560)
        seen: list[dict[str, Any]] = []
        while not any(m["type"] == "result" and m.get("channel") == 0 for m in seen):
            seen.append(json.loads(ws.receive_text()))
        ws.send_text(END)
        rest, code = collect(ws)
    assert code == 1000
    assert not [m for m in seen if m["type"] == "speech_end" and m["channel"] == 1]
    assert [m["type"] for m in of_channel(seen, 1)][:1] == ["speech_start"]
    assert "speech_end" in types(of_channel(rest, 1))  # channel 1's speech ended at end


def test_a_silent_channel_does_not_delay_the_other(
    make_client: Any, one_utterance: np.ndarray
) -> None:
    with make_client().websocket_connect("/v1/stream?channels=2") as ws:
        json.loads(ws.receive_text())
        send_audio(ws, to_pcm16(interleave(one_utterance, silence(len(one_utterance) / 16000))))
        seen = [json.loads(ws.receive_text()) for _ in range(3)]  # before any end or flush
        ws.send_text(END)
        rest, code = collect(ws)
    assert [(m["type"], m["channel"]) for m in seen] == [
        ("speech_start", 0),
        ("speech_end", 0),
        ("result", 0),
    ]
    assert types(rest) == ["end"] and code == 1000


def test_flush_ends_both_channels_utterances(make_client: Any, one_utterance: np.ndarray) -> None:
    left = one_utterance[: int(16000 * 1.6)]  # both cut mid-sentence
    right = np.concatenate([silence(0.2), one_utterance])[: len(left)]
    with make_client().websocket_connect("/v1/stream?channels=2") as ws:
        json.loads(ws.receive_text())
        send_audio(ws, to_pcm16(interleave(left, right)), 2560)
        ws.send_text(FLUSH)
        flushed = [json.loads(ws.receive_text()) for _ in range(6)]
        ws.send_text(END)
        rest, code = collect(ws)
    for channel in (0, 1):
        assert [m["type"] for m in of_channel(flushed, channel)] == [
            "speech_start",
            "speech_end",
            "result",
        ]
    assert rest == [{"type": "end", "segments": 2, "audio_ms": len(left) // 16}]
    assert code == 1000


def test_two_channel_partials_carry_their_channel(
    make_client: Any, one_utterance: np.ndarray
) -> None:
    quiet = silence(len(one_utterance) / 16000)
    _, messages, code = stream(
        make_client(), to_pcm16(interleave(quiet, one_utterance)), "?channels=2&interim_ms=250"
    )
    assert code == 1000
    partials = [m for m in messages if m["type"] == "partial"]
    assert partials and {m["channel"] for m in partials} == {1}
    result = next(m for m in messages if m["type"] == "result")
    assert messages.index(partials[-1]) < messages.index(result)


def test_mulaw_two_channels_at_8000_hz(make_client: Any, one_utterance: np.ndarray) -> None:
    audio8k = soxr.resample(one_utterance, 16000, 8000).astype(np.float32)
    stereo = interleave(silence(len(audio8k) / 8000, 8000), audio8k)
    ready, messages, code = stream(
        make_client(), g711(stereo), "?channels=2&encoding=mulaw&sample_rate=8000", 800
    )
    assert code == 1000 and ready["encoding"] == "mulaw"
    results = [m for m in messages if m["type"] == "result"]
    assert [m["channel"] for m in results] == [1]
    assert messages[-1]["audio_ms"] == len(audio8k) // 8


def test_channels_parameter_and_channel_field_on_the_wire() -> None:
    assert parse_stream_params({}).channels is None
    assert parse_stream_params({}).channel_count == 1
    assert parse_stream_params({"channels": "1"}).channels == 1
    assert parse_stream_params({"channels": "2"}).channel_count == 2
    assert parse_stream_params({"encoding": "alaw"}).encoding == "alaw"
    assert wire(SpeechStart(10)) == {"type": "speech_start", "t_ms": 10}
    assert wire(SpeechStart(10, 1)) == {"type": "speech_start", "t_ms": 10, "channel": 1}
    result = Result(0, 0, 900, "sad", 0.6, {"sad": 0.6, "happy": 0.4}, "v", 3, channel=0)
    assert wire(result)["channel"] == 0
    assert outcome_body(Skipped(1, 0, 100, "too_short", channel=1))["channel"] == 1
    assert "channel" not in outcome_body(Skipped(1, 0, 100, "too_short"))


def test_a_detector_fault_on_one_channel_leaves_the_other_untouched(
    make_client: Any, three_utterances: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.service import Service
    from tests.server.streams import FailingDetector

    client = make_client()
    data = to_pcm16(interleave(three_utterances, three_utterances))
    _, clean, _ = stream(client, data, "?channels=2", 2560)
    real = Service.new_detector
    made: list[int] = []

    def first_fails(self: Service) -> Any:
        made.append(1)
        inner = real(self)
        return FailingDetector(inner, {40, 41, 42}) if len(made) == 1 else inner

    monkeypatch.setattr(Service, "new_detector", first_fails)
    _, messages, code = stream(client, data, "?channels=2", 2560)
    assert code == 1000 and len(made) == 2
    errors = [m for m in messages if m["type"] == "error"]
    assert errors and all(e["code"] == "internal" for e in errors)

    def steady(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        # Silero batches the frames differently (channel 0 no longer uses it): scores may
        # move in the last decimals, nothing else.
        keys = ("type", "segment", "t_ms", "start_ms", "end_ms", "label")
        return [tuple(m.get(k) for k in keys) for m in found]

    assert steady(of_channel(messages, 1)) == steady(of_channel(clean, 1))
    assert len(steady(of_channel(clean, 1))) == 3 * 3  # start, end, result per utterance


def test_a_two_channel_session_is_one_connection_of_its_client(make_client: Any) -> None:
    client = make_client(max_connections_per_ip=2)
    with (
        client.websocket_connect("/v1/stream?channels=2") as a,
        client.websocket_connect("/v1/stream?channels=2") as b,
    ):
        a.receive_text()
        b.receive_text()
        with client.websocket_connect("/v1/stream") as c:
            refused, code = collect(c)
        for ws in (a, b):
            ws.send_text(END)
            assert collect(ws)[1] == 1000
    assert code == 1013 and refused[0]["code"] == "busy"
    assert "limit of 2 connections" in refused[0]["message"]


def test_each_channel_is_a_stream_of_the_sessions_client(make_client: Any) -> None:
    """The pool is fair across clients, then across a client's streams: the two channels
    are two streams of one client, so a call gets no bigger share than one talker."""
    from server.channel import Channel
    from server.protocol import StreamParams

    service = make_client().app.state.service
    params = StreamParams(channels=2)

    async def send(message: Any) -> None:
        pass

    left, right, mono = (
        Channel(index, service, params, send, client="10.0.0.1", session="s1")
        for index in (0, 1, None)
    )
    assert (left.stream, right.stream, mono.stream) == ("s1/0", "s1/1", "s1")
    assert left.detector is not right.detector
    assert left.segmenter is not right.segmenter
