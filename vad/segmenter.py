"""The speech segmenter: a synchronous state machine fed one VAD frame at a time."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vad.config import SegmenterConfig
from vad.detector import Detector, DetectorError, frame_energy, make_detector
from vad.events import Event, InProgress, Segment, SpeechEnd, SpeechStart
from vad.framing import to_float
from vad.gate import BabbleGate
from vad.ring import SampleRing

_MIN_NOISE_FRAMES = 3


class State(enum.Enum):
    """Where a stream stands, as pipecat's VAD analyzer names it."""

    QUIET = "quiet"  # no utterance, and no voiced frame in the start window
    STARTING = "starting"  # voiced frames gather in the start window, not yet enough
    SPEAKING = "speaking"  # in an utterance, its newest frame voiced
    STOPPING = "stopping"  # in an utterance, in a silence the hangover may end it at


class _Window:
    """The voiced flags of the last `size` frames with a running count of voiced ones."""

    def __init__(self, size: int, fill: bool) -> None:
        self._flags: deque[bool] = deque([fill] * size, maxlen=size)
        self.voiced = size if fill else 0

    def append(self, voiced: bool) -> None:
        self.voiced += int(voiced) - int(self._flags[0])
        self._flags.append(voiced)

    def latest(self, count: int) -> list[bool]:
        return list(self._flags)[len(self._flags) - count :]

    def first_voiced_age(self) -> int:
        """How many frames ago the oldest voiced frame in the window began (1 = the newest)."""
        for index, voiced in enumerate(self._flags):
            if voiced:
                return len(self._flags) - index
        raise LookupError("no voiced frame in the window")


@dataclass(slots=True)
class _Utterance:
    speech_start: int
    seg_start: int  # stream position of the current segment's first sample
    cut_floor: int  # a cut must lie after this position
    last_voiced_end: int
    audio: npt.NDArray[np.int16]  # audio[:filled] holds [seg_start, seg_start + filled)
    filled: int
    stop_window: _Window
    short_window: _Window
    cuts: int = 0
    # End of the first voiced frame after the last cut; None while there is none.
    voiced_after_cut: int | None = None
    voiced_before_cut: int = 0  # end of the last voiced frame before the last cut
    # Start positions of the frames since seg_start that the detector called speech.
    voiced_frames: deque[int] = field(default_factory=deque)

    def voiced_samples(self, start: int, end: int, frame: int) -> int:
        """Samples of [start, end) that lie in voiced frames."""
        return sum(max(0, min(p + frame, end) - max(p, start)) for p in self.voiced_frames)


