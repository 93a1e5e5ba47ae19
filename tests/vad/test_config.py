from __future__ import annotations

import re

import pytest

from vad.config import SegmenterConfig


def test_defaults_in_frames() -> None:
    config = SegmenterConfig()
    assert config.frame_samples == 480
    assert (config.start_frames, config.start_voiced_frames) == (8, 5)
    assert (config.stop_frames, config.stop_voiced_frames) == (20, 2)
    assert config.end_trim_frames == 3


def test_windows_round_up_to_whole_frames() -> None:
    config = SegmenterConfig(frame_ms=20, start_ms=250, hangover_ms=610, start_ratio=0.5)
    assert (config.start_frames, config.start_voiced_frames) == (13, 7)
    assert config.stop_frames == 31


def test_ratio_of_one_needs_every_frame() -> None:
    assert SegmenterConfig(start_ratio=1.0).start_voiced_frames == 8
    assert SegmenterConfig(stop_ratio=0.0).stop_voiced_frames == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "sample_rate_hz",
            44100,
            "sample_rate_hz must be one of (8000, 16000, 32000, 48000), got 44100",
        ),
        ("frame_ms", 25, "frame_ms must be one of (10, 20, 30), got 25"),
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
        ("min_segment_ms", 3001, "min_segment_ms needs 3001 ms, more than max_segment_ms=3000"),
        ("cut_search_ms", 3500, "cut_search_ms needs 3500 ms, more than max_segment_ms=3000"),
        ("hangover_ms", 2980, "hangover_ms and post_padding_ms needs 3030 ms"),
        ("post_padding_ms", 2990, "hangover_ms and post_padding_ms needs 3020 ms"),
        ("pre_padding_ms", 2800, "start_ms + pre_padding_ms needs 3070 ms"),
    ],
)
def test_bad_values_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SegmenterConfig(**{field: value})  # type: ignore[arg-type]


def test_is_frozen() -> None:
    config = SegmenterConfig()
    with pytest.raises(AttributeError):
        config.frame_ms = 10  # type: ignore[misc]
