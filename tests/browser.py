"""Debian's Chromium driven by Playwright, and reading pictures back out of it."""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import av
import numpy as np
import pytest

from vgpustream.testing.chromium import ARGS, CHROMIUM

CHROMIUM_ARGS = [
    *ARGS,  # the benches' flags (WebRTC as a person's Chromium has it)
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@asynccontextmanager
async def chromium(*flags: str, **emulation: object) -> AsyncIterator[object]:
    """A headless Chromium with a fresh profile; skips the test where Chromium or Playwright is missing.

    `flags` are Chromium's own, after CHROMIUM_ARGS; `emulation` goes to Playwright's context
    (device_scale_factor, is_mobile, has_touch, viewport, permissions, ...).
    """
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests need playwright (pip)")
    with tempfile.TemporaryDirectory(prefix="vgpustream-chromium-") as profile:
        async with playwright_api.async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=[*CHROMIUM_ARGS, *flags],
                **{"viewport": {"width": 1280, "height": 800}, **emulation},
            )
            try:
                yield context
            finally:
                await context.close()


async def playing_console(browser: object, url: str) -> tuple[object, list[str]]:
    """A new page of `browser` on the console at `url`, once it plays; with the page's uncaught errors,
    collected from the start."""
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(url)
    await page.wait_for_function("() => window.vgpustream.state === 'playing'", timeout=20_000)
    return page, errors


def png_rgb(png: bytes) -> np.ndarray:
    """A PNG (a Playwright screenshot) as an RGB array."""
    with av.open(io.BytesIO(png)) as container:
        frame = next(container.decode(video=0))
    return frame.to_ndarray(format="rgb24")


def rgb_luma(rgb: np.ndarray) -> np.ndarray:
    """Full-range BT.601 luma of an RGB picture, what a stamp reader needs."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (rgb.astype(np.float32) @ weights).astype(np.uint8)
