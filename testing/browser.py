"""Headless Debian Chromium, as the browser tests and the UI benchmarks launch it
(Playwright with `executable_path`, never `playwright install`), and the UI's sign-in."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


async def sign_in(page, base: str, token: str, path: str = "/") -> None:
    """Signs in on the UI at `base` with a gateway token, from `path` (sent to sign-in)."""
    await page.goto(base + path)
    await page.wait_for_url("**/sign-in**")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
