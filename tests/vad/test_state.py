"""The segmenter's named states: quiet -> starting -> speaking -> stopping -> quiet."""

from __future__ import annotations

import numpy as np

from vad import SegmenterConfig, SpeechEnd, SpeechStart, State, StreamSegmenter
from vad.segmenter import Segmenter

CONFIG = SegmenterConfig(detector="webrtc", hangover_ms=600, short_hangover_ms=0)


def push(segmenter: Segmenter, voiced: bool) -> list[object]:
    frame = np.full(CONFIG.frame_samples, 3000 if voiced else 0, dtype=np.int16)
    return list(segmenter.push(frame, voiced))


def test_states_follow_the_decisions_and_the_events() -> None:
    segmenter = Segmenter(CONFIG)
    assert segmenter.state is State.QUIET
    seen = []
    for _ in range(CONFIG.start_frames + 1):
        events = push(segmenter, True)
        seen.append(segmenter.state)
        if events:
            assert isinstance(events[0], SpeechStart)
            break
    assert seen[: CONFIG.start_voiced_frames - 1] == [State.STARTING] * (
        CONFIG.start_voiced_frames - 1
    )
    assert seen[-1] is State.SPEAKING and segmenter.in_speech

    push(segmenter, False)
    assert segmenter.state is State.STOPPING
    push(segmenter, True)
    assert segmenter.state is State.SPEAKING

    for _ in range(CONFIG.stop_frames + CONFIG.samples(CONFIG.post_padding_ms)):
        events = push(segmenter, False)
        if any(isinstance(e, SpeechEnd) for e in events):
            break
        assert segmenter.state is State.STOPPING
    assert segmenter.state is State.QUIET and not segmenter.in_speech


def test_one_voiced_frame_that_does_not_start_speech_leaves_quiet_again() -> None:
    assert CONFIG.start_voiced_frames >= 2
    segmenter = Segmenter(CONFIG)
    push(segmenter, True)
    assert segmenter.state is State.STARTING
    for _ in range(CONFIG.start_frames):
        push(segmenter, False)
    assert segmenter.state is State.QUIET


def test_the_stream_reports_its_segmenter_state() -> None:
    stream = StreamSegmenter(CONFIG, 16000)
    assert stream.state is State.QUIET
