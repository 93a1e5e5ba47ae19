"""Segmenter parameters; see docs/segmentation.md for what each one does and why."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from pcm.format import PIPELINE_RATE_HZ
from vad.detector import WEBRTC_RATES_HZ

DetectorName = Literal["silero", "webrtc"]
DETECTORS: tuple[DetectorName, ...] = get_args(DetectorName)
WEBRTC_FRAME_MS = (10, 20, 30)
SILERO_FRAME_MS = 32  # 512 samples at 16 kHz, the only frame Silero VAD takes there
SILERO_RATE_HZ = PIPELINE_RATE_HZ
NATIVE_FRAME_MS = {"silero": SILERO_FRAME_MS, "webrtc": 30}
MAX_SEGMENT_LIMIT_MS = 60_000
DETECTOR_FRAME_MS = 0  # frame_ms meaning "the detector's own frame"
MAX_BABBLE_GATE_DB = 30.0
MIN_BABBLE_WINDOW_MS = 1000


@dataclass(frozen=True)
class SegmenterConfig:
    detector: DetectorName = "silero"
    sample_rate_hz: int = 16000
    frame_ms: int = DETECTOR_FRAME_MS  # 32 ms for Silero, 30 ms for webrtcvad
    aggressiveness: int = 2
    speech_threshold: float = 0.5
    threshold_hysteresis: float = 0.15
    start_ms: int = 240
    start_ratio: float = 0.6
    hangover_ms: int = 400  # chosen from bench/vad_quality, see docs/segmentation.md
    stop_ratio: float = 0.1
    # Once the utterance has short_hangover_after_ms of speech (its start to its last voiced
    # frame), this shorter trailing silence ends it too; 0 turns it off. Chosen from
    # bench/endpoint_labels, see docs/segmentation.md.
    short_hangover_ms: int = 200
    short_hangover_after_ms: int = 1500
    pre_padding_ms: int = 200
    post_padding_ms: int = 100
    max_segment_ms: int = 3000
    min_segment_ms: int = 500
    cut_search_ms: int = 1000
    end_trim_ms: int = 90
    end_trim_margin_db: float = 6.0
    # Babble gate (vad/gate.py): 0 turns it off; chosen from bench/vad_quality.
    babble_gate_db: float = 6.0
    babble_window_ms: int = 5000

    def __post_init__(self) -> None:
        self._check_choice("detector", self.detector, DETECTORS)
        if self.frame_ms == DETECTOR_FRAME_MS:
            object.__setattr__(self, "frame_ms", NATIVE_FRAME_MS[self.detector])
        if self.detector == "silero":
            self._check_choice("sample_rate_hz", self.sample_rate_hz, (SILERO_RATE_HZ,))
            self._check_choice("frame_ms", self.frame_ms, (SILERO_FRAME_MS,))
        else:
            self._check_choice("sample_rate_hz", self.sample_rate_hz, WEBRTC_RATES_HZ)
            self._check_choice("frame_ms", self.frame_ms, WEBRTC_FRAME_MS)
        self._check_choice("aggressiveness", self.aggressiveness, (0, 1, 2, 3))
        if not 0.0 < self.speech_threshold < 1.0:
            raise ValueError(f"speech_threshold must be in (0, 1), got {self.speech_threshold}")
        if not 0.0 <= self.threshold_hysteresis < self.speech_threshold:
            raise ValueError(
                f"threshold_hysteresis must be in [0, speech_threshold), "
                f"got {self.threshold_hysteresis}"
            )
        for name in ("start_ms", "hangover_ms", "max_segment_ms"):
            self._check_at_least(name, 1)
        if self.max_segment_ms > MAX_SEGMENT_LIMIT_MS:
            raise ValueError(
                f"max_segment_ms must be at most {MAX_SEGMENT_LIMIT_MS}, got {self.max_segment_ms}"
            )
        for name in (
            "pre_padding_ms",
            "post_padding_ms",
            "min_segment_ms",
            "cut_search_ms",
            "end_trim_ms",
            "short_hangover_ms",
            "short_hangover_after_ms",
        ):
            self._check_at_least(name, 0)
        if self.short_hangover_ms and self.short_hangover_ms >= self.hangover_ms:
            raise ValueError(
                f"short_hangover_ms ({self.short_hangover_ms}) must be below hangover_ms "
                f"({self.hangover_ms}), or 0 to turn it off"
            )
        if not 0.0 <= self.end_trim_margin_db < math.inf:
            raise ValueError(
                f"end_trim_margin_db must be a finite value >= 0, got {self.end_trim_margin_db}"
            )
        if not 0.0 <= self.babble_gate_db <= MAX_BABBLE_GATE_DB:
            raise ValueError(
                f"babble_gate_db must be in [0, {MAX_BABBLE_GATE_DB}], got {self.babble_gate_db}"
            )
        self._check_at_least("babble_window_ms", MIN_BABBLE_WINDOW_MS)
        if not 0.0 < self.start_ratio <= 1.0:
            raise ValueError(f"start_ratio must be in (0, 1], got {self.start_ratio}")
        if not 0.0 <= self.stop_ratio < 1.0:
            raise ValueError(f"stop_ratio must be in [0, 1), got {self.stop_ratio}")
        if self.min_segment_ms >= self.max_segment_ms:
            raise ValueError(
                f"min_segment_ms ({self.min_segment_ms}) must be below "
                f"max_segment_ms ({self.max_segment_ms})"
            )
        tail_ms = max(self.stop_frames * self.frame_ms, self.post_padding_ms) + self.frame_ms
        self._check_fits_segment("hangover_ms and post_padding_ms", tail_ms)
        lead_in_ms = self.start_frames * self.frame_ms + self.pre_padding_ms + self.frame_ms
        self._check_fits_segment("start_ms + pre_padding_ms", lead_in_ms)
        self._check_fits_segment("cut_search_ms", self.cut_search_ms)

    def _check_choice(self, name: str, value: object, choices: tuple[object, ...]) -> None:
        if value not in choices:
            detector = "" if name in ("detector", "aggressiveness") else f" for {self.detector}"
            raise ValueError(f"{name} must be one of {choices}{detector}, got {value!r}")

    def _check_at_least(self, name: str, minimum: int) -> None:
        value = getattr(self, name)
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    def _check_fits_segment(self, what: str, needed_ms: int) -> None:
        if needed_ms > self.max_segment_ms:
            raise ValueError(
                f"{what} needs {needed_ms} ms, more than max_segment_ms={self.max_segment_ms}"
            )

    @property
    def frame_samples(self) -> int:
        return self.sample_rate_hz * self.frame_ms // 1000

    @property
    def start_frames(self) -> int:
        """Frames in the start window: start_ms rounded up to whole frames."""
        return math.ceil(self.start_ms / self.frame_ms)

    @property
    def stop_frames(self) -> int:
        """Frames in the hangover window: hangover_ms rounded up to whole frames."""
        return math.ceil(self.hangover_ms / self.frame_ms)

    @property
    def short_stop_frames(self) -> int:
        """Frames in the short hangover window (0 = off): rounded up to whole frames."""
        return math.ceil(self.short_hangover_ms / self.frame_ms)

    @property
    def short_stop_voiced_frames(self) -> int:
        """At most this many voiced frames in the short hangover window end speech."""
        return math.floor(self.stop_ratio * self.short_stop_frames + 1e-9)

    @property
    def end_trim_frames(self) -> int:
        """Trailing voiced frames the end may be moved back over: end_trim_ms rounded down."""
        return self.end_trim_ms // self.frame_ms

    @property
    def babble_window_frames(self) -> int:
        """Frames the babble gate looks back over: babble_window_ms rounded down."""
        return self.babble_window_ms // self.frame_ms

    @property
    def start_voiced_frames(self) -> int:
        """Voiced frames in the start window that start speech."""
        return max(1, math.ceil(self.start_ratio * self.start_frames - 1e-9))

    @property
    def stop_voiced_frames(self) -> int:
        """At most this many voiced frames in the hangover window end speech."""
        return math.floor(self.stop_ratio * self.stop_frames + 1e-9)

    def samples(self, ms: int) -> int:
        """Milliseconds to a whole number of samples at sample_rate_hz."""
        return ms * self.sample_rate_hz // 1000
