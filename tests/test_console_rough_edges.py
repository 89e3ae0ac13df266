"""What a new user meets first in the console (issue 25): a toolbar whose every control is reachable at any
width, the session's name where people read it, no Clipboard button where the VM has none, and refusals
that say in a person's words what to do next."""

from __future__ import annotations

import re

import pytest

from tests.browser import chromium, playing_console
from tests.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.browser

NAME = "Build agent 7 ✓"
ASK = "Ask whoever gave you the link for a new one."
WIDTHS = [360, 800, 1000, 1280, 1920, 3840]
CONTROLS = ["keys", "scaling", "keyboard", "type-text-open", "pointer-lock", "stats-toggle", "fullscreen"]
SOUND_CONTROLS = ["speaker", "volume"]

# the controls of `ids` a person can reach now: inside the window, one line high, and on top at their middle
REACHABLE = """(ids) => ids.filter((id) => {
  const control = document.getElementById(id);
  const box = control.getBoundingClientRect();
  if (box.width === 0 || box.left < 0 || box.top < 0 || box.right > innerWidth || box.bottom > innerHeight) {
    return false;
  }
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return box.height < 40 && hit !== null && control.contains(hit);
})"""


async def assert_reachable_at_every_width(page, expected: list[str]) -> None:
    """At each of WIDTHS the toolbar is one line and every control of `expected` is on it or in its More menu
    (from 1920 px on, all on the toolbar)."""
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 720})
        await page.wait_for_timeout(100)
        on_toolbar = await page.evaluate(REACHABLE, expected)
        toolbar = await page.locator("#toolbar").bounding_box()
        assert toolbar["height"] < 50, f"{width} px: the toolbar wraps ({toolbar['height']} px high)"
        if await page.locator("#more").is_visible():
            await page.click("#more-toggle")
            in_menu = await page.evaluate(REACHABLE, expected)
            await page.keyboard.press("Escape")
            assert not set(on_toolbar) - set(in_menu), f"{width} px: the menu covers {on_toolbar}"
        else:
            in_menu = []
        unreachable = set(expected) - set(on_toolbar) - set(in_menu)
        assert not unreachable, f"{width} px: {sorted(unreachable)} out of reach"
        if width >= 1920:
            assert set(on_toolbar) == set(expected), f"{width} px: all on the toolbar, no menu"


@pytest.mark.parametrize("sound", [False, True], ids=["silent", "with-sound"])
async def test_every_control_is_in_the_window_at_any_width(make_server, http, sound):
    """From a phone to a 4K screen: the toolbar stays one line, and each control is on it or in its More menu;
    with the VM's sound, the speaker and the volume too."""
    server = await make_server(source="synthetic:320x240@30" + ("?tone=440" if sound else ""))
    expected = CONTROLS + (SOUND_CONTROLS if sound else [])
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "control"}) as response:
        issued = await response.json()
    async with chromium() as browser:
        page, errors = await playing_console(browser, issued["console_url"])
        if sound:
            await page.wait_for_function("() => !document.getElementById('speaker').hidden", timeout=10_000)
        await assert_reachable_at_every_width(page, expected)
        labels = await page.evaluate(
            "() => [...document.querySelectorAll('#toolbar button, #toolbar option')].map(e => e.textContent)"
        )
        assert not any(re.search(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]", label) for label in labels), labels
        assert await page.locator("#speaker svg").count() == 2, "the speaker's icons are inline SVG"
        assert errors == []


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


async def refusal_shown(page, where: str = "status") -> str:
    """The console's words once it gave up (#status), or the session list's (#sessions-status)."""
    await page.wait_for_function(
        f"() => document.getElementById('{where}').textContent.includes('Ask whoever')", timeout=20_000
    )
    return await page.locator(f"#{where}").text_content()


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
async def test_a_link_without_a_token_says_to_ask_for_a_new_one(make_server, transport):
    server = await make_server(source="synthetic:320x240@30")
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(str(server.make_url(f"/?session=default&transport={transport}")))
        shown = await refusal_shown(page)
    assert shown == f"This link has no access key in it, so it cannot show the VM. {ASK}"


async def test_a_revoked_link_and_a_link_without_its_session_say_what_to_do(make_server, http):
    server = await make_server(source="synthetic:320x240@30")
    async with http.post(server.make_url("/api/v1/sessions/default/tokens"), json={"role": "view"}) as response:
        issued = await response.json()
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{server.make_url('/')}#token={issued['token']}")  # the ?session= part lost
        shown = await refusal_shown(page, "sessions-status")
        assert "does not say which one" in shown and "operator" not in shown, shown

        async with http.delete(server.make_url(f"/api/v1/sessions/default/tokens/{issued['id']}")) as response:
            assert response.status == 204
        page = await browser.new_page()
        await page.goto(issued["console_url"])
        shown = await refusal_shown(page)
    assert shown == f"This link does not open the VM any more (the token was revoked). {ASK}"
