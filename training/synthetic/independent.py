"""An independent emotional-speech test generator, for held-out evaluation only (never trained on).

``python -m training.synthetic.independent --out DIR`` writes a test set (16 kHz mono WAV
files and a split CSV whose rows are all ``test``). It shares no code path with the training
generator (``training/synthetic/synth.py``) beyond calling espeak-ng:

- **cues** follow Juslin & Laukka (2003), not Murray & Arnott (1993): speech rate, F0 level,
  F0 variability, F0 contour over the utterance, loudness and its variability, high-frequency
  energy, and regularity of voicing (disgust, which they do not cover, follows the directions
  reported by Banse & Scherer, 1996);
- **machinery**: everything happens inside the synthesiser. The utterance is read as two to
  four phrases, each in its own SSML ``<prosody>`` (rate, pitch, range, volume), so contours
  and loudness changes are phrase by phrase; voice quality (spectral balance, pitch flutter,
  roughness) is set through espeak-ng *voice definitions* (``tone``, ``flutter``,
  ``roughness``) written to a private espeak-ng data directory, instead of the training
  generator's signal-level pitch warping, filters and added noise; every sentence ends in a
  plain full stop, so espeak-ng's clause intonation carries no label;
- **voices**: eight speakers of our own (pitch base and range, formant scaling) that exist in
  no espeak-ng installation, so they cannot occur in training;
- **sentences**: written for this set; none is in the training generator's pools.

Deterministic: a clip depends only on the seed and its index. See docs/synthetic-corpus.md.
"""

from __future__ import annotations

import argparse
import io
import itertools
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from pcm.format import PIPELINE_RATE_HZ
from training.corpus.data import Example, write_split
from training.synthetic.prosody import EMOTIONS

Audio = npt.NDArray[np.float32]
SAMPLE_RATE_HZ = PIPELINE_RATE_HZ
ESPEAK_RATE_HZ = 22050
Range = tuple[float, float]


class IndependentError(RuntimeError):
    """espeak-ng is missing, failed, or produced no audio."""


@dataclass(frozen=True)
class Speaker:
    """A voice of our own: an espeak-ng accent plus a voice definition written at run time."""

    name: str
    accent: str  # espeak-ng language voice
    pitch_base_hz: int  # espeak-ng voice file `pitch <base> <range>`
    pitch_range_hz: int
    formant_pct: tuple[int, int, int]  # frequency scaling of formants 1-3 (vocal tract length)


SPEAKERS: tuple[Speaker, ...] = (
    Speaker("jl-amos", "en-us", 78, 110, (97, 96, 98)),
    Speaker("jl-bruno", "en-gb-x-rp", 92, 125, (102, 99, 97)),
    Speaker("jl-cyril", "en-gb-scotland", 105, 140, (94, 97, 101)),
    Speaker("jl-dmitri", "en-029", 70, 95, (99, 103, 100)),
    Speaker("jl-esme", "en-us", 175, 230, (112, 110, 106)),
    Speaker("jl-fleur", "en-gb-x-rp", 200, 260, (116, 112, 108)),
    Speaker("jl-greta", "en-gb-x-gbclan", 160, 210, (108, 113, 110)),
    Speaker("jl-hana", "en-us-nyc", 215, 280, (120, 115, 109)),
)

# Written for this set: everyday, emotionally neutral statements, none built like the
# training grammar's "subject verb object (time/place)" sentences.
SENTENCES: tuple[str, ...] = (
    "I put the spare keys in the drawer next to the sink",
    "We will go over the numbers again on Thursday",
    "The train to the coast leaves from platform four",
    "Please write your name at the top of the second page",
    "It usually takes about twenty minutes to get there by bus",
    "She said the shop closes at six during the week",
    "There are three boxes of paper left in the cupboard",
    "You can find the form on the desk by the window",
    "He moved the meeting from the morning to the afternoon",
    "They are painting the hallway a lighter shade of grey",
    "I think the parcel came while you were out",
    "We need two more chairs for the table in the kitchen",
    "The library keeps old newspapers on the lower floor",
    "Turn left after the bridge and keep going straight",
    "My appointment has been moved to the fourteenth",
    "The printer on the first floor is working again",
    "Most of the guests will arrive by car this evening",
    "It is supposed to rain a little over the weekend",
    "Can you leave the receipt with the other papers",
    "The bakery on the corner opens at seven",
    "I have already sent the photos to everyone on the list",
    "The lift is out of order so please use the stairs",
    "We usually buy our vegetables at the market on Saturday",
    "Your order number is printed on the back of the card",
    "The new timetable starts at the beginning of next month",
    "He keeps his bicycle in the shed behind the house",
    "There is a pharmacy just across the road from the station",
    "I wrote the address on a piece of paper in my bag",
    "The course runs for eight weeks with one session a week",
    "She has lived in the same flat for almost ten years",
    "The water will be switched off for an hour tomorrow",
    "We parked the van at the end of the street",
    "You will need a pen and a copy of your passport",
    "The museum is free on the first Sunday of the month",
    "I left the umbrella in the car again",
    "The plumber is coming round sometime after lunch",
    "Our flight was changed to a later time",
    "The report is about forty pages long",
    "They have put a new bench in the park near the pond",
    "Dinner will be ready in about half an hour",
)


