"""The page streaming a fake microphone to the real server, in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soxr
from playwright.sync_api import expect

from tests.speech import espeak, silence, tone
from tests.web.conftest import LaunchFn, Served, write_wav
from tests.web.pages import (
    PHRASES,
    download_text,
    loaded,
    page_rows,
    phrases,
    record_frames,
    segment_frames,
    speaking_runs,
    stop,
    wait_captured,
)
from tests.web.signals import Float, align, assert_same_audio, dominant_hz, rms

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def speech() -> Float:
    return phrases(len(PHRASES))


def test_streams_speech_and_shows_what_the_server_sent(
    server: Served, launch: LaunchFn, tmp_path: Path, speech: Float, screenshots: Path
) -> None:
    wav = write_wav(tmp_path / "speech.wav", speech, 16000)
    server.tap.connections.clear()
    with launch(wav) as page:
        frames = record_frames(page)
        loaded(page, server.url + "/")
        page.click("#start")
        expect(page.locator("#conn-status")).to_have_text("Live")
        wait_captured(page, len(speech) / 16 + 300)
        page.screenshot(path=screenshots / "live-desktop.png", full_page=True)
        stop(page)

        # the server got the microphone's audio, at 16 kHz, intact
        assert len(server.tap.connections) == 1
        received = server.tap.audio(0)
        captured_ms = int(page.get_attribute("#captured", "data-ms") or 0)
        assert abs(len(received) - captured_ms * 16) <= 16
        assert rms(received) > 0.01, "the server received silence"
        assert_same_audio(received, speech)

        # the page shows exactly the segments the server sent, in order
        assert frames[0]["type"] == "ready"
        assert [f for f in frames if f["type"] == "error"] == []  # no limit tripped
        assert frames[-1]["type"] == "end"
        sent = segment_frames(frames)
        assert len([f for f in sent if f["type"] == "result"]) >= len(PHRASES)
        assert frames[-1]["segments"] == len(sent)
        assert page_rows(page) == [[f.get("label", ""), f.get("reason", ""), "live"] for f in sent]
        exported = json.loads(download_text(page, "#export-json"))
        assert [
            (s["start_ms"], s["end_ms"], s["label"], s["latency_ms"]) for s in exported["segments"]
        ] == [(f["start_ms"], f["end_ms"], f.get("label"), f.get("latency_ms")) for f in sent]
        csv_lines = download_text(page, "#export-csv").strip().split("\r\n")
        assert len(csv_lines) == len(sent) + 1

        # model, readout, latency and the announcement match the last result
        ready = frames[0]["model"]
        expect(page.locator("#model-info")).to_contain_text(
            f"{ready['name']} · version {ready['version']}"
        )
        last = [f for f in sent if f["type"] == "result"][-1]
        expect(page.locator("#current-label")).to_have_text(last["label"].capitalize())
        expect(page.locator("#current-meta")).to_contain_text(f"latency {last['latency_ms']} ms")
        # an uncertain result (quality=1) is announced as "Possibly <label>"
        spoken = f"Possibly {last['label']}" if last["uncertain"] else last["label"].capitalize()
        expect(page.locator("#announcer")).to_contain_text(spoken)

        # the speaking indicator followed speech_start / speech_end
        starts = [f for f in frames if f["type"] == "speech_start"]
        assert len(starts) >= len(PHRASES)
        assert speaking_runs(page).count("true") == len(starts)

        # the chart has one point per class for each result, at the live edge
        results = [f for f in sent if f["type"] == "result"]
        chart = page.locator("#chart")
        expect(chart).to_have_attribute("data-points", str(len(results)))
        # the smoothed view plots the smoothed scores, one point per classified segment
        page.check("#smooth")
        expect(chart).to_have_attribute("data-series", "smoothed")
        expect(chart).to_have_attribute("data-points", str(len(results)))
        expect(page.locator("#current-meta")).to_contain_text("Smoothed")


FORCE_RATE_SCRIPT = """
const Native = window.AudioContext;
window.AudioContext = class extends Native {
  constructor(options = {}) { super({ ...options, sampleRate: %d }); }
};
"""


@pytest.mark.parametrize("context_rate", [44100, 48000])
def test_resamples_the_context_rate_to_16k(
    server: Served, launch: LaunchFn, tmp_path: Path, context_rate: int
) -> None:
    rate = 48000
    source = np.concatenate(
        [
            silence(0.4, rate),
            tone(1.0, 1000.0, rate),
            silence(0.3, rate),
            tone(1.0, 11000.0, rate),  # above 8 kHz: must not come back as a 5 kHz alias
            silence(0.3, rate),
            espeak(PHRASES[0], rate_wpm=170, sample_rate=rate),
            silence(0.5, rate),
        ]
    )
    wav = write_wav(tmp_path / "tones.wav", source, rate)
    reference = soxr.resample(source, rate, 16000).astype(np.float32)
    server.tap.connections.clear()
    with launch(wav) as page:
        page.add_init_script(FORCE_RATE_SCRIPT % context_rate)
        loaded(page, server.url + "/")
        page.click("#start")
        wait_captured(page, len(reference) / 16 + 300)
        stop(page)
        expect(page.locator("#context-rate")).to_contain_text(f"{context_rate} Hz → 16000 Hz")

    received = server.tap.audio(0)
    lag, _ = align(received, reference)
    assert_same_audio(received, reference)
    tone_at = received[lag + 8000 : lag + 20000]  # 0.5 s to 1.25 s: inside the 1 kHz tone
    alias_at = received[lag + 29000 : lag + 41000]  # inside the 11 kHz tone
    assert dominant_hz(tone_at, 16000) == pytest.approx(1000.0, abs=2.0)
    assert rms(tone_at) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    assert rms(alias_at) < 0.01 * rms(tone_at), "11 kHz aliased into the 16 kHz stream"
