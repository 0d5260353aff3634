"""The project page in a real browser: Debian's headless Chromium opens the link the bot
sent, from the app served as `orchestrator serve` serves it, at a phone's size; OCR reads
the screenshot back for the vision's title and the phases, as the person would see them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from project_orchestrator.app import create_app
from tests.support.browser import (
    SCALE,
    browser_missing,
    full_page_screenshot,
    headless_chromium,
    normalized,
    ocr_missing,
    png_size,
    require,
    screenshot_text,
)
from tests.support.fake_http import FakeServer
from tests.support.journey import Journey, brainstorm_to_vision_gate

BASE = "https://orch.example.test"
PHONE_WIDTH = 390


@pytest.fixture
def journey_overrides() -> dict[str, Any]:
    return {"public_base_url": BASE, "page_link_secret": "page-link-secret-0123456789"}


async def test_the_page_reads_right_on_a_phone(journey: Journey, tmp_path: Path) -> None:
    require(browser_missing())
    require(ocr_missing())
    await brainstorm_to_vision_gate(journey)
    await journey.comment("@orchestrator /approve")  # the vision: SCAR primes, then plans
    await journey.comment("@orchestrator /page")
    found = re.search(re.escape(BASE) + r"(/page/\S+)", journey.last_reply())
    assert found is not None, journey.last_reply()

    with (
        FakeServer(create_app(journey.settings), lifespan=True) as server,
        headless_chromium(width=PHONE_WIDTH) as browser,
    ):
        shot = full_page_screenshot(browser, server.url + found.group(1))
        # Nothing on the page is wider than the phone: no sideways scrolling.
        page_width = browser.execute_script("return document.documentElement.scrollWidth")
    (tmp_path / "page.png").write_bytes(shot.png)

    width, height = png_size(shot.png)
    assert width == PHONE_WIDTH * SCALE
    assert height > 844 * SCALE  # the whole page, longer than one screen
    seen = normalized(screenshot_text(shot.png))
    for words in (
        "widgets: Vision",  # the vision's title
        "Waiting for your decision",
        "The plan for build #1",
        "Prime: SCAR reads the project",
        "Plan: SCAR plans the change",
        "Approved by @ada: the vision",
    ):
        assert normalized(words) in seen, f"{words!r} not read in the screenshot:\n{seen}"
    assert page_width <= PHONE_WIDTH
    assert "widgets: Vision" in shot.text
