"""The segmenter state machine, driven frame by frame with deterministic detectors.

Default config, 30 ms frames of 480 samples at 16 kHz: the start window is 8 frames of
which 5 must be voiced; speech ends when at most 2 of the last 20 frames are voiced;
pre-padding 3200 samples, post-padding 1600, segments of at most 48000 and at least
8000 samples, cuts searched in the 16000 samples before the limit.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from tests.speech import espeak, silence
from tests.vad.frames import FRAME, Frames, Scripted, config, energy_segmenter, frames_for
from vad.detector import DetectorError
from vad.events import Event, Segment, SpeechEnd, SpeechStart
from vad.framing import to_float, to_int16
from vad.segmenter import Segmenter


def run(segmenter: Segmenter, frames: Frames, first_index: int = 0) -> list[tuple[int, Event]]:
    """Push the frames; each event paired with the index of the frame that produced it."""
    return [
        (index, event)
        for index, frame in enumerate(frames, start=first_index)
        for event in segmenter.push(frame)
    ]


def seg(start: int, end: int, too_short: bool = False) -> tuple[int, int, bool]:
    return (start, end, too_short)


def summary(events: list[tuple[int, Event]]) -> list[tuple[int, object]]:
    out: list[tuple[int, object]] = []
    for index, event in events:
        if isinstance(event, Segment):
            out.append((index, seg(event.start_sample, event.end_sample, event.too_short)))
        else:
            out.append((index, event))
    return out


def audio_of(frames: Frames, start: int, end: int) -> np.ndarray:
    return to_float(np.concatenate(frames)[start:end])


def test_one_utterance_exact_events_and_audio() -> None:
    frames = frames_for("." * 20 + "x" * 30 + "." * 40)
    events = run(energy_segmenter(), frames)
    assert summary(events) == [
        (24, SpeechStart(9600, 600)),
        (67, seg(6400, 25600)),
        (67, SpeechEnd(24000, 1500)),
    ]
    segment = events[1][1]
    assert isinstance(segment, Segment)
    assert (segment.start_ms, segment.end_ms) == (400, 1600)
    assert segment.audio.dtype == np.float32
    np.testing.assert_array_equal(segment.audio, audio_of(frames, 6400, 25600))


def test_speech_starts_at_the_first_voiced_frame_of_the_trigger_window() -> None:
    frames = frames_for("." * 20 + "x.xx.xx" + "x" * 20 + "." * 30)
    events = summary(run(energy_segmenter(), frames))
    assert events[0] == (26, SpeechStart(9600, 600))


def test_single_voiced_blips_do_not_start_speech() -> None:
    pattern = ("." * 10 + "x") * 5 + "." * 10 + "xx.x.x...." * 3 + "." * 30
    assert run(energy_segmenter(), frames_for(pattern)) == []


def test_pre_padding_stops_at_the_stream_start() -> None:
    events = summary(run(energy_segmenter(), frames_for("..." + "x" * 20 + "." * 30)))
    assert events[0] == (7, SpeechStart(1440, 90))
    assert events[1][1] == seg(0, 23 * FRAME + 1600)


@pytest.mark.parametrize(("pause", "utterances"), [(17, 1), (18, 2)])
def test_pause_shorter_than_the_hangover_does_not_end_speech(pause: int, utterances: int) -> None:
    frames = frames_for("." * 20 + "x" * 30 + "." * pause + "x" * 30 + "." * 40)
    events = [event for _, event in run(energy_segmenter(), frames)]
    assert sum(isinstance(event, SpeechStart) for event in events) == utterances
    assert sum(isinstance(event, SpeechEnd) for event in events) == utterances


def test_speech_ends_at_the_hangover_with_the_last_voiced_frame_as_end() -> None:
    # The end is decided on the 18th unvoiced frame, but reported where voice stopped.
    frames = frames_for("." * 20 + "x" * 30 + "." * 40)
    events = summary(run(energy_segmenter(), frames))
    assert events[1:] == [(67, seg(6400, 50 * FRAME + 1600)), (67, SpeechEnd(50 * FRAME, 1500))]


def test_speech_end_waits_for_the_post_padding() -> None:
    # After a 17-frame pause a lone voiced frame leaves only 2 voiced frames in the
    # hangover window once the next frame is unvoiced, but the end waits until the
    # 100 ms post-padding after that voiced frame has arrived.
    frames = frames_for("." * 20 + "x" * 30 + "." * 17 + "x" + "." * 30)
    events = summary(run(energy_segmenter(), frames))
    assert events[1:] == [(71, seg(6400, 68 * FRAME + 1600)), (71, SpeechEnd(68 * FRAME, 2040))]


SHORT = {"short_hangover_ms": 210, "short_hangover_after_ms": 1500}  # 7 frames, 50 frames


def test_after_enough_speech_the_short_hangover_ends_the_utterance() -> None:
    # 60 voiced frames (1.8 s) are past short_hangover_after_ms: the 7th unvoiced frame
    # ends it (none of 7 may be voiced) instead of the 18th; the bounds are the same.
    frames = frames_for("." * 20 + "x" * 60 + "." * 40)
    short = summary(run(energy_segmenter(**SHORT), frames))
    long = summary(run(energy_segmenter(), frames))
    assert short[1:] == [(86, seg(6400, 80 * FRAME + 1600)), (86, SpeechEnd(80 * FRAME, 2400))]
    assert [event for _, event in short] == [event for _, event in long]
    assert long[-1][0] == 97
    # short_hangover_ms=0 turns it off.
    assert summary(run(energy_segmenter(**{**SHORT, "short_hangover_ms": 0}), frames)) == long


def test_before_enough_speech_a_pause_longer_than_the_short_hangover_keeps_the_utterance() -> None:
    # A 300 ms pause after 0.9 s of speech: shorter than the hangover, so one utterance.
    # Once the utterance has 1.5 s of speech (its second part), 7 unvoiced frames end it.
    frames = frames_for("." * 20 + "x" * 30 + "." * 10 + "x" * 30 + "." * 40)
    events = summary(run(energy_segmenter(**SHORT), frames))
    assert events == [
        (24, SpeechStart(9600, 600)),
        (96, seg(6400, 90 * FRAME + 1600)),
        (96, SpeechEnd(90 * FRAME, 2700)),
    ]
    # The same pause after 1.8 s of speech is an end.
    frames = frames_for("." * 20 + "x" * 60 + "." * 10 + "x" * 30 + "." * 40)
    starts = [e for _, e in run(energy_segmenter(**SHORT), frames) if isinstance(e, SpeechStart)]
    assert len(starts) == 2


def test_after_a_cut_the_short_hangover_counts_the_whole_utterance() -> None:
    # 3.15 s of speech: cut near 3 s, the last segment is short, but the utterance has
    # had 1.5 s of speech long ago, so the 7th unvoiced frame ends it.
    frames = frames_for("." * 20 + "x" * 105 + "." * 40)
    events = summary(run(energy_segmenter(**SHORT), frames))
    assert [index for index, _ in events[2:]] == [131, 131]
    assert events[-1] == (131, SpeechEnd(125 * FRAME, 3750))


def test_the_short_hangover_needs_the_detector_to_hear_silence_not_the_babble_gate() -> None:
    # The detector calls every frame voiced; the gate takes back the 12 after the first 60
    # (as it does with quiet stretches of continuous speech). Only the hangover ends it.
    frames = frames_for("." * 20 + "x" * 60 + "q" * 12 + "x" * 30 + "." * 40)
    heard = "0" * 20 + "1" * 102 + "0" * 40
    segmenter = Segmenter(config(**SHORT), Scripted(heard))
    quiet = (0.03 * 32767) ** 2  # above a "q" frame's power, below an "x" frame's
    segmenter._gate = lambda energy, voiced: voiced and energy > quiet
    starts = [e for _, e in run(segmenter, frames) if isinstance(e, SpeechStart)]
    assert len(starts) == 1
    # Had the detector itself heard the 12 frames as silence, they would end it.
    heard = "0" * 20 + "1" * 60 + "0" * 12 + "1" * 30 + "0" * 40
    segmenter = Segmenter(config(**SHORT), Scripted(heard))
    starts = [e for _, e in run(segmenter, frames) if isinstance(e, SpeechStart)]
    assert len(starts) == 2


def test_long_speech_is_cut_at_the_quietest_frame_near_the_limit() -> None:
    voiced = ["x"] * 150
    voiced[100 - 20] = "q"  # frame 100, inside the 1 s before the 3 s limit
    voiced[60 - 20] = "."  # frame 60, quieter but too early to be a cut point
    frames = frames_for("." * 20 + "".join(voiced) + "." * 40)
    events = summary(run(energy_segmenter(), frames))
    cut = 100 * FRAME + FRAME // 2
    assert events == [
        (24, SpeechStart(9600, 600)),
        (113, seg(6400, cut)),  # cut when the first frame that does not fit arrives
        (187, seg(cut, 170 * FRAME + 1600)),
        (187, SpeechEnd(170 * FRAME, 5100)),
    ]


def test_without_a_quiet_frame_the_cut_is_at_the_limit() -> None:
    frames = frames_for("." * 20 + "x" * 150 + "." * 40)
    events = summary(run(energy_segmenter(cut_search_ms=0), frames))
    assert events[1] == (113, seg(6400, 113 * FRAME))


def test_very_long_speech_gives_contiguous_segments_of_at_most_max() -> None:
    rng = np.random.default_rng(5)
    voiced = "".join(rng.choice(["x", "q"], size=700, p=[0.9, 0.1]))
    frames = frames_for("." * 20 + voiced + "." * 40)
    events = [event for _, event in run(energy_segmenter(), frames)]
    segments = [event for event in events if isinstance(event, Segment)]
    assert isinstance(events[0], SpeechStart)
    assert isinstance(events[-1], SpeechEnd)
    assert events[-2] is segments[-1]
    assert len(segments) >= 5
    assert segments[0].start_sample == 6400
    assert segments[-1].end_sample == 720 * FRAME + 1600
    for before, after in itertools.pairwise(segments):
        assert before.end_sample == after.start_sample
    for segment in segments:
        assert 0 < segment.end_sample - segment.start_sample <= 48000
        assert len(segment.audio) == segment.end_sample - segment.start_sample
    for segment in segments[:-1]:  # every cut is in the middle of a quiet frame
        frame = (segment.end_sample - FRAME // 2) // FRAME
        assert (segment.end_sample - FRAME // 2) % FRAME == 0
        assert voiced[frame - 20] == "q"
        assert segment.end_sample > segment.start_sample + 48000 - 16000
    audio = np.concatenate([segment.audio for segment in segments])
    np.testing.assert_array_equal(audio, audio_of(frames, 6400, 720 * FRAME + 1600))


def test_a_stream_ending_at_the_limit_is_one_segment_not_a_cut_and_a_sliver() -> None:
    # The segment starts at 6400; its 3 s limit is 54400, 160 samples into frame 113.
    segmenter = energy_segmenter()
    frames = frames_for("." * 20 + "x" * 94)
    events = summary(run(segmenter, frames[:113]))
    assert [event for _, event in events] == [SpeechStart(9600, 600)]
    last = frames[113].copy()
    last[160:] = 0
    ends = summary(list(enumerate(segmenter.finish(last, valid_samples=160))))
    assert ends == [(0, seg(6400, 54400)), (1, SpeechEnd(54400, 3400))]


def test_a_cut_in_a_pause_leaves_no_padding_only_sliver() -> None:
    # Voice stops at frame 111 (53280), the limit comes in the pause: the cut is made at
    # the pause, and when the pause turns out to be the end nothing is left to report.
    frames = frames_for("." * 20 + "x" * 91 + "." * 40)
    events = summary(run(energy_segmenter(), frames))
    assert events == [
        (24, SpeechStart(9600, 600)),
        (113, seg(6400, 113 * FRAME)),
        (128, SpeechEnd(111 * FRAME, 3330)),
    ]


def test_a_cut_in_a_pause_keeps_the_pause_with_speech_that_resumes() -> None:
    frames = frames_for("." * 20 + "x" * 91 + "." * 5 + "x" * 30 + "." * 40)
    events = summary(run(energy_segmenter(), frames))
    assert events[1] == (113, seg(6400, 113 * FRAME))
    assert events[2] == (163, seg(113 * FRAME, 146 * FRAME + 1600))
    assert events[3] == (163, SpeechEnd(146 * FRAME, 4380))


def test_overhang_after_a_cut_is_not_a_segment() -> None:
    # After the cut in the pause the detector calls two more noise-level frames voiced:
    # the overhang trim takes them back, and what is left after the cut is not speech.
    pattern = "." * 20 + "x" * 91 + "." * 3 + "nn" + "n" * 40
    flags = "0" * 20 + "1" * 91 + "0" * 3 + "11" + "0" * 40
    events = summary(run(Segmenter(config(), Scripted(flags)), frames_for(pattern)))
    assert [event for _, event in events][1:] == [seg(6400, 113 * FRAME), SpeechEnd(53280, 3330)]


def test_real_speech_after_a_cut_that_is_too_short_is_still_reported() -> None:
    frames = frames_for("." * 20 + "x" * 98 + "." * 40)
    events = summary(run(energy_segmenter(), frames))
    cut = 112 * FRAME + FRAME // 2
    assert events[1:] == [
        (113, seg(6400, cut)),
        (135, seg(cut, 118 * FRAME + 1600, too_short=True)),
        (135, SpeechEnd(118 * FRAME, 3540)),
    ]


class Failing:
    """Raises on the chosen frames, voiced otherwise; counts its resets."""

    def __init__(self, failing: set[int]) -> None:
        self.failing = failing
        self.calls = 0
        self.resets = 0

    def __call__(self, frame: npt.NDArray[np.int16]) -> bool:
        self.calls += 1
        if self.calls - 1 in self.failing:
            raise RuntimeError(f"scripted fault on frame {self.calls - 1}")
        return bool(np.abs(frame).max() > 1000)

    def reset(self) -> None:
        self.resets += 1


def test_a_detector_fault_counts_the_frame_unvoiced_and_the_stream_goes_on() -> None:
    detector = Failing({30})
    segmenter = Segmenter(config(), detector)
    assert detector.resets == 1  # the segmenter's own start
    frames = frames_for("." * 20 + "x" * 30 + "." * 40)
    events: list[Event] = []
    faults = []
    for frame in frames:
        try:
            events += segmenter.push(frame)
        except DetectorError as exc:
            faults.append(exc)
            events += exc.events
    assert len(faults) == 1
    assert "RuntimeError: scripted fault on frame 30" in str(faults[0])
    assert isinstance(faults[0].cause, RuntimeError)
    assert detector.resets == 2
    # One unvoiced frame inside the utterance changes nothing: same events as without.
    assert events == [e for _, e in run(energy_segmenter(), frames)]


def test_a_detector_fault_on_the_last_frame_still_closes_the_utterance() -> None:
    segmenter = Segmenter(config(), Failing({50}))
    frames = frames_for("." * 20 + "x" * 31)
    run(segmenter, frames[:50])
    with pytest.raises(DetectorError) as caught:
        segmenter.finish(frames[50], valid_samples=FRAME)
    assert [type(e) for e in caught.value.events] == [Segment, SpeechEnd]
    assert not segmenter.in_speech


def test_short_blip_is_reported_too_short() -> None:
    events = summary(run(energy_segmenter(), frames_for("." * 20 + "x" * 6 + "." * 40)))
    assert events == [
        (24, SpeechStart(9600, 600)),
        (43, seg(6400, 26 * FRAME + 1600, too_short=True)),
        (43, SpeechEnd(26 * FRAME, 780)),
    ]


def test_min_segment_boundary_is_not_too_short() -> None:
    segmenter = energy_segmenter(min_segment_ms=1200)
    events = summary(run(segmenter, frames_for("." * 20 + "x" * 30 + "." * 40)))
    assert events[1][1] == seg(6400, 25600)  # exactly 1200 ms


def test_flush_mid_speech_ends_the_utterance_at_the_current_frame() -> None:
    segmenter = energy_segmenter()
    frames = frames_for("." * 20 + "x" * 30 + "x" * 10 + "." * 30)
    assert summary(run(segmenter, frames[:50]))[0] == (24, SpeechStart(9600, 600))
    flushed = segmenter.flush()
    assert summary(list(enumerate(flushed))) == [(0, seg(6400, 24000)), (1, SpeechEnd(24000, 1500))]
    assert segmenter.flush() == []
    # Voice goes on: a new utterance, starting no earlier than the flushed segment's end.
    later = summary(run(segmenter, frames[50:], first_index=50))
    assert later[0] == (54, SpeechStart(24000, 1500))
    assert later[1][1] == seg(24000, 60 * FRAME + 1600, too_short=True)


def test_flush_with_nothing_in_progress_returns_nothing() -> None:
    segmenter = energy_segmenter()
    assert segmenter.flush() == []
    run(segmenter, frames_for("." * 10 + "xxx"))  # voice not yet enough to start
    assert segmenter.flush() == []
    assert not segmenter.in_speech


def test_finish_mid_speech_limits_the_end_to_real_audio() -> None:
    segmenter = energy_segmenter()
    frames = frames_for("." * 20 + "x" * 31)
    run(segmenter, frames[:50])
    last = frames[50].copy()
    last[100:] = 0  # only 100 real samples, the rest is padding
    events = segmenter.finish(last, valid_samples=100)
    assert summary(list(enumerate(events))) == [
        (0, seg(6400, 24100)),
        (1, SpeechEnd(24100, 1506)),
    ]


def test_finish_can_start_and_end_speech_on_the_last_frame() -> None:
    segmenter = energy_segmenter()
    run(segmenter, frames_for("." * 20 + "xxxx"))
    events = segmenter.finish(frames_for("x")[0], valid_samples=10)
    assert summary(list(enumerate(events))) == [
        (0, SpeechStart(9600, 600)),
        (1, seg(6400, 24 * FRAME + 10, too_short=True)),
        (2, SpeechEnd(24 * FRAME + 10, 720)),
    ]


def test_finish_without_a_partial_frame_closes_the_utterance() -> None:
    segmenter = energy_segmenter()
    run(segmenter, frames_for("." * 20 + "x" * 30))
    assert summary(list(enumerate(segmenter.finish(None, 0)))) == [
        (0, seg(6400, 24000)),
        (1, SpeechEnd(24000, 1500)),
    ]


def test_finish_rejects_a_bad_valid_count() -> None:
    with pytest.raises(ValueError, match=r"valid_samples must be in 1\.\.480, got 0"):
        energy_segmenter().finish(np.zeros(FRAME, dtype=np.int16), valid_samples=0)


def test_reset_starts_over() -> None:
    segmenter = energy_segmenter()
    frames = frames_for("." * 20 + "x" * 30 + "." * 40)
    first = run(segmenter, frames[:40])
    segmenter.reset()
    assert segmenter.samples == 0
    assert not segmenter.in_speech
    assert summary(run(segmenter, frames)) == summary(run(energy_segmenter(), frames))
    assert first


def test_end_moves_back_over_detector_overhang_at_noise_level() -> None:
    # The detector keeps saying "voiced" for 3 noise frames after the voice: trimmed.
    pattern = "n" * 20 + "x" * 30 + "n" * 40
    flags = "0" * 20 + "1" * 33 + "0" * 37
    events = summary(run(Segmenter(config(), Scripted(flags)), frames_for(pattern)))
    assert events[-1] == (70, SpeechEnd(50 * FRAME, 1500))
    assert events[-2][1] == seg(6400, 50 * FRAME + 1600)


def test_end_trim_is_bounded_by_end_trim_ms() -> None:
    pattern = "n" * 20 + "x" * 30 + "n" * 40
    flags = "0" * 20 + "1" * 35 + "0" * 35
    config_ = config(end_trim_ms=60)
    events = summary(run(Segmenter(config_, Scripted(flags)), frames_for(pattern)))
    assert events[-1] == (72, SpeechEnd(53 * FRAME, 1590))


def test_end_trim_keeps_voiced_frames_louder_than_the_silence_after() -> None:
    pattern = "n" * 20 + "x" * 30 + "q" * 3 + "n" * 40
    flags = "0" * 20 + "1" * 33 + "0" * 40
    events = summary(run(Segmenter(config(), Scripted(flags)), frames_for(pattern)))
    assert events[-1] == (70, SpeechEnd(53 * FRAME, 1590))


def test_end_trim_can_be_disabled() -> None:
    pattern = "n" * 20 + "x" * 30 + "n" * 40
    flags = "0" * 20 + "1" * 33 + "0" * 37
    config_ = config(end_trim_ms=0)
    events = summary(run(Segmenter(config_, Scripted(flags)), frames_for(pattern)))
    assert events[-1] == (70, SpeechEnd(53 * FRAME, 1590))


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_other_frame_sizes_give_the_same_boundaries(frame_ms: int) -> None:
    frame = 16 * frame_ms
    audio = np.concatenate(frames_for("." * 20 + "x" * 30 + "." * 40))
    segmenter = energy_segmenter(frame_ms=frame_ms)
    events = [e for i in range(0, len(audio), frame) for e in segmenter.push(audio[i : i + frame])]
    assert [type(event) for event in events] == [SpeechStart, Segment, SpeechEnd]
    assert events[0] == SpeechStart(9600, 600)
    assert events[2] == SpeechEnd(24000, 1500)


def test_segment_equality_compares_audio() -> None:
    one = Segment(0, 2, 0, 0, np.array([0.0, 0.5], dtype=np.float32), True)
    same = Segment(0, 2, 0, 0, np.array([0.0, 0.5], dtype=np.float32), True)
    other = Segment(0, 2, 0, 0, np.array([0.0, 0.25], dtype=np.float32), True)
    assert one == same
    assert hash(one) == hash(same)
    assert one != other


@pytest.mark.parametrize(
    "frame",
    [np.zeros(479, dtype=np.int16), np.zeros(480, dtype=np.float32), np.zeros((1, 480), np.int16)],
)
def test_push_rejects_a_frame_of_the_wrong_size_or_type(frame: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"frame must be 480 int16 samples \(30 ms at 16000 Hz\)"):
        energy_segmenter().push(frame)


def test_default_detector_is_webrtcvad_and_starts_afresh_on_reset() -> None:
    speech = to_int16(np.concatenate([silence(0.5), espeak("Good morning to you."), silence(1.0)]))
    frames = [speech[start : start + FRAME] for start in range(0, len(speech) - FRAME, FRAME)]
    assert [type(e) for _, e in run(Segmenter(config()), frames)] == [
        SpeechStart,
        Segment,
        SpeechEnd,
    ]
    # Without hysteresis every change of the detector's answer shows in the events.
    raw = config(
        start_ms=30, start_ratio=1.0, hangover_ms=30, stop_ratio=0.0, pre_padding_ms=0,
        post_padding_ms=0, end_trim_ms=0, min_segment_ms=0,
    )  # fmt: skip
    segmenter = Segmenter(raw)
    first = run(segmenter, frames)
    # Loud noise adapts webrtcvad's noise model; after a reset it must be forgotten.
    noise = to_int16(np.random.default_rng(0).normal(0, 0.1, 100 * FRAME).astype(np.float32))
    run(segmenter, [noise[start : start + FRAME] for start in range(0, len(noise), FRAME)])
    segmenter.reset()
    assert run(segmenter, frames) == first


def tentative_trace(segmenter: Segmenter, frames: Frames) -> list[tuple[int, object, object]]:
    """Per frame: the tentative end's bounds (or None) and the segments emitted."""
    out: list[tuple[int, object, object]] = []
    for index, frame in enumerate(frames):
        events = segmenter.push(frame)
        tentative = segmenter.tentative_end()
        bounds = None if tentative is None else (tentative.start_sample, tentative.end_sample)
        if tentative is not None:
            np.testing.assert_array_equal(
                tentative.audio, np.concatenate(frames)[tentative.start_sample : bounds[1]]
            )
            assert not tentative.audio.flags.writeable
        out.append((index, bounds, [seg(e.start_sample, e.end_sample) for e in events
                                    if isinstance(e, Segment)]))  # fmt: skip
    return out


