"""Protocol version 1: messages, error codes, close codes, query parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from pcm.format import ENCODINGS, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, Encoding

PROTOCOL_VERSION = 1

# WebSocket close codes (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013

ErrorCode = Literal[
    "bad_request", "unauthorized", "bad_frame", "bad_message", "limit", "busy", "internal"
]
SkipReason = Literal["too_short", "overloaded", "error"]
CHANNEL_COUNTS = (1, 2)
# ``channels`` of POST /v1/classify: mix a stereo file to mono, or classify each channel.
ChannelMode = Literal["mix", "separate"]
CHANNEL_MODES: tuple[ChannelMode, ...] = get_args(ChannelMode)

MIN_INTERIM_MS = 250
MAX_INTERIM_MS = 3000


class ProtocolError(ValueError):
    """A client mistake, reported with ``code``; the message names the bad value."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code


@dataclass(frozen=True, slots=True)
class StreamParams:
    sample_rate: int = 16000
    encoding: Encoding = "pcm_s16le"
    token: str | None = None
    interim_ms: int = 0
    quality: int | None = None  # None: not sent (0 and None both leave the fields out)
    # None when the client did not send ``channels`` (then 1, and ``ready`` does not echo it).
    channels: int | None = None

    @property
    def channel_count(self) -> int:
        return self.channels or 1


def _small_int(text: str) -> int:
    """A plain decimal of at most 6 digits, else -1 (int() refuses very long digit strings)."""
    if text.isascii() and text.isdigit() and len(text) <= 6:
        return int(text)
    return -1


def parse_stream_params(query: Mapping[str, str]) -> StreamParams:
    rate_text = query.get("sample_rate", "16000")
    if not MIN_SAMPLE_RATE_HZ <= _small_int(rate_text) <= MAX_SAMPLE_RATE_HZ:
        raise ProtocolError(
            "bad_request",
            f"sample_rate must be an integer from {MIN_SAMPLE_RATE_HZ} to "
            f"{MAX_SAMPLE_RATE_HZ}, got {rate_text[:40]!r}",
        )
    encoding = query.get("encoding", "pcm_s16le")
    if encoding not in ENCODINGS:
        raise ProtocolError(
            "bad_request",
            f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding[:40]!r}",
        )
    interim_text = query.get("interim_ms", "0")
    interim_ms = _small_int(interim_text)
    if interim_ms != 0 and not MIN_INTERIM_MS <= interim_ms <= MAX_INTERIM_MS:
        raise ProtocolError(
            "bad_request",
            f"interim_ms must be 0 (off) or an integer from {MIN_INTERIM_MS} to "
            f"{MAX_INTERIM_MS}, got {interim_text[:40]!r}",
        )
    channels_text = query.get("channels")
    channels = None if channels_text is None else _small_int(channels_text)
    if channels is not None and channels not in CHANNEL_COUNTS:
        raise ProtocolError(
            "bad_request",
            f"channels must be 1 or 2, got {str(channels_text)[:40]!r}",
        )
    return StreamParams(
        int(rate_text),
        encoding,
        query.get("token"),
        interim_ms,
        parse_quality(query),
        channels,
    )


def parse_quality(query: Mapping[str, str]) -> int | None:
    """The ``quality`` parameter: 0 or 1, or None when it was not sent."""
    text = query.get("quality")
    if text is None:
        return None
    if text not in ("0", "1"):
        raise ProtocolError("bad_request", f"quality must be 0 or 1, got {text[:40]!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class Flush:
    pass


@dataclass(frozen=True, slots=True)
class End:
    pass


ClientMessage = Flush | End
_CLIENT_TYPES: dict[str, ClientMessage] = {"flush": Flush(), "end": End()}


def parse_client_message(text: str) -> ClientMessage:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_message", f"text frame is not JSON: {exc.msg}") from exc
    except RecursionError:  # the decoder recurses once per level of nesting
        raise ProtocolError("bad_message", "text frame is JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError(
            "bad_message", f"text frame must be a JSON object, got {type(data).__name__}"
        )
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _CLIENT_TYPES:
        raise ProtocolError(
            "bad_message",
            f"unknown message type {str(kind)[:40]!r}; expected one of {', '.join(_CLIENT_TYPES)}",
        )
    return _CLIENT_TYPES[kind]


# Server → client messages. ``to_json`` is the one place where they are serialised.


@dataclass(frozen=True, slots=True)
class Ready:
    session: str
    model: dict[str, Any]
    sample_rate: int
    encoding: str
    limits: dict[str, int]
    interim_ms: int = 0
    channels: int | None = None  # echoed only when the client sent it
    protocol: int = PROTOCOL_VERSION
    quality: int | None = None  # echoed only when the client sent it
    type: str = field(default="ready", init=False)


@dataclass(frozen=True, slots=True)
class SpeechStart:
    t_ms: int
    channel: int | None = None  # with channels=2 only
    type: str = field(default="speech_start", init=False)


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    t_ms: int
    channel: int | None = None
    type: str = field(default="speech_end", init=False)


@dataclass(frozen=True, slots=True)
class Result:
    segment: int
    start_ms: int
    end_ms: int
    label: str
    confidence: float
    scores: dict[str, float]
    model_version: str
    latency_ms: int
    channel: int | None = None
    # With quality=1 only (see server/quality.py); None leaves them out of the message.
    quality: dict[str, float] | None = None
    warnings: list[str] | None = None
    uncertain: bool | None = None
    type: str = field(default="result", init=False)


@dataclass(frozen=True, slots=True)
class Partial:
    """A provisional classification of segment ``segment`` so far (opt-in with interim_ms)."""

    segment: int
    start_ms: int
    end_ms: int
    label: str
    confidence: float
    scores: dict[str, float]
    model_version: str
    latency_ms: int
    channel: int | None = None
    # With quality=1 only (see server/quality.py); None leaves them out of the message.
    quality: dict[str, float] | None = None
    warnings: list[str] | None = None
    uncertain: bool | None = None
    type: str = field(default="partial", init=False)


@dataclass(frozen=True, slots=True)
class Skipped:
    segment: int
    start_ms: int
    end_ms: int
    reason: SkipReason
    channel: int | None = None
    type: str = field(default="skipped", init=False)


@dataclass(frozen=True, slots=True)
class Error:
    code: ErrorCode
    message: str
    type: str = field(default="error", init=False)


@dataclass(frozen=True, slots=True)
class EndOfStream:
    segments: int
    audio_ms: int
    type: str = field(default="end", init=False)


ServerMessage = Ready | SpeechStart | SpeechEnd | Result | Partial | Skipped | Error | EndOfStream
SegmentOutcome = Result | Skipped


# Optional fields that are left out of the message while they are None (opt-in fields).
_OPTIONAL = ("channel", "channels", "quality", "warnings", "uncertain")


def _present(data: dict[str, Any]) -> dict[str, Any]:
    for name in _OPTIONAL:
        if name in data and data[name] is None:
            del data[name]
    return data


def to_dict(message: ServerMessage) -> dict[str, Any]:
    data = _present(asdict(message))
    kind = data.pop("type")
    return {"type": kind, **data}


def to_json(message: ServerMessage) -> str:
    return json.dumps(to_dict(message), separators=(",", ":"))


def outcome_body(outcome: SegmentOutcome) -> dict[str, Any]:
    """A result or skipped object without ``type``, as in upload replies."""
    data = _present(asdict(outcome))
    data.pop("type")
    return data
