"""Uncertain results in headless Chromium: marked in the readout and the table, the reason
on hover and on keyboard focus, and never announced as definite (docs/web.md)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect

from tests.speech import espeak, silence
from tests.web.conftest import LaunchFn, Served, write_wav
from tests.web.pages import record_frames, stop, wait_captured

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AFTER_DISPLAY = "el => getComputedStyle(el, '::after').display"


def loaded(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def test_an_uncertain_result_is_marked_explained_and_not_announced_as_fact(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    # The tiny test model's scores are near uniform: every result has low_confidence.
    speech = np.concatenate(
        [silence(0.4), espeak("The weather was lovely this morning.", rate_wpm=160), silence(1.2)]
    )
    wav = write_wav(tmp_path / "speech.wav", speech, 16000)
    with launch(wav) as page:
        frames = record_frames(page)
        loaded(page, server.url + "/?interim_ms=0")
        page.click("#start")
        current = page.locator("#current")
        expect(current).to_have_attribute("data-uncertain", "true", timeout=20_000)
        badge = page.locator("#current-uncertain")
        expect(badge).to_be_visible()
        expect(badge).to_have_text("uncertain")
        reason = badge.get_attribute("data-reason") or ""
        assert reason.startswith("Uncertain: ") and "the model is unsure" in reason
        expect(badge).to_have_attribute("aria-label", reason)
        assert badge.evaluate(AFTER_DISPLAY) == "none"
        badge.hover()
        assert badge.evaluate(AFTER_DISPLAY) == "block"
        page.mouse.move(0, 0)
        badge.focus()
        assert badge.evaluate(AFTER_DISPLAY) == "block"
        announced = page.locator("#announcer").inner_text()
        label = page.locator("#current-label").inner_text()
        assert announced.startswith("Possibly "), announced
        assert not announced.startswith(label)
        wait_captured(page, len(speech) / 16 + 300)
        stop(page)
        row = page.locator("#segments-body tr[data-uncertain='true']").first
        expect(row).to_be_visible()
        expect(row.locator(".uncertain-badge")).to_have_attribute("tabindex", "0")
        expect(page.locator("#summary-total")).to_contain_text("uncertain")
    assert frames[0]["type"] == "ready" and frames[0]["quality"] == 1
    results = [f for f in frames if f["type"] == "result"]
    assert results and all(r["uncertain"] for r in results)


def test_a_partial_shows_how_long_its_leading_label_has_held(
    server: Served, launch: LaunchFn, tmp_path: Path
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
        loaded(page, server.url + "/?interim_ms=500")
        page.click("#start")
        expect(page.locator("#current")).to_have_attribute(
            "data-provisional", "true", timeout=20_000
        )
        meta = page.locator("#current-meta")
        expect(meta).to_contain_text(re.compile(r"\w+ leading for \d+\.\d s"))
        provisional, label, text = page.evaluate(  # together: a newer message may change them
            "['current', 'current-label', 'current-meta'].map((id, i) => i === 0"
            " ? document.getElementById(id).dataset.provisional"
            " : document.getElementById(id).textContent)"
        )
        if provisional == "true":
            assert f"{label} leading for" in text, (label, text)
        # partials carry the quality fields too: the tiny model's are uncertain
        expect(page.locator("#current-uncertain")).to_be_visible()
        wait_captured(page, len(speech) / 16 + 300)
        stop(page)