@dataclass(frozen=True)
class Cues:
    """Per-emotion cue ranges; each utterance draws one value from each range.

    Percentages are SSML ``<prosody>`` values relative to the speaker's own; ``contour_pct`` is
    the pitch change from the first phrase to the last (> 0 rising); ``volume_db`` the mean
    loudness change and ``volume_var_db`` the spread of loudness between phrases; ``hf_db``
    the level of 3-5 kHz against 600 Hz in the voice definition's ``tone``; ``flutter`` and
    ``roughness`` the voice definition's pitch fluctuation and roughness; ``pause_ms`` the
    break between phrases.
    """

    rate_pct: Range
    pitch_pct: Range
    range_pct: Range
    contour_pct: Range
    volume_db: Range
    volume_var_db: Range
    hf_db: Range
    flutter: Range
    roughness: Range
    pause_ms: Range


# Directions from Juslin & Laukka (2003), table of cues by emotion (disgust: Banse & Scherer,
# 1996); sizes are ours. Neutral is the speaker's own values.
CUES: dict[str, Cues] = {
    "neutral": Cues(
        rate_pct=(94, 106),
        pitch_pct=(-5, 5),
        range_pct=(-10, 10),
        contour_pct=(-5, 0),
        volume_db=(-1, 1),
        volume_var_db=(0, 1),
        hf_db=(-2, 2),
        flutter=(10, 30),
        roughness=(1, 3),
        pause_ms=(100, 200),
    ),
    # anger: fast, loud, loudness varies, much high-frequency energy, high F0, high F0
    # variability, rising contours, irregular voicing
    "angry": Cues(
        rate_pct=(110, 130),
        pitch_pct=(15, 35),
        range_pct=(40, 90),
        contour_pct=(4, 12),
        volume_db=(4, 8),
        volume_var_db=(3, 6),
        hf_db=(8, 14),
        flutter=(40, 80),
        roughness=(4, 6),
        pause_ms=(40, 100),
    ),
    # fear: fast, quiet, loudness varies, little high-frequency energy, high F0, *low* F0
    # variability, rising contours, irregular voicing
    "fearful": Cues(
        rate_pct=(120, 145),
        pitch_pct=(35, 70),
        range_pct=(-40, -10),
        contour_pct=(6, 15),
        volume_db=(-4, 0),
        volume_var_db=(3, 6),
        hf_db=(-6, -2),
        flutter=(90, 160),
        roughness=(3, 5),
        pause_ms=(60, 150),
    ),
    # happiness: fast, fairly loud, loudness varies, medium-high high-frequency energy, high
    # F0, high F0 variability, rising contours, regular voicing
    "happy": Cues(
        rate_pct=(108, 125),
        pitch_pct=(20, 40),
        range_pct=(50, 110),
        contour_pct=(4, 10),
        volume_db=(1, 4),
        volume_var_db=(2, 4),
        hf_db=(2, 6),
        flutter=(10, 30),
        roughness=(0, 2),
        pause_ms=(60, 140),
    ),
    # sadness: slow, quiet, steady loudness, little high-frequency energy, low F0, low F0
    # variability, falling contours, irregular voicing, long pauses
    "sad": Cues(
        rate_pct=(70, 85),
        pitch_pct=(-20, -8),
        range_pct=(-60, -35),
        contour_pct=(-12, -5),
        volume_db=(-8, -4),
        volume_var_db=(0, 1),
        hf_db=(-12, -7),
        flutter=(40, 80),
        roughness=(2, 4),
        pause_ms=(250, 450),
    ),
    # disgust: slow, low F0, somewhat quiet, falling contours, harsh voice
    "disgust": Cues(
        rate_pct=(74, 90),
        pitch_pct=(-25, -12),
        range_pct=(0, 30),
        contour_pct=(-15, -8),
        volume_db=(-3, 0),
        volume_var_db=(1, 3),
        hf_db=(0, 4),
        flutter=(20, 50),
        roughness=(5, 7),
        pause_ms=(150, 300),
    ),
}
assert set(CUES) == set(EMOTIONS)


