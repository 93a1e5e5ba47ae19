"""The split manifest (a CSV naming every clip, its label, speaker and split) and audio loading."""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
REQUIRED_COLUMNS = ("path", "label", "speaker", "split")
COLUMNS = (*REQUIRED_COLUMNS, "text")

Audio = npt.NDArray[np.float32]


class DataError(ValueError):
    """A split manifest or audio file that cannot be used; the message names the bad value."""


@dataclass(frozen=True)
class Example:
    path: Path
    label: str
    speaker: str
    split: Split
    text: str = ""


def write_split(csv_path: Path, examples: Iterable[Example]) -> Path:
    """Write ``examples`` to ``csv_path`` with paths relative to the CSV's directory."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    base = csv_path.parent.resolve()
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for ex in examples:
            relative = Path(os.path.relpath(ex.path.resolve(), base)).as_posix()
            writer.writerow([relative, ex.label, ex.speaker, ex.split, ex.text])
    return csv_path


def read_split(
    csv_path: Path,
    labels: Sequence[str] | None = None,
    check_files: bool = True,
) -> list[Example]:
    """Read and validate a split manifest; ``labels`` (if given) is the set of allowed labels."""
    if not csv_path.is_file():
        raise DataError(f"split manifest {str(csv_path)!r} does not exist")
    base = csv_path.parent
    try:
        with csv_path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{str(csv_path)!r} is not a readable UTF-8 CSV: {exc}") from exc
    if not rows:
        raise DataError(f"{str(csv_path)!r} is empty (expected a header {','.join(COLUMNS)})")
    header = [name.strip() for name in rows[0]]
    _check_header(csv_path, header)
    examples = [
        _parse_row(csv_path, base, header, row, line, labels, check_files)
        for line, row in enumerate(rows[1:], start=2)
        if any(cell.strip() for cell in row)
    ]
    if not examples:
        raise DataError(f"{str(csv_path)!r} has a header but no rows")
    _check_duplicates(csv_path, examples)
    return examples


def _check_header(csv_path: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{str(csv_path)!r} lacks column(s) {missing}; header is {header}")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise DataError(
            f"{str(csv_path)!r} has unknown column(s) {unknown}; allowed: {list(COLUMNS)}"
        )
    if len(set(header)) != len(header):
        raise DataError(f"{str(csv_path)!r} repeats a column in its header {header}")


def _parse_row(
    csv_path: Path,
    base: Path,
    header: list[str],
    row: list[str],
    line: int,
    labels: Sequence[str] | None,
    check_files: bool,
) -> Example:
    where = f"{csv_path}, line {line}"
    if len(row) != len(header):
        raise DataError(f"{where}: expected {len(header)} fields, got {len(row)}: {row}")
    cells = {name: value.strip() for name, value in zip(header, row, strict=True)}
    if not cells["path"]:
        raise DataError(f"{where}: empty path")
    if not cells["label"]:
        raise DataError(f"{where}: empty label")
    if labels is not None and cells["label"] not in labels:
        raise DataError(f"{where}: unknown label {cells['label']!r}; allowed: {list(labels)}")
    if cells["split"] not in SPLITS:
        raise DataError(f"{where}: bad split {cells['split']!r}; expected one of {list(SPLITS)}")
    path = base / cells["path"]
    if check_files and not path.is_file():
        raise DataError(
            f"{where}: audio file {cells['path']!r} not found (looked for {str(path)!r})"
        )
    return Example(
        path=path,
        label=cells["label"],
        speaker=cells["speaker"],
        split=cells["split"],
        text=cells.get("text", ""),
    )


def _check_duplicates(csv_path: Path, examples: list[Example]) -> None:
    counts = Counter(ex.path.resolve() for ex in examples)
    repeated = [str(p) for p, n in counts.items() if n > 1]
    if repeated:
        raise DataError(f"{str(csv_path)!r} lists the same file more than once: {repeated[:5]}")


def select(examples: Iterable[Example], split: Split) -> list[Example]:
    return [ex for ex in examples if ex.split == split]


def label_set(examples: Iterable[Example], order: Sequence[str] = ()) -> tuple[str, ...]:
    """The labels present, in ``order`` first (e.g. the canonical order), then alphabetically."""
    present = {ex.label for ex in examples}
    ordered = [label for label in order if label in present]
    return (*ordered, *sorted(present - set(ordered)))


def load_audio(path: Path, sample_rate_hz: int = 16000) -> Audio:
    """Mono float32 audio at ``sample_rate_hz``; a file that cannot be decoded raises DataError."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DataError(f"cannot read audio file {str(path)!r}: {exc}") from exc
    if audio.shape[0] == 0:
        raise DataError(f"audio file {str(path)!r} has no samples")
    mono = audio.mean(axis=1)
    if rate != sample_rate_hz:
        mono = soxr.resample(mono, rate, sample_rate_hz)
    return cast(Audio, np.ascontiguousarray(mono, dtype=np.float32))


def zero_mean_unit_var(audio: Audio) -> Audio:
    """The wav2vec2 feature extractor's per-clip normalisation (the server applies the same)."""
    centred = audio - audio.mean()
    return cast(Audio, (centred / np.sqrt(centred.var() + 1e-7)).astype(np.float32))
