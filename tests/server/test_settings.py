"""The settings object (server/settings.py): EMOSTREAM_* environment, lists, validation."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

import vad
from server.settings import BUNDLED_MODEL_DIR, VAD_SETTINGS, Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("EMOSTREAM_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.model_dir == BUNDLED_MODEL_DIR
    assert s.max_segment_ms == 3000
    assert s.min_segment_ms == 500
    assert s.token is None
    assert s.allowed_origins == []
    assert s.trusted_proxies == []
    # The VAD defaults are SegmenterConfig's own; frame 0 means the detector's frame.
    assert (s.vad_detector, s.vad_frame_ms, s.vad_threshold) == ("silero", 0, 0.5)
    assert s.segmenter_config() == vad.SegmenterConfig()
    assert s.segmenter_config().frame_ms == 32


def test_every_vad_setting_is_a_segmenter_config_field(clean_env: pytest.MonkeyPatch) -> None:
    fields = {f.name for f in dataclasses.fields(vad.SegmenterConfig)}
    assert set(VAD_SETTINGS.values()) <= fields
    s = Settings(vad_detector="webrtc", vad_hangover_ms=450, vad_threshold=0.7)
    config = s.segmenter_config()
    for setting, field in VAD_SETTINGS.items():
        assert getattr(config, field) == getattr(s, setting) or field == "frame_ms"
    assert config.frame_ms == 30


def test_bad_vad_detector_is_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EMOSTREAM_VAD_DETECTOR", "rnnoise")
    with pytest.raises(ValidationError, match="vad_detector") as info:
        Settings()
    assert "'silero' or 'webrtc'" in str(info.value)


def test_environment_is_read_with_the_prefix(clean_env: pytest.MonkeyPatch) -> None:
    env = {
        "EMOSTREAM_MODEL_DIR": "/srv/models/v2",
        "EMOSTREAM_WORKERS": "3",
        "EMOSTREAM_MAX_SEGMENT_MS": "4000",
        "EMOSTREAM_VAD_AGGRESSIVENESS": "3",
        "EMOSTREAM_TOKEN": "s3cret",
        "EMOSTREAM_ALLOWED_ORIGINS": " https://App.Example.org, http://localhost:3000 ,",
        "EMOSTREAM_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1",
        "EMOSTREAM_LOG_LEVEL": "debug",
        "EMOSTREAM_WS_PING_INTERVAL_S": "2.5",
        "WORKERS": "9",  # no prefix: not ours
    }
    for key, value in env.items():
        clean_env.setenv(key, value)
    s = Settings()
    assert s.model_dir == Path("/srv/models/v2")
    assert s.workers == 3
    assert s.max_segment_ms == 4000
    assert s.vad_aggressiveness == 3
    assert isinstance(s.token, SecretStr)
    assert s.token.get_secret_value() == "s3cret"
    assert s.allowed_origins == ["https://app.example.org", "http://localhost:3000"]
    assert s.trusted_proxies == [
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ]
    assert s.log_level == "debug"
    assert s.ws_ping_interval_s == 2.5
    # Keyword arguments win over the environment.
    assert Settings(workers=5).workers == 5


def test_vad_frame_ms_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EMOSTREAM_VAD_DETECTOR", "webrtc")
    clean_env.setenv("EMOSTREAM_VAD_FRAME_MS", "20")
    assert Settings().vad_frame_ms == 20


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("WORKERS", "many"),
        ("WORKERS", "0"),
        ("VAD_FRAME_MS", "25"),
        ("VAD_AGGRESSIVENESS", "4"),
        ("MAX_FRAME_BYTES", "-1"),
        ("TRUSTED_PROXIES", "not-an-ip"),
        ("ALLOWED_ORIGINS", "https://example.com/path"),
        ("LOG_LEVEL", "verbose"),
        ("GRAPH_OPTIMIZATION", "max"),
    ],
)
def test_invalid_environment_value_names_the_key(
    clean_env: pytest.MonkeyPatch, key: str, value: str
) -> None:
    clean_env.setenv(f"EMOSTREAM_{key}", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert key.lower() in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"workers": 0}, "workers"),
        ({"workers": 65}, "workers"),
        ({"queue_size": -1}, "queue_size"),
        ({"max_segment_ms": 100}, "EMOSTREAM_MIN_SEGMENT_MS (500) must be below"),
        ({"max_segment_ms": 60_001}, "EMOSTREAM_MAX_SEGMENT_MS must be at most 60000"),
        ({"vad_frame_ms": 15}, "EMOSTREAM_VAD_FRAME_MS must be one of (32,) for silero"),
        ({"vad_threshold": 1.5}, "EMOSTREAM_VAD_THRESHOLD must be in (0, 1)"),
        ({"vad_hangover_ms": 0}, "EMOSTREAM_VAD_HANGOVER_MS must be an integer >= 1"),
        (
            {"vad_hangover_ms": 150},
            "EMOSTREAM_VAD_SHORT_HANGOVER_MS (200) must be below EMOSTREAM_VAD_HANGOVER_MS (150)",
        ),
        (
            {"vad_short_hangover_ms": -1},
            "EMOSTREAM_VAD_SHORT_HANGOVER_MS must be an integer >= 0",
        ),
        (
            {"vad_short_hangover_after_ms": -5},
            "EMOSTREAM_VAD_SHORT_HANGOVER_AFTER_MS must be an integer >= 0",
        ),
        ({"vad_aggressiveness": 4}, "EMOSTREAM_VAD_AGGRESSIVENESS must be one of"),
        ({"max_upload_bytes": 10}, "max_upload_bytes"),
        ({"idle_timeout_ms": 0}, "idle_timeout_ms"),
        ({"trusted_proxies": ["1.2.3.4/33"]}, "trusted_proxies"),
        ({"allowed_origins": ["example.com"]}, "allowed_origins"),
        ({"allowed_origins": ["ftp://example.com"]}, "allowed_origins"),
        ({"workerz": 2}, "workerz"),
    ],
)
def test_invalid_value_names_the_key(
    clean_env: pytest.MonkeyPatch, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**kwargs)
    assert named in str(info.value)


def test_origin_error_quotes_the_value(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match=r"'https://a\.example/app'"):
        Settings(allowed_origins=["https://a.example/app"])


@pytest.mark.parametrize(("min_ms", "max_ms"), [(3000, 3000), (4000, 3000), (30_000, 500)])
def test_min_segment_must_be_below_max_segment(
    clean_env: pytest.MonkeyPatch, min_ms: int, max_ms: int
) -> None:
    with pytest.raises(ValidationError, match=f"EMOSTREAM_MIN_SEGMENT_MS \\({min_ms}\\)") as info:
        Settings(min_segment_ms=min_ms, max_segment_ms=max_ms)
    assert f"EMOSTREAM_MAX_SEGMENT_MS ({max_ms})" in str(info.value)


def test_min_just_below_max_is_accepted(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings(min_segment_ms=2999, max_segment_ms=3000)
    assert (s.min_segment_ms, s.max_segment_ms) == (2999, 3000)


def test_lists_as_keywords(clean_env: pytest.MonkeyPatch) -> None:
    text: dict[str, Any] = {"allowed_origins": "https://a.example,https://b.example:8443"}
    s = Settings(**text)
    assert s.allowed_origins == ["https://a.example", "https://b.example:8443"]
    networks: dict[str, Any] = {"trusted_proxies": ["192.168.1.7/24"]}
    s = Settings(**networks)
    assert s.trusted_proxies == [ipaddress.ip_network("192.168.1.0/24")]


def test_settings_are_frozen(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.workers = 4


def test_token_is_not_shown(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings(token=SecretStr("s3cret-value"), admin_token=SecretStr("adm1n-value"))
    assert "s3cret-value" not in repr(s)
    assert "adm1n-value" not in str(s.model_dump())


def test_vad_frame_ms_must_be_a_webrtcvad_frame(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EMOSTREAM_VAD_DETECTOR", "webrtc")
    clean_env.setenv("EMOSTREAM_VAD_FRAME_MS", "25")
    message = r"EMOSTREAM_VAD_FRAME_MS must be one of \(10, 20, 30\) for webrtc, got 25"
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_misspelled_variable_is_named(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EMOSTREAM_WORKER", "3")
    with pytest.raises(ValidationError, match="EMOSTREAM_WORKER"):
        Settings()


@pytest.mark.parametrize("name", ["EMOSTREAM_TOKEN", "EMOSTREAM_ADMIN_TOKEN"])
def test_empty_token_means_unset(clean_env: pytest.MonkeyPatch, name: str) -> None:
    clean_env.setenv(name, "")
    settings = Settings()
    assert settings.token is None and settings.admin_token is None


def test_allowed_hosts_are_host_names(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EMOSTREAM_ALLOWED_HOSTS", "Emo.Example.com, 10.0.0.5,[::1]")
    assert Settings().allowed_hosts == ["emo.example.com", "10.0.0.5", "::1"]


@pytest.mark.parametrize(
    "host", ["https://emo.example.com", "emo.example.com:443", "a/b", "-x", "a b"]
)
def test_allowed_hosts_refuse_what_is_not_a_host_name(host: str) -> None:
    with pytest.raises(ValidationError, match="allowed host"):
        Settings(allowed_hosts=[host])


@pytest.mark.parametrize("bad", ["-1", "1025", "many"])
def test_the_vad_batch_is_bounded(clean_env: pytest.MonkeyPatch, bad: str) -> None:
    assert Settings().vad_batch == 64
    clean_env.setenv("EMOSTREAM_VAD_BATCH", bad)
    with pytest.raises(ValidationError, match="vad_batch"):
        Settings()


@pytest.mark.parametrize("bad", ["-1", "31", "loud", "nan"])
def test_a_bad_babble_gate_is_refused_in_the_settings_name(
    clean_env: pytest.MonkeyPatch, bad: str
) -> None:
    clean_env.setenv("EMOSTREAM_VAD_BABBLE_GATE_DB", bad)
    with pytest.raises(ValidationError, match=r"(?i)vad_babble_gate_db"):
        Settings()


def test_the_babble_gate_setting_reaches_the_segmenter(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().segmenter_config().babble_gate_db == 6.0
    clean_env.setenv("EMOSTREAM_VAD_BABBLE_GATE_DB", "0")
    assert Settings().segmenter_config().babble_gate_db == 0.0


def test_vad_settings_are_made_from_the_config_table() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(vad.SegmenterConfig)}
    for setting, field in VAD_SETTINGS.items():
        assert Settings.model_fields[setting].default == defaults[field], setting
    assert Settings(vad_hangover_ms=700).segmenter_config().hangover_ms == 700
