"""The page's own features in headless Chromium: the chart, sessions kept in the browser, the
analysing state, the theme and phone layout, the demo-model notice, keyboard and microphone."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Dialog, Page, expect

from server.settings import Settings
from tests.speech import espeak, silence, wav_bytes
from tests.web.conftest import LaunchFn, Served, serve, write_wav
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
from tests.web.pages import VIEWPORTS, overflow_px

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

# Logs, in order, the type of each message the page's WebSocket receives and each change of
# the speaking indicator's state, so the two can be read against each other.
EVENT_LOG_SCRIPT = """
window.__events = [];
const NativeSocket = window.WebSocket;
window.WebSocket = class extends NativeSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (event) => {
      if (typeof event.data === "string") window.__events.push(JSON.parse(event.data).type);
    });
  }
};
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("speaking");
  new MutationObserver(() => window.__events.push("state:" + el.dataset.speech))
    .observe(el, { attributes: true, attributeFilter: ["data-speech"] });
});
"""


def chart(page: Page) -> dict[str, str]:
    data: dict[str, str] = page.eval_on_selector("#chart", "el => ({...el.dataset})")
    return data


# The shown session's segments as the saved-sessions list reports them (from IndexedDB).
SAVED_AT_LEAST = """(n) => {
  const item = document.querySelector("#sessions li[data-current='true']");
  return item !== null && Number(item.dataset.segments) >= n;
}"""


def wait_saved(page: Page, count: int) -> None:
    expect(page.locator("#sessions li[data-current='true']")).to_have_attribute(
        "data-segments", str(count), timeout=10_000
    )


def exported(page: Page) -> list[dict[str, Any]]:
    segments: list[dict[str, Any]] = json.loads(download_text(page, "#export-json"))["segments"]
    return segments


def shape(segments: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What stays the same wherever a segment sits on the timeline."""
    return [
        (s.get("label"), s.get("reason", s.get("skipped")), s["end_ms"] - s["start_ms"])
        for s in segments
    ]


def test_chart_has_a_point_per_result_and_follows_the_live_edge(
    server: Served, launch: LaunchFn, tmp_path: Path, screenshots: Path
) -> None:
    speech = phrases(3)
    wav = write_wav(tmp_path / "speech.wav", speech, 16000)
    with launch(wav) as page:
        frames = record_frames(page)
        loaded(page, server.url + "/")
        page.select_option("#span", "10000")
        page.click("#start")
        expect(page.locator("#segments-body tr").first).to_be_attached(timeout=20_000)
        wait_captured(page, max(len(speech) / 16 + 300, 12_000))
        # while live, the window is the last 10 s and its end is the live edge
        edges = []
        for _ in range(3):
            captured = int(page.get_attribute("#captured", "data-ms") or 0)
            view = chart(page)
            assert view["follow"] == "true"
            start, end = int(view["viewStartMs"]), int(view["viewEndMs"])
            assert end - start == 10_000
            assert captured - 800 <= end <= captured + 100
            edges.append(end)
            page.wait_for_timeout(700)
        assert edges[0] < edges[1] < edges[2], "the window did not move with the live edge"
        page.screenshot(path=screenshots / "chart-live.png", full_page=True)
        stop(page)
        results = [f for f in segment_frames(frames) if f["type"] == "result"]
        view = chart(page)
        assert view["points"] == str(len(results)) and int(view["classes"]) == 6

        # zooming stops following; "Whole session" shows everything; Follow live goes back
        page.click("#zoom-in")
        assert chart(page)["follow"] == "false"
        expect(page.locator("#follow")).not_to_be_checked()
        page.click("#show-all")
        view = chart(page)
        assert int(view["viewStartMs"]) == 0
        assert int(view["viewEndMs"]) >= max(f["end_ms"] for f in results)
        page.click("#pan-back")
        page.check("#follow")
        assert chart(page)["follow"] == "true"
        # dragging across the plot zooms to the dragged span
        box = page.locator("#chart .u-over").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 20, steps=5)
        page.mouse.up()
        view = chart(page)
        assert view["follow"] == "false"
        assert int(view["viewEndMs"]) - int(view["viewStartMs"]) < 10_000


