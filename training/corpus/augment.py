"""Training-time augmentation with audiomentations: noise at random SNRs, gain, optional reverb."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from audiomentations import AddBackgroundNoise, AddColorNoise, ApplyImpulseResponse, Compose, Gain

from training.corpus.data import Audio

Augmenter = Callable[[Audio, int], Audio]


@dataclass(frozen=True)
class AugmentOptions:
    noise_p: float = 0.6
    min_snr_db: float = 5.0
    max_snr_db: float = 30.0
    gain_p: float = 0.5
    min_gain_db: float = -12.0
    max_gain_db: float = 6.0
    noise_dir: Path | None = None
    reverb_dir: Path | None = None
    reverb_p: float = 0.3


def build_augmenter(options: AugmentOptions) -> Augmenter:
    """Noise is coloured (white to brown) at a random SNR; real noise/IR folders are optional."""
    if options.min_snr_db > options.max_snr_db:
        raise ValueError(
            f"min_snr_db ({options.min_snr_db}) must not exceed max_snr_db ({options.max_snr_db})"
        )
    noise = AddColorNoise(
        min_snr_db=options.min_snr_db,
        max_snr_db=options.max_snr_db,
        p=options.noise_p,
    )
    steps: list[Callable[..., Audio]] = []
    if options.reverb_dir is not None:
        steps.append(ApplyImpulseResponse(ir_path=_folder(options.reverb_dir), p=options.reverb_p))
    if options.noise_dir is not None:
        noise = AddBackgroundNoise(
            sounds_path=_folder(options.noise_dir),
            min_snr_db=options.min_snr_db,
            max_snr_db=options.max_snr_db,
            p=options.noise_p,
        )
    steps.append(noise)
    steps.append(
        Gain(min_gain_db=options.min_gain_db, max_gain_db=options.max_gain_db, p=options.gain_p)
    )
    pipeline = Compose(steps)

    def augment(audio: Audio, sample_rate_hz: int) -> Audio:
        # Gain matters for models fed unnormalised audio; with zero-mean-unit-var input it
        # only changes the noise floor relative to later steps, which is harmless.
        return np.asarray(pipeline(samples=audio, sample_rate=sample_rate_hz), dtype=np.float32)

    return augment


def _folder(path: Path) -> Path:
    if not path.is_dir():
        raise ValueError(f"augmentation folder {str(path)!r} does not exist")
    return path
