"""One audio stream end to end: bytes or float audio at any rate to segmenter events."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

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
from vad.segmenter import Segmenter

MIN_INPUT_RATE_HZ = 8000
MAX_INPUT_RATE_HZ = 48000


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
        if not MIN_INPUT_RATE_HZ <= in_rate_hz <= MAX_INPUT_RATE_HZ:
            raise ValueError(
                f"sample rate {in_rate_hz} Hz is outside {MIN_INPUT_RATE_HZ}-{MAX_INPUT_RATE_HZ} Hz"
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
        """Raises FrameError for a partial sample, before anything of data is processed.

        pcm_s16le at the segmenter's own rate goes to the frames as the client's int16
        samples, with no conversion at all; anything else is decoded to float once,
        resampled and rounded to int16 once."""
        if self._native_s16:
            if len(data) % 2:
                raise FrameError(
                    f"binary frame of {len(data)} bytes is not a whole number of "
                    "2-byte pcm_s16le samples"
                )
            if self._finished:
                raise RuntimeError("the stream has finished; no more audio is accepted")
            samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
            self._input_samples += len(samples)
            return self._frames(samples)
        return self._feed(decode_pcm(data, self.encoding))

    def feed_audio(self, audio: npt.NDArray[np.floating]) -> list[Event]:
        """Already-decoded mono float audio at in_rate_hz; non-finite samples become 0."""
        if audio.ndim != 1:
            raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
        if not np.issubdtype(audio.dtype, np.floating):
            raise ValueError(f"expected float audio in [-1, 1], got dtype {audio.dtype}")
        return self._feed(sanitize(audio))

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
            events = self._segment(self._resampler.flush())
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

    def _feed(self, audio: npt.NDArray[np.float32]) -> list[Event]:
        if self._finished:
            raise RuntimeError("the stream has finished; no more audio is accepted")
        self._input_samples += len(audio)
        return self._segment(self._resampler.process(audio))

    def _segment(self, audio: npt.NDArray[np.float32]) -> list[Event]:
        return self._frames(to_int16(audio))

    def _frames(self, samples: npt.NDArray[np.int16]) -> list[Event]:
        """Every frame is segmented even if the detector fails on some; then DetectorError
        (the first fault) carries all the events."""
        events: list[Event] = []
        fault: DetectorError | None = None
        for frame in self._reframer.push(samples):
            try:
                events += self._segmenter.push(frame)
            except DetectorError as exc:
                fault = fault or exc
                events += exc.events
        if fault is not None:
            raise DetectorError(events, fault.cause) from fault.cause
        return events
