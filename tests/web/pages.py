"""Driving and reading the page from Playwright."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import Page, expect

from tests.speech import espeak, silence
from tests.web.signals import Float

PHRASES = (
    "Good morning, it is a lovely day.",
    "I cannot believe what happened.",
    "Please tell me more about it.",
)
CAPTURE_TIMEOUT_MS = 40_000


def loaded(page: Page, url: str) -> None:
    """Open the page and wait for its own ready state (handlers wired, model info fetched).

    Never click before this: a click that lands while the page is still wiring its handlers is
    lost, which made tests flaky under load.
    """
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def phrases(count: int, pause_s: float = 1.2) -> Float:
    """``count`` phrases with pauses, 16 kHz, 0.4 s of leading silence (lost at capture start)."""
    parts = [silence(0.4)]
    for i in range(count):
        parts += [espeak(PHRASES[i % len(PHRASES)], rate_wpm=170), silence(pause_s)]
    return np.concatenate(parts)


def record_frames(page: Page) -> list[dict[str, Any]]:
    """JSON messages the page receives on its WebSockets, in order."""
    frames: list[dict[str, Any]] = []

    def on_frame(payload: str | bytes) -> None:
        if isinstance(payload, str):
            frames.append(json.loads(payload))

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))
    return frames


def wait_captured(page: Page, ms: float) -> None:
    page.wait_for_function(
        f"Number(document.getElementById('captured').dataset.ms) >= {ms}",
        timeout=CAPTURE_TIMEOUT_MS,
    )


def stop(page: Page) -> None:
    page.click("#start")
    expect(page.locator("#conn-status")).to_have_text("Stopped", timeout=20_000)


def page_rows(page: Page) -> list[list[str]]:
    """[label, skip reason, source] of each row of the segment table, in order."""
    rows: list[list[str]] = page.eval_on_selector_all(
        "#segments-body tr",
        "rows => rows.map(r => [r.dataset.label, r.dataset.skipped, r.dataset.source])",
    )
    return rows


def segment_frames(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] in ("result", "skipped")]


def speaking_runs(page: Page) -> list[str]:
    log: list[str] = page.evaluate("window.__speaking")
    return [value for i, value in enumerate(log) if i == 0 or log[i - 1] != value]


def download_text(page: Page, selector: str) -> Any:
    with page.expect_download() as info:
        page.click(selector)
    return Path(info.value.path()).read_bytes().decode()


VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}


def overflow_px(page: Page) -> int:
    width: int = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width
