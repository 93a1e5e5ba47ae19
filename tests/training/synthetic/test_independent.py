"""The independent test generator: deterministic, disjoint from training, and its cues act."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.programs import require
from tests.training.pitch import median_f0_hz
from training.corpus.data import read_split
from training.release.default_model import Recipe
from training.synthetic.independent import (
    CUES,
    SENTENCES,
    SPEAKERS,
    Utterance,
    main,
    phrases,
    plan_utterance,
    private_espeak,
    render,
    speak,
    ssml,
    system_data_dir,
    voice_definition,
)
from training.synthetic.prosody import EMOTIONS
from training.synthetic.sentences import ENGLISH_VOICES, english_sentences, other_sentences
from training.synthetic.synth import VARIANTS, partition


@pytest.fixture(autouse=True)
def _espeak() -> None:
    require("espeak-ng")


def _same_voice(emotion: str, base: Utterance) -> Utterance:
    """``base`` with the middle of ``emotion``'s cue ranges (same speaker and sentence)."""
    cues = CUES[emotion]
    mid = {f.name: sum(getattr(cues, f.name)) / 2 for f in dataclasses.fields(cues)}
    mid["flutter"], mid["roughness"] = round(mid["flutter"]), round(mid["roughness"])
    return dataclasses.replace(base, emotion=emotion, phrases=3, level_dbfs=-20.0, **mid)


def _hf_ratio_db(audio: npt.NDArray[np.float32]) -> float:
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
    return float(10 * np.log10(power[freqs > 2500].sum() / power[freqs < 1000].sum()))


def test_same_seed_gives_identical_audio_and_other_seeds_differ() -> None:
    first = [audio.tobytes() for _, audio in render(0, [0, 5])]
    second = [audio.tobytes() for _, audio in render(0, [0, 5])]
    other = [audio.tobytes() for _, audio in render(1, [0, 5])]
    assert first == second
    assert first != other
    assert plan_utterance(0, 3) == plan_utterance(0, 3)


def test_sentences_never_occur_in_training() -> None:
    config = Recipe().corpus()
    used = {s.text.lower() for split in partition(config).sentences.values() for s in split}
    # The whole English grammar pool and the hand-written sentences of every language.
    used |= {s.text.lower() for s in english_sentences(10_000, np.random.default_rng(0))}
    used |= {s.text.lower() for s in other_sentences()}
    assert len(set(SENTENCES)) == len(SENTENCES) >= 36
    assert not {s.lower() for s in SENTENCES} & used


def test_voices_never_occur_in_training_or_in_espeak() -> None:
    names = {s.name for s in SPEAKERS}
    assert len(names) == len(SPEAKERS)
    assert not names & set(VARIANTS)
    installed = {p.name.lower() for p in (system_data_dir() / "voices" / "!v").iterdir()}
    assert not {n.lower() for n in names} & installed
    assert {s.accent for s in SPEAKERS} <= set(ENGLISH_VOICES)


def test_voice_definitions_are_applied() -> None:
    """A high and a low speaker of our own differ in pitch by far more than an emotion does."""
    base = plan_utterance(0, 0)
    low = dataclasses.replace(_same_voice("neutral", base), speaker=SPEAKERS[3])
    high = dataclasses.replace(_same_voice("neutral", base), speaker=SPEAKERS[7])
    with private_espeak() as root:
        f_low, f_high = median_f0_hz(speak(low, root)), median_f0_hz(speak(high, root))
    assert f_high > 1.8 * f_low


def test_cues_do_what_the_table_says() -> None:
    base = dataclasses.replace(plan_utterance(0, 0), speaker=SPEAKERS[1], sentence=SENTENCES[0])
    with private_espeak() as root:
        audio = {e: speak(_same_voice(e, base), root) for e in EMOTIONS}
    # Rate: sad and disgust slower than neutral, fear faster.
    assert audio["sad"].size > 1.15 * audio["neutral"].size
    assert audio["disgust"].size > 1.1 * audio["neutral"].size
    assert audio["fearful"].size < 0.9 * audio["neutral"].size
    # F0 level: fear highest, sad and disgust below neutral.
    f0 = {e: median_f0_hz(a) for e, a in audio.items()}
    assert f0["fearful"] > f0["happy"] > f0["neutral"] > f0["sad"]
    assert f0["disgust"] < f0["neutral"]
    # High-frequency energy: anger most, sadness least.
    hf = {e: _hf_ratio_db(a) for e, a in audio.items()}
    assert hf["angry"] > hf["happy"] > hf["neutral"] > hf["sad"] + 2
    assert hf["angry"] > hf["neutral"] + 5


def test_ssml_is_phrase_by_phrase_with_a_plain_full_stop() -> None:
    utt = dataclasses.replace(plan_utterance(0, 1), sentence="a b c d e f", phrases=3)
    text = ssml(utt)
    assert text.count("<prosody") == 3 and text.count("<break") == 2
    assert text.endswith("f.</prosody></speak>") and "!" not in text and "?" not in text
    assert phrases("a b c d e f", 3) == ["a b", "c d", "e f"]
    assert phrases("one two", 4) == ["one", "two"]
    hostile = dataclasses.replace(utt, sentence='<x> & "y"')
    assert "<x>" not in ssml(hostile) and "&amp;" in ssml(hostile)
    assert "tone 600 100" in voice_definition(utt)


def test_emotions_are_balanced_and_cues_cover_every_emotion() -> None:
    assert set(CUES) == set(EMOTIONS)
    counts = {e: 0 for e in EMOTIONS}
    for i in range(60):
        counts[plan_utterance(0, i).emotion] += 1
    assert set(counts.values()) == {10}


def test_main_writes_a_test_only_split(tmp_path: Path) -> None:
    out = tmp_path / "ind"
    assert main(["--out", str(out), "--clips", "6", "--no-progress"]) == 0
    rows = read_split(out / "split.csv")
    assert [r.split for r in rows] == ["test"] * 6
    assert {r.label for r in rows} == set(EMOTIONS)
    assert all(r.path.is_file() for r in rows)


def test_main_refuses_bad_clip_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "x"), "--clips", "0"])
    assert "--clips must be at least 1" in capsys.readouterr().err
