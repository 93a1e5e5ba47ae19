"""One audio stream end to end: bytes or float audio at any rate to segmenter events."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pcm.format import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ
from vad.batch import SileroBatcher
from vad.config import SegmenterConfig
from vad.detector import Detector, DetectorError
from vad.events import Event, InProgress
from vad.framing import (
    Encoding,
    FrameError,
    Reframer,
    check_encoding,
    decode_pcm,
    sanitize,
    to_int16,
)
from vad.resample import Resampler
from vad.segmenter import Segmenter, State
from vad.silero import SileroDetector


class StreamSegmenter:
    """Decode, resample to config.sample_rate_hz, re-frame and segment one stream.

    Event positions are sample indexes at config.sample_rate_hz from the stream's first
    sample; soxr compensates its delay, so they line up with the client's audio time.
    """

    def __init__(
        self,
        config: SegmenterConfig,
        in_rate_hz: int,
        encoding: Encoding = "pcm_s16le",
        detector: Detector | None = None,
    ) -> None:
        if not MIN_SAMPLE_RATE_HZ <= in_rate_hz <= MAX_SAMPLE_RATE_HZ:
            raise ValueError(
                f"sample rate {in_rate_hz} Hz is outside "
                f"{MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz"
            )
        self.config = config
        self.in_rate_hz = in_rate_hz
        self.encoding = check_encoding(encoding)
        self._resampler = Resampler(in_rate_hz, config.sample_rate_hz)
        self._reframer = Reframer(config.frame_samples)
        self._segmenter = Segmenter(config, detector)
        self._input_samples = 0
        self._finished = False
        self._native_s16 = encoding == "pcm_s16le" and in_rate_hz == config.sample_rate_hz

    @property
    def input_samples(self) -> int:
        """Samples received, at the client's rate."""
        return self._input_samples

    @property
    def audio_ms(self) -> int:
        return self._input_samples * 1000 // self.in_rate_hz

    @property
    def state(self) -> State:
        return self._segmenter.state

    @property
    def in_speech(self) -> bool:
        return self._segmenter.in_speech

    def in_progress(self) -> InProgress | None:
        """The segment in progress so far (a view of the segmenter's buffer), or None."""
        return self._segmenter.in_progress()

    def tentative_end(self) -> InProgress | None:
        """The final segment if the silence that has begun ends the utterance (see
        Segmenter.tentative_end), or None."""
        return self._segmenter.tentative_end()

    def feed_bytes(self, data: bytes) -> list[Event]:
        """Raises FrameError for a partial sample, before anything of data is processed."""
        return self.segment(self.frames_of(data))

    def frames_of(self, data: bytes) -> list[npt.NDArray[np.int16]]:
        """The whole detector frames that data completes, not yet segmented: the first half
        of feed_bytes, for a caller that decides voicing elsewhere (vad.batch), then calls
        segment(frames, voiced). Raises FrameError for a partial sample, before anything
        of data is processed.

        pcm_s16le at the segmenter's own rate goes to the frames as the client's int16
        samples, with no conversion at all; anything else is decoded to float once,
        resampled and rounded to int16 once."""
        if self._native_s16:
            if len(data) % 2:
                raise FrameError(
                    f"binary frame of {len(data)} bytes is not a whole number of "
                    "2-byte pcm_s16le samples"
                )
            self._check_open()
            samples = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
            self._input_samples += len(samples)
            return self._reframer.push(samples)
        return self._frames_of_audio(decode_pcm(data, self.encoding))

    def feed_audio(self, audio: npt.NDArray[np.floating]) -> list[Event]:
        """Already-decoded mono float audio at in_rate_hz; non-finite samples become 0."""
        if audio.ndim != 1:
            raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
        if not np.issubdtype(audio.dtype, np.floating):
            raise ValueError(f"expected float audio in [-1, 1], got dtype {audio.dtype}")
        return self.segment(self._frames_of_audio(sanitize(audio)))

    def segment(
        self, frames: Sequence[npt.NDArray[np.int16]], voiced: Sequence[bool] | None = None
    ) -> list[Event]:
        """Segment frames from frames_of, in order; ``voiced``: one decision per frame
        made elsewhere, or None to ask this stream's detector.

        Every frame is segmented even if the detector fails on some; then DetectorError
        (the first fault) carries all the events."""
        if voiced is not None and len(voiced) != len(frames):
            raise ValueError(f"{len(voiced)} voicing decisions for {len(frames)} frames")
        events: list[Event] = []
        fault: DetectorError | None = None
        for index, frame in enumerate(frames):
            try:
                events += self._segmenter.push(frame, None if voiced is None else voiced[index])
            except DetectorError as exc:
                fault = fault or exc
                events += exc.events
        if fault is not None:
            raise DetectorError(events, fault.cause) from fault.cause
        return events

    async def segment_batched(
        self, frames: Sequence[npt.NDArray[np.int16]], batcher: SileroBatcher | None
    ) -> list[Event]:
        """Segment frames from frames_of, as segment(frames) does, except that a Silero
        detector's decisions are made in the batcher's shared model call with the other
        streams' waiting frames. Without a batcher, or with another detector, the stream's
        own detector decides them.

        A batch fault counts these frames as unvoiced and starts the detector afresh, as a
        fault of the stream's own detector does, and raises DetectorError with the events."""
        detector = self._segmenter.detector
        if batcher is None or not frames or not isinstance(detector, SileroDetector):
            return self.segment(frames)
        try:
            voiced = await batcher.decide(detector, frames)
        except Exception as exc:  # the model's fault, re-raised as DetectorError
            detector.reset()
            events = self.segment(frames, [False] * len(frames))
            raise DetectorError(events, exc) from exc
        return self.segment(frames, voiced)

    def flush(self) -> list[Event]:
        """End the utterance in progress at the audio segmented so far."""
        return self._segmenter.flush()

    def finish(self) -> list[Event]:
        """End of stream: drain the resampler and the last partial frame, close any utterance.

        A detector fault raises DetectorError with every event, the close included."""
        if self._finished:
            return []
        fault: DetectorError | None = None
        try:
            events = self.segment(self._reframer.push(to_int16(self._resampler.flush())))
        except DetectorError as exc:
            fault, events = exc, exc.events
        self._finished = True
        valid_samples = self._reframer.pending_samples
        try:
            events += self._segmenter.finish(self._reframer.flush(), valid_samples)
        except DetectorError as exc:
            fault, events = fault or exc, events + exc.events
        if fault is not None:
            raise DetectorError(events, fault.cause) from fault.cause
        return events

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError("the stream has finished; no more audio is accepted")

    def _frames_of_audio(self, audio: npt.NDArray[np.float32]) -> list[npt.NDArray[np.int16]]:
        self._check_open()
        self._input_samples += len(audio)
        return self._reframer.push(to_int16(self._resampler.process(audio)))
