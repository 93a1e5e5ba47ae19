"""Message budgets (server/budget.py): each limit trips at its threshold and not below it,
and the defaults hold a client that streams as fast as the server reads."""

from __future__ import annotations

import pytest

from server.budget import Allowance, LimitExceeded, MessageBudget, TokenBucket
from server.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def budget(clock: Clock, **overrides: float) -> MessageBudget:
    values = {
        "frames_per_s": 100,
        "texts_per_s": 5,
        "burst_s": 2.0,
        "bad_messages": 3,
        "bad_window_s": 10.0,
        "stream_speed": 10.0,
    }
    values.update(overrides)
    return MessageBudget(Allowance(**values), clock)  # type: ignore[arg-type]


def test_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(10, 20, now=0.0)
    assert all(bucket.take(1, 0.0) for _ in range(20))
    assert not bucket.take(1, 0.0)
    assert not bucket.take(1, 0.099)  # 0.99 of a token back
    assert bucket.take(1, 0.1)
    assert bucket.take(20, 100.0)  # refills to the burst, no further
    assert not bucket.take(1, 100.0)
    with pytest.raises(ValueError, match="positive rate and burst"):
        TokenBucket(0, 1, now=0.0)


def test_frames_trip_one_past_the_burst_naming_the_limit() -> None:
    clock = Clock()
    b = budget(clock)
    for _ in range(200):  # 100 frames/s with a 2 s burst: 200 at once
        b.frame()
    with pytest.raises(LimitExceeded, match=r"max_frames_per_s 100 \(a burst of 200"):
        b.frame()


def test_frames_at_the_rate_never_trip() -> None:
    clock = Clock()
    b = budget(clock)
    for _ in range(10_000):  # exactly 100 a second, for 100 s
        b.frame()
        clock.now += 0.01
    clock.now += 0.5
    for _ in range(200):  # and the burst is whole again
        b.frame()


def test_texts_trip_one_past_the_burst_naming_the_limit() -> None:
    clock = Clock()
    b = budget(clock)
    for _ in range(10):
        b.text()
    with pytest.raises(LimitExceeded, match="max_texts_per_s 5"):
        b.text()
    clock.now += 0.2  # one token back
    b.text()


def test_rejected_messages_trip_past_the_count_within_the_window() -> None:
    clock = Clock()
    b = budget(clock)
    for _ in range(3):
        b.bad()
        clock.now += 3.0
    clock.now += 1.01  # the first is now 10.01 s old: still three within the window
    b.bad()
    clock.now += 1.0
    with pytest.raises(LimitExceeded, match=r"max_bad_messages 3 .* bad_message_window_s 10"):
        b.bad()


def test_no_rejected_message_allowed_with_zero() -> None:
    with pytest.raises(LimitExceeded, match="max_bad_messages 0"):
        budget(Clock(), bad_messages=0).bad()


def test_audio_is_paced_to_the_speed_after_the_burst() -> None:
    clock = Clock()
    b = budget(clock)  # 10x real time, 20 s of audio at once
    assert b.pause_s(20.0) == 0.0
    assert b.pause_s(21.0) == pytest.approx(0.1)  # one second of audio is 0.1 s at 10x
    clock.now += 0.1
    assert b.pause_s(21.0) == 0.0  # nothing new
    assert b.pause_s(22.0) == pytest.approx(0.1)


def _fastest_client(b: MessageBudget, clock: Clock, frame_ms: int, audio_s: float) -> None:
    """A client that sends the next frame the moment the server reads, to a server that
    costs nothing: only the server's pacing slows it down."""
    sent_s = 0.0
    while sent_s < audio_s:
        b.frame()
        sent_s += frame_ms / 1000
        clock.now += b.pause_s(sent_s)


@pytest.mark.parametrize("frame_ms", [10, 20, 40, 100])
def test_defaults_hold_a_file_streamed_as_fast_as_the_server_reads(frame_ms: int) -> None:
    clock = Clock()
    b = MessageBudget(Allowance.of(Settings()), clock)
    _fastest_client(b, clock, frame_ms, audio_s=600.0)  # ten minutes of audio
    # the page's reconnection: up to 10 s it queued while away, in 10 ms frames, at once
    for _ in range(1000):
        b.frame()


def test_defaults_are_far_from_real_clients() -> None:
    s = Settings()
    fastest_reads_per_s = s.max_stream_speed * 100  # 10 ms frames at the pace
    assert s.max_frames_per_s >= 2 * fastest_reads_per_s
    assert s.max_frames_per_s >= 40 * 100  # the page sends at most 100 frames a second
    assert s.max_frames_per_s * s.message_burst_s >= 10 * 1000  # the page's catch-up
    assert s.max_texts_per_s >= 10  # clients send end, and flush now and then
