"""Synthetic emotional speech: espeak-ng voices shaped by prosody rules, in memory, seeded.

``python -m training.synthetic.synth --out DIR`` writes a corpus (16 kHz mono WAV files and
split CSVs in the training package's format). See docs/synthetic-corpus.md for the rules and
the design.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
from scipy.signal import butter, lfilter, sosfilt

from pcm.format import PIPELINE_RATE_HZ
from training.corpus.data import SPLITS, Example, Split, write_split
from training.synthetic.acoustics import (
    NOISE_KINDS,
    add_noise,
    make_noise,
    reverberate,
    room_impulse,
    set_level,
)
from training.synthetic.prosody import EMOTIONS, Prosody, sample_prosody
from training.synthetic.sentences import (
    ENGLISH_VOICES,
    Sentence,
    english_sentences,
    other_sentences,
)
from training.synthetic.telephone import LAWS, telephone

Audio = npt.NDArray[np.float32]
SAMPLE_RATE_HZ = PIPELINE_RATE_HZ
TEST_SNRS_DB = (20, 10, 5)

# espeak-ng voice variants used as speakers. Left out: whisper variants (no voicing, so no
# pitch), robot-like and effect voices, "fast" (it changes the speaking rate) and "croak"
# (a creaky voice would mimic the disgust rule).
VARIANTS = (
    "Alex",
    "Alicia",
    "Andrea",
    "Andy",
    "Annie",
    "AnxiousAndy",
    "Denis",
    "Diogo",
    "Gene",
    "Gene2",
    "Henrique",
    "Hugo",
    "Jacky",
    "Lee",
    "Marco",
    "Mario",
    "Michael",
    "Mike",
    "Nguyen",
    "RicishayMax",
    "RicishayMax2",
    "RicishayMax3",
    "Storm",
    "adam",
    "anika",
    "antonio",
    "aunty",
    "belinda",
    "benjamin",
    "boris",
    "caleb",
    "david",
    "ed",
    "edward",
    "edward2",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "grandma",
    "grandpa",
    "gustave",
    "iven",
    "iven2",
    "iven3",
    "iven4",
    "john",
    "kaukovalta",
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "linda",
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "marcelo",
    "max",
    "michel",
    "miguel",
    "norbert",
    "pablo",
    "paul",
    "pedro",
    "quincy",
    "rob",
    "robert",
    "sandro",
    "shelby",
    "steph",
    "steph2",
    "steph3",
    "travis",
    "victor",
    "zac",
)
_SPLIT_CODES: dict[str, int] = {split: code for code, split in enumerate(SPLITS)}


class SynthError(RuntimeError):
    """espeak-ng failed or produced no audio."""


@dataclass(frozen=True)
class Voice:
    language: str  # espeak-ng language voice
    variant: str  # espeak-ng variant (the speaker's timbre and pitch)

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}"


# ---- speech --------------------------------------------------------------------------------


def ssml(text: str, prosody: Prosody) -> str:
    return (
        f'<speak><prosody pitch="{prosody.pitch_pct:+.0f}%" range="{prosody.range_pct:+.0f}%" '
        f'rate="{prosody.rate_pct:.0f}%">{escape(text)}{prosody.terminal}</prosody></speak>'
    )


def espeak(text: str, voice: Voice, prosody: Prosody) -> tuple[Audio, int]:
    """Raw espeak-ng output for ``text`` read with ``prosody``: float32 audio and its rate."""
    command = ["espeak-ng", "-m", "-z", "-v", voice.espeak_name, "--stdout", ssml(text, prosody)]
    try:
        wav = subprocess.run(command, check=True, capture_output=True, timeout=60).stdout
    except FileNotFoundError as exc:
        raise SynthError("espeak-ng is not installed (Debian package espeak-ng)") from exc
    except subprocess.CalledProcessError as exc:
        raise SynthError(
            f"espeak-ng failed for voice {voice.espeak_name!r}: {exc.stderr!r}"
        ) from exc
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if audio.size == 0 or not np.any(audio):
        raise SynthError(f"espeak-ng produced no audio for {text!r} with {voice.espeak_name!r}")
    return audio, int(rate)


def pitch_curve(prosody: Prosody, samples: int, rate_hz: int, rng: np.random.Generator) -> Audio:
    """Per-sample pitch ratio: terminal glide, abrupt steps, tremor and jitter."""
    t = np.arange(samples) / rate_hz
    progress = np.arange(samples) / max(samples - 1, 1)
    ratio = 1.0 + prosody.glide * np.clip((progress - 0.6) / 0.4, 0.0, 1.0)
    if prosody.step_pct > 0:
        ratio *= 1.0 + prosody.step_pct / 100.0 * _steps(samples, rate_hz, rng)
    if prosody.tremor_pct > 0:
        phase = rng.uniform(0, 2 * np.pi)
        ratio *= 1.0 + prosody.tremor_pct / 100.0 * np.sin(
            2 * np.pi * prosody.tremor_hz * t + phase
        )
    if prosody.jitter_pct > 0:
        ratio *= 1.0 + prosody.jitter_pct / 100.0 * _smooth_noise(samples, rate_hz, 40.0, rng)
    return np.asarray(ratio, dtype=np.float32)


def _steps(samples: int, rate_hz: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Alternating +1/-1 plateaus of 200-400 ms with 15 ms transitions."""
    levels = np.zeros(samples)
    start, sign = 0, float(rng.choice([-1.0, 1.0]))
    while start < samples:
        length = int(rng.uniform(0.2, 0.4) * rate_hz)
        levels[start : start + length] = sign
        start, sign = start + length, -sign
    kernel = np.hanning(int(0.015 * rate_hz) + 1)
    return np.convolve(levels, kernel / kernel.sum(), mode="same")


