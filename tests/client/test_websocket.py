"""The reference client (client/websocket.py); streaming to the real server is in test_cli.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from websockets.asyncio.server import ServerConnection, serve

from client.websocket import StreamReport, load_pcm16, stream_pcm16, stream_url
from pcm.format import to_float
from tests.speech import tone


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_stream_url_adds_rate_and_encoding() -> None:
    url = stream_url("ws://127.0.0.1:8000/v1/stream", 44100)
    assert url.startswith("ws://127.0.0.1:8000/v1/stream?")
    assert query(url) == {"sample_rate": ["44100"], "encoding": ["pcm_s16le"]}


def test_stream_url_adds_the_token() -> None:
    url = stream_url("wss://example.com/v1/stream", 16000, token="a b&c")
    assert url.startswith("wss://example.com/v1/stream?")
    assert query(url)["token"] == ["a b&c"]


def test_stream_url_asks_for_partials_only_when_given_interim_ms() -> None:
    assert "interim_ms" not in query(stream_url("ws://h:1/v1/stream", 16000))
    assert query(stream_url("ws://h:1/v1/stream", 16000, interim_ms=1000))["interim_ms"] == ["1000"]
    kept = stream_url("ws://h:1/v1/stream?interim_ms=500", 16000, interim_ms=250)
    assert query(kept)["interim_ms"] == ["250"]


def test_report_separates_partials_and_finals() -> None:
    report = StreamReport(
        messages=[
            {"type": "ready"},
            {"type": "partial", "segment": 0, "end_ms": 1000},
            {"type": "result", "segment": 0},
            {"type": "skipped", "segment": 1},
            {"type": "future_kind"},  # forward compatibility: unknown types are kept, not used
        ]
    )
    assert report.partials == [{"type": "partial", "segment": 0, "end_ms": 1000}]
    assert [m["type"] for m in report.finals] == ["result", "skipped"]


def test_stream_url_keeps_other_parameters_and_overrides_its_own() -> None:
    url = stream_url("ws://h:1/v1/stream?sample_rate=8000&token=old&debug=1&empty=", 22050, "new")
    assert query(url) == {
        "sample_rate": ["22050"],
        "encoding": ["pcm_s16le"],
        "token": ["new"],
        "debug": ["1"],
        "empty": [""],
    }


def test_stream_url_keeps_a_token_given_in_the_url() -> None:
    assert query(stream_url("ws://h/v1/stream?token=t0k", 16000))["token"] == ["t0k"]


@pytest.mark.parametrize(
    ("given", "scheme"),
    [("http://h:8000/v1/stream", "ws"), ("HTTPS://h/v1/stream", "wss"), ("WS://h/x", "ws")],
)
def test_stream_url_maps_http_schemes(given: str, scheme: str) -> None:
    assert urlsplit(stream_url(given, 16000)).scheme == scheme


@pytest.mark.parametrize("url", ["ftp://h/v1/stream", "127.0.0.1:8000/v1/stream", "ws:///x", ""])
def test_stream_url_refuses_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="stream URL must look like") as info:
        stream_url(url, 16000)
    assert repr(url) in str(info.value)


def test_load_pcm16_mono_keeps_its_rate(tmp_path: Path) -> None:
    audio = tone(0.5, 440.0, 22050, level=0.5)
    path = tmp_path / "mono.wav"
    sf.write(path, audio, 22050, subtype="FLOAT")
    pcm, rate = load_pcm16(path)
    assert rate == 22050
    assert pcm.dtype == np.dtype("<i2")
    assert pcm.shape == audio.shape
    # the server's own conversion (pcm.format): scale 32768, rounded to the nearest step
    np.testing.assert_allclose(to_float(pcm), audio, atol=0.5 / 32768 + 1e-7)


def test_load_pcm16_mixes_stereo(tmp_path: Path) -> None:
    left = tone(0.5, 440.0, 44100, level=0.6)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 44100, subtype="FLOAT")
    pcm, rate = load_pcm16(path)
    assert rate == 44100
    assert pcm.ndim == 1
    assert pcm.size == left.size
    np.testing.assert_allclose(to_float(pcm), left / 2, atol=0.5 / 32768 + 1e-7)


@pytest.mark.parametrize(("rate", "expected"), [(4000, 16000), (96000, 16000), (11025, 11025)])
def test_load_pcm16_resamples_rates_the_protocol_refuses(
    tmp_path: Path, rate: int, expected: int
) -> None:
    path = tmp_path / f"{rate}.wav"
    sf.write(path, tone(1.0, 440.0, rate, level=0.5), rate)
    pcm, got = load_pcm16(path)
    assert got == expected
    assert abs(pcm.size - expected) <= 2
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    assert np.fft.rfftfreq(pcm.size, 1 / got)[int(np.argmax(spectrum))] == pytest.approx(440, abs=2)


def test_load_pcm16_clips(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, np.array([2.0, -2.0, 0.5], dtype=np.float32), 16000, subtype="FLOAT")
    pcm, _ = load_pcm16(path)
    assert pcm.tolist() == [32767, -32768, 16384]


def test_load_pcm16_missing_file(tmp_path: Path) -> None:
    with pytest.raises(sf.LibsndfileError):
        load_pcm16(tmp_path / "nothing.wav")


def test_report_of_type() -> None:
    report = StreamReport(messages=[{"type": "ready"}, {"type": "result", "segment": 0}, {}])
    assert report.of_type("result") == [{"type": "result", "segment": 0}]
    assert report.of_type("end") == []


# stream_pcm16 against a scripted WebSocket server


def run_against(handler: Any, pcm: npt.NDArray[np.int16], **kwargs: Any) -> StreamReport:
    async def main() -> StreamReport:
        async with serve(handler, "127.0.0.1", 0, max_queue=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            url = f"ws://127.0.0.1:{port}/v1/stream"
            return await stream_pcm16(url, pcm, 16000, **kwargs)

    return asyncio.run(asyncio.wait_for(main(), 30))


def test_stream_pcm16_sends_frames_then_end() -> None:
    pcm = (np.arange(16000 + 123) % 2000 - 1000).astype("<i2")
    received: list[bytes | str] = []
    paths: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        paths.append(ws.request.path)
        await ws.send(json.dumps({"type": "ready"}))
        async for message in ws:
            received.append(message)
            if isinstance(message, str):
                await ws.send(json.dumps({"type": "end", "segments": 0, "audio_ms": 1007}))
                await ws.close(1000)

    seen: list[dict[str, Any]] = []
    report = run_against(handler, pcm, speed=0.0, token="t", on_message=seen.append)
    assert report.close_code == 1000
    assert [m["type"] for m in report.messages] == ["ready", "end"]
    assert seen == report.messages
    assert query(paths[0]) == {"sample_rate": ["16000"], "encoding": ["pcm_s16le"], "token": ["t"]}
    frames, last = received[:-1], received[-1]
    assert json.loads(last) == {"type": "end"}
    assert all(isinstance(f, bytes) for f in frames)
    assert [len(f) for f in frames[:-1]] == [640 * 2] * (len(frames) - 1)  # 40 ms at 16 kHz
    assert b"".join(f for f in frames if isinstance(f, bytes)) == pcm.tobytes()


def test_stream_pcm16_keeps_what_the_server_sent_before_closing() -> None:
    burst = 50

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the first audio frame, while the client keeps sending
        for i in range(burst):
            await ws.send(json.dumps({"type": "error", "code": "limit", "message": str(i)}))
        await ws.close(1008)

    pcm = np.zeros(16000 * 20, dtype="<i2")
    report = run_against(handler, pcm, speed=0.0)
    assert report.close_code == 1008
    assert [m["message"] for m in report.messages] == [str(i) for i in range(burst)]
