"""What one connection may send: message budgets and the pace its audio is read at.

Each binary frame costs one frame token and each text message one text token, whatever
their size: a 2-byte frame costs the server a message's overhead as a 40 ms one does.
Tokens come back at the configured rate up to a burst of ``message_burst_s`` seconds'
worth; a message with no token left, or more than ``max_bad_messages`` rejected messages
within ``bad_message_window_s``, ends the session with ``limit``. Audio is read at most
``max_stream_speed`` times faster than real time (after the same burst): a faster
sender is slowed down by not being read, never refused, so a client streaming a file as
fast as the server reads stays far inside the frame budget (docs/protocol.md).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from server.settings import Settings


class LimitExceeded(Exception):
    """The connection went past one of its message limits; the message names it."""


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` held; starts full."""

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError(f"need a positive rate and burst, got {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._level = burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._level = min(self.burst, self._level + (now - self._at) * self.rate_per_s)
            self._at = now

    def take(self, cost: float, now: float) -> bool:
        """Spend ``cost`` if that many tokens are there; False (nothing spent) if not."""
        self._refill(now)
        if self._level < cost:
            return False
        self._level -= cost
        return True

    def charge(self, cost: float, now: float) -> float:
        """Spend ``cost``, into debt if need be: the seconds until the debt is repaid."""
        self._refill(now)
        self._level -= cost
        return max(0.0, -self._level / self.rate_per_s)


@dataclass(frozen=True, slots=True)
class Allowance:
    frames_per_s: int
    texts_per_s: int
    burst_s: float
    bad_messages: int
    bad_window_s: float
    stream_speed: float

    @classmethod
    def of(cls, s: Settings) -> Allowance:
        return cls(
            s.max_frames_per_s,
            s.max_texts_per_s,
            s.message_burst_s,
            s.max_bad_messages,
            s.bad_message_window_s,
            s.max_stream_speed,
        )


def _burst(rate_per_s: int, burst_s: float) -> float:
    return max(1.0, rate_per_s * burst_s)  # one message, at least, whatever the settings


class MessageBudget:
    """One connection's budgets; ``clock`` is monotonic seconds."""

    def __init__(self, allowance: Allowance, clock: Callable[[], float] = time.monotonic) -> None:
        a, now = allowance, clock()
        self.allowance = a
        self._clock = clock
        self._frames = TokenBucket(a.frames_per_s, _burst(a.frames_per_s, a.burst_s), now)
        self._texts = TokenBucket(a.texts_per_s, _burst(a.texts_per_s, a.burst_s), now)
        self._audio = TokenBucket(a.stream_speed, a.stream_speed * a.burst_s, now)
        self._bad: deque[float] = deque(maxlen=a.bad_messages + 1)
        self._audio_s = 0.0

    def frame(self) -> None:
        if not self._frames.take(1, self._clock()):
            a = self.allowance
            raise LimitExceeded(
                f"binary frames exceeded max_frames_per_s {a.frames_per_s} "
                f"(a burst of {_burst(a.frames_per_s, a.burst_s):g} is allowed)"
            )

    def text(self) -> None:
        if not self._texts.take(1, self._clock()):
            a = self.allowance
            raise LimitExceeded(
                f"text messages exceeded max_texts_per_s {a.texts_per_s} "
                f"(a burst of {_burst(a.texts_per_s, a.burst_s):g} is allowed)"
            )

    def bad(self) -> None:
        """A message was rejected (bad_frame or bad_message)."""
        now = self._clock()
        self._bad.append(now)
        a = self.allowance
        if len(self._bad) > a.bad_messages and now - self._bad[0] < a.bad_window_s:
            raise LimitExceeded(
                f"more than max_bad_messages {a.bad_messages} rejected messages "
                f"within bad_message_window_s {a.bad_window_s:g}"
            )

    def pause_s(self, audio_s: float) -> float:
        """Given the audio read so far (seconds), how long to wait before reading more."""
        new_s, self._audio_s = audio_s - self._audio_s, max(self._audio_s, audio_s)
        if new_s <= 0:
            return 0.0
        return self._audio.charge(new_s, self._clock())
