"""Server-rendered pages checked in a real browser: Debian's headless Chromium and tesseract.

A test serves its page on 127.0.0.1 (FakeServer), opens it at a phone's size, and reads
the full-page screenshot back with OCR, as a person would see it, beside the DOM's visible
text. .ci/run installs the Debian packages (chromium, chromium-driver, tesseract-ocr,
tesseract-ocr-eng); without them the tests skip locally and fail under CI=true, where
their absence is a defect of the CI script.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver as Chrome
from selenium.webdriver.remote.webdriver import WebDriver

# Debian's binaries, named outright: without a driver path Selenium runs Selenium Manager,
# which would look for (and try to download) a browser and driver of its own.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The page under test is served here; every other host, by name or by address, fails.
PAGE_HOST = "127.0.0.1"
# A phone's screen density: at 1x tesseract split a bold word on a tinted row in two; at 2x
# it reads 16px text reliably, with no image processing of our own.
SCALE = 2
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class OcrError(RuntimeError):
    """tesseract is not installed or could not read the image."""


@dataclass(frozen=True)
class PageShot:
    """A page as rendered: the full-page screenshot and the visible text of its DOM."""

    png: bytes
    text: str


def browser_missing() -> str | None:
    """Why headless Chromium cannot run here, or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (Debian package `{package}`; .ci/run installs it)"
    return None


def ocr_missing() -> str | None:
    """Why tesseract cannot read English here, or None when it can."""
    tesseract = shutil.which("tesseract")
    if tesseract is None:
        return (
            "tesseract is not installed (Debian packages `tesseract-ocr` and"
            " `tesseract-ocr-eng`; .ci/run installs them)"
        )
    languages = subprocess.run(
        [tesseract, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
    )
    if "eng" not in languages.stdout.split():
        return "tesseract has no English data (Debian package `tesseract-ocr-eng`)"
    return None


def require(missing: str | None) -> None:
    """Skip the test for what is missing; fail it under CI, which installs everything."""
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        reason = f"{missing}; under CI=true that is a defect, not a skip"
        pytest.fail(reason, pytrace=False)
    pytest.skip(missing)


def _options(profile: str) -> Options:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        # Root (as here and in CI) cannot use Chromium's sandbox.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--force-device-scale-factor={SCALE}",
        # A phone's scrollbars overlay the page instead of narrowing it.
        "--hide-scrollbars",
        # Names and addresses alike go through these rules, so a page's reference to any
        # other host fails at once instead of reaching out (or waiting for a time-out).
        f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {PAGE_HOST}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
    ):
        options.add_argument(argument)
    return options


def set_viewport(driver: WebDriver, width: int, height: int) -> None:
    """Make the page's viewport `width` x `height` CSS pixels.

    The window is larger than its viewport by a margin known only once it is open, and
    --window-size cannot go below 500 pixels wide, so the window is sized, measured and
    sized again.
    """
    driver.set_window_size(width, height)
    inner_width, inner_height = _viewport(driver)
    driver.set_window_size(2 * width - inner_width, 2 * height - inner_height)
    if _viewport(driver) != (width, height):
        raise RuntimeError(f"could not size the viewport to {width}x{height}: {_viewport(driver)}")


def _viewport(driver: WebDriver) -> tuple[int, int]:
    width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    return int(width), int(height)


@contextmanager
def headless_chromium(width: int = 390, height: int = 844) -> Iterator[Chrome]:
    """Debian's Chromium, headless, with a `width` x `height` viewport (a phone's, by default).

    It has a fresh profile, reaches no host but 127.0.0.1, and is quit on the way out.
    """
    with tempfile.TemporaryDirectory(
        prefix="orchestrator-test-chromium-", ignore_cleanup_errors=True
    ) as profile:
        driver = Chrome(options=_options(profile), service=Service(executable_path=CHROMEDRIVER))
        try:
            set_viewport(driver, width, height)
            yield driver
        finally:
            driver.quit()


def full_page_screenshot(driver: WebDriver, url: str) -> PageShot:
    """Open `url` and capture the whole page at the viewport's width, not just its top."""
    width, height = _viewport(driver)
    driver.get(url)
    # Text drawn in a fallback font while a web font loads would be read wrongly.
    driver.execute_async_script("document.fonts.ready.then(() => arguments[0]())")
    page_height = int(
        driver.execute_script(
            "return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"
        )
    )
    set_viewport(driver, width, max(height, page_height))
    try:
        png = driver.get_screenshot_as_png()
        text = str(driver.execute_script("return document.body.innerText"))
    finally:
        set_viewport(driver, width, height)
    return PageShot(png=png, text=text)


def png_size(png: bytes) -> tuple[int, int]:
    """The width and height in pixels of a PNG image."""
    if not png.startswith(PNG_MAGIC) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def screenshot_text(png: bytes) -> str:
    """The text tesseract reads from a PNG screenshot."""
    tesseract = shutil.which("tesseract")
    if tesseract is None:
        raise OcrError(
            "tesseract is not installed (Debian packages `tesseract-ocr` and `tesseract-ocr-eng`)"
        )
    result = subprocess.run(
        # --psm 4: one column of text of varying sizes, as a page laid out for a phone is.
        # --dpi: Chromium's 96 per CSS inch at SCALE; tesseract would otherwise guess it.
        [tesseract, "stdin", "stdout", "-l", "eng", "--psm", "4", "--dpi", str(96 * SCALE)],
        input=png,
        capture_output=True,
        timeout=60,
        check=False,
        # OpenMP's threads made one screenshot three times slower to read on two cores.
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
    )
    if result.returncode != 0:
        raise OcrError(
            f"tesseract failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )
    return result.stdout.decode()


def normalized(text: str) -> str:
    """`text` in lower case with each run of whitespace one space: for OCR comparisons."""
    return " ".join(text.lower().split())
