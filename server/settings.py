"""One settings object, read from ``EMOSTREAM_*`` environment variables (see README)."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_type_hints

from pydantic import Field, SecretStr, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import vad
from classifier.model import VARIANT_PATTERN

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Decoded samples (frames × channels) an upload may hold: 10 minutes of 48 kHz stereo. This
# bounds the decoding work, which duration alone does not (384 kHz × 8 channels is 64 times
# as much work per second as 48 kHz mono).
MAX_UPLOAD_SAMPLES = 600 * 48_000 * 2


# EMOSTREAM_<setting> -> SegmenterConfig field. Defaults and bounds are the config's own
# (one definition, in vad/config.py); the settings only rename them.
VAD_SETTINGS = {
    "vad_detector": "detector",
    "vad_threshold": "speech_threshold",
    "vad_threshold_hysteresis": "threshold_hysteresis",
    "vad_aggressiveness": "aggressiveness",
    "vad_frame_ms": "frame_ms",
    "vad_start_ms": "start_ms",
    "vad_hangover_ms": "hangover_ms",
    "vad_short_hangover_ms": "short_hangover_ms",
    "vad_short_hangover_after_ms": "short_hangover_after_ms",
    "vad_pre_padding_ms": "pre_padding_ms",
    "vad_post_padding_ms": "post_padding_ms",
    "vad_babble_gate_db": "babble_gate_db",
    "max_segment_ms": "max_segment_ms",
    "min_segment_ms": "min_segment_ms",
}
_CONFIG_NAME = re.compile(r"\b(" + "|".join(VAD_SETTINGS.values()) + r")\b")
_SETTING_OF = {field: setting for setting, field in VAD_SETTINGS.items()}


def _vad_fields() -> dict[str, Any]:
    """The VAD settings' pydantic fields: each config field's type and default."""
    types = get_type_hints(vad.SegmenterConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(vad.SegmenterConfig)}
    return {setting: (types[field], defaults[field]) for setting, field in VAD_SETTINGS.items()}


# The VAD settings are made from the table above, not written out: a new SegmenterConfig
# knob is one line in VAD_SETTINGS. (mypy sees a plain BaseSettings: nothing in the server
# reads these fields by name, segmenter_config() does it for all of them.)
if TYPE_CHECKING:
    _VadSettings = BaseSettings
else:
    _VadSettings = create_model("_VadSettings", __base__=BaseSettings, **_vad_fields())


_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(_VadSettings):
    model_config = SettingsConfigDict(env_prefix="EMOSTREAM_", extra="forbid", frozen=True)

    # Model and inference pool
    model_dir: Path = BUNDLED_MODEL_DIR
    workers: int = Field(default=2, ge=1, le=64)
    intra_op_threads: int = Field(default=1, ge=1, le=64)
    lone_intra_op_threads: int = Field(default=2, ge=0, le=64)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    # Which of the model directory's graphs runs: auto, default or a variant name
    # (classifier/selection.py, docs/deployment.md).
    graph: str = Field(default="auto", pattern=VARIANT_PATTERN)
    queue_size: int = Field(default=64, ge=0, le=10_000)
    queue_timeout_ms: int = Field(default=2000, ge=1, le=60_000)
    # Up to this many waiting segments of one class and exactly equal length share one model
    # call (server/pool.py); 1: every segment runs alone.
    batch_max: int = Field(default=1, ge=1, le=64)
    max_pending_segments: int = Field(default=4, ge=1, le=1000)

    # Segmentation: the VAD_SETTINGS fields (from _VadSettings), and these.
    # Silero: at most this many streams' frames in one model call (vad/batch.py); 0: each
    # stream runs the model on its own frames, one call per frame.
    vad_batch: int = Field(default=64, ge=0, le=1024)
    # A Silero ONNX file elsewhere than the pinned package's (it must still be that file).
    vad_model_path: Path | None = None
    # Classify an utterance's last segment as its silence begins (server/early.py).
    early_endpoint: bool = True

    # Limits
    max_connections: int = Field(default=200, ge=1, le=100_000)
    max_connections_per_ip: int = Field(default=10, ge=1, le=100_000)
    max_frame_bytes: int = Field(default=65_536, ge=64, le=16 * 1024 * 1024)
    max_stream_ms: int = Field(default=3_600_000, ge=1000)
    idle_timeout_ms: int = Field(default=30_000, ge=100)
    max_upload_bytes: int = Field(default=26_214_400, ge=1024)
    max_upload_ms: int = Field(default=600_000, ge=1000)
    max_upload_samples: int = Field(default=MAX_UPLOAD_SAMPLES, ge=16_000)
    max_uploads: int = Field(default=4, ge=1, le=1000)
    max_uploads_per_ip: int = Field(default=2, ge=1, le=1000)
    # Upload bodies being received at once (the classify slots above are taken only once
    # a body is complete), and the slowest body that may hold one after a grace period.
    max_upload_bodies: int = Field(default=16, ge=1, le=10_000)
    min_body_rate_bytes_s: int = Field(default=4096, ge=0)
    body_rate_grace_s: float = Field(default=5.0, ge=0)
    decode_workers: int = Field(default=1, ge=1, le=16)
    max_http_requests: int = Field(default=64, ge=1, le=100_000)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    ws_ping_timeout_s: float = Field(default=20.0, gt=0)
    shutdown_timeout_s: float = Field(default=10.0, ge=0)

    # Per-connection message budgets (server/budget.py, docs/protocol.md): beyond them
    # `limit`, close 1008. Audio beyond the speed is read later, never refused.
    max_frames_per_s: int = Field(default=5000, ge=1, le=1_000_000)
    max_texts_per_s: int = Field(default=20, ge=1, le=100_000)
    message_burst_s: float = Field(default=2.0, gt=0, le=3600)
    max_bad_messages: int = Field(default=10, ge=0, le=100_000)
    bad_message_window_s: float = Field(default=10.0, gt=0, le=3600)
    max_stream_speed: float = Field(default=20.0, ge=1, le=10_000)

    # Access
    token: SecretStr | None = None
    admin_token: SecretStr | None = None
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The site's own host names: when set, requests for any other Host are refused and only
    # these make the site's own origin (set them in production: DNS rebinding).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[IpNetwork], NoDecode] = Field(default_factory=list)
    # Peers (the direct one, never X-Forwarded-For) that may reach /admin/*: loopback, so
    # an operator calls it from inside the container or pod, never through the edge.
    admin_networks: Annotated[list[IpNetwork], NoDecode] = Field(
        default_factory=lambda: [
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ]
    )

    # Direct peers that may read /metrics (never through a proxy: a request carrying
    # X-Forwarded-For is refused); others get 404.
    metrics_networks: Annotated[list[IpNetwork], NoDecode] = Field(
        default_factory=lambda: [
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ]
    )
    # IPv6 clients are counted by this prefix of their address (one host is given a /64).
    ipv6_client_prefix: int = Field(default=64, ge=1, le=128)

    # How long a thread may hold the GIL while another waits for it (sys.setswitchinterval).
    # Python's 5 ms lets the upload threads' Python work hold up the event loop at each of
    # its many GIL hand-offs (every socket call), every connection's frames with it.
    gil_switch_interval_ms: float = Field(default=0.5, ge=0.05, le=100)
    # glibc's heap (server/heap.py): audio buffers from this size up stay on mmap and go back
    # to the system when freed, and at most this many arenas keep free space (0: glibc's own).
    malloc_mmap_threshold_kb: int = Field(default=128, ge=0, le=32768)
    malloc_arena_max: int = Field(default=2, ge=0, le=64)

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("token", "admin_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_variables(cls, data: object) -> object:
        known = {f"EMOSTREAM_{name.upper()}" for name in cls.model_fields}
        unknown = sorted(
            k for k in os.environ if k.upper().startswith("EMOSTREAM_") and k.upper() not in known
        )
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)}; see the README for the names"
            )
        return data

    @field_validator("allowed_origins", "allowed_hosts", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not _HOST_NAME.fullmatch(host):
                raise ValueError(
                    f"allowed host {host!r} must be a host name or IP address, "
                    "without scheme, port or path"
                )
        return [host.lower().strip("[]") for host in hosts]

    @field_validator("trusted_proxies", "admin_networks", "metrics_networks", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        items = _split_csv(value)
        if isinstance(items, list):
            return [ipaddress.ip_network(str(item), strict=False) for item in items]
        return items

    @field_validator("allowed_origins")
    @classmethod
    def _origin_form(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ValueError(
                    f"allowed origin {origin!r} must look like https://host[:port] (no path)"
                )
        return [origin.lower() for origin in origins]

    @model_validator(mode="after")
    def _segmenter_fits(self) -> Settings:
        self.segmenter_config()  # the VAD's own checks, in the settings' names
        return self

    def segmenter_config(self) -> vad.SegmenterConfig:
        values = {field: getattr(self, setting) for setting, field in VAD_SETTINGS.items()}
        try:
            return vad.SegmenterConfig(**values)
        except ValueError as exc:
            message = _CONFIG_NAME.sub(
                lambda m: "EMOSTREAM_" + _SETTING_OF[m.group(1)].upper(), str(exc)
            )
            raise ValueError(message) from None
