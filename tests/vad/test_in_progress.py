"""The segment in progress (Segmenter.in_progress): what partial results classify."""

from __future__ import annotations

import numpy as np
import pytest

from tests.vad.frames import FRAME, Scripted, config, energy_segmenter, frames_for
from vad.config import SegmenterConfig
from vad.events import InProgress, Segment
from vad.segmenter import Segmenter
from vad.stream import StreamSegmenter


def test_nothing_in_progress_outside_an_utterance() -> None:
    segmenter = energy_segmenter()
    assert segmenter.in_progress() is None
    for frame in frames_for("." * 30):
        segmenter.push(frame)
    assert segmenter.in_progress() is None


def test_in_progress_is_a_read_only_view_of_the_segment_so_far() -> None:
    segmenter = energy_segmenter()
    frames = frames_for("." * 20 + "x" * 30 + "." * 40)
    for frame in frames[:40]:
        segmenter.push(frame)
    progress = segmenter.in_progress()
    assert isinstance(progress, InProgress)
    assert (progress.start_sample, progress.end_sample) == (6400, 40 * FRAME)
    assert (progress.start_ms, progress.end_ms) == (400, 1200)
    assert progress.joined_samples == 40 * FRAME - 6400
    np.testing.assert_array_equal(progress.audio, np.concatenate(frames)[6400 : 40 * FRAME])
    assert progress.audio.base is not None  # a view, not a copy
    with pytest.raises(ValueError, match="read-only"):
        progress.audio[0] = 1
    # Trailing silence joins the segment but only post_padding of it counts.
    for frame in frames[40:60]:
        segmenter.push(frame)
    later = segmenter.in_progress()
    assert later is not None
    assert later.end_sample == 50 * FRAME + 1600
    assert later.joined_samples == 60 * FRAME - 6400


@pytest.mark.parametrize("voiced", [2, 5, 6, 7, 8, 9, 10, 12, 15, 30])
@pytest.mark.parametrize("overhang", [0, 3])
def test_classifiable_means_the_segment_cannot_end_too_short(voiced: int, overhang: int) -> None:
    # A detector that overhangs (voiced frames at noise level) makes the end move back.
    pattern = "n" * 20 + "x" * voiced + "n" * 40
    flags = "0" * 20 + "1" * (voiced + overhang) + "0" * (40 - overhang)
    segmenter = Segmenter(config(), Scripted(flags))
    seen_classifiable = False
    final: Segment | None = None
    for frame in frames_for(pattern):
        events = segmenter.push(frame)
        progress = segmenter.in_progress()
        if progress is not None and progress.classifiable:
            seen_classifiable = True
        final = next((e for e in events if isinstance(e, Segment)), final)
    assert final is not None or voiced < 5
    if seen_classifiable:
        assert final is not None and not final.too_short
    if final is not None and final.duration_ms >= 500 + 90:
        assert seen_classifiable  # long enough that partials were possible


def test_after_a_cut_the_next_segment_is_in_progress() -> None:
    segmenter = energy_segmenter()
    cut: Segment | None = None
    for frame in frames_for("." * 20 + "x" * 130):
        cut = next((e for e in segmenter.push(frame) if isinstance(e, Segment)), cut)
    assert cut is not None
    progress = segmenter.in_progress()
    assert progress is not None
    assert progress.start_sample == cut.end_sample
    assert progress.end_sample == 150 * FRAME


def test_stream_segmenter_passes_it_through() -> None:
    stream = StreamSegmenter(SegmenterConfig(), 16000, "pcm_s16le")
    assert stream.in_progress() is None