def _smooth_noise(
    samples: int, rate_hz: int, cutoff_hz: float, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Unit-RMS noise low-passed at ``cutoff_hz``."""
    sos = butter(2, cutoff_hz, fs=rate_hz, output="sos")
    noise = sosfilt(sos, rng.standard_normal(samples))
    return np.asarray(noise / (np.std(noise) + 1e-12), dtype=np.float64)


def warp_pitch(audio: Audio, ratio: Audio) -> Audio:
    """Read ``audio`` at a varying speed ``ratio`` (per output sample): raises pitch where > 1."""
    positions = np.cumsum(ratio, dtype=np.float64) - ratio[0]
    positions = positions[positions <= audio.size - 1]
    return np.asarray(np.interp(positions, np.arange(audio.size), audio), dtype=np.float32)


def apply_tilt(audio: Audio, tilt: float) -> Audio:
    """First-order spectral tilt: pre-emphasis for ``tilt`` > 0, one-pole low-pass for < 0."""
    if tilt > 0:
        shaped = lfilter([1.0, -tilt], [1.0], audio)
    elif tilt < 0:
        shaped = lfilter([1.0 + tilt], [1.0, tilt], audio)
    else:
        return audio
    return np.asarray(shaped * _rms(audio) / _rms(shaped), dtype=np.float32)


def envelope(audio: Audio, rate_hz: int, window_s: float = 0.02) -> npt.NDArray[np.float64]:
    width = max(int(window_s * rate_hz), 1)
    power = np.convolve(np.square(audio, dtype=np.float64), np.ones(width) / width, mode="same")
    return np.asarray(np.sqrt(power), dtype=np.float64)


def add_breath(audio: Audio, breath_db: float, rate_hz: int, rng: np.random.Generator) -> Audio:
    """Aspiration: high-passed noise that follows the voice's envelope, ``breath_db`` below it."""
    if breath_db <= -60:
        return audio
    sos = butter(2, 1500.0, btype="highpass", fs=rate_hz, output="sos")
    noise = sosfilt(sos, rng.standard_normal(audio.size)) * envelope(audio, rate_hz)
    scale = _rms(audio) / (_rms(noise) + 1e-12) * 10.0 ** (breath_db / 20.0)
    return np.asarray(audio + scale * noise, dtype=np.float32)


def add_creak(
    audio: Audio, depth: float, pulse_hz: float, rate_hz: int, rng: np.random.Generator
) -> Audio:
    """Vocal fry: the voice gated by irregular low-rate glottal pulses (``depth`` 0..1)."""
    if depth <= 0:
        return audio
    gate = np.zeros(audio.size)
    period = rate_hz / pulse_hz
    position = rng.uniform(0, period)
    width = max(int(0.35 * period), 2)
    pulse = np.hanning(width)
    while position < audio.size - width:
        start = int(position)
        gate[start : start + width] += pulse * rng.uniform(0.6, 1.0)
        position += period * rng.uniform(0.75, 1.25)
    shaped = audio * (1.0 - depth + depth * np.clip(gate, 0.0, 1.0))
    return np.asarray(shaped * _rms(audio) / (_rms(shaped) + 1e-12), dtype=np.float32)


def add_tremor_amplitude(audio: Audio, prosody: Prosody, rate_hz: int) -> Audio:
    if prosody.tremor_pct <= 0:
        return audio
    t = np.arange(audio.size) / rate_hz
    depth = min(0.06 * prosody.tremor_pct, 0.4)
    return np.asarray(
        (audio * (1.0 + depth * np.sin(2 * np.pi * prosody.tremor_hz * t))), dtype=np.float32
    )


def _rms(audio: npt.NDArray[np.floating]) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)) + 1e-20))


