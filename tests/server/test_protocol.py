from __future__ import annotations

import json

import pytest

from server.outcome import summarize
from server.protocol import (
    End,
    EndOfStream,
    Error,
    Flush,
    Partial,
    ProtocolError,
    Ready,
    Result,
    Skipped,
    SpeechStart,
    outcome_body,
    parse_client_message,
    parse_stream_params,
    to_json,
)


def test_messages_serialise_with_type_first_and_numbers_as_numbers() -> None:
    assert to_json(SpeechStart(1230)) == '{"type":"speech_start","t_ms":1230}'
    assert json.loads(to_json(EndOfStream(5, 61250))) == {
        "type": "end",
        "segments": 5,
        "audio_ms": 61250,
    }
    assert json.loads(to_json(Error("limit", "x"))) == {
        "type": "error",
        "code": "limit",
        "message": "x",
    }
    ready = json.loads(
        to_json(Ready("s", {"name": "m"}, 16000, "pcm_s16le", {"max_frame_bytes": 1}))
    )
    assert ready["type"] == "ready" and ready["protocol"] == 1


def test_outcome_body_drops_type() -> None:
    skipped = Skipped(3, 10, 20, "too_short")
    assert outcome_body(skipped) == {
        "segment": 3,
        "start_ms": 10,
        "end_ms": 20,
        "reason": "too_short",
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, (16000, "pcm_s16le", None)),
        ({"sample_rate": "8000"}, (8000, "pcm_s16le", None)),
        (
            {"sample_rate": "48000", "encoding": "pcm_f32le", "token": "t"},
            (48000, "pcm_f32le", "t"),
        ),
    ],
)
def test_stream_params(query: dict[str, str], expected: tuple[object, ...]) -> None:
    params = parse_stream_params(query)
    assert (params.sample_rate, params.encoding, params.token) == expected


@pytest.mark.parametrize(
    "query",
    [
        {"sample_rate": "16000.0"},
        {"sample_rate": "1e4"},
        {"sample_rate": " 16000"},
        {"sample_rate": "9" * 500},
        {"encoding": "PCM_S16LE"},
    ],
)
def test_bad_stream_params_name_the_value(query: dict[str, str]) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_stream_params(query)
    assert info.value.code == "bad_request"
    assert next(iter(query)) in str(info.value)
    assert len(str(info.value)) < 200  # hostile values are truncated, not echoed whole


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("250", 250), ("1000", 1000), ("3000", 3000)]
)
def test_interim_ms_values(text: str, value: int) -> None:
    assert parse_stream_params({"interim_ms": text}).interim_ms == value
    assert parse_stream_params({}).interim_ms == 0


@pytest.mark.parametrize(
    "text", ["-1", "100", "249", "3001", "99999", "abc", "", " 500", "500.0", "1e3", "9" * 5000]
)
def test_bad_interim_ms_is_named(text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_stream_params({"interim_ms": text})
    assert info.value.code == "bad_request"
    assert "interim_ms must be 0 (off) or an integer from 250 to 3000" in str(info.value)
    assert len(str(info.value)) < 200


def test_partial_message_has_the_result_fields() -> None:
    partial = Partial(2, 5200, 6200, "happy", 0.55, {"happy": 0.55, "sad": 0.45}, "v1", 31)
    data = json.loads(to_json(partial))
    assert data == {
        "type": "partial",
        "segment": 2,
        "start_ms": 5200,
        "end_ms": 6200,
        "label": "happy",
        "confidence": 0.55,
        "scores": {"happy": 0.55, "sad": 0.45},
        "model_version": "v1",
        "latency_ms": 31,
    }


def test_client_messages() -> None:
    assert parse_client_message('{"type": "flush"}') == Flush()
    assert parse_client_message('{"type": "end", "extra": 1}') == End()
    with pytest.raises(ProtocolError, match="unknown message type"):
        parse_client_message('{"type": "' + "x" * 10_000 + '"}')


def result(start: int, end: int, **scores: float) -> Result:
    return Result(
        0, start, end, max(scores, key=scores.__getitem__), max(scores.values()), scores, "v", 1
    )


def test_summary_is_duration_weighted_over_classified_segments() -> None:
    outcomes = [
        result(0, 1000, happy=0.9, sad=0.1),
        result(1000, 4000, happy=0.2, sad=0.8),
        Skipped(2, 4000, 4200, "too_short"),
    ]
    summary = summarize(outcomes)
    assert summary["label"] == "sad"
    assert summary["scores"] == pytest.approx(
        {"happy": (0.9 + 3 * 0.2) / 4, "sad": (0.1 + 3 * 0.8) / 4}
    )
    assert summary["confidence"] == summary["scores"]["sad"]


def test_summary_without_classified_segments_is_empty() -> None:
    assert summarize([Skipped(0, 0, 100, "too_short")]) == {
        "label": None,
        "confidence": None,
        "scores": {},
    }
    assert summarize([]) == {"label": None, "confidence": None, "scores": {}}
