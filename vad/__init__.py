"""Voice-activity segmentation of audio streams (webrtcvad, soxr); no model code here."""

from vad.config import SegmenterConfig
from vad.detector import Detector, EnergyDetector, WebRtcDetector
from vad.events import Event, InProgress, Segment, SpeechEnd, SpeechStart
from vad.framing import Encoding, FrameError, Reframer, decode_pcm
from vad.resample import Resampler
from vad.segmenter import Segmenter
from vad.stream import StreamSegmenter

__all__ = [
    "Detector",
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
    "SpeechEnd",
    "SpeechStart",
    "StreamSegmenter",
    "WebRtcDetector",
    "decode_pcm",
]