@dataclass(frozen=True)
class Utterance:
    """One clip's plan: who says what, how, and the drawn cue values."""

    index: int
    emotion: str
    speaker: Speaker
    sentence: str
    rate_pct: float
    pitch_pct: float
    range_pct: float
    contour_pct: float
    volume_db: float
    volume_var_db: float
    hf_db: float
    flutter: int
    roughness: int
    pause_ms: float
    phrases: int
    level_dbfs: float


def _draw(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(*bounds))


def plan_utterance(seed: int, index: int) -> Utterance:
    rng = np.random.default_rng([seed, 7_001, index])
    emotion = EMOTIONS[index % len(EMOTIONS)]
    cues = CUES[emotion]
    return Utterance(
        index=index,
        emotion=emotion,
        speaker=SPEAKERS[int(rng.integers(len(SPEAKERS)))],
        sentence=SENTENCES[int(rng.integers(len(SENTENCES)))],
        rate_pct=_draw(rng, cues.rate_pct),
        pitch_pct=_draw(rng, cues.pitch_pct),
        range_pct=_draw(rng, cues.range_pct),
        contour_pct=_draw(rng, cues.contour_pct),
        volume_db=_draw(rng, cues.volume_db),
        volume_var_db=_draw(rng, cues.volume_var_db),
        hf_db=_draw(rng, cues.hf_db),
        flutter=round(_draw(rng, cues.flutter)),
        roughness=round(_draw(rng, cues.roughness)),
        pause_ms=_draw(rng, cues.pause_ms),
        phrases=int(rng.integers(2, 5)),
        level_dbfs=float(rng.uniform(-32.0, -18.0)),
    )


def phrases(sentence: str, count: int) -> list[str]:
    """Split ``sentence`` into ``count`` runs of words of nearly equal length (at least one)."""
    words = sentence.split()
    count = max(1, min(count, len(words)))
    bounds = np.linspace(0, len(words), count + 1).round().astype(int)
    return [" ".join(words[a:b]) for a, b in itertools.pairwise(bounds)]


def ssml(utt: Utterance) -> str:
    """Phrase-by-phrase prosody: pitch moves along the contour, loudness alternates around its
    mean by ``volume_var_db``; the sentence ends in a plain full stop."""
    parts = phrases(utt.sentence, utt.phrases)
    out = []
    for k, text in enumerate(parts):
        position = k / max(len(parts) - 1, 1)
        pitch = utt.pitch_pct + utt.contour_pct * position
        swing = utt.volume_var_db * (1.0 if k % 2 == 0 else -1.0)
        volume = 100.0 * 10.0 ** ((utt.volume_db + swing) / 20.0)
        end = "." if k == len(parts) - 1 else ""
        out.append(
            f'<prosody rate="{utt.rate_pct:.0f}%" pitch="{pitch:+.0f}%" '
            f'range="{utt.range_pct:+.0f}%" volume="{volume:.0f}%">{escape(text)}{end}</prosody>'
        )
    pause = f'<break time="{utt.pause_ms:.0f}ms"/>'
    return "<speak>" + pause.join(out) + "</speak>"


def voice_definition(utt: Utterance) -> str:
    """An espeak-ng voice variant: the speaker's timbre plus the emotion's voice quality."""
    s = utt.speaker
    tilt = utt.hf_db
    # `tone` pairs: frequency (Hz) and amplitude (100 = unchanged); a dB slope from 600 Hz up.
    points = [(600, 0.0), (1500, 0.4 * tilt), (3000, 0.8 * tilt), (5000, tilt)]
    tone = " ".join(f"{f} {round(100 * 10 ** (db / 20))}" for f, db in points)
    lines = [
        f"name {variant_name(utt)}",
        f"pitch {s.pitch_base_hz} {s.pitch_range_hz}",
        *(f"formant {n} {pct} 100 100" for n, pct in enumerate(s.formant_pct, start=1)),
        f"tone {tone}",
        f"flutter {utt.flutter}",
        f"roughness {utt.roughness}",
    ]
    return "\n".join(lines) + "\n"


def variant_name(utt: Utterance) -> str:
    return f"{utt.speaker.name}-{utt.index:06d}"