def trim(audio: Audio, threshold: float = 0.02) -> Audio:
    """Cut leading and trailing silence: samples below ``threshold`` times the peak."""
    voiced = np.flatnonzero(np.abs(audio) > threshold * float(np.max(np.abs(audio))))
    if voiced.size == 0:
        raise SynthError("synthesised audio is silent")
    return audio[voiced[0] : voiced[-1] + 1]


def speak(
    text: str,
    voice: Voice,
    prosody: Prosody,
    rng: np.random.Generator,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
) -> Audio:
    """One emotional utterance, dry (no noise or room): float32 mono at ``sample_rate_hz``."""
    raw, rate = espeak(text, voice, prosody)
    raw = trim(raw)
    voiced = warp_pitch(raw, pitch_curve(prosody, raw.size, rate, rng))
    voiced = add_tremor_amplitude(voiced, prosody, rate)
    voiced = add_creak(voiced, prosody.creak, prosody.creak_hz, rate, rng)
    voiced = apply_tilt(voiced, prosody.tilt)
    voiced = add_breath(voiced, prosody.breath_db, rate, rng)
    audio = soxr.resample(voiced, rate, sample_rate_hz).astype(np.float32)
    return set_level(audio, -20.0 + prosody.gain_db)


# ---- corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Channel:
    """Recording conditions of one clip."""

    level_dbfs: float
    rt60_s: float  # 0 = no room
    noise: str  # "" = none
    snr_db: float


@dataclass(frozen=True)
class ClipSpec:
    split: Split
    index: int
    emotion: str
    voice: Voice
    sentence: Sentence
    channel: Channel

    @property
    def speaker(self) -> str:
        return self.voice.espeak_name


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0
    clips: dict[str, int] = field(default_factory=lambda: {"train": 4200, "val": 600, "test": 600})
    english_sentences: int = 600
    english_share: float = 0.8
    max_seconds: float = 3.0
    noise_probability: float = 0.7  # train and val
    snr_range_db: tuple[float, float] = (0.0, 30.0)
    room_probability: float = 0.35  # train and val
    held_out_share: float = 0.15  # of voices and of sentences, for each of val and test
    # Training clips only: each voice-quality cue (tremor, jitter, pitch steps, creak,
    # breathiness, spectral tilt) and the emotion's sentence-final punctuation is replaced by
    # its neutral value with this probability, independently, so that a model cannot lean on
    # any one of them alone. Validation and test clips always follow the full rules.
    cue_dropout: float = 0.0
    # Training clips only: this share of them (drawn per clip) goes through a telephone
    # channel after rendering (training/synthetic/telephone.py: 300-3400 Hz, 8 kHz, G.711
    # mu-law or A-law, equally likely, back to 16 kHz), so that the model also hears speech
    # as a phone call carries it. Validation and test clips stay wideband.
    telephone_probability: float = 0.0


@dataclass(frozen=True)
class Partition:
    """Which voices and sentences each split may use; disjoint across splits."""

    variants: dict[str, tuple[str, ...]]
    sentences: dict[str, tuple[Sentence, ...]]


def _three_way(items: Sequence[object], share: float, rng: np.random.Generator) -> list[list[int]]:
    order = rng.permutation(len(items))
    held = max(1, round(share * len(items)))
    return [list(order[2 * held :]), list(order[:held]), list(order[held : 2 * held])]


