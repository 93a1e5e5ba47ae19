"""Readers for emotional-speech corpora: folder-per-label, RAVDESS, CREMA-D, TESS and SAVEE.

Each reader walks a directory and returns the clips it recognises, with a raw emotion name,
a speaker id and a sentence id, plus every file it could not use and why. ``map_labels`` then
turns raw emotion names into the labels to train on (see LABEL_MAP and docs/training.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import soundfile as sf

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3"})
DROP = "drop"

# Raw emotion name (as the readers spell it, lower case) -> training label, or None to drop.
LABEL_MAP: dict[str, str | None] = {
    "neutral": "neutral",
    "calm": "neutral",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "angry": "angry",
    "anger": "angry",
    "fearful": "fearful",
    "fear": "fearful",
    "disgust": "disgust",
    "disgusted": "disgust",
    "surprised": None,
    "surprise": None,
    "suprised": None,  # the Audio Emotions compilation's folder name
    "ps": None,  # TESS "pleasant surprise"
    "pleasant_surprise": None,
    "pleasant_surprised": None,
}

RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
CREMAD_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
SAVEE_EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}
TESS_EMOTIONS = frozenset(
    {
        "angry",
        "disgust",
        "fear",
        "happy",
        "neutral",
        "sad",
        "ps",
        "pleasant_surprise",
        "pleasant_surprised",
    }
)

_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_CREMAD = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_TESS = re.compile(r"^(OAF|YAF)_([A-Za-z]+)_([A-Za-z_]+)$", re.IGNORECASE)
_SAVEE = re.compile(r"^(sa|su|a|d|f|h|n)(\d\d)$")
_SAVEE_FLAT = re.compile(r"^([A-Z]{2})_(sa|su|a|d|f|h|n)(\d\d)$")


class CorpusError(ValueError):
    """A corpus directory or label mapping that cannot be read; the message names the value."""


@dataclass(frozen=True)
class Clip:
    path: Path
    emotion: str
    speaker: str
    text: str = ""
    label: str = ""


@dataclass(frozen=True)
class Problem:
    path: Path
    reason: str


@dataclass
class Scan:
    clips: list[Clip] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)

    def extend(self, other: Scan) -> None:
        self.clips.extend(other.clips)
        self.problems.extend(other.problems)
        self.dropped.update(other.dropped)


class Unrecognised(ValueError):
    """A file name that does not follow the corpus's naming scheme."""


NameParser = Callable[[Path], Clip]


def parse_ravdess(path: Path) -> Clip:
    match = _RAVDESS.match(path.stem)
    if match is None:
        raise Unrecognised("name is not RAVDESS's MM-VV-EE-II-SS-RR-AA")
    _modality, channel, emotion, _intensity, statement, _rep, actor = match.groups()
    if emotion not in RAVDESS_EMOTIONS:
        raise Unrecognised(f"unknown RAVDESS emotion code {emotion!r}")
    if channel != "01":
        raise Unrecognised(f"RAVDESS vocal channel {channel!r} is song, not speech")
    return Clip(path, RAVDESS_EMOTIONS[emotion], f"ravdess:{actor}", f"ravdess:{statement}")


def parse_cremad(path: Path) -> Clip:
    match = _CREMAD.match(path.stem)
    if match is None:
        raise Unrecognised("name is not CREMA-D's AAAA_SSS_EEE_LL")
    actor, sentence, emotion, _level = match.groups()
    if emotion not in CREMAD_EMOTIONS:
        raise Unrecognised(f"unknown CREMA-D emotion code {emotion!r}")
    return Clip(path, CREMAD_EMOTIONS[emotion], f"cremad:{actor}", f"cremad:{sentence}")


def parse_tess(path: Path) -> Clip:
    match = _TESS.match(path.stem)
    if match is None:
        raise Unrecognised("name is not TESS's OAF|YAF_word_emotion")
    speaker, word, emotion = match.groups()
    emotion = emotion.lower()
    if emotion not in TESS_EMOTIONS:
        raise Unrecognised(f"unknown TESS emotion {emotion!r}")
    return Clip(path, emotion, f"tess:{speaker.upper()}", f"tess:{word.lower()}")


def parse_savee(path: Path) -> Clip:
    flat = _SAVEE_FLAT.match(path.stem)
    if flat is not None:
        speaker, code, number = flat.groups()
    else:
        match = _SAVEE.match(path.stem)
        if match is None or not re.fullmatch(r"[A-Z]{2}", path.parent.name):
            raise Unrecognised("name is not SAVEE's SPEAKER/eNN or SPEAKER_eNN")
        code, number = match.groups()
        speaker = path.parent.name
    return Clip(path, SAVEE_EMOTIONS[code], f"savee:{speaker}", f"savee:{code}{number}")


