"""POST /v1/classify (and the token rule on /v1/*) through the real app in-process."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from starlette.testclient import TestClient

from server.app import create_app
from server.multipart import MAX_PARTS
from server.settings import Settings
from tests.speech import espeak, short_word, silence, tone, wav_bytes

Float = npt.NDArray[np.float32]
REPO = Path(__file__).resolve().parents[2]
Response = Any  # httpx's or httpx2's, whichever the TestClient uses


@pytest.fixture(scope="module")
def speech() -> Float:
    """Two sentences (each under 3 s) and a too-short word, separated by silences, 16 kHz."""
    return np.concatenate(
        [
            silence(0.5),
            espeak("The weather was lovely this morning.", rate_wpm=190),
            silence(1.0),
            espeak("Please close the door.", rate_wpm=190),
            silence(1.0),
            short_word(),
            silence(1.0),
        ]
    )


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny_model_dir))) as c:
        yield c


@pytest.fixture
def make_client(tiny_model_dir: Path) -> Iterator[Any]:
    opened: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        c = TestClient(create_app(Settings(model_dir=tiny_model_dir, **settings)))
        c.__enter__()
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.__exit__(None, None, None)


def post_file(client: TestClient, data: bytes, **kwargs: Any) -> Response:
    return client.post("/v1/classify", files={"file": ("clip.wav", data, "audio/wav")}, **kwargs)


def post_raw(client: TestClient, data: Any, content_type: str | None = "audio/wav") -> Response:
    headers = {} if content_type is None else {"content-type": content_type}
    return client.post("/v1/classify", content=data, headers=headers)


def assert_error(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body


def without_latency(reply: dict[str, Any]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(reply))
    for segment in copy["segments"]:
        segment.pop("latency_ms", None)
    return copy


# Successful replies


def test_multipart_reply_format(client: TestClient, speech: Float) -> None:
    response = post_file(client, wav_bytes(speech))
    assert response.status_code == 200, response.text
    reply = response.json()
    assert set(reply) == {"duration_ms", "model", "segments", "summary"}
    assert reply["duration_ms"] == speech.size * 1000 // 16000
    model = reply["model"]
    assert set(model) == {"name", "version", "labels", "sample_rate"}
    assert model["name"] == "tiny-test"
    labels = model["labels"]

    segments = reply["segments"]
    assert [s["segment"] for s in segments] == list(range(len(segments)))
    results = [s for s in segments if "label" in s]
    skipped = [s for s in segments if "reason" in s]
    assert len(results) == 2
    assert [s["reason"] for s in skipped] == ["too_short"]
    assert segments[-1] in skipped  # the blip comes last
    for seg in segments:
        assert "type" not in seg
        assert 0 <= seg["start_ms"] < seg["end_ms"] <= reply["duration_ms"]
    for a, b in itertools.pairwise(segments):
        assert a["end_ms"] <= b["start_ms"]
    for result in results:
        assert set(result) == {
            "segment",
            "start_ms",
            "end_ms",
            "label",
            "confidence",
            "scores",
            "model_version",
            "latency_ms",
        }
        assert list(result["scores"]) == labels
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-4)
        assert result["label"] == max(result["scores"], key=result["scores"].get)
        assert result["confidence"] == result["scores"][result["label"]]
        assert result["model_version"] == model["version"]
        assert isinstance(result["latency_ms"], int)
    assert set(skipped[0]) == {"segment", "start_ms", "end_ms", "reason"}
    # The first utterance starts near 0.5 s and the second near 3.2 s (within VAD padding).
    assert abs(results[0]["start_ms"] - 500) <= 300
    assert results[1]["start_ms"] > results[0]["end_ms"] + 300


def test_summary_is_the_duration_weighted_average(client: TestClient, speech: Float) -> None:
    reply = post_file(client, wav_bytes(speech)).json()
    results = [s for s in reply["segments"] if "label" in s]
    weights = np.array([r["end_ms"] - r["start_ms"] for r in results], dtype=np.float64)
    assert weights[0] != weights[1]  # a plain mean would differ
    summary = reply["summary"]
    assert set(summary) == {"label", "confidence", "scores"}
    for label, score in summary["scores"].items():
        expected = np.dot(weights, [r["scores"][label] for r in results]) / weights.sum()
        assert score == pytest.approx(expected, abs=2e-6)
    assert summary["label"] == max(summary["scores"], key=summary["scores"].get)
    assert summary["confidence"] == summary["scores"][summary["label"]]


def test_raw_body_gives_the_same_reply(client: TestClient, speech: Float) -> None:
    data = wav_bytes(speech)
    multipart = post_file(client, data).json()
    raw = post_raw(client, data, "audio/wav")
    assert raw.status_code == 200
    assert without_latency(raw.json()) == without_latency(multipart)
    assert post_raw(client, data, "audio/x-wav; codecs=1").status_code == 200


def test_stereo_44k_upload_is_segmented_like_the_mono_original(
    client: TestClient, speech: Float
) -> None:
    import soxr

    mono = post_file(client, wav_bytes(speech)).json()
    at_44k = soxr.resample(speech, 16000, 44100).astype(np.float32)
    stereo = np.stack([at_44k, at_44k], axis=1)
    reply = post_file(client, wav_bytes(stereo, 44100, subtype="PCM_24")).json()
    assert abs(reply["duration_ms"] - mono["duration_ms"]) <= 1
    assert len(reply["segments"]) == len(mono["segments"])
    for got, want in zip(reply["segments"], mono["segments"], strict=True):
        assert abs(got["start_ms"] - want["start_ms"]) <= 60
        assert abs(got["end_ms"] - want["end_ms"]) <= 60
        assert ("label" in got) == ("label" in want)


def test_flac_upload(client: TestClient, speech: Float) -> None:
    import io

    buf = io.BytesIO()
    sf.write(buf, speech, 16000, format="FLAC")
    response = post_raw(client, buf.getvalue(), "audio/flac")
    assert response.status_code == 200
    assert len([s for s in response.json()["segments"] if "label" in s]) == 2


def test_silent_file_has_no_segments_and_an_empty_summary(client: TestClient) -> None:
    response = post_file(client, wav_bytes(silence(2.0)))
    assert response.status_code == 200
    reply = response.json()
    assert reply["duration_ms"] == 2000
    assert reply["segments"] == []
    assert reply["summary"] == {"label": None, "confidence": None, "scores": {}}


def test_only_too_short_segments_give_an_empty_summary(client: TestClient) -> None:
    blip = np.concatenate([silence(1.0), short_word(), silence(1.0)])
    reply = post_file(client, wav_bytes(blip)).json()
    assert [s.get("reason") for s in reply["segments"]] == ["too_short"]
    assert reply["summary"] == {"label": None, "confidence": None, "scores": {}}


def test_one_sample_file_is_classified_as_nothing(client: TestClient) -> None:
    response = post_file(client, wav_bytes(np.array([0.1], dtype=np.float32), 48000))
    assert response.status_code == 200
    assert response.json()["segments"] == []


# Refusals


def test_multipart_without_file_field(client: TestClient) -> None:
    response = client.post("/v1/classify", files={"audio": ("a.wav", wav_bytes(tone(1.0)))})
    body = assert_error(response, 400, "bad_request")
    assert "'file'" in body["error"]["message"]


def test_multipart_form_without_any_file(client: TestClient) -> None:
    response = client.post(
        "/v1/classify", content=b"", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert_error(response, 400, "bad_request")


def test_empty_file(client: TestClient) -> None:
    body = assert_error(post_file(client, b""), 400, "bad_audio")
    assert "empty" in body["error"]["message"]
    assert_error(post_raw(client, b""), 400, "bad_audio")


@pytest.mark.parametrize(
    "make_data",
    [
        lambda w: w[: len(w) // 2],
        lambda w: w[:30],
        lambda w: w[:44],
        lambda w: b"\x89PNG\r\n\x1a\n" + bytes(300),
        lambda w: b"just some text, not a recording\n" * 30,
        lambda w: np.random.default_rng(5).bytes(4000),
        lambda w: w[:44] + np.random.default_rng(6).bytes(len(w) - 44)[:100],
    ],
    ids=["half", "cut-in-header", "header-only", "png", "text", "random", "bad-data-length"],
)
def test_unreadable_audio(client: TestClient, make_data: Any) -> None:
    data = make_data(wav_bytes(tone(1.0)))
    assert_error(post_file(client, data), 400, "bad_audio")
    assert_error(post_raw(client, data), 400, "bad_audio")


def test_nan_samples(client: TestClient) -> None:
    audio = tone(1.0)
    audio[100:200] = np.nan
    body = assert_error(post_file(client, wav_bytes(audio, subtype="FLOAT")), 400, "bad_audio")
    assert "NaN" in body["error"]["message"]


def test_hostile_wav_header_is_answered_without_a_fault(client: TestClient) -> None:
    import struct

    data = bytearray(wav_bytes(tone(1.0)))
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFF0)
    for rate in (0xFFFFFFFF, 1, 7):
        hostile = bytearray(data)
        hostile[24:28] = struct.pack("<I", rate)
        assert post_raw(client, bytes(hostile)).status_code == 400
    assert post_raw(client, bytes(data)).status_code == 200


def test_oversized_body_with_content_length(make_client: Any) -> None:
    client = make_client(max_upload_bytes=4096)
    body = assert_error(post_raw(client, wav_bytes(tone(1.0))), 413, "too_large")
    assert "4096" in body["error"]["message"]
    assert_error(post_file(client, wav_bytes(tone(1.0))), 413, "too_large")
    assert post_raw(client, wav_bytes(tone(0.1))).status_code == 200  # 3244 bytes


def test_oversized_chunked_body(make_client: Any) -> None:
    client = make_client(max_upload_bytes=4096)
    data = wav_bytes(tone(1.0))

    def chunks() -> Iterator[bytes]:
        for offset in range(0, len(data), 1000):
            yield data[offset : offset + 1000]

    response = post_raw(client, chunks())
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "too_large")


def test_too_long_audio(make_client: Any) -> None:
    client = make_client(max_upload_ms=1000)
    body = assert_error(post_file(client, wav_bytes(silence(1.5))), 413, "too_large")
    assert "1500 ms" in body["error"]["message"]
    assert post_file(client, wav_bytes(silence(1.0))).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/json", "application/octet-stream", None]
)
def test_wrong_content_type(client: TestClient, content_type: str | None) -> None:
    response = post_raw(client, wav_bytes(tone(0.5)), content_type)
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\n"),
        ("multipart/form-data; boundary=xyz", b"\x00\x01 garbage garbage" * 50),
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="file"',
        ),
    ],
    ids=["no-boundary", "garbage", "unterminated"],
)
def test_malformed_multipart(client: TestClient, content_type: str, body: bytes) -> None:
    assert_error(post_raw(client, body, content_type), 400, "bad_request")


def test_too_many_parts(client: TestClient) -> None:
    files = [(f"f{i}", (f"{i}.txt", b"x", "text/plain")) for i in range(MAX_PARTS)]
    files.append(("file", ("clip.wav", wav_bytes(tone(0.5)), "audio/wav")))
    body = assert_error(client.post("/v1/classify", files=files), 400, "bad_request")
    assert str(MAX_PARTS) in body["error"]["message"]


def test_garbage_never_causes_a_server_error(client: TestClient) -> None:
    rng = np.random.default_rng(11)
    original = wav_bytes(tone(0.6, 440.0))
    content_types = ["audio/wav", "multipart/form-data; boundary=b", "audio/ogg", "image/png"]
    for i in range(40):
        data = bytearray(original)
        for at in rng.integers(0, len(data), size=6):
            data[at] = int(rng.integers(0, 256))
        body = bytes(data[: int(rng.integers(1, len(data) + 1))])
        response = post_raw(client, body, content_types[i % len(content_types)])
        assert response.status_code in (200, 400, 413, 415), response.text
        if response.status_code != 200:
            assert set(response.json()["error"]) == {"code", "message"}


# Token rule


@pytest.fixture
def guarded(make_client: Any) -> TestClient:
    client: TestClient = make_client(token="s3cret-token")
    return client


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic s3cret-token"}],
    ids=["none", "wrong", "basic"],
)
def test_classify_requires_the_token(guarded: TestClient, headers: dict[str, str]) -> None:
    response = guarded.post(
        "/v1/classify", files={"file": ("a.wav", wav_bytes(tone(0.5)))}, headers=headers
    )
    assert_error(response, 401, "unauthorized")


def test_classify_token_is_checked_before_the_body(guarded: TestClient) -> None:
    assert_error(post_raw(guarded, b"not audio", "text/plain"), 401, "unauthorized")


def test_classify_accepts_bearer_or_query_token(guarded: TestClient) -> None:
    data = wav_bytes(silence(1.0))
    bearer = guarded.post(
        "/v1/classify",
        files={"file": ("a.wav", data)},
        headers={"authorization": "Bearer s3cret-token"},
    )
    assert bearer.status_code == 200
    query = guarded.post("/v1/classify?token=s3cret-token", files={"file": ("a.wav", data)})
    assert query.status_code == 200
    wrong = guarded.post("/v1/classify?token=s3cret", files={"file": ("a.wav", data)})
    assert_error(wrong, 401, "unauthorized")


def test_model_info_requires_the_token(guarded: TestClient) -> None:
    assert_error(guarded.get("/v1/model"), 401, "unauthorized")
    assert_error(guarded.get("/v1/model?token=nope"), 401, "unauthorized")
    ok = guarded.get("/v1/model", headers={"authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    assert ok.json()["name"] == "tiny-test"
    assert guarded.get("/v1/model?token=s3cret-token").status_code == 200


def test_health_needs_no_token(guarded: TestClient) -> None:
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/readyz").status_code == 200


def test_no_token_configured_means_open(client: TestClient) -> None:
    assert client.get("/v1/model").status_code == 200


def test_an_open_server_says_so_once_at_start(
    tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for token in (None, "secret"):
        caplog.clear()
        with TestClient(create_app(Settings(model_dir=tiny_model_dir, token=token))) as c:
            c.get("/healthz")
            c.get("/v1/model")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        open_warnings = [w for w in warnings if "EMOSTREAM_TOKEN is not set" in w]
        assert len(open_warnings) == (1 if token is None else 0), warnings


# Privacy: nothing is written to disk while an upload is classified.

_AUDIT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from starlette.testclient import TestClient
    from server.app import create_app
    from server.settings import Settings
    from server.decoding import decode_audio
    from server.settings import MAX_UPLOAD_SAMPLES
    from tests.speech import espeak, silence, wav_bytes
    import numpy as np

    speech = espeak("Nothing of this is kept.", sample_rate=44100)
    audio = np.concatenate([silence(0.3, 44100), speech, silence(0.8, 44100)])
    wav = wav_bytes(audio, 44100)
    events = []
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if (mode and any(c in mode for c in "wax+")) or (flags or 0) & WRITE_FLAGS:
                events.append(["open-for-write", str(path)])
        elif event.startswith(("os.", "shutil.", "tempfile.")) and event not in (
            "os.listdir", "os.scandir", "os.walk", "os.chdir"
        ):
            events.append([event, str(args[0]) if args else ""])

    with TestClient(create_app(Settings(model_dir=Path(sys.argv[1])))) as client:
        client.post("/v1/classify", files={"file": ("a.wav", wav)})  # warms up lazy imports
        sys.addaudithook(hook)
        multipart = client.post("/v1/classify", files={"file": ("a.wav", wav)})
        raw = client.post("/v1/classify", content=wav, headers={"content-type": "audio/wav"})
        decode_audio(wav, 16000, 60000, MAX_UPLOAD_SAMPLES)
    print(json.dumps({
        "events": events,
        "status": [multipart.status_code, raw.status_code],
        "segments": len(multipart.json()["segments"]),
    }))
    """
)