def test_a_reload_during_and_after_a_session_keeps_every_result(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    speech = phrases(3)
    wav = write_wav(tmp_path / "speech.wav", speech, 16000)
    with launch(wav) as page:
        frames = record_frames(page)
        dialogs: list[str] = []

        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(dialog.type)
            dialog.accept()

        page.on("dialog", on_dialog)
        loaded(page, server.url + "/")
        page.click("#start")
        expect(page.locator("#segments-body tr").nth(1)).to_be_attached(timeout=30_000)
        shown = page_rows(page)
        page.wait_for_function(SAVED_AT_LEAST, arg=len(shown), timeout=10_000)
        # while capturing, the shown session cannot be switched or deleted
        current = page.locator("#sessions li[data-current='true']")
        expect(current.get_by_role("button", name=re.compile("^Open "))).to_be_disabled()
        expect(current.get_by_role("button", name=re.compile("^Delete "))).to_be_disabled()
        expect(current.get_by_role("button", name=re.compile("^Export "))).to_be_enabled()

        # a reload while capturing asks first, then keeps what was shown
        page.reload()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        assert dialogs == ["beforeunload"]
        first = segment_frames(frames)
        kept = page_rows(page)
        assert len(kept) >= len(shown)
        assert kept == [
            [f.get("label", ""), f.get("reason", ""), "live"] for f in first[: len(kept)]
        ]
        before = exported(page)
        assert shape(before) == shape(first[: len(kept)])

        # a second live session after the reload joins the same session, after it
        frames.clear()
        page.click("#start")
        wait_captured(page, len(speech) / 16 + 300)
        stop(page)
        second = segment_frames(frames)
        assert second, "the second session produced no segments"
        wait_saved(page, len(kept) + len(second))
        page.reload()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        assert dialogs == ["beforeunload"], "no warning is due when not capturing"
        after = exported(page)
        assert shape(after) == shape(first[: len(kept)]) + shape(second)
        assert after[: len(before)] == before
        assert min(s["start_ms"] for s in after[len(before) :]) >= max(s["end_ms"] for s in before)
        # listed with its date and length
        item = page.locator("#sessions li[data-current='true']")
        expect(item.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
        assert int(item.get_attribute("data-length-ms") or 0) >= after[-1]["end_ms"]
        vtt = download_text(page, "#export-vtt")
        assert vtt.startswith("WEBVTT\n")
        assert vtt.count(" --> ") == len(after)


def test_sessions_are_listed_reopened_exported_and_deleted(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    one = tmp_path / "one.wav"
    one.write_bytes(wav_bytes(phrases(1)))
    two = tmp_path / "two.wav"
    two.write_bytes(wav_bytes(phrases(2)))
    with launch() as page:
        loaded(page, server.url + "/")
        page.set_input_files("#file", one)
        expect(page.locator("#upload-status")).to_contain_text("one.wav:")
        first_rows = page_rows(page)
        wait_saved(page, len(first_rows))
        page.click("#clear")  # New session: the first one stays in the list
        expect(page.locator("#segments-body tr")).to_have_count(0)
        page.set_input_files("#file", two)
        expect(page.locator("#upload-status")).to_contain_text("two.wav:")
        second_rows = page_rows(page)
        wait_saved(page, len(second_rows))
        items = page.locator("#sessions li[data-id]")
        expect(items).to_have_count(2)
        first_id = items.nth(1).get_attribute("data-id")

        # reopen the first: its segments come back; export it from the list
        page.get_by_role("button", name=re.compile(r"^Open ")).nth(1).click()
        expect(page.locator("#segments-body tr")).to_have_count(len(first_rows))
        assert page_rows(page) == first_rows
        with page.expect_download() as info:
            page.locator(f"#sessions li[data-id='{first_id}'] button", has_text="Export").click()
        listed = json.loads(Path(info.value.path()).read_text())
        assert [s["origin"] for s in listed["segments"]] == ["one.wav"] * len(first_rows)

        # delete the shown one: it leaves the list and the page, and stays gone after a reload
        page.locator(f"#sessions li[data-id='{first_id}'] button", has_text="Delete").click()
        expect(page.locator("#sessions li[data-id]")).to_have_count(1)
        expect(page.locator("#segments-body tr")).to_have_count(0)
        page.reload()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#sessions li[data-id]")).to_have_count(1)
        expect(page.locator(f"#sessions li[data-id='{first_id}']")).to_have_count(0)
        expect(page.locator("#segments-body tr")).to_have_count(0)
        page.locator("#sessions li[data-id] button", has_text="Delete").click()
        expect(page.locator("#sessions li[data-id]")).to_have_count(0)
        expect(page.locator("#sessions")).to_contain_text("No saved sessions yet.")

        # damaged records in the browser's storage: one without a date is left out of the
        # list; one with a bad segment is listed but refused whole when opened
        page.evaluate(DAMAGE_SCRIPT)
        page.reload()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#message")).to_contain_text("A saved session could not be reopened")
        expect(page.locator("#segments-body tr")).to_have_count(0)
        expect(page.locator("#sessions li[data-id]")).to_have_count(1)
        expect(page.locator("#sessions li[data-id='bad-entry']")).to_have_count(1)


# Writes damaged session records straight into IndexedDB and makes one the shown session.
DAMAGE_SCRIPT = """() => new Promise((resolve, reject) => {
  const open = indexedDB.open("emostream", 1);
  open.onsuccess = () => {
    const tx = open.result.transaction("sessions", "readwrite");
    const store = tx.objectStore("sessions");
    store.put({ id: "no-date", entries: [] });
    store.put({ id: "bad-entry", createdAt: "2026-01-01T00:00:00Z", updatedAt: "x", audioEndMs: 0,
                entries: [{ segment: 0, startMs: 5, endMs: 1, label: null, source: "live" }] });
    tx.oncomplete = () => { localStorage.setItem("emostream.current-session", "bad-entry");
                            open.result.close(); resolve(); };
    tx.onerror = () => reject(tx.error);
  };
})"""


def test_analysing_shows_between_speech_end_and_its_result(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    speech = phrases(2)
    wav = write_wav(tmp_path / "speech.wav", speech, 16000)
    with launch(wav) as page:
        page.add_init_script(EVENT_LOG_SCRIPT)
        loaded(page, server.url + "/")
        page.click("#start")
        wait_captured(page, len(speech) / 16 + 300)
        stop(page)
        events: list[str] = page.evaluate("window.__events")
    ends = [i for i, event in enumerate(events) if event == "speech_end"]
    assert len(ends) >= 2, events
    for i in ends:
        after = events[i + 1 :]
        states = [(j, e) for j, e in enumerate(after) if e.startswith("state:")]
        # the page says "analysing" right after speech_end (or "listening" if the result
        # came first), and leaves "analysing" only once a result or skipped message came
        assert states and states[0][1] in ("state:analysing", "state:listening"), events
        if states[0][1] == "state:analysing":
            assert states[0][0] == 0, events
            left = next(j for j, e in states[1:])
            assert {"result", "skipped"} & set(after[:left]), events
    assert "state:analysing" in events


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_dark_mode_follows_the_system_and_fits_the_screen(
    server: Served, launch: LaunchFn, tmp_path: Path, screenshots: Path, size: str
) -> None:
    path = tmp_path / "speech.wav"
    path.write_bytes(wav_bytes(phrases(3)))
    with launch(viewport=VIEWPORTS[size], color_scheme="dark") as page:
        loaded(page, server.url + "/")
        page.set_input_files("#file", path)
        expect(page.locator("#segments-body tr").first).to_be_attached()
        page.screenshot(path=screenshots / f"dark-{size}.png", full_page=True)
        assert overflow_px(page) <= 0, f"the dark {size} layout scrolls sideways"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        ink = page.evaluate("getComputedStyle(document.body).color")
        assert luminance(background) < 0.1 < 0.6 < luminance(ink), (background, ink)
    with launch(viewport=VIEWPORTS[size], color_scheme="light") as page:
        loaded(page, server.url + "/")
        assert luminance(page.evaluate("getComputedStyle(document.body).backgroundColor")) > 0.8


def luminance(css: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_demo_notice_for_the_bundled_model_and_not_for_another(
    server: Served, launch: LaunchFn
) -> None:
    bundled = Settings(model_dir=REPO / "models" / "default", workers=1, log_level="warning")
    with serve(bundled) as demo, launch() as page:
        loaded(page, demo.url + "/")
        notice = page.locator("#demo-notice")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("synthetic speech")
        link = notice.get_by_role("link", name="How to load a real model")
        link.click()
        expect(page.locator("#load-model")).to_have_attribute("open", "")
        expect(page.locator("#load-model")).to_contain_text("emostream serve --model")
    with launch() as page:
        loaded(page, server.url + "/")  # the tiny test model's manifest has no demo flag
        expect(page.locator("#demo-notice")).to_be_hidden()


def test_space_starts_and_stops_but_not_while_typing(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "speech.wav", phrases(1), 16000)
    with launch(wav) as page:
        loaded(page, server.url + "/")
        page.focus("#mic")
        page.keyboard.press("Space")
        page.keyboard.press("Escape")
        expect(page.locator("#conn-status")).not_to_have_text("Live")
        page.locator("h1").click()  # focus on nothing in particular
        page.keyboard.press("Space")
        expect(page.locator("#conn-status")).to_have_text("Live")
        expect(page.locator("#start")).to_have_attribute("aria-keyshortcuts", "Space")
        page.locator("h1").click()
        page.keyboard.press("Space")
        expect(page.locator("#conn-status")).to_have_text("Stopped", timeout=20_000)


def test_microphone_picker_and_the_applied_capture_settings(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "speech.wav", phrases(1), 16000)
    with launch(wav) as page:
        loaded(page, server.url + "/")
        page.click("#start")
        expect(page.locator("#conn-status")).to_have_text("Live")
        settings = page.locator("#applied-settings")
        expect(settings).to_contain_text("echo cancellation off")
        expect(settings).to_contain_text("noise suppression off")
        expect(settings).to_contain_text("auto gain off")
        expect(page.locator("#mic")).to_be_disabled()
        stop(page)
        options = page.eval_on_selector_all("#mic option", "os => os.map(o => [o.value, o.text])")
        named = [(value, text) for value, text in options if value]
        assert named and all(text for _, text in named), options
        value, text = named[-1]
        page.select_option("#mic", value)
        page.click("#start")
        expect(page.locator("#device-label")).to_have_text(text)
        stop(page)
        page.reload()
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator("#mic")).to_have_value(value)  # the choice is remembered


# Logs the page's WebSocket messages with the readout's and the announcer's changes.
PARTIAL_LOG_SCRIPT = (
    EVENT_LOG_SCRIPT
    + """
document.addEventListener("DOMContentLoaded", () => {
  const current = document.getElementById("current");
  const label = document.getElementById("current-label");
  const log = () => window.__events.push(
    (current.dataset.provisional === "true" ? "provisional:" : "shown:") + label.textContent);
  new MutationObserver(log).observe(current, { subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ["data-provisional"] });
  window.__progress = [];
  const chart = document.getElementById("chart");
  new MutationObserver(() => chart.dataset.progressEndMs && window.__progress.push(
    [Number(chart.dataset.progressStartMs), Number(chart.dataset.progressEndMs)]))
    .observe(chart, { attributes: true, attributeFilter: ["data-progress-end-ms"] });
  const spoken = { childList: true, characterData: true, subtree: true };
  new MutationObserver(() => window.__events.push("announced"))
    .observe(document.getElementById("announcer"), spoken);
});
"""
)


def test_partials_show_provisional_before_the_final_and_exports_hold_finals_only(
    server: Served, launch: LaunchFn, tmp_path: Path, screenshots: Path
) -> None:
    speech = np.concatenate(
        [
            silence(0.4),
            espeak("I think this has been a really rather wonderful afternoon", rate_wpm=140),
            silence(1.2),
        ]
    )
    wav = write_wav(tmp_path / "long.wav", speech, 16000)
    with launch(wav) as page:
        frames = record_frames(page)
        page.add_init_script(PARTIAL_LOG_SCRIPT)
        loaded(page, server.url + "/?interim_ms=500")
        page.click("#start")
        expect(page.locator("#current")).to_have_attribute(
            "data-provisional", "true", timeout=20_000
        )
        expect(page.locator("#current-meta")).to_contain_text("Provisional")
        expect(page.locator("#bars")).to_have_attribute("data-provisional", "true")
        page.screenshot(path=screenshots / "provisional-desktop.png", full_page=True)
        wait_captured(page, len(speech) / 16 + 300)
        stop(page)
        events: list[str] = page.evaluate("window.__events")
        progress: list[list[int]] = page.evaluate("window.__progress")
        expect(page.locator("#interim")).to_contain_text("every 500 ms")
        exported_segments = exported(page)
        csv_lines = download_text(page, "#export-csv").strip().split("\r\n")
    assert frames[0]["interim_ms"] == 500
    partials = [f for f in frames if f["type"] == "partial"]
    finals = segment_frames(frames)
    assert partials, "the server sent no partial"
    first_final = events.index("result")
    # the readout was provisional before the first final came ...
    assert any(e.startswith("provisional:") for e in events[:first_final]), events
    # ... and settles to it: the first state shown after it is not provisional, its label
    settled = next(e for e in events[first_final:] if e.startswith(("provisional:", "shown:")))
    first = next(f for f in frames if f["type"] == "result")
    assert settled == f"shown:{first['label'].capitalize()}", events
    # the announcer speaks after finals only, never after a partial
    for i, event in enumerate(events):
        if event == "announced":
            before = [e for e in events[:i] if e in ("partial", "result", "skipped")]
            assert before and before[-1] in ("result", "skipped"), events
    # the chart's band of the segment in progress grew while it was spoken
    ends: dict[int, list[int]] = {}
    for start, end in progress:
        ends.setdefault(start, []).append(end)
    assert any(e[i] < e[i + 1] < e[i + 2] for e in ends.values() for i in range(len(e) - 2)), (
        progress
    )
    # exports hold the finals and nothing else
    assert len(exported_segments) == len(finals)
    assert [s["segment"] for s in exported_segments] == [f["segment"] for f in finals]
    assert len(csv_lines) == len(finals) + 1
