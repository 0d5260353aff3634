"""tests/support/browser.py: headless Chromium at a phone's size, OCR of its screenshots.

A tiny page on 127.0.0.1 stands for a server-rendered one. It links an image on its own
server, one on a second server at 127.0.0.2 that stands for the internet (it answers
anyone who asks, so only the browser's network rules can keep it unasked), and one on the
real internet.
"""

from __future__ import annotations

import http.server
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver as Chrome
from selenium.webdriver.common.selenium_manager import SeleniumManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.support import browser
from tests.support.browser import (
    CHROMIUM,
    PNG_MAGIC,
    SCALE,
    OcrError,
    PageShot,
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

PHONE = (390, 844)


def _one_pixel_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    return (
        PNG_MAGIC
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\xff"))
        + chunk(b"IEND", b"")
    )


DOT = _one_pixel_png()

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width">
<title>Tiny Bakery</title>
<style>
  body {{ font-family: sans-serif; font-size: 16px; margin: 16px; color: #222; }}
  .now {{ background: #eef; font-weight: bold; }}
  .spacer {{ height: 1600px; }}
</style>
</head>
<body>
<h1>Vision: Tiny Bakery</h1>
<p>An online shop for a neighbourhood bakery, with daily bread orders.</p>
<ol><li>Planning</li><li class="now">Building</li><li>Validating</li></ol>
<p hidden>Secret draft note</p>
<img id="local" src="/dot.png" alt="">
<img id="outside" src="{outside}/dot.png" alt="">
<img id="internet" src="https://example.com/x.png" alt="">
<div class="spacer"></div>
<p>End of the status page</p>
</body>
</html>
"""


class _Outside(http.server.ThreadingHTTPServer):
    """Serves DOT on 127.0.0.2 to anyone, keeping the path of every request."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        super().__init__(("127.0.0.2", 0), _OutsideHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.2:{self.server_address[1]}"


class _OutsideHandler(http.server.BaseHTTPRequestHandler):
    server: _Outside

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(DOT)))
        self.end_headers()
        self.wfile.write(DOT)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def outside() -> Iterator[_Outside]:
    server = _Outside()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(outside: _Outside) -> Iterator[FakeServer]:
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE.format(outside=outside.url))

    async def dot(request: Request) -> Response:
        return Response(DOT, media_type="image/png")

    app = Starlette(routes=[Route("/", page), Route("/dot.png", dot)])
    with FakeServer(app) as server:
        yield server


@pytest.fixture(scope="module")
def driver() -> Iterator[Chrome]:
    require(browser_missing())
    with headless_chromium(*PHONE) as driver:
        yield driver


@pytest.fixture(scope="module")
def shot(driver: Chrome, site: FakeServer) -> PageShot:
    return full_page_screenshot(driver, f"{site.url}/")


@pytest.fixture(scope="module")
def ocr(shot: PageShot) -> str:
    require(ocr_missing())
    return normalized(screenshot_text(shot.png))


def test_the_screenshot_is_a_png_of_the_whole_page_at_the_phones_width(
    driver: Chrome, shot: PageShot
) -> None:
    page_height = driver.execute_script("return document.documentElement.scrollHeight")
    assert shot.png.startswith(PNG_MAGIC)
    assert page_height > PHONE[1], "the page must be taller than the phone for this test"
    assert png_size(shot.png) == (PHONE[0] * SCALE, page_height * SCALE)
    # Capturing the page leaves the viewport as it found it.
    assert driver.execute_script("return [innerWidth, innerHeight]") == list(PHONE)


def test_ocr_reads_the_heading_and_the_phases_down_to_the_end_of_the_page(ocr: str) -> None:
    for words in ("Vision: Tiny Bakery", "Planning", "Building", "End of the status page"):
        assert normalized(words) in ocr
    # Text in the HTML that the page does not show is not in its picture.
    assert "secret" not in ocr


def test_the_visible_text_is_what_the_page_shows(shot: PageShot) -> None:
    text = normalized(shot.text)
    assert "vision: tiny bakery" in text
    assert "end of the status page" in text
    assert "secret draft note" not in text


def test_the_page_loads_from_127_0_0_1_and_nothing_from_any_other_host(
    driver: Chrome, site: FakeServer, outside: _Outside
) -> None:
    # Without the browser's rules the second image would load: its server answers.
    assert httpx.get(f"{outside.url}/dot.png").content == DOT
    outside.paths.clear()

    driver.get(f"{site.url}/")

    widths = driver.execute_script(
        "return Object.fromEntries([...document.images].map(i => [i.id, i.naturalWidth]))"
    )
    assert widths == {"local": 1, "outside": 0, "internet": 0}
    assert outside.paths == []
    statuses = dict(
        driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".map(entry => [entry.name, entry.responseStatus])"
        )
    )
    assert statuses[f"{site.url}/dot.png"] == 200
    assert statuses[f"{outside.url}/dot.png"] == 0
    assert statuses["https://example.com/x.png"] == 0
    assert driver.execute_script("return location.origin") == site.url
    assert "/dot.png" in [request.path for request in site.requests]


def test_debians_chromium_runs_without_selenium_manager_and_is_quit_after_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require(browser_missing())
    manager_runs: list[list[str]] = []

    def no_manager(self: SeleniumManager, args: list[str]) -> dict[str, str]:
        manager_runs.append(args)
        raise AssertionError("Selenium Manager ran")

    monkeypatch.setattr(SeleniumManager, "binary_paths", no_manager)

    opened: dict[str, Any] = {}

    def check_that_fails() -> None:
        with headless_chromium(320, 480) as driver:
            opened["chromedriver"] = driver.service.process
            opened["profile"] = Path(driver.capabilities["chrome"]["userDataDir"])
            opened["version"] = driver.capabilities["browserVersion"]
            opened["viewport"] = driver.execute_script(
                "return [innerWidth, innerHeight, devicePixelRatio]"
            )
            assert opened["profile"].is_dir()
            raise RuntimeError("a check failed")

    with pytest.raises(RuntimeError, match="a check failed"):
        check_that_fails()

    assert manager_runs == []
    assert opened["viewport"] == [320, 480, SCALE]
    debian = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=True)
    assert opened["version"] in debian.stdout
    assert opened["chromedriver"].poll() is not None
    profile = opened["profile"]
    assert not profile.exists()
    browsers = [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(str(profile) in argument for argument in process.info["cmdline"] or [])
    ]
    assert browsers == []


def test_a_missing_browser_skips_the_test_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is missing"):
        require("chromium is missing")


def test_a_missing_browser_fails_the_test_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium is missing"):
        require("chromium is missing")
    require(None)


def test_browser_missing_names_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "chromium"))
    assert "`chromium`" in (browser_missing() or "")
    monkeypatch.setattr(browser, "CHROMIUM", "/bin/sh")
    monkeypatch.setattr(browser, "CHROMEDRIVER", str(tmp_path / "chromedriver"))
    assert "`chromium-driver`" in (browser_missing() or "")
    monkeypatch.setattr(browser, "CHROMEDRIVER", "/bin/sh")
    assert browser_missing() is None


def test_without_tesseract_ocr_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "tesseract-ocr" in (ocr_missing() or "")
    with pytest.raises(OcrError, match="tesseract-ocr"):
        screenshot_text(DOT)


def test_png_size_reads_the_header_and_rejects_other_images() -> None:
    assert png_size(DOT) == (1, 1)
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(32))
