"""The babble gate: in a room where other people talk, only the loudest voice is speech.

A voice detector is right that babble is speech; what a live readout needs is the
foreground talker's utterances, which the background voices would otherwise join into
one. The gate watches the last few seconds of one stream: when its quietest frames are
themselves voiced (the background is speech) and the levels spread over at least
``margin_db`` (there is a louder voice), a voiced frame must stand ``margin_db`` above the
background level (the 10th percentile of the frame levels) to count. When the
quietest frames are silence or noise the detector rejects (a quiet room, white noise),
the gate does nothing, so speech barely above steady noise is not lost. Chosen from
bench/vad_quality (docs/segmentation.md): 6 dB over a 5 s window.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

QUIET_PERCENTILE = 20.0  # the frames at or below this level percentile are "the quietest"
FLOOR_PERCENTILE = 10.0  # the background level
LOUD_PERCENTILE = 90.0  # the level spread is LOUD - FLOOR
VOICED_SHARE = 0.5  # the background is speech when at least this share of them is voiced
UPDATE_FRAMES = 8  # the background moves slowly: re-estimate it every 8 frames (~0.25 s)
_MIN_POWER = 1.0  # squared int16 units: digital silence counts as 0 dB


class BabbleGate:
    """One stream's gate; ``__call__(power, voiced)`` gives the gated decision."""

    def __init__(self, margin_db: float, window_frames: int) -> None:
        if not 0.0 < margin_db < math.inf:
            raise ValueError(f"margin_db must be a finite value > 0, got {margin_db}")
        if window_frames < UPDATE_FRAMES:
            raise ValueError(f"window_frames must be at least {UPDATE_FRAMES}, got {window_frames}")
        self.margin_db = margin_db
        self._levels: deque[float] = deque(maxlen=window_frames)
        self._voiced: deque[bool] = deque(maxlen=window_frames)
        self.reset()

    def reset(self) -> None:
        self._levels.clear()
        self._voiced.clear()
        self._since_update = 0
        self.threshold_db: float | None = None  # None: the background is not speech

    @property
    def active(self) -> bool:
        return self.threshold_db is not None

    def __call__(self, power: float, voiced: bool) -> bool:
        level = 10.0 * math.log10(max(power, _MIN_POWER))
        self._levels.append(level)
        self._voiced.append(voiced)
        self._since_update += 1
        # Every frame at first, so that babble at a stream's start cannot start speech
        # before the gate has seen it; then every UPDATE_FRAMES.
        if self._since_update >= UPDATE_FRAMES or len(self._levels) <= UPDATE_FRAMES:
            self._since_update = 0
            self._update()
        threshold = self.threshold_db
        return voiced and (threshold is None or level >= threshold)

    def _update(self) -> None:
        levels = np.fromiter(self._levels, dtype=np.float64, count=len(self._levels))
        voiced = np.fromiter(self._voiced, dtype=np.bool_, count=len(self._voiced))
        floor, quiet, loud = np.percentile(
            levels, [FLOOR_PERCENTILE, QUIET_PERCENTILE, LOUD_PERCENTILE]
        )
        speech_background = voiced[levels <= quiet].mean() >= VOICED_SHARE
        # A window without a margin's spread of levels has no louder voice to keep (a
        # steady signal): gating it would only remove everything.
        if speech_background and loud - floor >= self.margin_db:
            self.threshold_db = float(floor) + self.margin_db
        else:
            self.threshold_db = None
