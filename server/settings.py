"""One settings object, read from ``EMOSTREAM_*`` environment variables (see README)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import vad
from server.upload import MAX_DECODED_SAMPLES

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMOSTREAM_", extra="forbid", frozen=True)

    # Model and inference pool
    model_dir: Path = BUNDLED_MODEL_DIR
    workers: int = Field(default=2, ge=1, le=64)
    intra_op_threads: int = Field(default=1, ge=1, le=64)
    lone_intra_op_threads: int = Field(default=2, ge=0, le=64)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    queue_size: int = Field(default=64, ge=0, le=10_000)
    queue_timeout_ms: int = Field(default=2000, ge=1, le=60_000)
    max_pending_segments: int = Field(default=4, ge=1, le=1000)

    # Segmentation
    vad_aggressiveness: int = Field(default=2, ge=0, le=3)
    vad_frame_ms: int = 30
    vad_start_ms: int = Field(default=240, ge=10, le=5000)
    vad_hangover_ms: int = Field(default=600, ge=10, le=10_000)
    vad_pre_padding_ms: int = Field(default=200, ge=0, le=2000)
    vad_post_padding_ms: int = Field(default=100, ge=0, le=2000)
    max_segment_ms: int = Field(default=3000, ge=500, le=30_000)
    min_segment_ms: int = Field(default=500, ge=0, le=30_000)

    # Limits
    max_connections: int = Field(default=200, ge=1, le=100_000)
    max_connections_per_ip: int = Field(default=10, ge=1, le=100_000)
    max_frame_bytes: int = Field(default=65_536, ge=64, le=16 * 1024 * 1024)
    max_stream_ms: int = Field(default=3_600_000, ge=1000)
    idle_timeout_ms: int = Field(default=30_000, ge=100)
    max_upload_bytes: int = Field(default=26_214_400, ge=1024)
    max_upload_ms: int = Field(default=600_000, ge=1000)
    max_upload_samples: int = Field(default=MAX_DECODED_SAMPLES, ge=16_000)
    max_uploads: int = Field(default=4, ge=1, le=1000)
    max_uploads_per_ip: int = Field(default=2, ge=1, le=1000)
    decode_workers: int = Field(default=1, ge=1, le=16)
    max_http_requests: int = Field(default=64, ge=1, le=100_000)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    ws_ping_interval_s: float = Field(default=20.0, gt=0)
    ws_ping_timeout_s: float = Field(default=20.0, gt=0)
    shutdown_timeout_s: float = Field(default=10.0, ge=0)

    # Access
    token: SecretStr | None = None
    admin_token: SecretStr | None = None
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[IpNetwork], NoDecode] = Field(default_factory=list)

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("vad_frame_ms")
    @classmethod
    def _frame(cls, value: int) -> int:
        if value not in (10, 20, 30):
            raise ValueError(f"vad_frame_ms must be 10, 20 or 30, got {value}")
        return value

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

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("trusted_proxies", mode="before")
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
        if self.min_segment_ms >= self.max_segment_ms:
            raise ValueError(
                f"min_segment_ms ({self.min_segment_ms}) must be below "
                f"max_segment_ms ({self.max_segment_ms})"
            )
        self.segmenter_config()  # the VAD's own checks name the conflicting values
        return self

    def segmenter_config(self) -> vad.SegmenterConfig:
        return vad.SegmenterConfig(
            frame_ms=self.vad_frame_ms,  # type: ignore[arg-type]
            aggressiveness=self.vad_aggressiveness,
            start_ms=self.vad_start_ms,
            hangover_ms=self.vad_hangover_ms,
            pre_padding_ms=self.vad_pre_padding_ms,
            post_padding_ms=self.vad_post_padding_ms,
            max_segment_ms=self.max_segment_ms,
            min_segment_ms=self.min_segment_ms,
        )
