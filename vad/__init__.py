"""Voice-activity segmentation of audio streams (Silero VAD or webrtcvad, soxr)."""

from vad.batch import BatcherClosed, SileroBatcher
from vad.config import DETECTORS, DetectorName, SegmenterConfig
from vad.detector import Detector, DetectorError, EnergyDetector, WebRtcDetector, make_detector
from vad.events import Event, InProgress, Segment, SpeechEnd, SpeechStart
from vad.framing import Encoding, FrameError, Reframer, decode_pcm, split_channels
from vad.resample import Resampler
from vad.segmenter import Segmenter, State
from vad.silero import SileroDetector, SileroModel, VadModelError
from vad.stream import StreamSegmenter

__all__ = [
    "DETECTORS",
    "BatcherClosed",
    "Detector",
    "DetectorError",
    "DetectorName",
    "Encoding",
    "EnergyDetector",
    "Event",
    "FrameError",
    "InProgress",
    "Reframer",
    "Resampler",
    "Segment",
    "Segmenter",
    "SegmenterConfig",
    "SileroBatcher",
    "SileroDetector",
    "SileroModel",
    "SpeechEnd",
    "SpeechStart",
    "State",
    "StreamSegmenter",
    "VadModelError",
    "WebRtcDetector",
    "decode_pcm",
    "make_detector",
    "split_channels",
]