def partition(config: CorpusConfig) -> Partition:
    rng = np.random.default_rng([config.seed, 1000])
    variant_idx = _three_way(VARIANTS, config.held_out_share, rng)
    pool = english_sentences(config.english_sentences, rng)
    by_language: dict[str, list[Sentence]] = {}
    for sentence in other_sentences():
        by_language.setdefault(sentence.language, []).append(sentence)
    sentences: dict[str, list[Sentence]] = {split: [] for split in SPLITS}
    for group in [pool, *by_language.values()]:
        for split, indices in zip(
            SPLITS, _three_way(group, config.held_out_share, rng), strict=True
        ):
            sentences[split].extend(group[i] for i in indices)
    return Partition(
        variants={
            s: tuple(VARIANTS[i] for i in idx) for s, idx in zip(SPLITS, variant_idx, strict=True)
        },
        sentences={s: tuple(v) for s, v in sentences.items()},
    )


def clip_rng(seed: int, split: str, index: int, purpose: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODES[split], index, purpose])


def _pick_sentence(
    sentences: Sequence[Sentence], english: bool, rng: np.random.Generator
) -> Sentence:
    candidates = [s for s in sentences if (s.language == "en") == english]
    return candidates[int(rng.integers(len(candidates)))]


def _channel(split: str, config: CorpusConfig, rng: np.random.Generator) -> Channel:
    level = float(rng.uniform(-34.0, -16.0))
    if split == "test":
        return Channel(level_dbfs=level, rt60_s=0.0, noise="", snr_db=0.0)
    rt60 = float(rng.uniform(0.15, 0.8)) if rng.random() < config.room_probability else 0.0
    if rng.random() < config.noise_probability:
        kind = str(rng.choice(NOISE_KINDS))
        return Channel(level, rt60, kind, float(rng.uniform(*config.snr_range_db)))
    return Channel(level, rt60, "", 0.0)


def plan_clip(split: Split, index: int, config: CorpusConfig, part: Partition) -> ClipSpec:
    rng = clip_rng(config.seed, split, index)
    english = rng.random() < config.english_share
    sentence = _pick_sentence(part.sentences[split], english, rng)
    language = str(rng.choice(ENGLISH_VOICES)) if english else sentence.language
    variants = part.variants[split]
    voice = Voice(language, variants[int(rng.integers(len(variants)))])
    emotion = EMOTIONS[index % len(EMOTIONS)]
    return ClipSpec(split, index, emotion, voice, sentence, _channel(split, config, rng))


def plan(config: CorpusConfig) -> list[ClipSpec]:
    part = partition(config)
    for split in config.clips:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} in clips; expected {list(SPLITS)}")
    return [
        plan_clip(split, i, config, part)  # type: ignore[arg-type]
        for split, count in config.clips.items()
        for i in range(count)
    ]


def babble_bank(split: Split, config: CorpusConfig, part: Partition, size: int = 16) -> list[Audio]:
    """Neutral-to-mixed talkers from ``split``'s own voices and sentences, for babble noise."""
    bank = []
    for i in range(size):
        spec = plan_clip(split, 1_000_000 + i, config, part)
        rng = clip_rng(config.seed, split, spec.index, 3)
        bank.append(speak(spec.sentence.text, spec.voice, sample_prosody(spec.emotion, rng), rng))
    return bank


def crop(audio: Audio, max_seconds: float, rng: np.random.Generator) -> Audio:
    limit = int(max_seconds * SAMPLE_RATE_HZ)
    if audio.size <= limit:
        return audio
    start = int(rng.integers(audio.size - limit + 1))
    return audio[start : start + limit]


def with_noise(
    audio: Audio, kind: str, snr_db: float, rng: np.random.Generator, babble: list[Audio]
) -> Audio:
    return add_noise(audio, make_noise(kind, audio.size, rng, babble), snr_db)


def drop_cues(prosody: Prosody, probability: float, rng: np.random.Generator) -> Prosody:
    """``prosody`` with each voice-quality cue and the punctuation neutralised with
    ``probability`` (pitch level and range, rate, level and glide are always kept)."""
    neutral = {
        "tremor_pct": 0.0,
        "jitter_pct": 0.0,
        "step_pct": 0.0,
        "creak": 0.0,
        "breath_db": -80.0,
        "tilt": 0.0,
        "terminal": ".",
    }
    dropped = {name: value for name, value in neutral.items() if rng.random() < probability}
    return dataclasses.replace(prosody, **dropped)  # type: ignore[arg-type]


