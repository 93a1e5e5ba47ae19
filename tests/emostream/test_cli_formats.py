"""The CLI's output formats (client/formats.py), -o, standard-input streaming, help and exits."""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from client.formats import FIELDS, CsvWriter, VttWriter, csv_cell, record, vtt_time
from emostream.cli import EXIT_CODES_HELP, build_parser, main
from tests.emostream.records import (
    QUALITY_KEYS,
    Rec,
    check_quality_outputs,
    read_csv,
    read_jsonl,
    read_table,
    read_vtt,
    stream_stdin,
)
from tests.served import REPO, Served, start_server, stop_server
from tests.speech import to_pcm16

LABELS = ["neutral", "happy", "sad", "angry", "fearful", "disgust"]


def vtt_of(rec: Rec) -> tuple[int, int, str]:
    text = (
        f"(not classified: {rec['reason']})"
        if rec["type"] == "skipped"
        else f"{rec['label']} {rec['confidence']:.2f}"
    )
    return (rec["start_ms"], rec["end_ms"], text)


def table_of(rec: Rec) -> tuple[int, float, float, str | None, str | None]:
    return (
        rec["segment"],
        round(rec["start_ms"] / 1000, 2),
        round(rec["end_ms"] / 1000, 2),
        rec["label"],
        rec["reason"],
    )


def steady(records: list[Rec]) -> list[Rec]:
    """Records without what changes from run to run: latency, and score noise below 1e-3
    (a stream's frames reach the model in batches that differ with timing)."""
    return [
        {
            **r,
            "latency_ms": 0,
            "confidence": None if r["confidence"] is None else round(r["confidence"], 3),
            "scores": {k: round(v, 3) for k, v in r["scores"].items()},
        }
        for r in records
    ]


def classify(tiny_model_dir: Path, *args: str) -> int:
    return main(["classify", "--model", str(tiny_model_dir), "--workers", "1", *args])


# classify ------------------------------------------------------------------------


