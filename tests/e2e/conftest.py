"""Browser tests: the platform with its UI (shared with tests/ui in one session) and
headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testing.browser import CHROMIUM, CHROMIUM_ARGS

SCREENSHOTS = Path(__file__).with_name("screenshots")
IN_CI = os.environ.get("CI", "").lower() == "true"


def need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install chromium (Playwright drives Debian's build)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def ui_platform(platform):
    need_chromium()
    return platform


@pytest.fixture
async def browser():
    need_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        await b.close()


@pytest.fixture
async def page(browser):
    context = await browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    pg = await context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.errors = errors
    yield pg
    await context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
