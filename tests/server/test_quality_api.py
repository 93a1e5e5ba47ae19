"""quality=1 end to end: the measures, warnings and ``uncertain`` on crafted audio, over
the WebSocket (results and partials) and by upload; absent without it; bad values refused."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.server.conftest import collect, send_audio
from tests.speech import espeak, silence, to_pcm16, wav_bytes
from tests.telephony import interleave

Float = npt.NDArray[np.float32]
SIGNAL_WARNINGS = {"low_snr", "too_quiet", "clipping", "too_short_speech"}


@pytest.fixture(scope="module")
def speech() -> Float:
    return espeak("I can't believe you did that again, it is unbelievable.")


def padded(audio: Float) -> Float:
    return np.concatenate([silence(0.5), audio, silence(1.0)]).astype(np.float32)


def condition(speech: Float, name: str) -> Float:
    power = float(np.mean(np.square(speech)))
    if name == "clean":
        return padded(speech)
    if name == "clipped":  # +24 dB
        return np.clip(padded(speech) * 10 ** (24 / 20), -1.0, 1.0).astype(np.float32)
    if name == "quiet":  # -50 dBFS
        return padded(speech * (10 ** (-50 / 20) / np.sqrt(power)))
    if name == "noisy":  # white noise at 0 dB SNR
        audio = padded(speech)
        noise = np.random.default_rng(3).normal(0, np.sqrt(power), audio.size)
        return np.clip(audio + noise, -1.0, 1.0).astype(np.float32)
    raise ValueError(name)


EXPECTED = {"clean": None, "clipped": "clipping", "quiet": "too_quiet", "noisy": "low_snr"}


def stream(client: Any, audio: Float, query: str) -> list[dict[str, Any]]:
    with client.websocket_connect(f"/v1/stream{query}") as ws:
        send_audio(ws, to_pcm16(audio))
        ws.send_text(json.dumps({"type": "end"}))
        messages, code = collect(ws)
    assert code == 1000
    return messages


def check_fields(body: dict[str, Any], expected: str | None) -> None:
    quality = body["quality"]
    assert set(quality) == {"speech", "snr_db", "level_dbfs", "clipped"}
    assert all(isinstance(v, float | int) for v in quality.values())
    assert 0 <= quality["speech"] <= 1 and 0 <= quality["clipped"] <= 1
    warnings = body["warnings"]
    assert set(warnings) <= SIGNAL_WARNINGS | {"low_confidence"}
    assert body["uncertain"] is bool(warnings)
    if expected is None:
        assert not set(warnings) & SIGNAL_WARNINGS
        assert quality["snr_db"] > 15 and quality["clipped"] == 0
    else:
        assert expected in warnings and body["uncertain"] is True


@pytest.mark.parametrize("name", list(EXPECTED))
def test_stream_results_carry_quality_on_crafted_audio(
    make_client: Any, speech: Float, name: str
) -> None:
    messages = stream(make_client(), condition(speech, name), "?quality=1")
    assert messages[0]["type"] == "ready" and messages[0]["quality"] == 1
    results = [m for m in messages if m["type"] == "result"]
    assert results, [m["type"] for m in messages]
    for result in results:
        check_fields(result, EXPECTED[name])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_upload_results_carry_quality_on_crafted_audio(
    make_client: Any, speech: Float, name: str
) -> None:
    response = make_client().post(
        "/v1/classify?quality=1",
        content=wav_bytes(condition(speech, name)),
        headers={"content-type": "audio/wav"},
    )
    assert response.status_code == 200, response.text
    results = [s for s in response.json()["segments"] if "label" in s]
    assert results
    for result in results:
        check_fields(result, EXPECTED[name])


def test_partials_carry_quality_too(make_client: Any, speech: Float) -> None:
    messages = stream(make_client(), condition(speech, "clipped"), "?quality=1&interim_ms=250")
    partials = [m for m in messages if m["type"] == "partial"]
    assert partials
    for partial in partials:
        check_fields(partial, "clipping")


@pytest.mark.parametrize("query", ["", "?quality=0", "?interim_ms=250"])
def test_fields_are_absent_without_quality_1(make_client: Any, speech: Float, query: str) -> None:
    messages = stream(make_client(), condition(speech, "clean"), query)
    assert ("quality" in messages[0]) is (query == "?quality=0")
    classified = [m for m in messages if m["type"] in ("result", "partial")]
    assert classified
    for message in classified:
        assert not {"quality", "warnings", "uncertain"} & set(message)
    response = make_client().post(
        f"/v1/classify{query}",
        content=wav_bytes(condition(speech, "clean")),
        headers={"content-type": "audio/wav"},
    )
    for segment in response.json()["segments"]:
        assert not {"quality", "warnings", "uncertain"} & set(segment)


@pytest.mark.parametrize("value", ["2", "abc", "", "01"])
def test_bad_quality_values_are_refused(make_client: Any, value: str) -> None:
    client = make_client()
    with client.websocket_connect(f"/v1/stream?quality={value}") as ws:
        messages, code = collect(ws)
    assert code == 1008
    assert [m["code"] for m in messages] == ["bad_request"]
    assert "quality" in messages[0]["message"]
    response = client.post(
        f"/v1/classify?quality={value}",
        content=wav_bytes(silence(1.0)),
        headers={"content-type": "audio/wav"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request" and "quality must be 0 or 1" in error["message"]


# With two channels (channels=2, channels=separate) -----------------------------------


def two_parties(speech: Float) -> tuple[Float, Float]:
    """Party 0 speaks clean; party 1, clipped, starts while party 0 is still speaking."""
    clipped = condition(speech, "clipped")
    left = np.concatenate([condition(speech, "clean"), silence(1.5)]).astype(np.float32)
    right = np.concatenate([silence(1.0), clipped]).astype(np.float32)
    return left, right


def check_channels(segments: list[dict[str, Any]], finals: bool = True) -> None:
    """Each channel measured on its own audio: only the clipped party's segments warn of it
    (finals of the clean party have no signal warning at all)."""
    by_channel = {c: [s for s in segments if s.get("channel") == c] for c in (0, 1)}
    assert by_channel[0] and by_channel[1], segments
    assert len(by_channel[0]) + len(by_channel[1]) == len(segments)  # each names its channel
    for segment in by_channel[0]:
        if finals:
            check_fields(segment, None)
        assert "clipping" not in segment["warnings"] and segment["quality"]["clipped"] == 0
    for segment in by_channel[1]:
        check_fields(segment, "clipping")


def test_two_channel_stream_results_carry_channel_and_quality(
    make_client: Any, speech: Float
) -> None:
    left, right = two_parties(speech)
    query = "?channels=2&quality=1&interim_ms=250"
    messages = stream(make_client(), interleave(left, right), query)
    ready = messages[0]
    assert ready["type"] == "ready" and ready["channels"] == 2 and ready["quality"] == 1
    check_channels([m for m in messages if m["type"] == "result"])
    partials = [m for m in messages if m["type"] == "partial"]
    check_channels(partials, finals=False)


def test_separate_upload_results_carry_channel_and_quality(make_client: Any, speech: Float) -> None:
    left, right = two_parties(speech)
    response = make_client().post(
        "/v1/classify?channels=separate&quality=1",
        content=wav_bytes(interleave(left, right).reshape(-1, 2)),
        headers={"content-type": "audio/wav"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    check_channels([s for s in body["segments"] if "label" in s])
    assert [c["channel"] for c in body["channels"]] == [0, 1]