PARSERS: dict[str, NameParser] = {
    "ravdess": parse_ravdess,
    "cremad": parse_cremad,
    "tess": parse_tess,
    "savee": parse_savee,
}


def parse_any(path: Path) -> Clip | None:
    """The clip as whichever native naming scheme recognises it, if any."""
    for parser in PARSERS.values():
        try:
            return parser(path)
        except Unrecognised:
            continue
    return None


def audio_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise CorpusError(f"corpus directory {str(root)!r} does not exist")
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")
    )


def read_native(root: Path, corpus: str) -> list[Clip | Problem]:
    """Files named by one corpus's own scheme (RAVDESS, CREMA-D, TESS or SAVEE)."""
    if corpus not in PARSERS:
        raise CorpusError(f"unknown corpus {corpus!r}; known: {sorted(PARSERS)}")
    parser = PARSERS[corpus]
    found: list[Clip | Problem] = []
    for path in audio_files(root):
        try:
            found.append(parser(path))
        except Unrecognised as exc:
            found.append(Problem(path, str(exc)))
    return found


def read_folders(root: Path, mapping: Mapping[str, str | None]) -> list[Clip | Problem]:
    """``root/<Label>/**/*.wav``; speakers come from native names where the files keep them."""
    found: list[Clip | Problem] = []
    for path in audio_files(root):
        relative = path.relative_to(root)
        if len(relative.parts) < 2:
            found.append(Problem(path, "file is not inside a label folder"))
            continue
        emotion = relative.parts[0].lower()
        native = parse_any(path)
        if native is None:
            found.append(Clip(path, emotion, ""))
            continue
        # The file keeps its corpus's own name: trust its (more specific) emotion, e.g. RAVDESS
        # calm inside Neutral/, but refuse a file whose name contradicts its folder.
        said = mapping.get(native.emotion, native.emotion)
        if said is not None and said != mapping.get(emotion, emotion):
            reason = f"label conflict: folder says {emotion!r}, name says {native.emotion!r}"
            found.append(Problem(path, reason))
            continue
        found.append(native)
    return found


LAYOUTS = ("folders", *PARSERS)


def read_corpus(
    root: Path, layout: str, mapping: Mapping[str, str | None] = LABEL_MAP, check_audio: bool = True
) -> Scan:
    """Read one corpus directory and map its emotions; nothing unusable is silently kept."""
    if layout not in LAYOUTS:
        raise CorpusError(f"unknown layout {layout!r}; expected one of {list(LAYOUTS)}")
    found = read_folders(root, mapping) if layout == "folders" else read_native(root, layout)
    scan = Scan()
    for item in found:
        if isinstance(item, Problem):
            scan.problems.append(item)
            continue
        if item.emotion not in mapping:
            scan.problems.append(Problem(item.path, f"unmapped emotion {item.emotion!r}"))
            continue
        label = mapping[item.emotion]
        if label is None:
            scan.dropped[item.emotion] += 1
            continue
        problem = check_readable(item.path) if check_audio else None
        if problem is not None:
            scan.problems.append(problem)
            continue
        scan.clips.append(replace(item, label=label))
    if not found:
        raise CorpusError(
            f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) under {str(root)!r}"
        )
    return scan


def check_readable(path: Path) -> Problem | None:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        return Problem(path, f"unreadable audio: {exc}")
    if info.frames == 0:
        return Problem(path, "audio has no samples")
    return None


def parse_mapping(
    overrides: Iterable[str], base: Mapping[str, str | None] = LABEL_MAP
) -> dict[str, str | None]:
    """Apply ``RAW=LABEL`` / ``RAW=drop`` overrides to the default mapping."""
    mapping = dict(base)
    for item in overrides:
        raw, sep, target = item.partition("=")
        raw, target = raw.strip().lower(), target.strip()
        if not sep or not raw or not target:
            raise CorpusError(f"label mapping {item!r} is not RAW=LABEL or RAW=drop")
        if target != DROP and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,49}", target):
            raise CorpusError(f"label {target!r} in mapping {item!r} is not a plain name")
        mapping[raw] = None if target == DROP else target
    return mapping


def dedupe(clips: list[Clip]) -> tuple[list[Clip], list[Problem]]:
    """Keep the first of several clips naming the same file (corpora given twice)."""
    seen: set[Path] = set()
    kept: list[Clip] = []
    problems: list[Problem] = []
    for clip in clips:
        key = clip.path.resolve()
        if key in seen:
            problems.append(Problem(clip.path, "listed twice (same file in two corpora)"))
            continue
        seen.add(key)
        kept.append(clip)
    return kept, problems
