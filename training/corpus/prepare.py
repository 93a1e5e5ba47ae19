"""Corpora on disk → a split manifest, with a list of every file that was not used and why."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.corpus.corpora import LABEL_MAP, Problem, Scan, dedupe, read_corpus
from training.corpus.data import Example, write_split
from training.corpus.splits import make_split, split_summary


@dataclass
class Prepared:
    csv_path: Path
    examples: list[Example]
    problems: list[Problem]
    dropped: Counter[str]
    summary: dict[str, Any]
    problems_path: Path | None


def prepare(
    corpora: Sequence[tuple[str, Path]],
    out_csv: Path,
    *,
    mode: str = "speaker",
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
    mapping: Mapping[str, str | None] = LABEL_MAP,
    check_audio: bool = True,
) -> Prepared:
    """Read each ``(layout, directory)``, split, and write ``out_csv`` (plus problems/summary)."""
    scan = Scan()
    for layout, root in corpora:
        scan.extend(read_corpus(root, layout, mapping, check_audio))
    clips, duplicates = dedupe(scan.clips)
    scan.problems.extend(duplicates)
    problems_path = write_problems(out_csv, scan.problems)
    examples = make_split(clips, mode, test_fraction, val_fraction, seed)
    write_split(out_csv, examples)
    summary = {
        **split_summary(examples),
        "mode": mode,
        "seed": seed,
        "corpora": [[layout, str(root)] for layout, root in corpora],
        "dropped": dict(scan.dropped),
        "problems": len(scan.problems),
    }
    summary_path = out_csv.with_suffix(".summary.json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return Prepared(out_csv, examples, scan.problems, scan.dropped, summary, problems_path)


def write_problems(out_csv: Path, problems: list[Problem]) -> Path | None:
    path = out_csv.with_suffix(".problems.csv")
    if not problems:
        path.unlink(missing_ok=True)
        return None
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reason"])
        writer.writerows([str(p.path), p.reason] for p in problems)
    return path