def test_uploads_never_touch_the_filesystem(tiny_model_dir: Path) -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-c", _AUDIT_SCRIPT, str(tiny_model_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["status"] == [200, 200]
    assert report["segments"] >= 1
    assert report["events"] == []


def test_audit_hook_would_see_a_temporary_file() -> None:
    # The privacy check above is only meaningful if writing a temp file shows up.
    script = textwrap.dedent(
        """
        import os, sys, tempfile
        seen = []
        W = os.O_WRONLY | os.O_RDWR | os.O_CREAT
        def hook(event, args):
            if event == "open" and (((args[1] or "") and "w" in args[1]) or (args[2] or 0) & W):
                seen.append(str(args[0]))
        sys.addaudithook(hook)
        with tempfile.TemporaryFile() as f:
            f.write(b"audio")
        print(len(seen))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert int(out.stdout.strip()) >= 1


def test_a_detector_fault_in_an_upload_is_logged_and_the_rest_classified(
    client: TestClient,
    speech: Float,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from server.service import Service
    from tests.server.streams import FailingDetector

    clean = post_file(client, wav_bytes(speech)).json()
    real = Service.new_detector
    monkeypatch.setattr(Service, "new_detector", lambda self: FailingDetector(real(self), {5}))
    reply = post_file(client, wav_bytes(speech))
    assert reply.status_code == 200

    # Frame 5 is in the leading silence: counted unvoiced, it changes nothing.
    def bounds(body: dict[str, Any]) -> list[tuple[int, int, str]]:
        return [(s["start_ms"], s["end_ms"], s.get("label", "")) for s in body["segments"]]

    assert bounds(reply.json()) == bounds(clean)
    assert "voice detector failed: RuntimeError: scripted detector fault" in caplog.text
