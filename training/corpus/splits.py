"""Train/val/test splits: speaker-independent (default) or random, stratified by label, seeded."""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from training.corpus.corpora import Clip
from training.corpus.data import SPLITS, Example, Split

SPLIT_MODES = ("speaker", "random")


class SplitError(ValueError):
    """A split that cannot be made from the clips given; the message says why."""


def make_split(
    clips: Sequence[Clip],
    mode: str = "speaker",
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> list[Example]:
    """Assign every clip to train, val or test; fractions are of the whole corpus."""
    if mode not in SPLIT_MODES:
        raise SplitError(f"unknown split mode {mode!r}; expected one of {list(SPLIT_MODES)}")
    if not clips:
        raise SplitError("no usable clips to split")
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= value < 1.0:
            raise SplitError(f"{name} must be in [0, 1), got {value}")
    if test_fraction + val_fraction >= 1.0:
        raise SplitError(
            f"test_fraction + val_fraction must be below 1, got {test_fraction + val_fraction}"
        )
    ordered = sorted(clips, key=lambda c: str(c.path))
    labels = [c.label for c in ordered]
    groups = [c.speaker or f"file:{c.path}" for c in ordered]
    holdout = _group_holdout if mode == "speaker" else _random_holdout
    assignment: list[Split] = ["train"] * len(ordered)
    rest = list(range(len(ordered)))
    holdouts: tuple[tuple[Split, float, int], ...] = (
        ("test", test_fraction, 0),
        ("val", val_fraction, 1),
    )
    for split, fraction, salt in holdouts:
        if fraction == 0.0:
            continue
        share = fraction / (1.0 - (test_fraction if split == "val" else 0.0))
        held = holdout([labels[i] for i in rest], [groups[i] for i in rest], share, seed + salt)
        for j in held:
            assignment[rest[j]] = split
        rest = [i for i in rest if assignment[i] == "train"]
    return [
        Example(c.path, c.label, c.speaker, assignment[i], c.text) for i, c in enumerate(ordered)
    ]


def _group_holdout(labels: list[str], groups: list[str], share: float, seed: int) -> list[int]:
    n_splits = max(2, round(1.0 / share))
    n_groups = len(set(groups))
    if n_groups < n_splits:
        raise SplitError(
            f"holding out {share:.0%} of the speakers needs at least {n_splits} speakers, "
            f"found {n_groups}; add corpora or use --split random"
        )
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes trigger an advisory warning; split_summary reports the result instead.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        _, held = next(folds.split(np.zeros(len(labels)), labels, groups))
    return [int(i) for i in held]


def _random_holdout(labels: list[str], groups: list[str], share: float, seed: int) -> list[int]:
    indices = np.arange(len(labels))
    counts = Counter(labels)
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        raise SplitError(f"a stratified random split needs two clips per label; too few: {rare}")
    try:
        _, held = train_test_split(indices, test_size=share, stratify=labels, random_state=seed)
    except ValueError as exc:
        raise SplitError(f"cannot make a stratified random split: {exc}") from exc
    return sorted(int(i) for i in held)


def split_summary(examples: Sequence[Example]) -> dict[str, Any]:
    """Clips per split and label, speakers per split, and speakers found in more than one split."""
    counts: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    speakers: dict[str, set[str]] = defaultdict(set)
    for ex in examples:
        counts[ex.split][ex.label] += 1
        if ex.speaker:
            speakers[ex.split].add(ex.speaker)
    shared = sorted(
        (speakers["train"] & speakers["val"])
        | (speakers["train"] & speakers["test"])
        | (speakers["val"] & speakers["test"])
    )
    return {
        "clips": {s: dict(sorted(counts[s].items())) for s in SPLITS},
        "speakers": {s: len(speakers[s]) for s in SPLITS},
        "shared_speakers": shared,
        "no_speaker": sum(1 for ex in examples if not ex.speaker),
    }
