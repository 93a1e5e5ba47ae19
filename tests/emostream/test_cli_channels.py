"""The CLI with two-channel audio and G.711: classify --channels separate, stream --channels 2,
stream --encoding mulaw from standard input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from emostream.cli import main
from tests.emostream.records import (
    QUALITY_KEYS,
    check_quality_outputs,
    read_csv,
    read_jsonl,
    read_table,
    read_vtt,
    stream_stdin,
)
from tests.served import Served
from tests.speech import silence, wav_bytes
from tests.telephony import g711

Float = npt.NDArray[np.float32]


@pytest.fixture
def call_wav(speech: Float, tmp_path: Path) -> Path:
    """Party 0 says the two sentences; party 1 says them too, 1.5 s later."""
    left = np.concatenate([speech, silence(1.5)])
    right = np.concatenate([silence(1.5), speech])
    path = tmp_path / "call.wav"
    path.write_bytes(wav_bytes(np.stack([left, right], axis=1)))
    return path


def classify(tiny_model_dir: Path, *args: str) -> int:
    return main(["classify", "--model", str(tiny_model_dir), "--workers", "1", *args])


def test_classify_separate_names_the_channel_in_every_format(
    tiny_model_dir: Path, call_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert classify(tiny_model_dir, str(call_wav), "--channels", "separate", "--json") == 0
    reply = json.loads(capsys.readouterr().out)["files"][0]
    assert [c["channel"] for c in reply["channels"]] == [0, 1]
    texts = {}
    for fmt in ("table", "jsonl", "csv", "vtt"):
        args = (str(call_wav), "--channels", "separate", "--format", fmt)
        assert classify(tiny_model_dir, *args) == 0
        texts[fmt] = capsys.readouterr().out
    records = read_jsonl(texts["jsonl"])
    assert [(r["channel"], r["segment"]) for r in records] == [
        (c, s["segment"]) for c, s in ((s["channel"], s) for s in reply["segments"])
    ]
    assert sorted((r["channel"], r["type"]) for r in records) == [
        (0, "result"),
        (0, "result"),
        (0, "skipped"),
        (1, "result"),
        (1, "result"),
        (1, "skipped"),
    ]
    assert texts["csv"].splitlines()[0].startswith("type,file,channel,segment,")
    assert [int(r["channel"]) for r in read_csv(texts["csv"])] == [r["channel"] for r in records]
    cues = read_vtt(texts["vtt"])
    assert [text.split(">")[0] for _, _, text in cues] == [
        f"<v channel {r['channel']}" for r in records
    ]
    rows = [line for line in texts["table"].splitlines() if "#" in line]
    assert [int(line.split("ch ")[1].split()[0]) for line in rows] == [
        r["channel"] for r in records
    ]
    assert read_table(texts["table"]) == []  # mono rows have no channel column
    summaries = [line.strip() for line in texts["table"].splitlines() if "#" not in line][1:]
    overall = reply["summary"]
    assert summaries[0] == f"overall: {overall['label']} {overall['confidence']:.2f}"
    assert [line.split(":")[0] for line in summaries[1:]] == ["ch 0", "ch 1"]
    for line, part in zip(summaries[1:], reply["channels"], strict=True):
        assert line.endswith(f"{part['summary']['label']} {part['summary']['confidence']:.2f}")


def test_classify_separate_with_quality_has_channel_and_quality_in_every_format(
    tiny_model_dir: Path, call_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = (str(call_wav), "--channels", "separate", "--quality")
    assert classify(tiny_model_dir, *args, "--json") == 0
    segments = json.loads(capsys.readouterr().out)["files"][0]["segments"]
    classified = [s for s in segments if "label" in s]
    assert {s["channel"] for s in classified} == {0, 1}
    assert all(set(s) >= {"channel", *QUALITY_KEYS} for s in classified)
    texts = {}
    for fmt in ("table", "jsonl", "csv", "vtt"):
        assert classify(tiny_model_dir, *args, "--format", fmt) == 0
        texts[fmt] = capsys.readouterr().out
    records = read_jsonl(texts["jsonl"])
    assert [(r["channel"], r["segment"]) for r in records] == [
        (s["channel"], s["segment"]) for s in segments
    ]
    check_quality_outputs(texts, segments)  # the NOTE names the channel as well
    header = texts["csv"].splitlines()[0]
    assert header.startswith("type,file,channel,segment,")
    assert header.endswith(",uncertain,warnings,speech,snr_db,level_dbfs,clipped")
    assert [int(r["channel"]) for r in read_csv(texts["csv"])] == [r["channel"] for r in records]
    voiced = [line for line in texts["vtt"].splitlines() if line.startswith("<v ")]
    assert [line.split(">")[0] for line in voiced] == [
        f"<v channel {r['channel']}" for r in records
    ]
    notes = [line for line in texts["vtt"].splitlines() if line.startswith("NOTE ")]
    assert [line.split(" quality:")[0] for line in notes] == [
        f"NOTE channel {r['channel']} segment {r['segment']}"
        for r in records
        if r["type"] == "result"
    ]


def test_classify_mix_records_have_no_channel(
    tiny_model_dir: Path, call_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert classify(tiny_model_dir, str(call_wav), "--format", "csv") == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("type,file,segment,")
    with pytest.raises(SystemExit) as exc:
        classify(tiny_model_dir, str(call_wav), "--channels", "both")
    assert exc.value.code == 2
    assert "invalid choice: 'both'" in capsys.readouterr().err


def test_stream_two_channels_from_a_stereo_file(
    served: Served, call_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["stream", str(call_wav), "--url", served.url, "--fast", "--channels", "2"]
    assert main([*base, "--format", "jsonl"]) == 0
    records = read_jsonl(capsys.readouterr().out)
    for channel in (0, 1):
        mine = [r for r in records if r["channel"] == channel]
        assert [r["type"] for r in mine] == ["result", "result", "skipped"]
        assert [r["segment"] for r in mine] == [0, 1, 2]
    assert main([*base, "--format", "vtt"]) == 0
    assert {text[:12] for _, _, text in read_vtt(capsys.readouterr().out)} == {
        "<v channel 0",
        "<v channel 1",
    }


def test_stream_two_channels_needs_a_stereo_file(
    served: Served, tmp_path: Path, speech: Float, capsys: pytest.CaptureFixture[str]
) -> None:
    mono = tmp_path / "mono.wav"
    mono.write_bytes(wav_bytes(speech))
    assert main(["stream", str(mono), "--url", served.url, "--channels", "2"]) == 1
    assert "1 channel(s)" in capsys.readouterr().err


@pytest.mark.parametrize("channels", [1, 2])
def test_stream_mulaw_at_8000_hz_from_standard_input(
    served: Served, speech: Float, channels: int
) -> None:
    at_8k = soxr.resample(speech, 16000, 8000).astype(np.float32)
    audio = at_8k if channels == 1 else np.stack([at_8k, np.zeros_like(at_8k)], axis=1)
    data = g711(audio.reshape(-1))
    args = ["--encoding", "mulaw", "--sample-rate", "8000", "--format", "jsonl"]
    completed = stream_stdin(served.url, data + b"\xff", *args, "--channels", str(channels))
    assert completed.returncode == 0, completed.stderr.decode()
    records = read_jsonl(completed.stdout.decode())
    assert [r["type"] for r in records] == ["result", "result", "skipped"]
    assert all(r.get("channel") == (0 if channels == 2 else None) for r in records)
