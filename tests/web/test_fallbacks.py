"""Failure modes and fallbacks, each with its message and its way out, in headless Chromium."""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from server.settings import Settings
from tests.speech import wav_bytes
from tests.web.conftest import LaunchFn, Served, SettingsFn, free_port, serve, write_wav
from tests.web.pages import (
    download_text,
    loaded,
    page_rows,
    phrases,
    record_frames,
    segment_frames,
    stop,
    wait_captured,
)
from tests.web.signals import assert_same_audio, rms

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DROP_SCRIPT = """
([b64, name]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: "audio/wav" }));
  const zone = document.getElementById("drop");
  for (const type of ["dragenter", "dragover", "drop"]) {
    const init = { dataTransfer: transfer, bubbles: true, cancelable: true };
    zone.dispatchEvent(new DragEvent(type, init));
  }
}
"""


def upload_reply(page: Page, action: Any) -> Any:
    with page.expect_response(re.compile(r"/v1/classify(\?quality=1)?$")) as info:
        action()
    response = info.value
    assert response.status == 200
    return response.json()


def message(page: Page, title: str) -> None:
    expect(page.locator("#message")).to_be_visible()
    expect(page.locator("#message-title")).to_have_text(title)


def test_upload_by_button_and_by_drop_lands_in_the_timeline(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    audio = phrases(2)
    path = tmp_path / "two phrases.wav"
    path.write_bytes(wav_bytes(audio))
    with launch() as page:
        loaded(page, server.url + "/")
        first = upload_reply(page, lambda: page.set_input_files("#file", path))
        assert len(first["segments"]) >= 2
        expect(page.locator("#segments-body tr")).to_have_count(len(first["segments"]))
        expect(page.locator("#upload-status")).to_contain_text("two phrases.wav")

        data = base64.b64encode(wav_bytes(audio)).decode()
        second = upload_reply(page, lambda: page.evaluate(DROP_SCRIPT, [data, "dropped.wav"]))
        total = len(first["segments"]) + len(second["segments"])
        expect(page.locator("#segments-body tr")).to_have_count(total)

        segments = first["segments"] + second["segments"]
        expected = [[s.get("label", ""), s.get("reason", ""), "upload"] for s in segments]
        assert page_rows(page) == expected
        classified = len([s for s in segments if "label" in s])
        expect(page.locator("#chart")).to_have_attribute("data-points", str(classified))
        exported = json.loads(download_text(page, "#export-json"))

    # the dropped file follows the first one on the timeline, its segments shifted as a whole
    count = len(first["segments"])
    placed = exported["segments"]
    first_end = max(s["end_ms"] for s in placed[:count])
    shift = placed[count]["start_ms"] - second["segments"][0]["start_ms"]
    assert shift >= first_end
    assert [s["start_ms"] - shift for s in placed[count:]] == [
        s["start_ms"] for s in second["segments"]
    ]
    origins = [s["origin"] for s in placed]
    assert origins == ["two phrases.wav"] * count + ["dropped.wav"] * len(second["segments"])
    shares = [item["share"] for item in exported["summary"]["byLabel"].values()]
    assert sum(shares) == pytest.approx(1.0)


def test_upload_of_a_non_audio_file_says_why(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not audio at all")
    with launch() as page:
        loaded(page, server.url + "/")
        page.set_input_files("#file", path)
        message(page, "Could not analyse notes.txt")
        expect(page.locator("#message-text")).not_to_be_empty()
        expect(page.locator("#segments-body tr")).to_have_count(0)
        expect(page.locator("#file")).to_be_enabled()


def wav_in(body: bytes) -> bytes:
    start = body.index(b"RIFF")
    size = int.from_bytes(body[start + 4 : start + 8], "little") + 8
    return body[start : start + size]


def test_blocked_websocket_records_in_the_browser_and_uploads(
    web_settings: Settings, launch: LaunchFn, tmp_path: Path
) -> None:
    audio = phrases(2)
    wav = write_wav(tmp_path / "speech.wav", audio, 16000)
    with serve(web_settings, block_websockets=True) as blocked, launch(wav) as page:
        loaded(page, blocked.url + "/")
        page.click("#start")
        message(page, "Live analysis is not available here")
        expect(page.locator("#conn-status")).to_have_text("Recording (offline)")
        wait_captured(page, len(audio) / 16 + 300)
        reply = upload_reply(page, lambda: page.click("#message-actions button"))
        message(page, "Recording analysed")
        rows = page_rows(page)

    assert len(blocked.tap.uploads) == 1
    uploaded = wav_in(bytes(blocked.tap.uploads[0]))
    recorded, rate = sf.read(io.BytesIO(uploaded), dtype="float32")
    info = sf.info(io.BytesIO(uploaded))
    assert (rate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert rms(recorded) > 0.01
    # window by window: a capture quantum Chromium drops on a busy host is not the page's fault
    assert_same_audio(recorded, audio)
    assert len(rows) == len(reply["segments"]) >= 2
    assert {row[2] for row in rows} == {"recording"}


def test_permission_denied_explains_and_recovers_when_allowed(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "speech.wav", phrases(1), 16000)
    with launch(wav, fake_ui=False) as page:
        loaded(page, server.url + "/")
        page.click("#start")
        message(page, "Microphone access is blocked")
        expect(page.locator("#message-text")).to_contain_text(
            "Allow this site to use the microphone"
        )
        page.context.grant_permissions(["microphone"], origin=server.url)
        page.get_by_role("button", name="Try again").click()
        expect(page.locator("#conn-status")).to_have_text("Live")
        expect(page.locator("#message")).to_be_hidden()
        stop(page)


def test_no_microphone_says_so(server: Served, launch: LaunchFn) -> None:
    with launch(fake_device=False) as page:
        loaded(page, server.url + "/")
        page.click("#start")
        message(page, "No microphone found")
        expect(page.get_by_role("button", name="Try again")).to_be_visible()


def test_insecure_context_explains_https_and_still_uploads(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    path = tmp_path / "speech.wav"
    path.write_bytes(wav_bytes(phrases(1)))
    rules = "--host-resolver-rules=MAP emostream.test 127.0.0.1"
    with launch(args=(rules,)) as page:
        loaded(page, f"http://emostream.test:{server.port}/")
        assert page.evaluate("window.isSecureContext") is False
        message(page, "This page needs a secure connection")
        expect(page.locator("#message-text")).to_contain_text("HTTPS")
        expect(page.locator("#start")).to_be_disabled()
        reply = upload_reply(page, lambda: page.set_input_files("#file", path))
        expect(page.locator("#segments-body tr")).to_have_count(len(reply["segments"]))


def test_server_at_capacity_retries_until_a_slot_frees(
    make_settings: SettingsFn, launch: LaunchFn, tmp_path: Path, screenshots: Path
) -> None:
    settings = make_settings(max_connections=1)
    wav = write_wav(tmp_path / "speech.wav", phrases(3), 16000)
    phone = {"width": 390, "height": 844}
    with serve(settings) as full, launch(wav, viewport=phone) as page:
        with connect(full.url.replace("http", "ws") + "/v1/stream") as holder:
            assert '"ready"' in str(holder.recv(timeout=10))
            frames = record_frames(page)
            loaded(page, full.url + "/")
            page.click("#start")
            message(page, "The server is busy or restarting")
            expect(page.locator("#conn-status")).to_have_text("Server busy")
            page.screenshot(path=screenshots / "busy-phone.png", full_page=True)
        expect(page.locator("#conn-status")).to_have_text("Live", timeout=20_000)
        expect(page.locator("#message")).to_be_hidden()
        expect(page.locator("#segments-body tr").first).to_be_attached(timeout=20_000)
        stop(page)
    busy = [f for f in frames if f["type"] == "error"]
    assert busy and all(f["code"] == "busy" for f in busy)
    assert len(page_rows(page)) == len(segment_frames(frames))


def test_server_restart_mid_session_reconnects_and_keeps_the_timeline(
    web_settings: Settings, launch: LaunchFn, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "speech.wav", phrases(5, pause_s=1.0), 16000)
    port = free_port()
    with launch(wav) as page:
        frames = record_frames(page)
        with serve(web_settings, port=port) as first:
            loaded(page, first.url + "/")
            page.click("#start")
            expect(page.locator("#segments-body tr").first).to_be_attached(timeout=20_000)
        before = page_rows(page)
        expect(page.locator("#message")).to_be_visible()
        expect(page.locator("#message-title")).to_have_text(
            re.compile("Connection lost|The server is busy or restarting")
        )
        with serve(web_settings, port=port):
            expect(page.locator("#conn-status")).to_have_text("Live", timeout=30_000)
            expect(page.locator("#message")).to_be_hidden()
            page.wait_for_function(
                f"document.querySelectorAll('#segments-body tr').length > {len(before)}",
                timeout=20_000,
            )
            stop(page)
        after = page_rows(page)
        exported = json.loads(download_text(page, "#export-json"))
    assert after[: len(before)] == before
    assert len([f for f in frames if f["type"] == "ready"]) == 2
    # what the page queued while away went at once on reconnecting, within the limits
    assert [f for f in frames if f["type"] == "error" and f["code"] == "limit"] == []
    assert len(after) == len(segment_frames(frames))
    spans = [(s["start_ms"], s["end_ms"]) for s in exported["segments"]]
    assert spans == sorted(spans), "segments after the reconnect must follow the earlier ones"
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))


def test_token_from_the_page_url_is_passed_on(
    make_settings: SettingsFn, launch: LaunchFn, tmp_path: Path
) -> None:
    settings = make_settings(token="s3cret-token")
    wav = write_wav(tmp_path / "speech.wav", phrases(1), 16000)
    with serve(settings) as guarded, launch(wav) as page:
        loaded(page, guarded.url + "/")
        message(page, "Access token needed")
        page.click("#start")
        message(page, "Live analysis stopped")
        expect(page.locator("#message-text")).to_contain_text("access token")

        loaded(page, guarded.url + "/?token=s3cret-token")
        expect(page.locator("#model-info")).to_contain_text("tiny")
        page.click("#start")
        expect(page.locator("#conn-status")).to_have_text("Live")
        stop(page)