def system_data_dir() -> Path:
    """The installed espeak-ng data directory, as espeak-ng reports it."""
    try:
        out = subprocess.run(
            ["espeak-ng", "--version"], check=True, capture_output=True, text=True, timeout=30
        ).stdout
    except FileNotFoundError as exc:
        raise IndependentError("espeak-ng is not installed (Debian package espeak-ng)") from exc
    marker = "Data at:"
    if marker not in out:
        raise IndependentError(f"cannot find espeak-ng's data directory in {out!r}")
    path = Path(out.split(marker, 1)[1].strip())
    if not (path / "voices").is_dir():
        raise IndependentError(f"espeak-ng's data directory {str(path)!r} has no voices")
    return path


@contextmanager
def private_espeak() -> Iterator[Path]:
    """A temporary espeak-ng ``--path`` root: the installed data, linked, with a writable
    variant folder (``voices/!v``) where this generator's voice definitions go."""
    source = system_data_dir()
    with tempfile.TemporaryDirectory(prefix="emostream-espeak-") as tmp:
        root = Path(tmp)
        data = root / "espeak-ng-data"
        voices = data / "voices"
        variants = voices / "!v"
        variants.mkdir(parents=True)
        for item in source.iterdir():
            if item.name != "voices":
                (data / item.name).symlink_to(item)
        for item in (source / "voices").iterdir():
            if item.name != "!v":
                (voices / item.name).symlink_to(item)
        for item in (source / "voices" / "!v").iterdir():
            (variants / item.name).symlink_to(item)
        yield root


def speak(utt: Utterance, espeak_root: Path) -> Audio:
    """The dry utterance at 16 kHz, at its level; silence trimmed."""
    name = variant_name(utt)
    variant_file = espeak_root / "espeak-ng-data" / "voices" / "!v" / name
    variant_file.write_text(voice_definition(utt), encoding="utf-8")
    command = [
        "espeak-ng",
        f"--path={espeak_root}",
        "-m",
        "-v",
        f"{utt.speaker.accent}+{name}",
        "--stdout",
        ssml(utt),
    ]
    try:
        wav = subprocess.run(command, check=True, capture_output=True, timeout=60).stdout
    except subprocess.CalledProcessError as exc:
        raise IndependentError(f"espeak-ng failed for {name!r}: {exc.stderr!r}") from exc
    finally:
        variant_file.unlink(missing_ok=True)
    audio, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if audio.size == 0 or not np.any(audio):
        raise IndependentError(f"espeak-ng produced no audio for clip {utt.index}")
    if rate != ESPEAK_RATE_HZ:
        raise IndependentError(f"espeak-ng wrote {rate} Hz, expected {ESPEAK_RATE_HZ}")
    voiced = np.flatnonzero(np.abs(audio) > 0.02 * float(np.max(np.abs(audio))))
    audio = audio[voiced[0] : voiced[-1] + 1]
    # 22050 -> 16000 = x 320 / 441, a polyphase filter (the training generator uses soxr).
    resampled = resample_poly(audio.astype(np.float64), 320, 441)
    rms = float(np.sqrt(np.mean(resampled**2)) + 1e-12)
    scaled = resampled * 10.0 ** (utt.level_dbfs / 20.0) / rms
    pad = np.zeros(int(0.1 * SAMPLE_RATE_HZ))
    out: Audio = np.clip(np.concatenate([pad, scaled, pad]), -1.0, 1.0).astype(np.float32)
    return out


def render(seed: int, indices: Sequence[int]) -> Iterator[tuple[Utterance, Audio]]:
    with private_espeak() as root:
        for index in indices:
            utt = plan_utterance(seed, index)
            yield utt, speak(utt, root)


def write_set(out_dir: Path, seed: int = 0, clips: int = 240, progress: bool = True) -> Path:
    """Render ``clips`` clips (balanced over the six emotions) to ``out_dir``; returns the CSV."""
    if clips < 1:
        raise ValueError(f"clips must be at least 1, got {clips}")
    examples = []
    wav_dir = out_dir / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    stream = render(seed, range(clips))
    for utt, audio in tqdm(stream, total=clips, desc="independent", disable=not progress):
        path = wav_dir / f"{utt.index:05d}.wav"
        sf.write(str(path), audio, SAMPLE_RATE_HZ, subtype="PCM_16")
        examples.append(Example(path, utt.emotion, utt.speaker.name, "test", utt.sentence))
    return write_split(out_dir / "split.csv", examples)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the independent emotional-speech test set (evaluation only)."
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory (replaced)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips", type=int, default=240, help="clips, balanced over emotions")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error(f"--clips must be at least 1, got {args.clips}")
    if shutil.which("espeak-ng") is None:
        parser.error("espeak-ng is not installed (Debian package espeak-ng)")
    if args.out.exists():
        shutil.rmtree(args.out)
    csv_path = write_set(args.out, args.seed, args.clips, progress=not args.no_progress)
    print(f"independent: wrote {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
