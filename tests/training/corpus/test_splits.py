from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from classifier.model import CANONICAL_LABELS
from training.corpus.corpora import Clip, CorpusError
from training.corpus.data import read_split
from training.corpus.prepare import prepare
from training.corpus.splits import SplitError, make_split, split_summary


def _clips(n_speakers: int = 30, per_label: int = 4, labels=CANONICAL_LABELS) -> list[Clip]:
    return [
        Clip(Path(f"/c/s{s:02d}_{label}_{k}.wav"), label, f"spk{s:02d}", label=label)
        for s in range(n_speakers)
        for label in labels
        for k in range(per_label)
    ]


def test_speaker_split_shares_no_speaker_and_is_stratified() -> None:
    clips = _clips()
    examples = make_split(clips, "speaker", test_fraction=0.2, val_fraction=0.1, seed=3)
    assert len(examples) == len(clips)
    speakers = {s: {e.speaker for e in examples if e.split == s} for s in ("train", "val", "test")}
    assert not speakers["train"] & speakers["test"]
    assert not speakers["train"] & speakers["val"]
    assert not speakers["val"] & speakers["test"]
    summary = split_summary(examples)
    assert summary["shared_speakers"] == []
    total = Counter(e.label for e in examples)
    for split, share in (("test", 0.2), ("val", 0.1)):
        counts = summary["clips"][split]
        for label in CANONICAL_LABELS:
            assert abs(counts[label] / total[label] - share) <= 0.07, (split, label, counts)


def test_speaker_split_balances_labels_when_speakers_differ_in_labels() -> None:
    # Half the speakers only recorded angry/sad, the other half only happy/neutral.
    clips = _clips(20, 3, ("angry", "sad"))
    others = _clips(20, 3, ("happy", "neutral"))
    clips += [
        Clip(
            c.path.with_name("x" + c.path.name),
            c.label,
            c.speaker.replace("spk", "other"),
            label=c.label,
        )
        for c in others
    ]
    examples = make_split(clips, "speaker", 0.25, 0.0, seed=0)
    test_labels = {e.label for e in examples if e.split == "test"}
    assert test_labels == {"angry", "sad", "happy", "neutral"}


def test_speaker_split_is_seeded() -> None:
    clips = _clips()
    first = make_split(clips, "speaker", seed=1)
    assert first == make_split(list(reversed(clips)), "speaker", seed=1)
    assert first != make_split(clips, "speaker", seed=2)


def test_random_split_is_reproducible_and_stratified() -> None:
    clips = _clips(10, 10)
    a = make_split(clips, "random", 0.2, 0.1, seed=7)
    assert a == make_split(clips, "random", 0.2, 0.1, seed=7)
    assert a != make_split(clips, "random", 0.2, 0.1, seed=8)
    summary = split_summary(a)
    assert summary["clips"]["test"] == dict.fromkeys(sorted(CANONICAL_LABELS), 20)
    assert summary["clips"]["val"] == dict.fromkeys(sorted(CANONICAL_LABELS), 10)
    # A random split puts the same speakers on both sides: the leak the default avoids.
    assert summary["shared_speakers"]


def test_clips_without_speaker_are_split_one_by_one() -> None:
    clips = [Clip(Path(f"/c/{i}.wav"), "x", "", label=("a", "b")[i % 2]) for i in range(40)]
    examples = make_split(clips, "speaker", 0.25, 0.0)
    assert Counter(e.split for e in examples)["test"] == 10
    assert split_summary(examples)["no_speaker"] == 40


def test_split_errors() -> None:
    with pytest.raises(SplitError, match="no usable clips"):
        make_split([], "speaker")
    with pytest.raises(SplitError, match="unknown split mode 'leaky'"):
        make_split(_clips(), "leaky")
    with pytest.raises(SplitError, match="needs at least 5 speakers, found 2"):
        make_split(_clips(2), "speaker", 0.2, 0.0)
    with pytest.raises(SplitError, match="test_fraction must be in"):
        make_split(_clips(), "speaker", 1.5)
    with pytest.raises(SplitError, match="below 1"):
        make_split(_clips(), "speaker", 0.6, 0.5)
    one = [Clip(Path("/c/a.wav"), "a", "s", label="angry"), *_clips(4, 2)]
    with pytest.raises(SplitError, match=r"two clips per label; too few: \['angry'\]"):
        make_split(one[:1] + [c for c in one[1:] if c.label != "angry"], "random")


def _corpus(root: Path) -> None:
    rng = np.random.default_rng(0)
    for actor in range(1, 11):
        for emotion in ("01", "03", "04", "05", "08"):
            name = f"03-01-{emotion}-01-01-01-{actor:02d}.wav"
            path = root / "ravdess" / f"Actor_{actor:02d}" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, rng.normal(0, 0.1, 800).astype(np.float32), 16000)
    for actor in (1001, 1002, 1003, 1004, 1005):
        for emotion in ("ANG", "HAP", "NEU", "SAD"):
            path = root / "crema" / f"{actor}_DFA_{emotion}_XX.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, rng.normal(0, 0.1, 800).astype(np.float32), 16000)
    (root / "crema" / "1001_DFA_ANG_HI.wav").write_bytes(b"not a wav")


def test_prepare_end_to_end(tmp_path: Path) -> None:
    _corpus(tmp_path)
    out = tmp_path / "splits" / "all.csv"
    prepared = prepare(
        [("ravdess", tmp_path / "ravdess"), ("cremad", tmp_path / "crema")], out, seed=0
    )
    examples = read_split(out, CANONICAL_LABELS)
    assert len(examples) == 10 * 4 + 5 * 4
    assert split_summary(examples)["shared_speakers"] == []
    assert {e.split for e in examples} == {"train", "val", "test"}
    assert prepared.dropped == {"surprised": 10}
    assert prepared.problems_path is not None
    with prepared.problems_path.open() as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["path"]).name for r in rows] == ["1001_DFA_ANG_HI.wav"]
    assert "unreadable" in rows[0]["reason"]
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["dropped"] == {"surprised": 10}
    assert summary["problems"] == 1
    assert summary["mode"] == "speaker"


def test_prepare_with_nothing_usable(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "1001_DFA_ANG_XX.wav").write_bytes(b"junk")
    with pytest.raises(SplitError, match="no usable clips"):
        prepare([("cremad", tmp_path / "c")], tmp_path / "out.csv")
    assert (tmp_path / "out.problems.csv").is_file()
    with pytest.raises(CorpusError, match="does not exist"):
        prepare([("cremad", tmp_path / "missing")], tmp_path / "out.csv")