def test_tentative_end_appears_once_the_post_padding_is_in_and_matches_the_final() -> None:
    frames = frames_for("." * 20 + "x" * 30 + "." * 40)
    trace = tentative_trace(energy_segmenter(), frames)
    offered = [(i, b) for i, b, _ in trace if b is not None]
    # Voice ends with frame 49; 100 ms of padding is 4 frames (frame 53 completes it).
    assert offered[0][0] == 53
    assert {b for _, b in offered} == {(6400, 50 * FRAME + 1600)}
    final = next((i, s) for i, _, s in trace if s)
    assert final == (67, [seg(6400, 50 * FRAME + 1600)])
    assert all(b is None for i, b, _ in trace if i >= 67)  # the utterance has ended


def test_tentative_end_is_withdrawn_when_voice_comes_back() -> None:
    frames = frames_for("." * 20 + "x" * 30 + "." * 8 + "x" * 20 + "." * 40)
    trace = tentative_trace(energy_segmenter(), frames)
    assert trace[55][1] == (6400, 50 * FRAME + 1600)  # in the pause
    assert all(b is None for i, b, _ in trace if 58 <= i < 81)  # voiced again
    final = next(s for _, _, s in trace if s)
    assert final == [seg(6400, 78 * FRAME + 1600)]  # the whole utterance, one segment


