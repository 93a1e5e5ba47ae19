"""POST /v1/classify with channels=separate (one readout per party) and G.711 WAV files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soxr
from starlette.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.speech import espeak, silence, wav_bytes

Float = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny_model_dir))) as c:
        yield c


@pytest.fixture(scope="module")
def call() -> tuple[Float, Float]:
    """A call of two parties taking turns: party 0 speaks twice, party 1 once between."""
    first = espeak("Good morning, how can I help you today?", rate_wpm=190)
    second = espeak("My internet has been down since yesterday.", rate_wpm=190)
    third = espeak("I am sorry to hear that.", rate_wpm=190)
    gap = silence(0.8)
    left = np.concatenate([silence(0.5), first, gap, silence(len(second) / 16000), gap, third, gap])
    right = np.concatenate([silence(0.5), silence(len(first) / 16000), gap, second, gap])
    right = np.concatenate([right, silence((len(left) - len(right)) / 16000)])
    return left, right


def post(client: TestClient, data: bytes, query: str = "") -> Any:
    return client.post(f"/v1/classify{query}", files={"file": ("call.wav", data, "audio/wav")})


def results(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in reply["segments"] if "label" in s]


def test_separate_classifies_each_party_on_its_own(
    client: TestClient, call: tuple[Float, Float]
) -> None:
    left, right = call
    stereo = wav_bytes(np.stack([left, right], axis=1))
    reply = post(client, stereo, "?channels=separate")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    by_channel = {c: [s for s in body["segments"] if s["channel"] == c] for c in (0, 1)}
    assert [s["segment"] for s in by_channel[0]] == [0, 1]
    assert [s["segment"] for s in by_channel[1]] == [0]
    starts = [s["start_ms"] for s in body["segments"]]
    assert starts == sorted(starts)  # in time order: the turns of the call
    assert [s["channel"] for s in body["segments"]] == [0, 1, 0]
    # Each party's segments are those of its channel uploaded alone.
    for channel, mono in enumerate(call):
        alone = post(client, wav_bytes(mono)).json()
        got = [(s["start_ms"], s["end_ms"], s["label"]) for s in by_channel[channel]]
        assert got == [(s["start_ms"], s["end_ms"], s["label"]) for s in results(alone)]
        summary = next(c for c in body["channels"] if c["channel"] == channel)["summary"]
        assert summary == alone["summary"]
    assert [c["channel"] for c in body["channels"]] == [0, 1]
    # The overall summary is the duration-weighted average over both channels' segments.
    found = results(body)
    weights = np.array([s["end_ms"] - s["start_ms"] for s in found], dtype=float)
    for label, score in body["summary"]["scores"].items():
        expected = np.dot([s["scores"][label] for s in found], weights) / weights.sum()
        assert score == pytest.approx(expected, abs=2e-6)


def test_mix_is_the_default_and_has_no_channels(
    client: TestClient, call: tuple[Float, Float]
) -> None:
    left, right = call
    stereo = wav_bytes(np.stack([left, right], axis=1))
    mixed = post(client, stereo).json()
    assert post(client, stereo, "?channels=mix").json()["summary"] == mixed["summary"]
    assert "channels" not in mixed
    assert all("channel" not in s for s in mixed["segments"])
    # The mix is the mono sum of both parties: the same segments as uploading that.
    alone = post(client, wav_bytes((left + right) / 2)).json()
    assert [(s["start_ms"], s["end_ms"]) for s in mixed["segments"]] == [
        (s["start_ms"], s["end_ms"]) for s in alone["segments"]
    ]


def test_separate_on_a_mono_file_has_one_channel(
    client: TestClient, call: tuple[Float, Float]
) -> None:
    body = post(client, wav_bytes(call[0]), "?channels=separate").json()
    assert [c["channel"] for c in body["channels"]] == [0]
    assert {s["channel"] for s in body["segments"]} == {0}
    assert body["channels"][0]["summary"] == body["summary"]


def test_separate_channel_without_speech_has_an_empty_summary(
    client: TestClient, call: tuple[Float, Float]
) -> None:
    left = call[0]
    body = post(
        client, wav_bytes(np.stack([left, np.zeros_like(left)], axis=1)), "?channels=separate"
    ).json()
    assert body["channels"][1] == {
        "channel": 1,
        "summary": {"label": None, "confidence": None, "scores": {}},
    }
    assert {s["channel"] for s in body["segments"]} == {0}


@pytest.mark.parametrize("value", ["both", "", "2", "SEPARATE"])
def test_bad_channels_value_is_bad_request(client: TestClient, value: str) -> None:
    reply = post(client, wav_bytes(silence(0.5)), f"?channels={value}")
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "bad_request"
    assert "channels must be mix or separate" in reply.json()["error"]["message"]


def test_separate_refuses_more_than_two_channels(client: TestClient) -> None:
    four = np.zeros((8000, 4), dtype=np.float32)
    reply = post(client, wav_bytes(four), "?channels=separate")
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "bad_request"
    assert "4 channels" in reply.json()["error"]["message"]
    assert post(client, wav_bytes(four)).status_code == 200  # mixed, it is fine


@pytest.mark.parametrize("subtype", ["ULAW", "ALAW"])
def test_g711_wav_upload_at_8000_hz(
    client: TestClient, call: tuple[Float, Float], subtype: str
) -> None:
    speech = call[0]
    pcm = post(client, wav_bytes(speech)).json()
    at_8k = soxr.resample(speech, 16000, 8000).astype(np.float32)
    data = wav_bytes(at_8k, 8000, subtype=subtype)
    assert data[20:22] == (b"\x07\x00" if subtype == "ULAW" else b"\x06\x00")  # WAVE format tag
    reply = post(client, data)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert abs(body["duration_ms"] - pcm["duration_ms"]) <= 1
    assert len(results(body)) == len(results(pcm)) == 2
    for got, want in zip(results(body), results(pcm), strict=True):
        assert abs(got["start_ms"] - want["start_ms"]) <= 60
        assert abs(got["end_ms"] - want["end_ms"]) <= 60


def test_g711_stereo_wav_separate(client: TestClient, call: tuple[Float, Float]) -> None:
    left, right = (soxr.resample(x, 16000, 8000).astype(np.float32) for x in call)
    data = wav_bytes(np.stack([left, right], axis=1), 8000, subtype="ULAW")
    body = post(client, data, "?channels=separate").json()
    assert [s["channel"] for s in results(body)] == [0, 1, 0]