def test_classify_writes_the_same_records_in_every_format(
    tiny_model_dir: Path, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert classify(tiny_model_dir, str(speech_wav), "--json") == 0
    reply = json.loads(capsys.readouterr().out)["files"][0]
    texts = {}
    for fmt in ("table", "jsonl", "csv", "vtt"):
        assert classify(tiny_model_dir, str(speech_wav), "--format", fmt) == 0
        texts[fmt] = capsys.readouterr().out
    records = read_jsonl(texts["jsonl"])
    expected = [record(segment, str(speech_wav)) for segment in reply["segments"]]
    assert steady(records) == steady(expected)
    assert [r["type"] for r in records] == ["result", "result", "skipped"]
    assert all(set(r) == {*FIELDS, "scores"} for r in records)
    assert set(records[0]["scores"]) == set(LABELS)
    assert steady(read_csv(texts["csv"])) == steady(records)
    assert read_vtt(texts["vtt"]) == [vtt_of(r) for r in records]
    assert read_table(texts["table"]) == [table_of(r) for r in records]
    assert texts["table"].splitlines()[0].startswith(f"{speech_wav}  (")
    assert "overall:" in texts["table"].splitlines()[-1]


def test_classify_output_to_a_file_and_to_a_directory(
    tiny_model_dir: Path, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "more" / "speech.wav"  # same stem, other folder
    other.parent.mkdir()
    other.write_bytes(speech_wav.read_bytes())
    one = tmp_path / "out" / "all.jsonl"
    assert (
        classify(tiny_model_dir, str(speech_wav), str(other), "--format", "jsonl", "-o", str(one))
        == 0
    )
    assert capsys.readouterr().out == ""  # nothing on standard output
    together = read_jsonl(one.read_text())
    assert {r["file"] for r in together} == {str(speech_wav), str(other)}
    assert len(together) == 6

    folder = tmp_path / "per-file/"
    assert (
        classify(tiny_model_dir, str(speech_wav), str(other), "--format", "csv", "-o", f"{folder}/")
        == 0
    )
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["speech-2.csv", "speech.csv"]
    for name, source in [("speech.csv", speech_wav), ("speech-2.csv", other)]:
        rows = read_csv((folder / name).read_text())
        assert [r["file"] for r in rows] == [str(source)] * 3
        assert steady(rows) == steady([r for r in together if r["file"] == str(source)])

    vtts = tmp_path / "vtt"
    vtts.mkdir()  # an existing directory needs no trailing slash
    assert (
        classify(tiny_model_dir, str(speech_wav), str(other), "--format", "vtt", "-o", str(vtts))
        == 0
    )
    assert len(read_vtt((vtts / "speech.vtt").read_text())) == 3


def test_classify_refuses_outputs_that_cannot_work(
    tiny_model_dir: Path, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = str(tmp_path / "x.vtt")
    assert (
        classify(tiny_model_dir, str(speech_wav), str(speech_wav), "--format", "vtt", "-o", target)
        == 2
    )
    assert "needs -o DIRECTORY" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert classify(tiny_model_dir, str(speech_wav), "-o", str(blocker / "out.csv")) == 2
    assert "emostream:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        classify(tiny_model_dir, str(speech_wav), "--format", "xml")
    assert exc.value.code == 2


# stream ----------------------------------------------------------------------------


def test_stream_writes_the_same_records_in_every_format(
    served: Served, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["stream", str(speech_wav), "--url", served.url, "--fast"]
    assert main([*base, "--json"]) == 0
    raw = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finals = [record(m, str(speech_wav)) for m in raw if m["type"] in ("result", "skipped")]
    outputs = {}
    for fmt in ("table", "jsonl", "csv", "vtt"):
        path = tmp_path / f"out.{fmt}"
        assert main([*base, "--format", fmt, "-o", str(path)]) == 0
        assert capsys.readouterr().out == ""
        outputs[fmt] = path.read_text()
    records = read_jsonl(outputs["jsonl"])
    assert steady(records) == steady(finals)
    assert steady(read_csv(outputs["csv"])) == steady(records)
    assert read_vtt(outputs["vtt"]) == [vtt_of(r) for r in records]
    assert read_table(outputs["table"]) == [table_of(r) for r in records]
    # a directory gets a file named after the input
    folder = tmp_path / "dir/"
    assert main([*base, "--format", "csv", "-o", f"{folder}/"]) == 0
    assert [p.name for p in folder.iterdir()] == ["speech.csv"]


def test_stream_partials_are_in_jsonl_and_table_only(
    served: Served, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["stream", str(speech_wav), "--url", served.url, "--speed", "4", "--interim-ms", "250"]
    assert main([*base, "--format", "jsonl"]) == 0
    records = read_jsonl(capsys.readouterr().out)
    partials = [r for r in records if r["type"] == "partial"]
    assert partials and all(r["label"] in r["scores"] for r in partials)
    for fmt in ("csv", "vtt"):
        assert main([*base, "--format", fmt]) == 0
        text = capsys.readouterr().out
        count = len(read_csv(text)) if fmt == "csv" else len(read_vtt(text))
        assert count == len([r for r in records if r["type"] != "partial"])


@pytest.mark.parametrize(
    ("rate", "encoding"), [(16000, "pcm_s16le"), (8000, "pcm_f32le"), (44100, "pcm_s16le")]
)
def test_stream_reads_raw_pcm_from_standard_input(
    served: Served,
    speech: npt.NDArray[np.float32],
    speech_wav: Path,
    rate: int,
    encoding: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import soxr

    audio = speech if rate == 16000 else soxr.resample(speech, 16000, rate).astype(np.float32)
    data = to_pcm16(audio) if encoding == "pcm_s16le" else audio.astype("<f4").tobytes()
    args = ["--sample-rate", str(rate), "--encoding", encoding, "--format", "jsonl"]
    completed = stream_stdin(served.url, data + b"\x01", *args)  # a stray trailing byte
    assert completed.returncode == 0, completed.stderr.decode()
    records = read_jsonl(completed.stdout.decode())
    assert {r["file"] for r in records} == {"-"}
    assert [r["type"] for r in records] == ["result", "result", "skipped"]
    # the same segments as streaming the file, within a frame or two of resampling
    assert (
        main(["stream", str(speech_wav), "--url", served.url, "--fast", "--format", "jsonl"]) == 0
    )
    from_file = read_jsonl(capsys.readouterr().out)
    for got, want in zip(records, from_file, strict=True):
        assert abs(got["start_ms"] - want["start_ms"]) <= 40
        assert abs(got["end_ms"] - want["end_ms"]) <= 40


def test_stream_from_standard_input_defaults_and_refusals(
    served: Served,
    speech: npt.NDArray[np.float32],
    speech_wav: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    completed = stream_stdin(served.url, to_pcm16(speech))  # 16 kHz s16 by default
    assert completed.returncode == 0, completed.stderr.decode()
    assert len(read_table(completed.stdout.decode())) == 3
    empty = stream_stdin(served.url, b"")
    assert empty.returncode == 0, empty.stderr.decode()
    assert read_table(empty.stdout.decode()) == []
    assert main(["stream", "-", "--url", served.url, "--reconnect"]) == 2
    assert "cannot be replayed" in capsys.readouterr().err
    assert main(["stream", str(speech_wav), "--url", served.url, "--sample-rate", "8000"]) == 2
    assert "standard input" in capsys.readouterr().err
    for bad in (["--sample-rate", "7999"], ["--sample-rate", "abc"], ["--encoding", "mp3"]):
        with pytest.raises(SystemExit) as exc:
            main(["stream", "-", "--url", served.url, *bad])
        assert exc.value.code == 2


def test_the_token_comes_from_the_environment(
    tiny_model_dir: Path, speech: npt.NDArray[np.float32], speech_wav: Path
) -> None:
    server = start_server(tiny_model_dir, env={"EMOSTREAM_TOKEN": "s3cret"})
    try:
        pcm = to_pcm16(speech)
        assert stream_stdin(server.url, pcm, env={"EMOSTREAM_TOKEN": "s3cret"}).returncode == 0
        refused = stream_stdin(server.url, pcm, env={"EMOSTREAM_TOKEN": "wrong"})
        assert refused.returncode == 1
        assert b"unauthorized" in refused.stderr
        # --token wins over the environment
        argv = ["--token", "s3cret"]
        assert (
            stream_stdin(server.url, pcm, *argv, env={"EMOSTREAM_TOKEN": "wrong"}).returncode == 0
        )
    finally:
        assert stop_server(server) == 0


# help, version, exit codes ----------------------------------------------------------


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: action.choices[name] for name in ("serve", "classify", "stream")}


@pytest.mark.parametrize("name", ["serve", "classify", "stream"])
def test_help_lists_every_option_with_its_default(name: str) -> None:
    parser = subcommands()[name]
    text = re.sub(r"\s+", " ", parser.format_help())
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.dest} has no help text"
        if action.option_strings:
            shown = parser.formatter_class(prog=parser.prog)._expand_help(action)
            assert "default:" in shown, f"{name} {action.option_strings}: no default in {shown!r}"
            assert action.option_strings[-1] in text
    assert "exit status: 0 done; 1" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert re.fullmatch(r"emostream \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_exit_codes_are_documented() -> None:
    doc = (REPO / "docs" / "cli.md").read_text()
    for code in ("0", "1", "2", "130"):
        assert f"| {code} |" in doc
    assert "130 interrupted" in EXIT_CODES_HELP


# the writers on their own ---------------------------------------------------------


def test_writers_on_hostile_and_edge_values() -> None:
    out = io.StringIO()
    writer = CsvWriter(out, ["a", "b"])
    rec = record(
        {"type": "result", "segment": 0, "start_ms": 0, "end_ms": 10, "label": "a",
         "confidence": 0.5, "scores": {"a": 0.5, "b": 0.5}, "latency_ms": 1, "model_version": "v"},
        '=HYPERLINK("x"),\n"quoted"',
    )  # fmt: skip
    writer.write(rec)
    writer.write({**rec, "type": "partial"})  # finals only
    (row,) = read_csv(out.getvalue())
    assert row["file"] == "'" + rec["file"]
    assert csv_cell(-1) == -1 and csv_cell("-x") == "'-x" and csv_cell(None) == ""
    vtt = io.StringIO()
    VttWriter(vtt).write({**rec, "start_ms": 3_723_004, "end_ms": 3_723_500})
    assert read_vtt(vtt.getvalue()) == [(3_723_004, 3_723_500, "a 0.50")]
    assert vtt_time(-5) == "00:00:00.000" and vtt_time(59_999.6) == "00:01:00.000"
    with pytest.raises(ValueError, match="not a segment message"):
        record({"type": "ready"}, "f")


# --quality -----------------------------------------------------------------------


def test_classify_with_quality_adds_the_fields_to_every_format(
    tiny_model_dir: Path, speech_wav: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert classify(tiny_model_dir, str(speech_wav), "--json", "--quality") == 0
    segments = json.loads(capsys.readouterr().out)["files"][0]["segments"]
    assert all(set(s) >= QUALITY_KEYS for s in segments if "label" in s)
    texts = {}
    for fmt in ("table", "jsonl", "csv", "vtt"):
        assert classify(tiny_model_dir, str(speech_wav), "--format", fmt, "--quality") == 0
        texts[fmt] = capsys.readouterr().out
    check_quality_outputs(texts, segments)
    assert classify(tiny_model_dir, str(speech_wav), "--format", "csv") == 0
    assert "uncertain" not in capsys.readouterr().out.splitlines()[0]


def test_stream_with_quality_asks_the_server_for_it(
    served: Served, speech_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["stream", str(speech_wav), "--url", f"{served.url}?quality=0", "--fast", "--quality"]
    assert main([*base, "--json"]) == 0
    raw = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert raw[0]["type"] == "ready" and raw[0]["quality"] == 1
    finals = [m for m in raw if m["type"] in ("result", "skipped")]
    texts = {}
    for fmt in ("table", "jsonl", "csv", "vtt"):
        path = tmp_path / f"out.{fmt}"
        assert main([*base, "--format", fmt, "-o", str(path)]) == 0
        texts[fmt] = path.read_text()
    records = read_jsonl(texts["jsonl"])
    assert [r["segment"] for r in records] == [m["segment"] for m in finals]
    assert all(set(r) >= QUALITY_KEYS for r in records if r["type"] == "result")
    check_quality_outputs(texts, [m for m in read_jsonl(texts["jsonl"])])