def test_no_tentative_end_for_a_too_short_or_padding_only_end() -> None:
    short = tentative_trace(energy_segmenter(), frames_for("." * 20 + "x" * 6 + "." * 40))
    assert all(b is None for _, b, _ in short)
    # After a cut in a pause, what is left is padding: no tentative end either.
    cut = tentative_trace(energy_segmenter(), frames_for("." * 20 + "x" * 91 + "." * 40))
    assert all(b is None for i, b, _ in cut if i >= 113)


def test_a_segment_counts_the_samples_of_its_voiced_frames() -> None:
    frames = frames_for("." * 20 + "x" * 30 + "." * 40)
    segment = next(e for _, e in run(energy_segmenter(), frames) if isinstance(e, Segment))
    assert segment.voiced_samples == 30 * FRAME  # the padding around them is not speech


def test_voiced_samples_are_split_between_cut_segments_and_counted_in_progress() -> None:
    segmenter = energy_segmenter()
    frames = frames_for("." * 20 + "x" * 60 + ".." + "x" * 58 + "." * 40)
    events = run(segmenter, frames[:100])
    progress = segmenter.in_progress()
    assert progress is not None
    end = min(progress.end_sample, 100 * FRAME)
    expected = sum(
        max(0, min(i * FRAME + FRAME, end) - max(i * FRAME, progress.start_sample))
        for i in range(100)
        if 20 <= i < 80 or i >= 82
    )
    assert progress.voiced_samples == expected
    events += run(segmenter, frames[100:], first_index=100)
    segments = [e for _, e in events if isinstance(e, Segment)]
    assert len(segments) >= 2
    assert sum(s.voiced_samples for s in segments) == 118 * FRAME
    for s in segments:
        assert 0 < s.voiced_samples <= s.end_sample - s.start_sample
