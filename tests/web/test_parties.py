"""A stereo call recording analysed with "two parties" in headless Chromium: a lane per party
under the chart, a summary per party, the party named in the table and the exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from tests.speech import silence, wav_bytes
from tests.web.conftest import LaunchFn, Served
from tests.web.pages import download_text, phrases

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def loaded(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def lanes(page: Page) -> list[list[str | int]]:
    found: list[list[str | int]] = page.eval_on_selector_all(
        "#lanes .lane",
        "lanes => lanes.map(l => [l.querySelector('.lane-name').textContent, "
        "l.querySelectorAll('.lane-block').length])",
    )
    return found


def assert_lanes_under_plot(page: Page) -> None:
    """Each lane's track spans the chart's plot area (inside its axes) to the pixel."""
    plot = page.locator("#chart .u-over").bounding_box()
    tracks = [t.bounding_box() for t in page.locator("#lanes .lane-track").all()]
    assert plot is not None and tracks and all(t is not None for t in tracks)
    for track in tracks:
        assert track is not None
        assert abs(track["x"] - plot["x"]) <= 1, (track, plot)
        assert abs(track["width"] - plot["width"]) <= 1, (track, plot)


def test_a_call_analysed_per_channel_shows_two_lanes_and_two_summaries(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    first, second = phrases(2), phrases(1)
    left = np.concatenate([first, silence(len(second) / 16000)])
    right = np.concatenate([silence(len(first) / 16000), second])
    call = tmp_path / "call.wav"
    call.write_bytes(wav_bytes(np.stack([left, right], axis=1)))
    with launch() as page:
        loaded(page, server.url + "/")
        expect(page.locator("#lanes")).to_be_hidden()
        page.check("#separate")
        page.set_input_files("#file", call)
        expect(page.locator("#upload-status")).to_contain_text("call.wav:")
        expect(page.locator("#lanes")).to_be_visible()
        assert lanes(page) == [["Party 1", 2], ["Party 2", 1]]
        assert_lanes_under_plot(page)
        page.set_viewport_size({"width": 700, "height": 900})
        page.wait_for_timeout(200)  # the resize observers run after the next layout
        assert_lanes_under_plot(page)
        summaries = page.locator("#party-summaries .party-summary")
        expect(summaries).to_have_count(2)
        expect(summaries.nth(0).locator("h3")).to_have_text("Party 1")
        expect(summaries.nth(1)).to_contain_text("classified in 1 segments")
        # The page asks for quality=1; the tiny test model's near-uniform scores make every
        # result low_confidence, so each party's blocks are marked uncertain, with the
        # reason in their title, and each party's summary says how uncertain time counts.
        blocks = page.eval_on_selector_all(
            "#lanes .lane-block:not([data-label=''])",
            "bs => bs.map(b => [b.dataset.uncertain, b.title.includes('Uncertain: ')])",
        )
        assert blocks and blocks == [["true", True]] * len(blocks)
        for n in (0, 1):
            expect(summaries.nth(n)).to_contain_text("uncertain, counted at a quarter")
        sources = page.eval_on_selector_all(
            "#segments-body tr td[data-col='Source']", "cells => cells.map(c => c.textContent)"
        )
        assert sources == ["call.wav · Party 1", "call.wav · Party 1", "call.wav · Party 2"]
        exported = json.loads(download_text(page, "#export-json"))
        assert [s["channel"] for s in exported["segments"]] == [0, 0, 1]
        assert all(s["uncertain"] is True for s in exported["segments"] if s["label"])
        assert [p["name"] for p in exported["parties"]] == ["Party 1", "Party 2"]

        # The same file mixed (the box unticked) joins the timeline without parties of its own.
        page.uncheck("#separate")
        page.set_input_files("#file", call)
        expect(page.locator("#upload-status")).to_contain_text("call.wav:")
        expect(page.locator("#segments-body tr")).to_have_count(6)
        assert [count for _, count in lanes(page)] == [2, 1]
        page.click("#clear")
        expect(page.locator("#lanes")).to_be_hidden()
        expect(page.locator("#party-summaries")).to_be_hidden()
