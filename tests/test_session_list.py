"""The operator's session list in Debian's Chromium shows each session's thumbnail and keeps it current."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.browser import chromium, png_rgb
from tests.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.browser

THUMBNAILS = """() => Object.fromEntries([...document.querySelectorAll("#session-table img.thumbnail")]
  .filter(i => i.complete && i.naturalWidth > 0)
  .map(i => [i.closest("tr").dataset.session, {size: [i.naturalWidth, i.naturalHeight], src: i.src}]))"""


async def shown(page, sessions: int, timeout: float = 15.0) -> dict:
    """The thumbnails on show, once there are `sessions` of them."""
    for _ in range(int(timeout / 0.2)):
        thumbnails = await page.evaluate(THUMBNAILS)
        if len(thumbnails) == sessions:
            return thumbnails
        await asyncio.sleep(0.2)
    raise AssertionError(f"the session list shows {len(thumbnails)} of {sessions} thumbnails")


async def test_the_session_list_shows_a_current_thumbnail_of_each_session(make_server, http, tmp_path):
    server = await make_server(source="synthetic:1280x720@30")
    body = {"id": "page", "source": "synthetic:1920x1080@30?pattern=text&still=1", "name": "still page"}
    async with http.post(server.make_url("/api/v1/sessions"), json=body) as response:
        assert response.status == 201
    async with chromium() as browser:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{server.make_url('/')}#token={OPERATOR_TOKEN}")
        first = await shown(page, 2)
        assert {name: t["size"] for name, t in first.items()} == {"default": [320, 180], "page": [320, 180]}
        screenshot = await page.screenshot()
        (tmp_path / "session-list.png").write_bytes(screenshot)
        still = png_rgb(await page.locator('tr[data-session="page"] img.thumbnail').screenshot())
        assert np.mean(still) > 150, "the still page's light picture is drawn, not an empty black box"
        for _ in range(30):  # the list refreshes every 3 s, and a new thumbnail loads after that
            later = await shown(page, 2)
            if later["default"]["src"] != first["default"]["src"]:
                break
            await asyncio.sleep(0.5)
        assert later["default"]["src"] != first["default"]["src"], "a moving picture's thumbnail is refreshed"
        assert later["page"]["src"] == first["page"]["src"], "an unchanged picture is kept, not fetched again"
        assert errors == []
