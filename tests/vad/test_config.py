from __future__ import annotations

import math
import re

import pytest

from vad.config import SegmenterConfig


def test_defaults_in_frames() -> None:
    config = SegmenterConfig()
    assert (config.detector, config.frame_ms, config.frame_samples) == ("silero", 32, 512)
    assert (config.start_frames, config.start_voiced_frames) == (8, 5)
    assert config.stop_frames == math.ceil(config.hangover_ms / 32)
    assert config.end_trim_frames == 2


def test_webrtc_defaults_to_its_30_ms_frames() -> None:
    config = SegmenterConfig(detector="webrtc", hangover_ms=600)
    assert (config.frame_ms, config.frame_samples) == (30, 480)
    assert (config.start_frames, config.start_voiced_frames) == (8, 5)
    assert (config.stop_frames, config.stop_voiced_frames) == (20, 2)
    assert config.end_trim_frames == 3
    assert SegmenterConfig(detector="webrtc", frame_ms=10).frame_samples == 160


def test_windows_round_up_to_whole_frames() -> None:
    config = SegmenterConfig(
        detector="webrtc", frame_ms=20, start_ms=250, hangover_ms=610, start_ratio=0.5
    )
    assert (config.start_frames, config.start_voiced_frames) == (13, 7)
    assert config.stop_frames == 31


def test_ratio_of_one_needs_every_frame() -> None:
    assert SegmenterConfig(start_ratio=1.0).start_voiced_frames == 8
    assert SegmenterConfig(stop_ratio=0.0).stop_voiced_frames == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"detector": "rnnoise"}, "detector must be one of ('silero', 'webrtc'), got 'rnnoise'"),
        ({"frame_ms": 30}, "frame_ms must be one of (32,) for silero, got 30"),
        ({"sample_rate_hz": 8000}, "sample_rate_hz must be one of (16000,) for silero, got 8000"),
        ({"detector": "webrtc", "frame_ms": 32}, "frame_ms must be one of (10, 20, 30) for webrtc"),
        ({"speech_threshold": 1.0}, "speech_threshold must be in (0, 1), got 1.0"),
        ({"speech_threshold": 0.0}, "speech_threshold must be in (0, 1), got 0.0"),
        ({"threshold_hysteresis": 0.5}, "threshold_hysteresis must be in [0, speech_threshold)"),
        ({"threshold_hysteresis": -0.1}, "threshold_hysteresis must be in [0, speech_threshold)"),
        ({"max_segment_ms": 60_001}, "max_segment_ms must be at most 60000, got 60001"),
    ],
)
def test_detector_settings_are_checked(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SegmenterConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "sample_rate_hz",
            44100,
            "sample_rate_hz must be one of (8000, 16000, 32000, 48000) for webrtc, got 44100",
        ),
        ("frame_ms", 25, "frame_ms must be one of (10, 20, 30) for webrtc, got 25"),
        ("aggressiveness", 4, "aggressiveness must be one of (0, 1, 2, 3), got 4"),
        ("start_ms", 0, "start_ms must be an integer >= 1, got 0"),
        ("hangover_ms", -30, "hangover_ms must be an integer >= 1, got -30"),
        ("max_segment_ms", 1.5, "max_segment_ms must be an integer >= 1, got 1.5"),
        ("pre_padding_ms", -1, "pre_padding_ms must be an integer >= 0, got -1"),
        ("post_padding_ms", -1, "post_padding_ms must be an integer >= 0, got -1"),
        ("min_segment_ms", -1, "min_segment_ms must be an integer >= 0, got -1"),
        ("cut_search_ms", -1, "cut_search_ms must be an integer >= 0, got -1"),
        ("end_trim_ms", -1, "end_trim_ms must be an integer >= 0, got -1"),
        (
            "end_trim_margin_db",
            float("nan"),
            "end_trim_margin_db must be a finite value >= 0, got nan",
        ),
        ("start_ratio", 0.0, "start_ratio must be in (0, 1], got 0.0"),
        ("start_ratio", 1.5, "start_ratio must be in (0, 1], got 1.5"),
        ("stop_ratio", 1.0, "stop_ratio must be in [0, 1), got 1.0"),
        ("min_segment_ms", 3000, "min_segment_ms (3000) must be below max_segment_ms (3000)"),
        ("cut_search_ms", 3500, "cut_search_ms needs 3500 ms, more than max_segment_ms=3000"),
        ("hangover_ms", 2980, "hangover_ms and post_padding_ms needs 3030 ms"),
        ("post_padding_ms", 2990, "hangover_ms and post_padding_ms needs 3020 ms"),
        ("pre_padding_ms", 2800, "start_ms + pre_padding_ms needs 3070 ms"),
        ("short_hangover_ms", -1, "short_hangover_ms must be an integer >= 0, got -1"),
        (
            "short_hangover_ms",
            600,
            "short_hangover_ms (600) must be below hangover_ms (600), or 0 to turn it off",
        ),
        ("short_hangover_after_ms", 1.5, "short_hangover_after_ms must be an integer >= 0"),
    ],
)
def test_bad_values_are_named(field: str, value: object, message: str) -> None:
    values = {"detector": "webrtc", "hangover_ms": 600, field: value}
    with pytest.raises(ValueError, match=re.escape(message)):
        SegmenterConfig(**values)  # type: ignore[arg-type]


def test_is_frozen() -> None:
    config = SegmenterConfig()
    with pytest.raises(AttributeError):
        config.frame_ms = 10  # type: ignore[misc]
