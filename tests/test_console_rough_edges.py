"""What a new user meets first in the console (issue 25): the session's name where people read it, and no
Clipboard button where the VM has none."""

from __future__ import annotations

import pytest

from tests.browser import chromium, playing_console
from tests.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.browser

NAME = "Build agent 7 ✓"


async def test_the_toolbar_and_the_recordings_page_show_the_sessions_name(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    async with http.patch(server.make_url("/api/v1/sessions/default"), json={"name": NAME}) as response:
        assert response.status == 200, await response.text()
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "control"}) as response:
        issued = await response.json()
    async with chromium() as browser:
        page, errors = await playing_console(browser, issued["console_url"])
        await page.wait_for_function(f"() => document.getElementById('session-name').textContent === {NAME!r}")
        assert await page.title() == f"{NAME} \u2013 vgpustream"
        assert await page.locator("#session-name").get_attribute("title") == "session default"
        assert await page.locator("#clipboard-toggle").is_hidden(), "a synthetic source has no clipboard"

        await page.goto(f"{server.make_url('/')}#token={OPERATOR_TOKEN}")
        await page.locator('tr[data-session="default"] a.recordings-link').click()
        heading = page.locator("#recordings .session")
        await page.wait_for_function("() => !document.getElementById('recordings').hidden")
        assert await heading.text_content() == NAME
        assert errors == []
