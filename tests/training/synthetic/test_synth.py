"""The synthetic emotional-speech generator: determinism, held-out splits, and the prosody rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from tests.programs import require
from tests.training.pitch import median_f0_hz
from training.corpus.data import read_split
from training.synthetic.acoustics import add_noise, make_noise, rms, room_impulse, set_level
from training.synthetic.prosody import EMOTIONS, sample_prosody
from training.synthetic.sentences import english_sentences
from training.synthetic.synth import (
    CorpusConfig,
    Voice,
    babble_bank,
    main,
    partition,
    plan,
    render,
    speak,
    write_corpus,
)


@pytest.fixture(autouse=True)
def _espeak() -> None:
    require("espeak-ng")


SMALL = CorpusConfig(seed=3, clips={"train": 12, "val": 6, "test": 6})
SENTENCE = "The old farmer painted the red barn before the winter"


def utterance(emotion: str, voice: Voice, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return speak(SENTENCE, voice, sample_prosody(emotion, rng), rng)


def test_same_seed_gives_identical_audio() -> None:
    spec = plan(SMALL)[0]
    babble = babble_bank("train", SMALL, partition(SMALL), size=2)
    first = render(spec, SMALL, babble)
    second = render(spec, SMALL, babble)
    assert first.dtype == np.float32
    assert first.tobytes() == second.tobytes()


def test_different_seed_gives_different_audio() -> None:
    other = CorpusConfig(seed=4, clips=SMALL.clips)
    a = render(plan(SMALL)[0], SMALL, babble_bank("train", SMALL, partition(SMALL), size=2))
    b = render(plan(other)[0], other, babble_bank("train", other, partition(other), size=2))
    assert a.tobytes() != b.tobytes()


def test_partition_is_disjoint_across_splits() -> None:
    part = partition(CorpusConfig(seed=0))
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(part.variants[a]) & set(part.variants[b])
        assert not {s.text for s in part.sentences[a]} & {s.text for s in part.sentences[b]}
    assert all(part.variants[split] for split in ("train", "val", "test"))


def test_planned_clips_use_only_their_splits_voices_and_sentences() -> None:
    config = CorpusConfig(seed=1, clips={"train": 300, "val": 60, "test": 60})
    part = partition(config)
    for spec in plan(config):
        assert spec.voice.variant in part.variants[spec.split]
        assert spec.sentence in part.sentences[spec.split]


def test_plan_is_balanced_over_emotions() -> None:
    specs = plan(CorpusConfig(seed=0, clips={"train": 60}))
    counts = {e: sum(s.emotion == e for s in specs) for e in EMOTIONS}
    assert counts == dict.fromkeys(EMOTIONS, 10)


@pytest.mark.slow
def test_written_corpus_holds_out_voices_and_sentences(tmp_path: Path) -> None:
    csv_path = write_corpus(tmp_path, SMALL, log_every=0)
    rows = read_split(csv_path, labels=EMOTIONS)
    assert len(rows) == 24
    train = [r for r in rows if r.split == "train"]
    held = [r for r in rows if r.split != "train"]
    train_variants = {r.speaker.split("+")[1] for r in train}
    assert not train_variants & {r.speaker.split("+")[1] for r in held}
    assert not {r.text for r in train} & {r.text for r in held}
    for snr in (20, 10, 5):
        noisy = read_split(tmp_path / f"test_snr{snr}.csv", labels=EMOTIONS)
        assert [r.text for r in noisy] == [r.text for r in rows if r.split == "test"]
        assert all(r.split == "test" for r in noisy)


@pytest.mark.parametrize("variant", ["m3", "f3", "klatt2"])
def test_angry_is_higher_and_louder_than_sad(variant: str) -> None:
    voice = Voice("en-us", variant)
    angry, sad = utterance("angry", voice), utterance("sad", voice)
    assert median_f0_hz(angry) > 1.1 * median_f0_hz(sad)
    assert rms(angry) > 1.5 * rms(sad)


@pytest.mark.parametrize("variant", ["m1", "f2"])
def test_fearful_is_faster_than_neutral_and_disgust_slower(variant: str) -> None:
    voice = Voice("en-gb", variant)
    neutral = utterance("neutral", voice).size
    assert utterance("fearful", voice).size < 0.9 * neutral
    assert utterance("disgust", voice).size > 1.15 * neutral


@pytest.mark.parametrize("variant", ["m2", "f4"])
def test_disgust_is_lower_than_neutral_and_happy_higher(variant: str) -> None:
    voice = Voice("en-us", variant)
    neutral = median_f0_hz(utterance("neutral", voice))
    assert median_f0_hz(utterance("disgust", voice)) < 0.95 * neutral
    assert median_f0_hz(utterance("happy", voice)) > 1.1 * neutral


def test_breath_rule_adds_high_frequency_energy() -> None:
    voice = Voice("en-us", "m3")
    rng = np.random.default_rng(0)
    prosody = sample_prosody("neutral", rng)
    dry = speak(SENTENCE, voice, prosody, np.random.default_rng(1))
    breathy = speak(
        SENTENCE,
        voice,
        prosody.__class__(**{**prosody.__dict__, "breath_db": -15.0}),
        np.random.default_rng(1),
    )

    def high_share(audio: npt.NDArray[np.float32]) -> float:
        power = np.abs(np.fft.rfft(audio)) ** 2
        freqs = np.fft.rfftfreq(audio.size, 1 / 16000)
        return float(power[freqs > 4000].sum() / power.sum())

    assert high_share(breathy) > 1.5 * high_share(dry)


def test_unknown_emotion_is_named() -> None:
    with pytest.raises(ValueError, match="'bored'"):
        sample_prosody("bored", np.random.default_rng(0))


def test_unknown_split_is_named() -> None:
    with pytest.raises(ValueError, match="'dev'"):
        plan(CorpusConfig(clips={"dev": 3}))


def test_sentence_count_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="count must be"):
        english_sentences(0, np.random.default_rng(0))
    assert len({s.text for s in english_sentences(500, np.random.default_rng(0))}) == 500


def test_noise_is_mixed_at_the_requested_snr() -> None:
    rng = np.random.default_rng(0)
    speech = utterance("neutral", Voice("en-us", "m1"))
    for kind in ("white", "pink", "hum", "babble"):
        noise = make_noise(kind, speech.size, rng, [speech[::-1].copy()])
        mixed = add_noise(speech, noise, 10.0)
        residual = mixed - speech
        assert 20 * np.log10(rms(speech) / rms(residual)) == pytest.approx(10.0, abs=0.01)


def test_bad_noise_and_room_parameters_are_named() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="'rain'"):
        make_noise("rain", 100, rng)
    with pytest.raises(ValueError, match="at least one voice"):
        make_noise("babble", 100, rng)
    with pytest.raises(ValueError, match="rt60_s"):
        room_impulse(0.0, rng)
    with pytest.raises(ValueError, match="noise has 3 samples"):
        add_noise(np.ones(4, dtype=np.float32), np.ones(3, dtype=np.float32), 0.0)


def test_room_impulse_decays() -> None:
    impulse = room_impulse(0.5, np.random.default_rng(0))
    early, late = impulse[1:800], impulse[-800:]
    assert rms(late) < 0.01 * rms(early)


def test_set_level_hits_target_unless_peaks_clip() -> None:
    audio = np.sin(np.linspace(0, 200, 16000)).astype(np.float32) * 0.01
    assert 20 * np.log10(rms(set_level(audio, -20.0))) == pytest.approx(-20.0, abs=0.01)
    loud = set_level(audio, 0.0)
    assert float(np.max(np.abs(loud))) <= 0.98 + 1e-6


@pytest.mark.slow
def test_command_line_writes_a_corpus(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    assert (
        main(["--out", str(out), "--train", "6", "--val", "6", "--test", "6", "--seed", "2"]) == 0
    )
    rows = read_split(out / "split.csv", labels=EMOTIONS)
    assert sorted({r.split for r in rows}) == ["test", "train", "val"]


def test_cue_dropout_changes_training_clips_only() -> None:
    dropping = CorpusConfig(seed=3, clips=SMALL.clips, cue_dropout=1.0)
    specs = {(s.split, s.index): s for s in plan(SMALL)}
    assert specs == {(s.split, s.index): s for s in plan(dropping)}  # same plan
    for split, index in (("val", 0), ("test", 1)):
        spec = specs[(split, index)]
        assert render(spec, SMALL, []).tobytes() == render(spec, dropping, []).tobytes()
    train = specs[("train", 4)]  # a fearful clip: tremor, jitter, breath, "?"
    assert train.emotion == "fearful"
    assert render(train, SMALL, []).tobytes() != render(train, dropping, []).tobytes()


def test_drop_cues_keeps_prosody_and_neutralises_voice_quality() -> None:
    from training.synthetic.synth import drop_cues

    prosody = sample_prosody("fearful", np.random.default_rng(0))
    kept = drop_cues(prosody, 0.0, np.random.default_rng(1))
    assert kept == prosody
    dropped = drop_cues(prosody, 1.0, np.random.default_rng(1))
    assert (dropped.tremor_pct, dropped.jitter_pct, dropped.creak, dropped.tilt) == (0, 0, 0, 0)
    assert dropped.breath_db == -80.0 and dropped.terminal == "."
    for name in ("pitch_pct", "range_pct", "rate_pct", "gain_db", "glide"):
        assert getattr(dropped, name) == getattr(prosody, name)
    some = [drop_cues(prosody, 0.5, np.random.default_rng(i)) for i in range(40)]
    share = np.mean([p.tremor_pct == 0 for p in some])
    assert 0.25 < share < 0.75