def render(spec: ClipSpec, config: CorpusConfig, babble: list[Audio]) -> Audio:
    """The clip's audio: emotional speech, cropped, in its room, at its level, with its noise."""
    rng = clip_rng(config.seed, spec.split, spec.index, 1)
    prosody = sample_prosody(spec.emotion, rng)
    if spec.split == "train" and config.cue_dropout > 0:
        # A stream of its own, so that every other draw of the clip stays as without dropout.
        prosody = drop_cues(
            prosody, config.cue_dropout, clip_rng(config.seed, "train", spec.index, 4)
        )
    audio = crop(speak(spec.sentence.text, spec.voice, prosody, rng), config.max_seconds, rng)
    pad = np.zeros(int(rng.uniform(0.05, 0.2) * SAMPLE_RATE_HZ), dtype=np.float32)
    audio = np.concatenate([pad, audio, pad[: int(rng.integers(pad.size + 1))]])
    if spec.channel.rt60_s > 0:
        audio = reverberate(audio, room_impulse(spec.channel.rt60_s, rng))
    if spec.channel.noise:
        audio = with_noise(audio, spec.channel.noise, spec.channel.snr_db, rng, babble)
    audio = set_level(audio, spec.channel.level_dbfs + prosody.gain_db)
    if spec.split == "train" and config.telephone_probability > 0:
        # A stream of its own, so that every other draw of the clip stays as without it.
        phone_rng = clip_rng(config.seed, "train", spec.index, 5)
        if phone_rng.random() < config.telephone_probability:
            audio = telephone(audio, str(phone_rng.choice(LAWS)))
    return audio


def noisy_copy(
    audio: Audio, spec: ClipSpec, snr_db: float, config: CorpusConfig, babble: list[Audio]
) -> Audio:
    """A test clip with noise of a random kind at exactly ``snr_db``."""
    rng = clip_rng(config.seed, spec.split, spec.index, 2)
    kind = str(rng.choice(NOISE_KINDS))
    return set_level(with_noise(audio, kind, snr_db, rng, babble), spec.channel.level_dbfs)


def _write_wav(path: Path, audio: Audio) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    return path


def write_corpus(out_dir: Path, config: CorpusConfig, log_every: int = 500) -> Path:
    """Render every planned clip to ``out_dir``; returns the main split CSV (train/val/test clean).

    Noisy copies of the test split are written too, one CSV per SNR: ``test_snr{N}.csv``.
    """
    part = partition(config)
    specs = plan(config)
    banks = {split: babble_bank(split, config, part) for split in SPLITS if split in config.clips}
    examples: list[Example] = []
    noisy: dict[int, list[Example]] = {snr: [] for snr in TEST_SNRS_DB}
    for done, spec in enumerate(specs):
        audio = render(spec, config, banks[spec.split])
        name = f"{spec.split}/{spec.index:05d}.wav"
        path = _write_wav(out_dir / "wav" / name, audio)
        examples.append(Example(path, spec.emotion, spec.speaker, spec.split, spec.sentence.text))
        if spec.split == "test":
            for snr in TEST_SNRS_DB:
                copy = noisy_copy(audio, spec, snr, config, banks["test"])
                noisy_path = _write_wav(out_dir / f"wav_snr{snr}" / name, copy)
                noisy[snr].append(
                    Example(noisy_path, spec.emotion, spec.speaker, "test", spec.sentence.text)
                )
        if log_every and (done + 1) % log_every == 0:
            print(f"synth: {done + 1}/{len(specs)} clips", flush=True)
    for snr, rows in noisy.items():
        if rows:
            write_split(out_dir / f"test_snr{snr}.csv", rows)
    return write_split(out_dir / "split.csv", examples)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic emotional-speech corpus.")
    parser.add_argument("--out", type=Path, required=True, help="output directory (replaced)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=4200, help="training clips")
    parser.add_argument("--val", type=int, default=600, help="validation clips")
    parser.add_argument("--test", type=int, default=600, help="test clips")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        parser.error("espeak-ng is not installed (Debian package espeak-ng)")
    if args.out.exists():
        shutil.rmtree(args.out)
    config = CorpusConfig(
        seed=args.seed, clips={"train": args.train, "val": args.val, "test": args.test}
    )
    csv_path = write_corpus(args.out, config)
    print(f"synth: wrote {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
