"""Debian's Chromium, driven by Playwright (the `test` extra), showing the web console: for benches."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from vgpustream.testing import INSTALL_TEST_EXTRAS

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",  # Chromium's sandbox refuses to run as root, as tests and benches do here
    "--disable-gpu",  # no GPU on these machines
    # a person clicks the speaker button to hear a VM; a test cannot, and checks the sound all the same
    "--autoplay-policy=no-user-gesture-required",
]
"""Chromium's flags, its WebRTC settings left as a person has them (host addresses hidden behind mDNS
names, no loopback candidates): only what running headless as root on a machine without a GPU needs."""


CONNECTED = ("playing", "starting", "no_signal", "lost", "unsupported")
"""The console's states once it is connected, whatever the VM's display shows (web/console.js)."""


WEBRTC_SETTINGS = "Chromium's defaults (host addresses hidden behind mDNS names, no loopback candidates)"
"""What the benches say of the browser they measured in."""


async def start_playwright() -> Any:
    """Playwright started, or SystemExit saying how to install it."""
    try:
        from playwright.async_api import async_playwright  # noqa: PLC0415 - only browser benches need it
    except ImportError:
        raise SystemExit(f"this bench needs playwright: {INSTALL_TEST_EXTRAS}") from None
    return await async_playwright().start()


class ConsolePage:
    """`async with ConsolePage(url) as page:` the console at `url`, once its state is one of `until`
    (playing, by default); `init_script` runs before its own."""

    def __init__(
        self, url: str, chromium: str = CHROMIUM, init_script: str | None = None, until: tuple[str, ...] = ("playing",)
    ) -> None:
        self.url = url
        self.chromium = chromium
        self.init_script = init_script
        self.until = until
        self._playwright: Any = None
        self.browser: Any = None
        """The Chromium the page runs in, once entered: for more pages of the same browser."""

    async def __aenter__(self) -> Any:
        self._playwright = await start_playwright()
        try:
            self.browser = await self._playwright.chromium.launch(executable_path=self.chromium, args=ARGS)
            page = await self.browser.new_page(viewport={"width": 1280, "height": 800})
            if self.init_script is not None:
                await page.add_init_script(self.init_script)
            await page.goto(self.url)
            await page.wait_for_function(
                "states => window.vgpustream && states.includes(window.vgpustream.state)", arg=list(self.until)
            )
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return page

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.browser is not None:
            await self.browser.close()
        await self._playwright.stop()
