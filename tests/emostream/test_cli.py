"""The ``emostream`` command (client/command.py): classify, stream against a real server, serve."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
import websockets

from emostream.cli import main
from tests.served import REPO, Served, start_server, stop_server
from tests.speech import silence, to_pcm16, tone, wav_bytes

# A real server in a subprocess


def test_served_server_is_healthy(served: Served) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/healthz", timeout=10) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/v1/model", timeout=10) as r:
        assert json.load(r)["name"] == "tiny-test"


# emostream stream


def test_stream_prints_results_live(
    served: Served, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["stream", str(speech_wav), "--url", served.url, "--fast"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0] == str(speech_wav)  # a header, then one line per segment, as they come
    rows = [line.strip() for line in lines[1:]]
    assert len(rows) == 3
    assert re.match(r"#0 +\d+\.\d\d–\s*\d+\.\d\d s  \w+ +0\.\d\d  \(\d+ ms\)", rows[0])
    assert re.match(r"#2 +\d+\.\d\d–\s*\d+\.\d\d s  \(skipped: too_short\)$", rows[2])


def test_stream_json_prints_every_message(
    served: Served,
    speech: npt.NDArray[np.float32],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A stereo 44.1 kHz file is streamed at its own rate, mixed to mono.
    import soxr

    at_44k = soxr.resample(speech, 16000, 44100).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([at_44k, at_44k], axis=1), 44100)
    code = main(["stream", str(path), "--url", served.url, "--fast", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    messages = [json.loads(line) for line in out.strip().splitlines()]
    assert messages[0]["type"] == "ready"
    assert messages[0]["sample_rate"] == 44100
    kinds = [m["type"] for m in messages]
    assert kinds.count("speech_start") == kinds.count("speech_end") == 3
    assert kinds.count("result") == 2
    assert kinds[-1] == "end"


def test_stream_fast_of_a_long_file_stays_inside_the_default_limits(
    served: Served,
    speech: npt.NDArray[np.float32],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Over a minute of audio: past the stream-speed burst, so the server paces the rest.
    audio = np.tile(speech, 12)
    path = tmp_path / "long.wav"
    path.write_bytes(wav_bytes(audio))
    code = main(["stream", str(path), "--url", served.url, "--fast", "--json"])
    messages = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 0
    assert [m for m in messages if m["type"] == "error"] == []
    finals = [m for m in messages if m["type"] in ("result", "skipped")]
    assert [m["type"] for m in finals].count("result") >= 2 * 12
    assert messages[-1] == {"type": "end", "segments": len(finals), "audio_ms": len(audio) // 16}


def test_stream_prints_partials_marked_and_finals(
    served: Served, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["stream", str(speech_wav), "--url", served.url, "--speed", "4", "--interim-ms", "250"]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("#")]
    partials = [line for line in lines if "(partial," in line]
    finals = [line for line in lines if "(partial," not in line and "skipped" not in line]
    assert len(finals) == 2
    assert partials, out
    assert all(
        re.match(r"#\d +\d+\.\d\d–\s*\d+\.\d\d s  \w+ +[01]\.\d\d  \(partial, \d+ ms\)", p)
        for p in partials
    )
    # Each segment's partials are printed before its final.
    for final in finals:
        number = final.split()[0]
        assert lines.index(final) > max(
            (
                i
                for i, line in enumerate(lines)
                if line.startswith(number + " ") and "(partial," in line
            ),
            default=-1,
        )


@pytest.mark.parametrize("value", ["-1", "100", "99999", "abc", ""])
def test_stream_interim_ms_must_be_valid(
    speech_wav: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["stream", str(speech_wav), "--interim-ms", value])
    assert info.value.code == 2
    assert "interim-ms must be 0 or an integer from 250 to 3000" in capsys.readouterr().err


def test_stream_console_script(served: Served, speech_wav: Path) -> None:
    command = [str(REPO / ".venv/bin/emostream"), "stream", str(speech_wav)]
    completed = subprocess.run(
        [*command, "--url", served.url, "--speed", "8"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert (
        len([x for x in completed.stdout.splitlines() if re.match(r" +#\d .* \(\d+ ms\)$", x)]) == 2
    )


def test_stream_with_a_token_the_server_does_not_need(
    served: Served, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stream", str(speech_wav), "--url", served.url, "--fast", "--token", "x"]) == 0


def test_stream_to_nothing_listening(
    speech_wav: Path, unused_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"ws://127.0.0.1:{unused_port}/v1/stream"
    assert main(["stream", str(speech_wav), "--url", url, "--fast"]) == 1
    err = capsys.readouterr().err
    assert f"cannot stream to {url}" in err


def test_stream_bad_url(speech_wav: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stream", str(speech_wav), "--url", "ftp://127.0.0.1/v1/stream"]) == 1
    assert "ws://host:port/v1/stream" in capsys.readouterr().err


def test_stream_token_and_refusal(
    tiny_model_dir: Path, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_server(tiny_model_dir, env={"EMOSTREAM_TOKEN": "s3cret"})
    try:
        assert main(["stream", str(speech_wav), "--url", server.url, "--fast"]) == 1
        captured = capsys.readouterr()
        assert "the server said unauthorized" in captured.err
        assert "the server closed with 1008" in captured.err
        ok = ["stream", str(speech_wav), "--url", server.url, "--fast", "--token", "s3cret"]
        assert main(ok) == 0
    finally:
        assert stop_server(server) == 0


@pytest.mark.parametrize("content", [None, b"not audio at all"])
def test_stream_missing_or_corrupt_file(
    tmp_path: Path, content: bytes | None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "input.wav"
    if content is not None:
        path.write_bytes(content)
    assert main(["stream", str(path), "--url", "ws://127.0.0.1:9/v1/stream"]) == 1
    assert str(path) in capsys.readouterr().err


@pytest.mark.parametrize("speed", ["0", "-1", "fast", "inf", "nan"])
def test_stream_speed_must_be_positive(
    speech_wav: Path, speed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["stream", str(speech_wav), "--speed", speed])
    assert info.value.code == 2
    assert "speed must be a positive number" in capsys.readouterr().err


# emostream serve


def test_serve_drains_a_live_session_on_sigterm_and_exits_0(
    tiny_model_dir: Path, speech: npt.NDArray[np.float32]
) -> None:
    server = start_server(tiny_model_dir)
    try:

        async def session() -> tuple[list[dict[str, object]], int | None]:
            messages: list[dict[str, object]] = []
            async with websockets.connect(server.url) as ws:
                messages.append(json.loads(await ws.recv()))
                await ws.send(to_pcm16(speech[: 16000 * 2]))
                server.process.send_signal(signal.SIGTERM)
                try:
                    async for raw in ws:
                        messages.append(json.loads(raw))
                except websockets.ConnectionClosedError:  # any close but 1000/1001
                    pass
            return messages, ws.close_code

        messages, close_code = asyncio.run(asyncio.wait_for(session(), 60))
    finally:
        code = stop_server(server)
    log = "".join(server.log)
    assert code == 0, log
    assert "stopped by SIGTERM" in log
    assert messages[0]["type"] == "ready"
    assert close_code == 1013
    # The utterance in progress was finished and classified before the close.
    kinds = [m["type"] for m in messages]
    assert "result" in kinds


def test_serve_exits_0_on_sigint(tiny_model_dir: Path) -> None:
    server = start_server(tiny_model_dir, "--workers", "1")
    assert stop_server(server, signal.SIGINT) == 0
    assert "stopped by SIGINT" in "".join(server.log)


def test_serve_with_a_missing_model_fails(tmp_path: Path) -> None:
    missing = tmp_path / "no-model"
    completed = subprocess.run(
        [sys.executable, "-m", "emostream", "serve", "--model", str(missing), "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode != 0
    assert str(missing) in completed.stderr


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_serve_port_is_checked(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", port])
    assert info.value.code == 2
    assert "port must be an integer from 0 to 65535" in capsys.readouterr().err


# emostream classify


def test_classify_json(
    tiny_model_dir: Path, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["classify", str(speech_wav), "--model", str(tiny_model_dir), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["model"]["name"] == "tiny-test"
    (only,) = report["files"]
    assert only["file"] == str(speech_wav)
    assert only["duration_ms"] == pytest.approx(6400, abs=1200)
    segments = only["segments"]
    assert [s["segment"] for s in segments] == [0, 1, 2]
    assert ["label" in s for s in segments] == [True, True, False]
    assert segments[2]["reason"] == "too_short"
    assert only["summary"]["label"] in report["model"]["labels"]


def test_classify_does_not_import_the_web_app(tiny_model_dir: Path, speech_wav: Path) -> None:
    # Offline classification shares the upload pipeline (server/recording.py), not the app.
    script = (
        "import json, sys\n"
        "from emostream.cli import main\n"
        "code = main(['classify', sys.argv[1], '--model', sys.argv[2], '--json'])\n"
        "web = sorted(m for m in sys.modules if m.split('.')[0] == 'starlette'"
        " or m in ('server.app', 'server.api', 'server.stream', 'uvicorn'))\n"
        "print(json.dumps({'code': code, 'web': web}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(speech_wav), str(tiny_model_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "web": []}, done.stderr


def test_classify_table_for_several_files(
    tiny_model_dir: Path, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = tmp_path / "quiet.wav"
    quiet.write_bytes(wav_bytes(silence(1.5)))
    code = main(["classify", str(speech_wav), str(quiet), "--model", str(tiny_model_dir)])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{speech_wav}  (" in out
    assert f"{quiet}  (1.5 s)" in out
    assert re.search(r"  #0 +\d+\.\d\d–\s*\d+\.\d\d s  \w+ +0\.\d\d", out)
    assert "(skipped: too_short)" in out
    overall = re.findall(r"overall: (.*)", out)
    assert len(overall) == 2
    assert overall[1] == "—"
    assert re.fullmatch(r"\w+ 0\.\d\d", overall[0])


def test_classify_reports_unreadable_files_and_goes_on(
    tiny_model_dir: Path, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.wav"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(wav_bytes(tone(1.0))[:1000])
    args = [str(missing), str(corrupt), str(speech_wav), "--model", str(tiny_model_dir), "--json"]
    code = main(["classify", *args])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{missing}: error:" in captured.err
    assert f"{corrupt}: error:" in captured.err
    assert "truncated" in captured.err
    assert [f["file"] for f in json.loads(captured.out)["files"]] == [str(speech_wav)]


def test_classify_bad_setting_exits_2(
    tiny_model_dir: Path, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["classify", str(speech_wav), "--model", str(tiny_model_dir), "--workers", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "invalid setting" in err
    assert "workers" in err


def test_classify_missing_model_exits_2(
    speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-model"
    assert main(["classify", str(speech_wav), "--model", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "cannot use the model" in err
    assert str(missing) in err


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def truncated_vad_model(tmp_path: Path) -> Path:
    from vad.silero import packaged_model_path

    path = tmp_path / "silero_vad.onnx"
    path.write_bytes(packaged_model_path().read_bytes()[:4096])
    return path


def test_serve_with_a_bad_vad_model_stops_at_start(
    tiny_model_dir: Path, truncated_vad_model: Path
) -> None:
    env = {**os.environ, "EMOSTREAM_VAD_MODEL_PATH": str(truncated_vad_model)}
    completed = subprocess.run(
        [sys.executable, "-m", "emostream", "serve", "--model", str(tiny_model_dir), "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert completed.returncode != 0
    assert f"Silero VAD model file {truncated_vad_model} has sha256" in completed.stderr
    assert "truncated: 4096 of 2327524 bytes" in completed.stderr


@pytest.mark.parametrize("problem", ["missing", "truncated"])
def test_classify_with_a_bad_vad_model_exits_2(
    tiny_model_dir: Path,
    speech_wav: Path,
    truncated_vad_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    path = truncated_vad_model if problem == "truncated" else truncated_vad_model.with_name("x")
    monkeypatch.setenv("EMOSTREAM_VAD_MODEL_PATH", str(path))
    assert main(["classify", str(speech_wav), "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert "cannot use the voice detector" in err
    assert str(path) in err
    assert ("is missing" if problem == "missing" else "truncated") in err


def test_serve_with_an_unknown_detector_stops_at_start(tiny_model_dir: Path) -> None:
    env = {**os.environ, "EMOSTREAM_VAD_DETECTOR": "rnnoise"}
    completed = subprocess.run(
        [sys.executable, "-m", "emostream", "serve", "--model", str(tiny_model_dir), "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert completed.returncode == 2
    assert "invalid setting" in completed.stderr
    assert "vad_detector" in completed.stderr and "'silero' or 'webrtc'" in completed.stderr
