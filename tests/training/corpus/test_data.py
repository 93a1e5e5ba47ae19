from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from classifier.model import CANONICAL_LABELS
from training.corpus.data import (
    DataError,
    Example,
    label_set,
    load_audio,
    read_split,
    select,
    write_split,
    zero_mean_unit_var,
)


def _wav(path: Path, seconds: float = 0.1, rate: int = 16000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros((round(seconds * rate), channels), dtype=np.float32), rate)
    return path


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "split.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_round_trip_with_paths_relative_to_the_csv(tmp_path: Path) -> None:
    a = _wav(tmp_path / "corpus" / "a.wav")
    b = _wav(tmp_path / "corpus" / "b.wav")
    examples = [
        Example(a, "angry", "ravdess:01", "train", "kids"),
        Example(b, "sad", "ravdess:02", "test"),
    ]
    csv_path = write_split(tmp_path / "splits" / "split.csv", examples)
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,label,speaker,split,text"
    assert lines[1] == "../corpus/a.wav,angry,ravdess:01,train,kids"
    back = read_split(csv_path, CANONICAL_LABELS)
    assert [(e.path.resolve(), e.label, e.speaker, e.split, e.text) for e in back] == [
        (a.resolve(), "angry", "ravdess:01", "train", "kids"),
        (b.resolve(), "sad", "ravdess:02", "test", ""),
    ]
    assert [e.label for e in select(back, "test")] == ["sad"]


def test_text_column_is_optional(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    back = read_split(_csv(tmp_path, "path,label,speaker,split\na.wav,happy,,val\n"))
    assert back[0].text == ""
    assert back[0].speaker == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("path,label,speaker,split\n", "no rows"),
        ("path,label,split\na.wav,happy,train\n", "lacks column(s) ['speaker']"),
        ("path,label,speaker,split,mood\na.wav,happy,s,train,x\n", "unknown column(s) ['mood']"),
        ("path,label,speaker,split\na.wav,joyful,s,train\n", "line 2: unknown label 'joyful'"),
        ("path,label,speaker,split\na.wav,happy,s,training\n", "line 2: bad split 'training'"),
        ("path,label,speaker,split\na.wav,happy,s,train\nb.wav,sad,s,test\n", "'b.wav' not found"),
        ("path,label,speaker,split\na.wav,happy,s\n", "line 2: expected 4 fields, got 3"),
        ("path,label,speaker,split\n,happy,s,train\n", "line 2: empty path"),
        ("path,label,speaker,split\na.wav,,s,train\n", "line 2: empty label"),
        ("path,label,speaker,split\na.wav,happy,s,train\na.wav,happy,s,test\n", "more than once"),
        ("path,label,path,split,speaker\na.wav,happy,a.wav,train,s\n", "repeats a column"),
    ],
)
def test_malformed_manifests_are_refused_with_the_bad_value(
    tmp_path: Path, content: str, message: str
) -> None:
    _wav(tmp_path / "a.wav")
    with pytest.raises(DataError) as info:
        read_split(_csv(tmp_path, content), CANONICAL_LABELS)
    assert message in str(info.value)


def test_missing_and_binary_manifests(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_split(tmp_path / "nope.csv")
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(DataError, match="not a readable UTF-8 CSV"):
        read_split(path)


def test_blank_lines_are_skipped_and_missing_files_allowed_when_not_checked(tmp_path: Path) -> None:
    csv_path = _csv(tmp_path, "path,label,speaker,split\n\nghost.wav,happy,s,train\n\n")
    assert len(read_split(csv_path, check_files=False)) == 1


def test_label_set_orders_canonical_first() -> None:
    examples = [Example(Path(f"{x}.wav"), x, "", "train") for x in ("zzz", "sad", "neutral", "aaa")]
    assert label_set(examples, CANONICAL_LABELS) == ("neutral", "sad", "aaa", "zzz")


def test_load_audio_mixes_to_mono_and_resamples(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([left, left], axis=1).astype(np.float32), 44100)
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32
    assert audio.shape == (16000,)
    assert 0.45 < np.abs(audio).max() < 0.55


@pytest.mark.parametrize(
    "content", [b"", b"RIFF\x00\x00\x00\x00WAVEjunk", b"not audio at all" * 10]
)
def test_load_audio_refuses_corrupt_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"bad\.wav"):
        load_audio(path)


def test_load_audio_refuses_empty_audio(tmp_path: Path) -> None:
    path = _wav(tmp_path / "empty.wav", seconds=0.0)
    with pytest.raises(DataError, match="no samples"):
        load_audio(path)


def test_zero_mean_unit_var() -> None:
    audio = np.linspace(-0.2, 0.6, 1000, dtype=np.float32)
    out = zero_mean_unit_var(audio)
    assert abs(float(out.mean())) < 1e-5
    assert abs(float(out.std()) - 1.0) < 1e-3


def test_truncated_wav_reads_what_is_there_and_a_bare_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, np.full(16000, 0.1, dtype=np.float32), 16000, subtype="PCM_16")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert 7000 < load_audio(path).size < 8100
    path.write_bytes(whole[:30])
    with pytest.raises(DataError, match=r"cut\.wav"):
        load_audio(path)


def test_an_oversized_csv_field_is_refused(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    huge = "x" * 200_000
    path = _csv(tmp_path, f"path,label,speaker,split,text\na.wav,happy,s,train,{huge}\n")
    with pytest.raises(DataError, match="not a readable UTF-8 CSV"):
        read_split(path)