class Segmenter:
    """Turns frames of exactly config.frame_ms into SpeechStart, Segment and SpeechEnd events.

    Positions are sample indexes at config.sample_rate_hz, counted from the first frame.
    """

    def __init__(self, config: SegmenterConfig, detector: Detector | None = None) -> None:
        """detector: a fresh one per stream; None makes config.detector's own (for Silero,
        per-stream state on the process's shared model). Its reset(), if any, is called
        by reset()."""
        self.config = config
        self._given_detector = detector
        self._frame = config.frame_samples
        self._pre_padding = config.samples(config.pre_padding_ms)
        self._post_padding = config.samples(config.post_padding_ms)
        self._max_segment = config.samples(config.max_segment_ms)
        self._min_segment = config.samples(config.min_segment_ms)
        self._cut_search = config.samples(config.cut_search_ms)
        self._short_frames = config.short_stop_frames
        self._short_after = config.samples(config.short_hangover_after_ms)
        self._trim_frames = config.end_trim_frames
        self._trim_factor = 10.0 ** (config.end_trim_margin_db / 10.0)
        kept_frames = max(
            config.cut_search_ms // config.frame_ms + 1, config.stop_frames + self._trim_frames + 1
        )
        self._energies: deque[tuple[int, float]] = deque(maxlen=kept_frames)
        self._preroll = SampleRing(config.start_frames * self._frame + self._pre_padding)
        self._gate = (
            BabbleGate(config.babble_gate_db, config.babble_window_frames)
            if config.babble_gate_db
            else None
        )
        self.reset()

    @property
    def samples(self) -> int:
        """Stream position just after the last frame pushed."""
        return self._position

    @property
    def detector(self) -> Detector:
        """The detector that decides this stream's frames (a new one after a fault)."""
        return self._detect

    @property
    def state(self) -> State:
        utterance = self._utterance
        if utterance is None:
            return State.STARTING if self._start_window.voiced else State.QUIET
        return State.SPEAKING if utterance.last_voiced_end == self._position else State.STOPPING

    @property
    def in_speech(self) -> bool:
        return self._utterance is not None

    def in_progress(self) -> InProgress | None:
        """The segment in progress so far, or None outside an utterance."""
        utterance = self._utterance
        if utterance is None:
            return None
        start = utterance.seg_start
        end = max(start, min(utterance.last_voiced_end + self._post_padding, self._position))
        view = utterance.audio[: end - start]
        view.flags.writeable = False
        # The end may still move back over trailing voiced frames (see _trimmed_voiced_end)
        # but never by more than end_trim_frames, nor before the audio already pushed.
        shortest = end - start - self._trim_frames * self._frame
        return InProgress(
            start,
            end,
            self._ms(start),
            self._ms(end),
            self._position - start,
            view,
            shortest >= self._min_segment,
            utterance.voiced_samples(start, end, self._frame),
        )

    def tentative_end(self) -> InProgress | None:
        """The final segment the utterance would get if the silence that has begun is its
        end, or None: while voiced, before post_padding_ms of silence has arrived, or when
        the end would leave no segment or a too_short one.

        The hangover confirms the end later; when no voice comes back and the overhang
        trim decides alike, the final segment has exactly these bounds and so this audio.
        ``audio`` is a read-only view, valid until the next frame is pushed."""
        utterance = self._utterance
        if utterance is None or utterance.last_voiced_end >= self._position:
            return None
        if self._position < utterance.last_voiced_end + self._post_padding:
            return None
        voiced_end = self._trimmed_voiced_end(utterance)
        after_cut = utterance.voiced_after_cut
        if utterance.cuts and (after_cut is None or voiced_end < after_cut):
            return None
        start = utterance.seg_start
        end = max(start, min(voiced_end + self._post_padding, self._position))
        if end - start < self._min_segment:
            return None
        view = utterance.audio[: end - start]
        view.flags.writeable = False
        voiced = utterance.voiced_samples(start, end, self._frame)
        return InProgress(
            start, end, self._ms(start), self._ms(end), self._position - start, view, True, voiced
        )

    def reset(self) -> None:
        """Start over as a new stream; the detector starts afresh too."""
        self._reset_detector()
        self._position = 0
        self._floor = 0  # no new segment may start before the end of the last one
        self._start_window = _Window(self.config.start_frames, fill=False)
        self._utterance: _Utterance | None = None
        self._energies.clear()
        self._preroll.clear()
        if self._gate is not None:
            self._gate.reset()

    def _reset_detector(self) -> None:
        given = self._given_detector
        if given is None:
            self._detect: Detector = make_detector(self.config)
            return
        self._detect = given
        reset = getattr(given, "reset", None)
        if callable(reset):
            reset()

    def push(self, frame: npt.NDArray[np.int16], voiced: bool | None = None) -> list[Event]:
        """Process exactly one frame of config.frame_ms; ``voiced``: the decision made
        elsewhere for this frame (vad.batch), or None to ask the detector.

        If the detector raises, the frame counts as unvoiced, the detector starts afresh
        and DetectorError carries the events of this frame (the stream may go on)."""
        frame = self._checked(frame)
        if voiced is not None:
            return self._advance(frame, voiced, self._position + self._frame)
        return self._push(frame, self._position + self._frame)

    def flush(self) -> list[Event]:
        """End the utterance in progress now; [] when there is none."""
        return self._end(self._position)

    def finish(self, last_frame: npt.NDArray[np.int16] | None, valid_samples: int) -> list[Event]:
        """End of stream: push a zero-padded last frame, of which only valid_samples are real
        audio, then close any utterance; nothing reported extends past the real audio.

        On a detector fault the DetectorError's events include the close."""
        if last_frame is None:
            return self._end(self._position)
        if not 0 < valid_samples <= self._frame:
            raise ValueError(f"valid_samples must be in 1..{self._frame}, got {valid_samples}")
        audio_end = self._position + valid_samples
        try:
            events = self._push(self._checked(last_frame), audio_end)
        except DetectorError as exc:
            raise DetectorError(exc.events + self._end(audio_end), exc.cause) from exc.cause
        return events + self._end(audio_end)

    def _checked(self, frame: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        if frame.shape != (self._frame,) or frame.dtype != np.int16:
            raise ValueError(
                f"frame must be {self._frame} int16 samples ({self.config.frame_ms} ms at "
                f"{self.config.sample_rate_hz} Hz), got shape {frame.shape} of {frame.dtype}"
            )
        return frame

    def _push(self, frame: npt.NDArray[np.int16], audio_end: int) -> list[Event]:
        fault: Exception | None = None
        try:
            voiced = bool(self._detect(frame))
        except Exception as exc:  # noqa: BLE001 - re-raised below as DetectorError
            fault, voiced = exc, False
            self._reset_detector()
        events = self._advance(frame, voiced, audio_end)
        if fault is not None:
            raise DetectorError(events, fault) from fault
        return events

    def _advance(self, frame: npt.NDArray[np.int16], voiced: bool, audio_end: int) -> list[Event]:
        """audio_end: where this frame's real audio ends (before a final zero padding)."""
        events: list[Event] = []
        utterance = self._utterance
        if utterance is not None and utterance.filled + audio_end - self._position > (
            self._max_segment
        ):
            # Cut only when audio that does not fit has arrived: a stream that ends exactly
            # at the limit keeps one whole segment instead of a cut and a sliver.
            events = self._cut(utterance)
        energy = frame_energy(frame)
        heard = voiced  # the detector's own decision, before the babble gate
        if self._gate is not None:
            voiced = self._gate(energy, voiced)
        self._energies.append((self._position, energy))
        self._preroll.write(frame)
        self._position += self._frame
        if utterance is None:
            return self._maybe_start(voiced)
        utterance.audio[utterance.filled : utterance.filled + self._frame] = frame
        utterance.filled += self._frame
        utterance.stop_window.append(voiced)
        utterance.short_window.append(heard)
        if voiced:
            utterance.voiced_frames.append(self._position - self._frame)
            utterance.last_voiced_end = self._position
            if utterance.voiced_after_cut is None:
                utterance.voiced_after_cut = self._position
        elif self._stopped(utterance):
            return events + self._end(min(self._position, audio_end))
        return events

    def _stopped(self, utterance: _Utterance) -> bool:
        """The post-padding is in, and few enough voiced frames in the hangover window, or
        in the short hangover's once the utterance has enough speech for it. The short
        window holds the detector's own decisions: a stretch that only the babble gate
        took back (other voices, or the quiet part of continuous speech) never ends an
        utterance early."""
        if self._position < utterance.last_voiced_end + self._post_padding:
            return False
        if utterance.stop_window.voiced <= self.config.stop_voiced_frames:
            return True
        return (
            self._short_frames > 0
            and utterance.last_voiced_end - utterance.speech_start >= self._short_after
            and utterance.short_window.voiced <= self.config.short_stop_voiced_frames
        )

    def _maybe_start(self, voiced: bool) -> list[Event]:
        window = self._start_window
        window.append(voiced)
        if not voiced or window.voiced < self.config.start_voiced_frames:
            return []
        age = window.first_voiced_age()
        speech_start = self._position - age * self._frame
        seg_start = max(self._floor, speech_start - self._pre_padding, self._preroll.start)
        stop_window = _Window(self.config.stop_frames, fill=True)
        short_window = _Window(max(1, self._short_frames), fill=True)
        for flag in window.latest(age):  # frames before these count as voiced
            stop_window.append(flag)
            short_window.append(flag)
        # Room for one zero-padded last frame beyond the limit; what is reported stays within.
        audio = np.empty(self._max_segment + self._frame, dtype=np.int16)
        filled = self._preroll.read_into(audio, seg_start)
        flags = window.latest(age)
        first = self._position - age * self._frame
        self._utterance = _Utterance(
            speech_start,
            seg_start,
            speech_start,
            self._position,
            audio,
            filled,
            stop_window,
            short_window,
            voiced_frames=deque(first + i * self._frame for i, v in enumerate(flags) if v),
        )
        self._start_window = _Window(self.config.start_frames, fill=False)
        return [self._speech_start(speech_start)]

    def _cut(self, utterance: _Utterance) -> list[Event]:
        cut = self._cut_position(utterance)
        length = cut - utterance.seg_start
        voiced = utterance.voiced_samples(utterance.seg_start, cut, self._frame)
        segment = self._segment(utterance.seg_start, cut, utterance.audio[:length], voiced)
        while utterance.voiced_frames and utterance.voiced_frames[0] + self._frame <= cut:
            utterance.voiced_frames.popleft()
        rest = utterance.filled - length
        utterance.audio[:rest] = utterance.audio[length : utterance.filled]
        utterance.filled = rest
        utterance.seg_start = utterance.cut_floor = cut
        utterance.cuts += 1
        utterance.voiced_before_cut = min(utterance.last_voiced_end, cut)
        utterance.voiced_after_cut = (
            utterance.last_voiced_end if utterance.last_voiced_end > cut else None
        )
        return [segment]

    def _cut_position(self, utterance: _Utterance) -> int:
        """Where to cut the full segment, always leaving room for the next frame.

        In a pause (the newest frame unvoiced): post_padding_ms after the last voiced
        frame, so that the segment ends like an utterance and, if the pause turns out to
        be the end, nothing but padding is left over (and that is not reported).
        While voiced: the middle of the quietest frame in the search window that still
        leaves voiced audio for the next segment."""
        limit = utterance.seg_start + self._max_segment
        room = self._position + self._frame - self._max_segment  # the cut must be at or after
        last_voiced = utterance.last_voiced_end
        if last_voiced < self._position and last_voiced > utterance.seg_start:
            return max(room, min(last_voiced + self._post_padding, self._position))
        lowest = max(utterance.cut_floor, limit - self._cut_search, room - 1)
        best: tuple[float, int] | None = None
        for frame_start, energy in self._energies:
            middle = frame_start + self._frame // 2
            eligible = lowest < middle <= limit and middle < last_voiced
            if eligible and (best is None or energy <= best[0]):
                best = (energy, middle)
        return best[1] if best is not None else self._position

    def _end(self, audio_end: int) -> list[Event]:
        utterance = self._utterance
        if utterance is None:
            return []
        voiced_end = min(self._trimmed_voiced_end(utterance), audio_end)
        self._utterance = None
        after_cut = utterance.voiced_after_cut
        if utterance.cuts and (after_cut is None or voiced_end < after_cut):
            # After the last cut the detector found no voice, or the overhang trim took
            # back all it found: padding and trailing noise, not a segment of its own.
            self._floor = utterance.seg_start
            voiced_end = utterance.voiced_before_cut
            return [SpeechEnd(voiced_end, self._ms(voiced_end))]
        speech_end = SpeechEnd(voiced_end, self._ms(voiced_end))
        end = max(utterance.seg_start, min(voiced_end + self._post_padding, audio_end))
        length = end - utterance.seg_start
        voiced = utterance.voiced_samples(utterance.seg_start, end, self._frame)
        segment = self._segment(utterance.seg_start, end, utterance.audio[:length], voiced)
        self._floor = end
        return [segment, speech_end]

    def _trimmed_voiced_end(self, utterance: _Utterance) -> int:
        """The last voiced frame's end, moved back over trailing frames that the detector
        called voiced but whose power is within end_trim_margin_db of the silence after them
        (webrtcvad keeps reporting speech for up to 90 ms after it ends)."""
        voiced_end = utterance.last_voiced_end
        after = [energy for start, energy in self._energies if start >= voiced_end]
        if self._trim_frames == 0 or len(after) < _MIN_NOISE_FRAMES:
            return voiced_end
        ceiling = float(np.median(after)) * self._trim_factor
        energy_by_end = {start + self._frame: energy for start, energy in self._energies}
        lowest = max(utterance.seg_start + 1, utterance.speech_start + self._frame)
        for _ in range(self._trim_frames):
            energy = energy_by_end.get(voiced_end)
            if energy is None or energy > ceiling or voiced_end - self._frame < lowest:
                break
            voiced_end -= self._frame
        return voiced_end

    def _segment(
        self, start: int, end: int, audio: npt.NDArray[np.int16], voiced_samples: int
    ) -> Segment:
        too_short = end - start < self._min_segment
        return Segment(
            start, end, self._ms(start), self._ms(end), to_float(audio), too_short, voiced_samples
        )

    def _speech_start(self, sample: int) -> SpeechStart:
        return SpeechStart(sample, self._ms(sample))

    def _ms(self, sample: int) -> int:
        return sample * 1000 // self.config.sample_rate_hz
