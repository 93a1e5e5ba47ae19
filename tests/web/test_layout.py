"""Layout and accessibility: phone and desktop screenshots, no sideways scrolling, keyboard use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from server.settings import Settings
from tests.speech import wav_bytes
from tests.web.conftest import LaunchFn, Served, serve, write_wav
from tests.web.pages import VIEWPORTS, loaded, overflow_px, phrases

pytestmark = [pytest.mark.browser, pytest.mark.slow]


# Cells of the segment table whose box reaches past the right edge of the table's box.
CELLS_OUTSIDE = """() => {
  const box = document.querySelector('.table-wrap').getBoundingClientRect();
  return [...document.querySelectorAll('#segments-body td')]
    .filter((td) => td.getBoundingClientRect().right > box.right + 1)
    .map((td) => td.textContent);
}"""


def cells_outside(page: Page) -> list[str]:
    cells: list[str] = page.evaluate(CELLS_OUTSIDE)
    return cells


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_layout_fits_the_screen_with_results(
    server: Served, launch: LaunchFn, tmp_path: Path, screenshots: Path, size: str
) -> None:
    path = tmp_path / "speech.wav"
    path.write_bytes(wav_bytes(phrases(3)))
    with launch(viewport=VIEWPORTS[size]) as page:
        loaded(page, server.url + "/")
        assert overflow_px(page) <= 0
        page.set_input_files("#file", path)
        expect(page.locator("#segments-body tr").first).to_be_attached()
        page.check("#smooth")
        expect(page.locator("#current-label")).not_to_have_text("—")
        page.screenshot(path=screenshots / f"results-{size}.png", full_page=True)
        assert overflow_px(page) <= 0, f"the {size} layout scrolls sideways"
        # every segment carries its label as text in the table, not only as colour
        labels = page.eval_on_selector_all(
            "#segments-body tr:not([data-label=''])",
            "rows => rows.map(r => [r.dataset.label, r.cells[1].textContent])",
        )
        assert labels and all(label.capitalize() in text for label, text in labels)
        # on a phone every cell of the table is inside the screen (no clipped columns)
        assert cells_outside(page) == []


def test_keyboard_starts_and_stops_and_controls_are_labelled(
    server: Served, launch: LaunchFn, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "speech.wav", phrases(1), 16000)
    with launch(wav) as page:
        loaded(page, server.url + "/")
        page.keyboard.press("Tab")
        expect(page.locator(".skip")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.locator("#start")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#conn-status")).to_have_text("Live")
        expect(page.get_by_role("button", name="Stop")).to_be_focused()
        expect(page.locator("#speaking-text")).to_have_text(re.compile("Listening|Speaking"))
        page.keyboard.press("Enter")
        expect(page.locator("#conn-status")).to_have_text("Stopped", timeout=20_000)

        for role, name in [
            ("button", "Start listening"),
            ("checkbox", "Smoothed readout (average over recent segments)"),
            ("button", "Export JSON"),
            ("button", "Export CSV"),
            ("meter", "Input level"),
        ]:
            expect(page.get_by_role(role, name=name)).to_have_count(1)  # type: ignore[arg-type]
        expect(page.get_by_label("Choose a file…")).to_have_attribute("type", "file")
        expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")
        expect(page.locator("#message")).to_have_attribute("role", "alert")


CSP = "default-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'"


def test_runs_under_a_strict_content_security_policy_with_no_third_party_requests(
    web_settings: Settings, launch: LaunchFn, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "speech.wav", phrases(1), 16000)
    csp = {"Content-Security-Policy": CSP}
    with serve(web_settings, headers=csp) as strict, launch(wav, bypass_csp=False) as page:
        problems: list[str] = []
        origins: set[str] = set()

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                problems.append(message.text)

        page.on("console", on_console)
        page.on("request", lambda r: origins.add(re.sub(r"^(\w+://[^/]+).*", r"\1", r.url)))
        response = page.goto(strict.url + "/")
        assert response is not None and response.headers["content-security-policy"] == CSP
        page.click("#start")
        expect(page.locator("#conn-status")).to_have_text("Live")
        expect(page.locator("#segments-body tr").first).to_be_attached(timeout=20_000)
        page.click("#start")
        expect(page.locator("#conn-status")).to_have_text("Stopped", timeout=20_000)
        page.set_input_files("#file", wav)
        expect(page.locator("#upload-status")).to_contain_text("speech.wav:")
        page.click("#export-csv")
    assert problems == [], problems
    assert origins == {strict.url}
